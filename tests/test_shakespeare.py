"""tiny-shakespeare: data pipeline, schedule, training CLI, exact resume after SIGKILL,
sampling.
"""

import argparse
import copy
import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from microgpt import cli, train
from microgpt.checkpoint import load_checkpoint
from microgpt.config import GPTConfig, TrainConfig
from microgpt.data import DataError, load_shakespeare
from microgpt.device import autocast, grad_scaler
from microgpt.model import GPT
from microgpt.names import TrainingError
from microgpt.text import (
    batches_per_epoch,
    check_one_batch,
    get_batch,
    split_text,
    val_batches,
)
from microgpt.train import warmup_cosine

from helpers import error_line, run_chapter_cells, run_main, run_microgpt, tiny_run

TINY = (
    "--batch-size 4 --block-size 16 --n-embd 16 --n-head 2 --n-layer 1"
    " --dtype float32 --device cpu --quiet"
).split()


def metrics(folder):
    return [
        json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()
    ]


def timeless(folder):
    """metrics.jsonl without the step times, which differ from run to run."""
    return [{k: v for k, v in r.items() if k != "ms"} for r in metrics(folder)]


@pytest.fixture(scope="module")
def text(data_dir):
    return load_shakespeare(data_dir / "tinyshakespeare.txt")


@pytest.fixture(scope="module")
def small(tmp_path_factory, text):
    """The first 20,000 characters of tiny-shakespeare as a --data file."""
    path = tmp_path_factory.mktemp("data") / "small.txt"
    path.write_text(text[:20_000])
    return path


# --- data pipeline --------------------------------------------------------------------


