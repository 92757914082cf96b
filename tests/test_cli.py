"""The command line frame: help everywhere, version, and one-line errors with a non-zero
exit.
"""

import argparse
import dataclasses
import os
import re
import subprocess
import sys

import pytest

from microgpt import __version__, cli
from microgpt.cli import step_printer
from microgpt.config import TrainConfig

from helpers import error_line, run_microgpt


def command_paths(parser: argparse.ArgumentParser, prefix=()):
    """Every sub-command path of the parser, e.g. ('train', 'names')."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from command_paths(sub, (*prefix, name))


def test_every_command_has_help(capsys):
    paths = list(command_paths(cli.build_parser()))
    assert ("train", "names") in paths
    for path in paths:
        with pytest.raises(SystemExit) as exit_:
            cli.main([*path, "--help"])
        assert exit_.value.code == 0
        assert "usage: microgpt " + " ".join(path) in capsys.readouterr().out


def test_version_and_module_entry_point():
    result = run_microgpt("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"microgpt {__version__}"


def test_bad_flag_is_a_usage_error():
    result = run_microgpt("train", "names", "--steps", "0")
    assert result.returncode == 2
    assert "--steps: must be >= 1, got 0" in result.stderr


def test_runtime_error_is_one_line(tmp_path):
    result = run_microgpt("train", "names", "--data", str(tmp_path / "absent.txt"))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "microgpt: error: cannot read data file"
    )


def test_bad_model_shape_is_one_line(data_dir):
    result = run_microgpt("train", "names", "--engine", "scalar", "--n-embd", "15")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "microgpt: error: n_embd (15) must be divisible by n_head (4) "
        "so that every head gets the same width"
    )


# --- every error path: one line on stderr, exit 1, no traceback, nothing written ------

NAMES = ["train", "names", "--steps", "2", "--num-samples", "0", "--device", "cpu"]
TEXT = (
    "train shakespeare --steps 2 --batch-size 2 --block-size 8 --n-embd 8"
    " --n-head 2 --n-layer 1 --device cpu --quiet"
).split()


@pytest.fixture
def small_text(tmp_path, data_dir):
    path = tmp_path / "small.txt"
    path.write_text((data_dir / "tinyshakespeare.txt").read_text()[:5000])
    return path


def files_under(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


@pytest.mark.parametrize("command", ["names", "text"])
def test_out_that_is_a_file(command, tmp_path, data_dir, small_text):
    (tmp_path / "taken").write_text("mine")
    before = files_under(tmp_path)
    for out in (tmp_path / "taken", tmp_path / "taken" / "run"):
        args = NAMES if command == "names" else [*TEXT, "--data", small_text]
        line = error_line(*args, "--out", out)
        assert line == (
            f"microgpt: error: --out {out}: "
            f"{tmp_path / 'taken'} is a file, not a folder"
        )
    assert (
        files_under(tmp_path) == before and (tmp_path / "taken").read_text() == "mine"
    )


def test_out_that_cannot_be_created(small_text):
    line = error_line(*TEXT, "--data", small_text, "--out", "/proc/microgpt-run")
    assert line.startswith(
        "microgpt: error: --out /proc/microgpt-run: cannot create it ("
    )
    assert not os.path.exists("/proc/microgpt-run")


@pytest.mark.parametrize("command", ["names", "text"])
def test_model_too_big_for_memory_says_how_much_it_needs(
    command, tmp_path, data_dir, small_text
):
    big = [
        "--n-embd",
        "65536",
        "--n-head",
        "4",
        "--n-layer",
        "64",
        "--out",
        tmp_path / "run",
    ]
    args = (
        [*NAMES, *big]
        if command == "names"
        else [*TEXT[:-9], "--data", small_text, *big]
    )
    line = error_line(*args)
    assert re.search(
        r"this model needs about [\d,.]+ GiB to train "
        r"\(3,\d{3},\d{3},\d{3},\d{3} parameters",
        line,
    )
    assert "free; make it smaller" in line
    assert not (tmp_path / "run").exists()


def test_estimate_is_not_below_what_the_default_model_holds():
    from microgpt.config import TrainConfig
    from microgpt.device import param_count, training_bytes
    from microgpt.model import GPT

    config = TrainConfig().model(65)
    assert param_count(config) == GPT(config).num_params()
    # weights, gradients, two Adam moments
    assert training_bytes(config, 32) > 16 * param_count(config)


@pytest.mark.parametrize("content", [b"abc\x00\x01\x02" * 50, b"\xff\xfe\x00\x81" * 50])
@pytest.mark.parametrize("command", ["names", "text"])
def test_binary_data(command, content, tmp_path):
    data = tmp_path / "blob.bin"
    data.write_bytes(content)
    args = NAMES if command == "names" else TEXT
    line = error_line(*args, "--data", data, "--out", tmp_path / "run")
    assert line.startswith(f"microgpt: error: {data} is not a text file (")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["names", "text"])
def test_directory_data(command, tmp_path):
    args = NAMES if command == "names" else TEXT
    line = error_line(*args, "--data", tmp_path, "--out", tmp_path / "run")
    assert (
        line.startswith(f"microgpt: error: cannot read data file {tmp_path}: ")
        and "directory" in line
    )
    assert not (tmp_path / "run").exists()


def test_text_too_short_for_one_batch(tmp_path):
    data = tmp_path / "short.txt"
    data.write_text("to be\n" * 3)
    line = error_line(*TEXT, "--data", data, "--out", tmp_path / "run")
    assert (
        "is too short for one batch of 2 x 8 characters; "
        "lower --batch-size or --block-size"
    ) in line
    assert not (tmp_path / "run").exists()


def test_resume_with_changed_flags_and_checkpoints_of_the_wrong_kind(
    tmp_path, capsys, data_dir, small_text
):
    run_dir = tmp_path / "run"
    assert (
        cli.main(list(map(str, [*TEXT, "--data", small_text, "--out", run_dir]))) == 0
    )
    capsys.readouterr()
    before = {p: p.read_bytes() for p in run_dir.iterdir()}
    line = error_line(
        *TEXT,
        "--data",
        small_text,
        "--out",
        run_dir,
        "--resume",
        "--steps",
        "4",
        "--n-embd",
        "16",
    )
    assert line == (
        "microgpt: error: --n-embd 16 differs from the checkpoint's 8; "
        "drop it to resume the run as it was"
    )
    names_run = tmp_path / "names"
    assert cli.main(list(map(str, [*NAMES, "--out", names_run]))) == 0
    capsys.readouterr()
    line = error_line(*TEXT, "--data", small_text, "--out", names_run, "--resume")
    assert line == (
        f"microgpt: error: {names_run}/ckpt.pt "
        "is not a resumable Shakespeare checkpoint (a names run's, or weights "
        "without an optimizer): start a new run with another --out"
    )
    (tmp_path / "foreign.pt").write_bytes(b"not a checkpoint at all")
    line = error_line("sample", "--checkpoint", tmp_path / "foreign.pt")
    assert "is truncated or not a checkpoint" in line
    assert {p: p.read_bytes() for p in run_dir.iterdir()} == before


def test_the_scalar_engines_run_without_torch(data_dir):
    """cli imports torch only inside the torch commands, so Part I's engines run where
    it is not installed.
    """
    code = (
        "import sys; sys.modules['torch'] = None  # any import of torch now fails\n"
        "from microgpt import cli\n"
        "raise SystemExit(cli.main(['train', 'names', '--engine', 'scalar-fused', "
        "'--steps', '3', '--log-every', '1', '--num-samples', '2']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "step    3 /    3 | loss" in result.stdout and "sample  2:" in result.stdout


def test_exact_loss_prints_every_digit_of_the_same_losses(capsys, data_dir):
    argv = [
        "train",
        "names",
        "--engine",
        "scalar-fused",
        "--steps",
        "5",
        "--log-every",
        "1",
        "--num-samples",
        "0",
    ]
    losses = []
    for extra in ([], ["--exact-loss"]):
        assert cli.main(argv + extra) == 0
        losses.append(
            [
                line.rsplit(" ", 1)[1]
                for line in capsys.readouterr().out.splitlines()
                if line.startswith("step ")
            ]
        )
    rounded, exact = losses
    assert len(exact) == 5 and all(
        repr(float(x)) == x and len(x) > 10 for x in exact
    ), exact
    assert rounded == [f"{float(x):.4f}" for x in exact]


def test_on_a_terminal_each_step_line_covers_the_longer_one_before_it(
    monkeypatch, capsys
):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    show = step_printer(3, 1, exact=True)
    for step, loss in enumerate([2.934480617624684, 2.5, 2.25]):
        show(step, loss)
    first, second, last = capsys.readouterr().out.split("\r")
    assert first == "step    1 /    3 | loss 2.934480617624684"
    assert second == "step    2 /    3 | loss 2.5".ljust(len(first))
    assert last == "step    3 /    3 | loss 2.25".ljust(len(first)) + "\n"


# --- --threads: torch's CPU threads, 1 where every tensor is small, torch's own for Sha


@pytest.fixture
def threads_seen(monkeypatch):
    """torch's CPU threads as the training loops and the sampler see them (one entry a
    call), starting from 3.

    3 is neither the small-work default (1) nor a ``--threads 2`` below, so each test
    tells them apart on any machine; torch's own number comes back after the test.
    """
    import torch

    from microgpt import cli_torch, train

    seen = []

    def spy(real):
        def call(*args, **kwargs):
            seen.append(torch.get_num_threads())
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(cli_torch, "train_names", spy(cli_torch.train_names))
    monkeypatch.setattr(train, "train_text", spy(train.train_text))
    monkeypatch.setattr(cli_torch, "generate", spy(cli_torch.generate))
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield seen
    torch.set_num_threads(before)


@pytest.mark.parametrize("threads, expected", [([], 1), (["--threads", "2"], 2)])
def test_names_runs_on_one_thread_unless_told(
    threads_seen, threads, expected, data_dir
):
    import torch

    assert cli.main([*NAMES, *threads]) == 0
    # the training loop (the samples come from sample_docs, not generate)
    assert threads_seen == [expected]
    assert torch.get_num_threads() == 3  # the caller's number, back after the command


@pytest.mark.parametrize("threads, expected", [([], 3), (["--threads", "2"], 2)])
def test_shakespeare_keeps_torchs_threads_unless_told(
    threads_seen, threads, expected, tmp_path, small_text
):
    import torch

    assert (
        cli.main(
            list(
                map(
                    str,
                    [*TEXT, "--data", small_text, "--out", tmp_path / "run", *threads],
                )
            )
        )
        == 0
    )
    assert threads_seen == [expected]
    assert torch.get_num_threads() == 3


@pytest.mark.parametrize("threads, expected", [([], 1), (["--threads", "2"], 2)])
def test_sample_runs_on_one_thread_unless_told(
    threads_seen, threads, expected, tmp_path, capsys, data_dir
):
    import torch

    assert cli.main(list(map(str, [*NAMES, "--out", tmp_path / "run"]))) == 0
    threads_seen.clear()
    assert (
        cli.main(
            list(
                map(
                    str,
                    ["sample", "--checkpoint", tmp_path / "run" / "ckpt.pt", *threads],
                )
            )
        )
        == 0
    )
    assert threads_seen == [expected] and "sample  1: " in capsys.readouterr().out
    assert torch.get_num_threads() == 3


@pytest.mark.parametrize(
    "value, message",
    [
        ("0", "must be >= 1, got 0"),
        ("-2", "must be >= 1, got -2"),
        ("1.5", "invalid int value: '1.5'"),
        ("all", "invalid int value: 'all'"),
    ],
)
@pytest.mark.parametrize(
    "prog, command",
    [
        ("microgpt train names", ["train", "names"]),
        ("microgpt train shakespeare", ["train", "shakespeare", "--out", "run"]),
        ("microgpt sample", ["sample", "--checkpoint", "ckpt.pt"]),
    ],
)
def test_bad_threads_is_one_error_line(prog, command, value, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*command, "--threads", value])
    assert exit_.value.code == 2
    out, err = capsys.readouterr()  # argparse's usage, then the one error line
    assert out == "" and [line for line in err.splitlines() if "error" in line] == [
        f"{prog}: error: argument --threads: {message}"
    ]


def test_threads_is_a_torch_engine_flag(capsys):
    line = error_line("train", "names", "--engine", "scalar-fused", "--threads", "2")
    assert line == (
        "microgpt: error: --threads: only with --engine torch "
        "(the scalar engines run one name at a time)"
    )


@pytest.mark.parametrize(
    "command, default",
    [
        (["train", "names"], "(default 1: 16-wide matrices are too small"),
        (["sample"], "(default 1: one token at a time is too small"),
        (["train", "shakespeare"], "(default: torch's own, $OMP_NUM_THREADS"),
    ],
)
def test_help_says_each_threads_default(command, default, capsys):
    with pytest.raises(SystemExit):
        cli.main([*command, "--help"])
    assert default in " ".join(capsys.readouterr().out.split())


def test_shakespeare_help_shows_the_run_configs_defaults(capsys):
    """Each flag that sets a field of ``TrainConfig`` is named after it, and its help
    gives the field's default: the defaults are stated once, in the dataclass.
    """
    with pytest.raises(SystemExit):
        cli.main(["train", "shakespeare", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    for flag, _, _ in cli.RUN_FLAGS:
        name = flag[2:].replace("-", "_")
        assert name in fields
        default = getattr(TrainConfig(), name)
        pattern = rf"{flag} \S+ (?:(?!--).)*\(default {re.escape(str(default))}\)"
        assert re.search(pattern, help_text), flag


def test_the_readme_command_on_its_default_thread_ends_at_the_originals_loss(data_dir):
    """``microgpt train names`` as the README runs it: torch engine, one thread, the
    original's last loss.
    """
    result = run_microgpt("train", "names")
    assert result.returncode == 0, result.stderr
    assert "step 1000 / 1000 | loss 2.6497" in result.stdout.splitlines()
