"""Checkpoints: round trip, RNG states, atomic writes, and refusal of anything that is
not ours.
"""

import os
import random
import subprocess
import sys

import pytest
import torch

from microgpt import checkpoint
from microgpt.checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_from,
    save_checkpoint,
    tokenizer_from,
)
from microgpt.config import GPTConfig
from microgpt.data import CharTokenizer
from microgpt.model import GPT

TOK = CharTokenizer("abc\n")
CONFIG = GPTConfig(TOK.vocab_size, block_size=8, n_layer=1, n_embd=8, n_head=2)


def write(path, step=3):
    """A small trained-looking checkpoint with an optimizer state."""
    torch.manual_seed(0)
    model = GPT(CONFIG)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.tensor([[0, 1, 2]])).sum().backward()
    optimizer.step()
    save_checkpoint(
        path, model, CONFIG, TOK, "shakespeare", step, optimizer, {"steps": 10}
    )
    return model, optimizer


def test_round_trip(tmp_path):
    model, optimizer = write(tmp_path / "ckpt.pt")
    ckpt = load_checkpoint(tmp_path / "ckpt.pt")
    assert (
        ckpt["step"] == 3
        and ckpt["run"] == {"steps": 10}
        and ckpt["dataset"] == "shakespeare"
    )
    assert tokenizer_from(ckpt).chars == TOK.chars
    loaded = model_from(ckpt)
    idx = torch.tensor([[3, 0, 1, 2]])
    assert torch.equal(loaded(idx), model.eval()(idx))
    fresh = torch.optim.AdamW(loaded.parameters())
    fresh.load_state_dict(ckpt["optimizer"])
    assert torch.equal(
        fresh.state_dict()["state"][0]["exp_avg"],
        optimizer.state_dict()["state"][0]["exp_avg"],
    )


def test_rng_states_come_back():
    state = checkpoint.rng_state()
    before = (random.random(), torch.rand(3))
    checkpoint.set_rng_state(state)
    after = (random.random(), torch.rand(3))
    assert before[0] == after[0] and torch.equal(before[1], after[1])


def test_rng_state_survives_a_file(tmp_path):
    random.seed(5)
    torch.manual_seed(5)
    write(tmp_path / "ckpt.pt")
    expected = (random.random(), torch.rand(2))
    checkpoint.set_rng_state(load_checkpoint(tmp_path / "ckpt.pt")["rng"])
    got = (random.random(), torch.rand(2))
    assert got[0] == expected[0] and torch.equal(got[1], expected[1])


class _FakeMps:
    """An Apple GPU's generator, for machines without one: a state that draws change."""

    def __init__(self):
        self.state = torch.tensor([7], dtype=torch.uint8)

    def get_rng_state(self, device="mps"):
        return self.state.clone()

    def set_rng_state(self, new_state, device="mps"):
        self.state = new_state.clone()


def test_mps_generator_is_saved_and_restored(tmp_path, monkeypatch):
    # Dropout on an Apple GPU draws from the MPS generator; a resume must restore it.
    fake = _FakeMps()
    monkeypatch.setattr(checkpoint, "_mps_available", lambda: True)
    monkeypatch.setattr(torch.mps, "get_rng_state", fake.get_rng_state)
    monkeypatch.setattr(torch.mps, "set_rng_state", fake.set_rng_state)
    write(tmp_path / "ckpt.pt")
    fake.state = torch.tensor([99], dtype=torch.uint8)  # the run draws on
    checkpoint.set_rng_state(load_checkpoint(tmp_path / "ckpt.pt")["rng"])
    assert fake.state.tolist() == [7]


def test_a_state_without_mps_leaves_the_mps_generator_alone(tmp_path, monkeypatch):
    # Checkpoints written before the MPS generator was saved, or on a machine without
    # one.
    write(tmp_path / "ckpt.pt")
    rng = load_checkpoint(tmp_path / "ckpt.pt")["rng"]
    old = {key: value for key, value in rng.items() if key != "mps"}
    fake = _FakeMps()
    monkeypatch.setattr(checkpoint, "_mps_available", lambda: True)
    monkeypatch.setattr(torch.mps, "set_rng_state", fake.set_rng_state)
    for state in (old, rng):  # rng: saved here, where MPS was not available
        checkpoint.set_rng_state(state)
        assert fake.state.tolist() == [7]


def test_failed_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    write(path, step=1)

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write(path, step=2)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_checkpoint_gets_an_ordinary_files_permissions(tmp_path):
    write(tmp_path / "ckpt.pt")
    (tmp_path / "plain.txt").write_text("x")
    assert (tmp_path / "ckpt.pt").stat().st_mode == (
        tmp_path / "plain.txt"
    ).stat().st_mode


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_truncated_file(tmp_path):
    write(tmp_path / "ckpt.pt")
    data = (tmp_path / "ckpt.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")