def test_split_is_the_last_tenth_encoded_once(text):
    splits = split_text(text)
    assert splits.tokenizer.vocab_size == 66 and len(splits.tokenizer.chars) == 65
    assert len(splits.val) == len(text) // 10
    assert (
        splits.tokenizer.decode(splits.val.tolist())
        == text[len(text) - len(text) // 10 :]
    )
    assert torch.equal(
        torch.cat([splits.train, splits.val]),
        torch.tensor(splits.tokenizer.encode(text)),
    )


def test_default_run_is_15_epochs_of_122_batches(text):
    splits = split_text(text)
    assert batches_per_epoch(len(splits.train), 256, 32) == 122


def test_default_model_has_836096_parameters():
    model = GPT(GPTConfig(66, block_size=256, n_layer=4, n_embd=128, n_head=4))
    assert sum(p.numel() for p in model.parameters()) == 836_096


def test_targets_are_inputs_shifted_by_one():
    ids = torch.arange(1000)
    x, y = get_batch(ids, step=7, seed=1, block_size=10, batch_size=5)
    assert x.shape == y.shape == (5, 10)
    assert torch.equal(y, x + 1)


def test_an_epoch_visits_every_example_once_at_one_offset():
    ids, block, batch = torch.arange(1000), 10, 7
    per_epoch = batches_per_epoch(len(ids), block, batch)
    starts = torch.cat(
        [get_batch(ids, s, 3, block, batch)[0][:, 0] for s in range(per_epoch)]
    )
    assert len(set(starts.tolist())) == len(starts) == per_epoch * batch
    assert len({int(s) % block for s in starts}) == 1


def test_order_is_a_pure_function_of_seed_and_step():
    ids = torch.arange(5000)
    first = [get_batch(ids, s, 9, 16, 8)[0] for s in (0, 40, 41)]
    again = [get_batch(ids, s, 9, 16, 8)[0] for s in (41, 0, 40)]
    assert torch.equal(first[0], again[1]) and torch.equal(first[2], again[0])
    assert not torch.equal(
        get_batch(ids, 0, 9, 16, 8)[0],
        get_batch(ids, 0, 10, 16, 8)[0],
    )
    per_epoch = batches_per_epoch(len(ids), 16, 8)
    offsets = {
        int(get_batch(ids, e * per_epoch, 9, 16, 8)[0][0, 0]) % 16 for e in range(8)
    }
    assert len(offsets) > 1, "every epoch should cut the text at its own offset"


def test_validation_blocks_cover_the_split_in_order():
    batches = val_batches(torch.arange(105), block_size=10, batch_size=4)
    x = torch.cat([b[0] for b in batches])
    assert torch.equal(x.flatten(), torch.arange(100))
    assert all(torch.equal(b[1], b[0] + 1) for b in batches)


def test_too_little_text_is_a_clear_error():
    assert batches_per_epoch(100, 16, 32) == 0
    with pytest.raises(DataError, match="too short for one batch"):
        check_one_batch(100, 16, 32)
    with pytest.raises(DataError, match="too short for one batch"):
        get_batch(torch.arange(100), 0, 1, 16, 32)


# --- schedule -------------------------------------------------------------------------


def test_warmup_then_cosine_to_near_zero():
    lrs = [warmup_cosine(s, 1000, 2e-3, 100) for s in range(1000)]
    assert lrs[0] == pytest.approx(2e-5) and lrs[99] == pytest.approx(2e-3)
    assert all(a < b for a, b in zip(lrs[:99], lrs[1:100]))
    assert all(a >= b for a, b in zip(lrs[100:], lrs[101:]))
    assert lrs[550] == pytest.approx(
        2e-3 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    )
    assert lrs[-1] < 0.011 * 2e-3


# --- training CLI ---------------------------------------------------------------------


def test_train_writes_metrics_checkpoint_and_summary(tmp_path, small):
    result = run_microgpt(
        "train",
        "shakespeare",
        "--data",
        small,
        "--out",
        tmp_path,
        "--steps",
        30,
        "--eval-interval",
        10,
        "--ckpt-interval",
        0,
        *TINY,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("trained 30 steps in ")
    records = metrics(tmp_path)
    assert [r["step"] for r in records] == list(range(1, 31))
    assert all(set(r) >= {"step", "loss", "lr", "ms"} for r in records)
    assert [r["step"] for r in records if "val_loss" in r] == [10, 20, 30]
    assert records[-1]["loss"] < records[0]["loss"]
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 30


def test_sigkill_then_resume_gives_bit_identical_losses(tmp_path, small):
    # The kill lands at the first checkpoint (step 10), so 200 steps leave most of the
    # run to resume.
    args = [
        "train",
        "shakespeare",
        "--data",
        small,
        "--steps",
        200,
        "--eval-interval",
        50,
        "--ckpt-interval",
        10,
        *TINY,
    ]
    assert run_microgpt(*args, "--out", tmp_path / "whole").returncode == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "microgpt", *map(str, args), "--out", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while not (killed / "ckpt.pt").exists() and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    step = load_checkpoint(killed / "ckpt.pt")["step"]
    assert 0 < step < 200
    resumed = run_microgpt(
        "train",
        "shakespeare",
        "--data",
        small,
        "--out",
        killed,
        "--resume",
        "--quiet",
        "--eval-interval",
        50,
        "--ckpt-interval",
        10,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after step {step}" in resumed.stdout
    assert timeless(killed) == timeless(tmp_path / "whole")
    assert len(metrics(killed)) == 200
    best_whole, best_killed = (
        load_checkpoint(tmp_path / "whole" / "best.pt"),
        load_checkpoint(killed / "best.pt"),
    )
    val = {r["step"]: r["val_loss"] for r in metrics(killed) if "val_loss" in r}
    assert best_killed["step"] == best_whole["step"] == min(val, key=val.get)
    assert all(
        torch.equal(a, b)
        for a, b in zip(best_whole["model"].values(), best_killed["model"].values())
    )


def test_resume_with_nothing_to_resume(tmp_path, small):
    line = error_line(
        "train",
        "shakespeare",
        "--data",
        small,
        "--out",
        tmp_path,
        "--resume",
        *TINY,
    )
    assert line == (
        "microgpt: error: --resume: "
        f"there is no checkpoint to resume in {tmp_path}; "
        "run without --resume to start"
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small):
    """A finished 20-step run on the small text."""
    folder = tmp_path_factory.mktemp("runs")
    assert (
        run_main(
            "train",
            "shakespeare",
            "--data",
            small,
            "--out",
            folder / "done",
            "--steps",
            20,
            *TINY,
        ).returncode
        == 0
    )
    return folder


def resume_error(data, trained, *flags) -> str:
    """The error line of ``--resume`` of the ``trained`` fixture's run on ``data``."""
    out = trained / "done"
    return error_line(
        "train", "shakespeare", "--data", data, "--out", out, "--resume", *flags
    )


def test_resume_refuses_contradicting_flags(trained, small):
    line = resume_error(small, trained, "--lr", "0.01", "--quiet")
    assert line == (
        "microgpt: error: --lr 0.01 differs from the checkpoint's 0.004; "
        "drop it to resume the run as it was"
    )


def test_resume_refuses_other_data(trained, small, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text(small.read_text()[::-1])
    line = resume_error(other, trained)
    assert "was trained on another text; pass the same --data to resume it" in line


def test_resume_of_a_finished_run(trained, small):
    line = resume_error(small, trained)
    assert line.endswith("already finished its 20 steps; nothing to resume")


def test_fresh_run_will_not_overwrite_a_checkpoint(trained, small):
    line = error_line(
        "train",
        "shakespeare",
        "--data",
        small,
        "--out",
        trained / "done",
        *TINY,
    )
    assert "already holds a checkpoint; add --resume to continue it" in line


def test_resume_refuses_a_truncated_checkpoint(trained, small, tmp_path):
    (tmp_path / "ckpt.pt").write_bytes(
        (trained / "done" / "ckpt.pt").read_bytes()[:1000]
    )
    line = error_line(
        "train", "shakespeare", "--data", small, "--out", tmp_path, "--resume"
    )
    assert "is truncated or not a checkpoint" in line


def test_resume_refuses_a_names_checkpoint(trained, small, tmp_path):
    ckpt = load_checkpoint(trained / "done" / "ckpt.pt")
    torch.save({**ckpt, "dataset": "names", "optimizer": None}, tmp_path / "ckpt.pt")
    line = error_line(
        "train", "shakespeare", "--data", small, "--out", tmp_path, "--resume"
    )
    assert line == (
        f"microgpt: error: {tmp_path}/ckpt.pt is not a resumable Shakespeare checkpoint"
        " (a names run's, or weights without an optimizer): start a new run with"
        " another --out"
    )


def test_non_finite_loss_stops_with_a_message(monkeypatch, small, tmp_path):
    splits = split_text(small.read_text())
    monkeypatch.setattr(
        train, "lm_loss", lambda model, x, y: model(x).sum() * float("nan")
    )
    with pytest.raises(
        TrainingError, match="the loss became nan at step 1; lower --lr"
    ):
        train.train_text(
            splits,
            tiny_run(steps=5, batch_size=4),
            tmp_path,
            progress=False,
        )


def test_bfloat16_autocast_trains(small, tmp_path):
    splits = split_text(small.read_text())
    result = train.train_text(
        splits,
        tiny_run(steps=20, batch_size=4, dtype="bfloat16"),
        tmp_path,
        eval_interval=10,
        progress=False,
    )
    assert math.isfinite(result.val_loss)
    assert next(result.model.parameters()).dtype == torch.float32


# --- sampling -------------------------------------------------------------------------


def samples_of(stdout: str) -> list[str]:
    """The texts of ``microgpt sample``'s output for a text checkpoint."""
    parts = re.split(r"^--- sample \d+ ---\n", stdout, flags=re.M)
    assert parts[0] == ""
    return [part[:-1] for part in parts[1:]]  # print() added one newline after each


def test_text_samples_run_to_max_chars_and_follow_the_seed(trained):
    args = [
        "sample",
        "--checkpoint",
        trained / "done" / "ckpt.pt",
        "--prompt",
        "First",
        "--max-chars",
        300,
        "--num-samples",
        2,
    ]
    first, again, other = (
        run_main(*args),
        run_main(*args),
        run_main(*args, "--seed", 7),
    )
    texts = samples_of(first.stdout)
    assert len(texts) == 2 and all(
        t.startswith("First") and len(t) == 5 + 300 for t in texts
    )
    assert first.stdout == again.stdout != other.stdout


def test_text_samples_never_stop_at_bos(trained, tmp_path):
    ckpt = load_checkpoint(trained / "done" / "ckpt.pt")
    ckpt["model"][
        "lm_head.weight"
    ].zero_()  # uniform predictions: BOS would come up about once in 36
    torch.save(ckpt, tmp_path / "uniform.pt")
    result = run_main(
        "sample",
        "--checkpoint",
        tmp_path / "uniform.pt",
        "--max-chars",
        500,
        "--num-samples",
        3,
    )
    assert [len(t) for t in samples_of(result.stdout)] == [500, 500, 500]


def test_prompt_outside_the_vocabulary(trained):
    line = error_line(
        "sample",
        "--checkpoint",
        trained / "done" / "ckpt.pt",
        "--prompt",
        "Œdipus",
    )
    assert line.startswith(
        "microgpt: error: --prompt: character 'Œ' is not in the vocabulary ("
    )


def test_names_checkpoint_samples_names(tmp_path, data_dir):
    trained = run_main(
        "train",
        "names",
        "--engine",
        "torch",
        "--steps",
        20,
        "--batch-size",
        8,
        "--out",
        tmp_path,
    )
    assert trained.returncode == 0, trained.stderr
    result = run_main(
        "sample",
        "--checkpoint",
        tmp_path / "ckpt.pt",
        "--num-samples",
        5,
        "--prompt",
        "an",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "--- inference (new, hallucinated names) ---" and len(lines) == 6
    assert all(re.fullmatch(r"sample +\d+: an[a-z]*", line) for line in lines[1:])


# --- the chapters' inline pieces agree with the package's -----------------------------


def notebook_functions(name: str, *functions: str) -> dict:
    """The functions that chapter ``name`` defines, in a namespace with the usual
    imports.
    """
    namespace = {
        "torch": torch,
        "math": math,
        "random": __import__("random"),
        "train": train,
        "autocast": autocast,
        "device": torch.device("cpu"),
    }
    markers = [f"def {f}(" for f in functions]
    return run_chapter_cells(name, markers, namespace, definitions_only=True)


def test_chapter_9_get_batch_is_the_packages():
    ns = notebook_functions(
        "09_shakespeare_data.ipynb", "examples_per_epoch", "epoch_plan", "get_batch"
    )
    ids = torch.randint(0, 66, (20_000,), generator=torch.Generator().manual_seed(0))
    for step in (0, 5, 77, 300):
        ours, theirs = (
            ns["get_batch"](ids, step, 3, 32, 8),
            get_batch(ids, step, 3, 32, 8),
        )
        assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_run_cut_at_a_checkpoint_resumes_exactly(
    small, tmp_path, killed_after_checkpoint, dtype
):
    """In-process: 30 steps straight, and 30 steps cut after the step-10 checkpoint
    and resumed, log the same losses (the SIGKILL test above kills a real process).
    """
    splits = split_text(small.read_text())
    run_config = tiny_run(steps=30, batch_size=4, dtype=dtype)
    train.train_text(
        splits, run_config, tmp_path / "whole", eval_interval=10, progress=False
    )
    ckpt = killed_after_checkpoint(
        splits,
        run_config,
        tmp_path / "cut",
        eval_interval=10,
        ckpt_interval=10,
        progress=False,
    )
    assert ckpt["step"] == 10
    train.train_text(
        splits,
        run_config,
        tmp_path / "cut",
        eval_interval=10,
        resume=ckpt,
        progress=False,
    )
    assert timeless(tmp_path / "cut") == timeless(tmp_path / "whole")


def test_resuming_twice_from_one_loaded_checkpoint_leaves_it_unchanged(
    small, tmp_path, killed_after_checkpoint
):
    splits = split_text(small.read_text())
    run_config = tiny_run(steps=20, batch_size=4)
    ckpt = killed_after_checkpoint(
        splits, run_config, tmp_path / "cut", ckpt_interval=10, progress=False
    )
    assert ckpt["step"] == 10
    before = copy.deepcopy(ckpt["optimizer"])
    for name in ("first", "second"):
        train.train_text(
            splits, run_config, tmp_path / name, resume=ckpt, progress=False
        )
    assert all(
        torch.equal(ckpt["optimizer"]["state"][k][n], t)
        for k, state in before["state"].items()
        for n, t in state.items()
    )
    assert timeless(tmp_path / "first") == timeless(tmp_path / "second")


def test_chapter_10_schedule_and_step_are_the_packages():
    ns = notebook_functions("10_training_loop.ipynb", "warmup_cosine", "step_fn")
    assert [ns["warmup_cosine"](s, 500, 1e-3, 40) for s in range(500)] == [
        warmup_cosine(s, 500, 1e-3, 40) for s in range(500)
    ]
    config, out = GPTConfig(20, 8, 1, 16, 2), []
    x, y = torch.randint(0, 20, (4, 8)), torch.randint(0, 20, (4, 8))
    cpu = torch.device("cpu")

    def package_step(model, optimizer, x, y, lr, grad_clip):
        scaler = grad_scaler(cpu, "float32")
        return train.text_update(
            model,
            optimizer,
            x,
            y,
            lr=lr,
            grad_clip=grad_clip,
            scaler=scaler,
            device=cpu,
            dtype="float32",
        )[0]

    for step in (ns["step_fn"], package_step):
        torch.manual_seed(0)
        model = GPT(config)
        optimizer = train.make_text_optimizer(model, TrainConfig(), torch.device("cpu"))
        out.append(
            (
                step(model, optimizer, x, y, 1e-2, 0.5),
                [p.detach().clone() for p in model.parameters()],
            )
        )
    assert out[0][0] == out[1][0] and all(
        torch.equal(a, b) for a, b in zip(out[0][1], out[1][1])
    )


def test_chapter_12_sample_next_is_the_packages():
    from microgpt import sample

    ns = notebook_functions("12_generation.ipynb", "sample_next")
    logits = torch.randn(200, 30, generator=torch.Generator().manual_seed(0))
    for temperature, top_k in [(1.0, None), (0.5, 3), (2.0, 29)]:
        ours = ns["sample_next"](
            logits, temperature, top_k, torch.Generator().manual_seed(1)
        )
        theirs = sample.sample_next(
            logits, temperature, top_k, torch.Generator().manual_seed(1)
        )
        assert torch.equal(ours, theirs)


# --- the loop's features: gradient accumulation, warmup as a fraction, log interval, be


# text_update's device, precision and (disabled) gradient scaler for a float32 step on
# the CPU
FLOAT32 = {
    "device": torch.device("cpu"),
    "dtype": "float32",
    "scaler": grad_scaler(torch.device("cpu"), "float32"),
}


def float64_pair(text: str, seed: int = 0):
    """Two equal float64 models (explicit-mask attention, no dropout), their AdamW
    optimizers and a batch of 8.
    """
    splits = split_text(text[:20_000])
    config = GPTConfig(splits.tokenizer.vocab_size, 16, 1, 16, 2)
    run = TrainConfig(steps=3, batch_size=8)
    pair = []
    for _ in range(2):
        torch.manual_seed(seed)
        model = GPT(config).double()
        pair.append((model, train.make_text_optimizer(model, run, torch.device("cpu"))))
    return splits, pair, run


@pytest.mark.parametrize("accum", [2, 4, 8])
def test_gradient_accumulation_equals_the_large_batch_in_float64(text, accum):
    splits, [(big, big_opt), (acc, acc_opt)], run = float64_pair(text)
    for step in range(3):
        x, y = get_batch(splits.train, step, 1, 16, 8)
        one = train.text_update(big, big_opt, x, y, lr=1e-2, grad_clip=1.0, **FLOAT32)
        many = train.text_update(
            acc, acc_opt, x, y, lr=1e-2, grad_clip=1.0, accum=accum, **FLOAT32
        )
        assert (
            abs(one[0].item() - many[0].item()) < 1e-12
            and abs(one[1].item() - many[1].item()) < 1e-12
        )
    for (name, a), b in zip(big.state_dict().items(), acc.state_dict().values()):
        assert (a - b).abs().max().item() < 1e-12, name


def test_gradient_accumulation_needs_equal_micro_batches(text):
    splits, [(model, optimizer), _], _ = float64_pair(text)
    x, y = get_batch(splits.train, 0, 1, 16, 8)
    with pytest.raises(ValueError, match="does not split into 3 equal micro-batches"):
        train.text_update(
            model, optimizer, x, y, lr=1e-2, grad_clip=1.0, accum=3, **FLOAT32
        )


def test_grad_accum_flag_and_its_errors(tmp_path, small):
    result = run_main(
        "train",
        "shakespeare",
        "--data",
        small,
        "--out",
        tmp_path,
        "--steps",
        4,
        "--grad-accum",
        2,
        *TINY,
    )
    assert result.returncode == 0, result.stderr
    assert "in 2 micro-batches of 2" in result.stdout
    assert load_checkpoint(tmp_path / "ckpt.pt")["run"]["grad_accum"] == 2
    line = error_line(
        "train",
        "shakespeare",
        "--data",
        small,
        "--out",
        tmp_path / "x",
        "--steps",
        4,
        *TINY,
        "--grad-accum",
        3,
    )
    assert line == (
        "microgpt: error: --batch-size 4 does not split evenly "
        "across 3 micro-batches; use a multiple of 3"
    )


def test_warmup_is_steps_or_a_fraction_of_the_run(text):
    splits = split_text(text[:20_000])
    cpu = torch.device("cpu")
    for warmup, steps in ((0.05, 10), (7, 7)):
        run = TrainConfig(steps=200, warmup=warmup)
        assert train.resolved(run, len(splits.train), cpu).warmup == steps
    assert cli.warmup_value("0.05") == 0.05 and cli.warmup_value("30") == 30
    for bad in ("1.5", "-1", "x"):
        with pytest.raises((ValueError, argparse.ArgumentTypeError)):
            cli.warmup_value(bad)


def test_log_interval_keeps_one_record_per_step_with_grad_norm_and_lr(small, tmp_path):
    splits = split_text(small.read_text())
    runs = {}
    for interval in (1, 5):
        train.train_text(
            splits,
            tiny_run(steps=12, batch_size=4),
            tmp_path / str(interval),
            log_interval=interval,
            progress=False,
        )
        runs[interval] = metrics(tmp_path / str(interval))
    assert [r["step"] for r in runs[5]] == list(range(1, 13))
    assert all(set(r) == {"step", "loss", "grad_norm", "lr", "ms"} for r in runs[5])
    # the same values, fetched later
    assert [{**r, "ms": 0} for r in runs[5]] == [{**r, "ms": 0} for r in runs[1]]
    assert [r["lr"] for r in runs[5]] == [
        warmup_cosine(s, 12, 4e-3, 100) for s in range(12)
    ]
    assert all(r["grad_norm"] > 0 for r in runs[5])


def test_non_finite_check_names_the_first_bad_step(monkeypatch, small, tmp_path):
    splits = split_text(small.read_text())
    calls, lm_loss = [], train.lm_loss

    def nan_from_step_3(model, x, y):
        calls.append(1)
        return lm_loss(model, x, y) * (float("nan") if len(calls) >= 3 else 1.0)

    monkeypatch.setattr(train, "lm_loss", nan_from_step_3)
    with pytest.raises(
        TrainingError, match="the loss became nan at step 3; lower --lr"
    ):
        train.train_text(
            splits,
            tiny_run(steps=8, batch_size=4),
            tmp_path,
            log_interval=8,
            progress=False,
        )


def test_best_checkpoint_follows_the_validation_loss(trained):
    records = metrics(trained / "done")
    val = {r["step"]: r["val_loss"] for r in records if "val_loss" in r}
    assert load_checkpoint(trained / "done" / "best.pt")["step"] == min(
        val, key=val.get
    )
    assert load_checkpoint(trained / "done" / "ckpt.pt")["best_val_loss"] == min(
        val.values()
    )


def test_dropout_flag_reaches_the_model(small, tmp_path):
    args = ["train", "shakespeare", "--data", small, "--steps", 5, *TINY]
    assert run_main(*args, "--out", tmp_path / "d0").returncode == 0
    result = run_main(*args, "--out", tmp_path / "d1", "--dropout", 0.2)
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(tmp_path / "d1" / "ckpt.pt")["run"]["dropout"] == 0.2
    assert metrics(tmp_path / "d1")[0]["loss"] != metrics(tmp_path / "d0")[0]["loss"]
    splits = split_text(small.read_text())
    model = train.train_text(
        splits,
        tiny_run(steps=1, batch_size=4, dropout=0.2),
        tmp_path / "d2",
        progress=False,
    ).model
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.2}