@pytest.mark.parametrize("content", [b"", b"hello, world\n", bytes(range(256)) * 4])
def test_garbage_file(tmp_path, content):
    (tmp_path / "bad.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match="truncated or not a checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.parametrize(
    "obj", [{"weights": torch.zeros(2)}, [1, 2], {"format": "other"}]
)
def test_foreign_torch_file(tmp_path, obj):
    torch.save(obj, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="is not a microgpt checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_other_format_version_and_missing_keys(tmp_path):
    write(tmp_path / "ckpt.pt")
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    torch.save({**ckpt, "format_version": 99}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format 99"):
        load_checkpoint(tmp_path / "future.pt")
    del ckpt["model"]
    torch.save(ckpt, tmp_path / "nomodel.pt")
    with pytest.raises(CheckpointError, match="lacks model"):
        load_checkpoint(tmp_path / "nomodel.pt")


class Payload:
    """An object whose unpickling would run code: it creates a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_refuses_a_checkpoint_that_pickles_code(tmp_path):
    marker = tmp_path / "pwned"
    torch.save(
        {"format": checkpoint.FORMAT, "format_version": 1, "x": Payload(marker)},
        tmp_path / "evil.pt",
    )
    with pytest.raises(CheckpointError, match="refusing to load it"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_weights_that_do_not_fit_the_config(tmp_path):
    write(tmp_path / "ckpt.pt")
    ckpt = load_checkpoint(tmp_path / "ckpt.pt")
    ckpt["config"]["n_embd"] = 16
    with pytest.raises(CheckpointError, match="do not fit its config"):
        model_from(ckpt)


def test_cli_reports_a_bad_checkpoint_in_one_line(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "microgpt",
            "sample",
            "--checkpoint",
            str(tmp_path / "bad.pt"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"microgpt: error: {tmp_path / 'bad.pt'} is truncated or not a checkpoint "
        "(not a torch.save archive)"
    ]


class _OsAs:
    """The ``os`` module as another platform would show it to the checkpoint code."""

    def __init__(self, name):
        self.name = name

    def __getattr__(self, attr):
        return getattr(os, attr)


def test_atomic_save_on_windows_skips_the_folder_fsync(tmp_path, monkeypatch):
    # Native Windows cannot os.open a folder (PermissionError) and has no folder fsync.
    windows = _OsAs("nt")

    def open_no_folders(path, flags, *args):
        if os.path.isdir(path):
            raise PermissionError(13, "Permission denied", str(path))
        return os.open(path, flags, *args)

    windows.open = open_no_folders
    monkeypatch.setattr(checkpoint, "os", windows)
    write(tmp_path / "ckpt.pt", step=1)
    write(tmp_path / "ckpt.pt", step=2)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 2
    assert os.listdir(tmp_path) == ["ckpt.pt"]
    # The same save on POSIX does open the folder (besides the temporary file), to
    # fsync it:
    opened = []
    posix = _OsAs("posix")
    posix.open = lambda path, flags, *args: (
        opened.append(path),
        os.open(path, flags, *args),
    )[1]
    monkeypatch.setattr(checkpoint, "os", posix)
    write(tmp_path / "ckpt.pt", step=3)
    assert [path for path in opened if os.path.isdir(path)] == [tmp_path]


@pytest.mark.parametrize("where", ["open", "fsync"])
def test_a_refused_folder_fsync_does_not_fail_a_finished_save(
    tmp_path, monkeypatch, where
):
    # Some FUSE and network file systems refuse to open or fsync a folder (EINVAL and
    # the like); the new file is in place by then, so the save must still succeed.
    real_open, real_fsync = os.open, os.fsync

    def refuse(kind, real):
        def call(target, *args):
            if (
                kind == "open"
                and os.path.isdir(target)
                or kind == "fsync"
                and os.path.isdir(f"/proc/self/fd/{target}")
            ):
                raise OSError(22, "Invalid argument")
            return real(target, *args)

        return call

    monkeypatch.setattr(
        os, where, refuse(where, real_open if where == "open" else real_fsync)
    )
    write(tmp_path / "ckpt.pt", step=1)
    write(tmp_path / "ckpt.pt", step=2)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 2
    assert os.listdir(tmp_path) == ["ckpt.pt"]


class _Fcntl:
    """Records F_FULLFSYNC requests; ``fails`` makes it behave like a file system
    without it.
    """

    F_FULLFSYNC = 51

    def __init__(self, fails=False):
        self.calls, self.fails = [], fails

    def fcntl(self, fd, op):
        self.calls.append(op)
        if self.fails:
            raise OSError(45, "Operation not supported")


@pytest.mark.parametrize("fails", [False, True])
def test_atomic_save_on_macos_asks_for_a_full_fsync(tmp_path, monkeypatch, fails):
    fake = _Fcntl(fails)
    fsyncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(checkpoint, "fcntl", fake)
    monkeypatch.setattr(checkpoint, "sys", type("Sys", (), {"platform": "darwin"}))
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd)))
    write(tmp_path / "ckpt.pt")
    assert fake.calls == [_Fcntl.F_FULLFSYNC] * 2  # the file, then its folder
    # plain fsync only where F_FULLFSYNC fails
    assert len(fsyncs) == (2 if fails else 0)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "ckpt.pt")["step"] == 3
