"""Distributed data parallel: two CPU processes under torchrun train like one process
with the same global batch.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist

from microgpt import cli, distributed
from microgpt.checkpoint import load_checkpoint, model_from

TINY = (
    "--batch-size 4 --block-size 32 --n-embd 32 --n-head 2 --n-layer 1"
    " --dtype float32 --steps 150 --eval-interval 50 --ckpt-interval 5"
    " --quiet"
).split()
ENV = {**os.environ, "MICROGPT_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}


def command(nproc: int, *args) -> list[str]:
    """``python -m microgpt ARGS``, under torchrun with ``nproc`` processes when there
    are several.
    """
    launcher = (
        ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)]
        if nproc > 1
        else []
    )
    return [sys.executable, *launcher, "-m", "microgpt", *map(str, args)]


def run(nproc: int, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(nproc, *args), env=ENV, capture_output=True, text=True, timeout=120
    )


def metrics(folder) -> list[dict]:
    return [
        json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()
    ]


def without_ms(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "ms"} for r in records]


@pytest.fixture(scope="module")
def small(tmp_path_factory, data_dir):
    """The first 20,000 characters of tiny-shakespeare as a --data file."""
    path = tmp_path_factory.mktemp("data") / "small.txt"
    path.write_text((data_dir / "tinyshakespeare.txt").read_text()[:20_000])
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory, small):
    """The same 150-step run by one process and by two; returns the folder and both
    completed processes.
    """
    folder = tmp_path_factory.mktemp("ddp")
    one = run(
        1, "train", "shakespeare", "--data", small, "--out", folder / "one", *TINY
    )
    two = run(
        2, "train", "shakespeare", "--data", small, "--out", folder / "two", *TINY
    )
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    return folder, one, two


def test_two_processes_log_the_losses_of_one(runs):
    folder, _, _ = runs
    one, two = metrics(folder / "one"), metrics(folder / "two")
    assert [r["step"] for r in two] == list(range(1, 151))
    assert [r["lr"] for r in two] == [r["lr"] for r in one]
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4), a["step"]
    assert [r["step"] for r in two if "val_loss" in r] == [50, 100, 150]
    val = [(r["val_loss"], s["val_loss"]) for r, s in zip(one, two) if "val_loss" in r]
    assert [b for _, b in val] == pytest.approx([a for a, _ in val], rel=1e-4)


def test_rank_0_alone_prints(runs):
    folder, one, two = runs
    lines, single = two.stdout.splitlines(), one.stdout.splitlines()
    assert len(lines) == len(single) == 6
    assert lines[:2] == single[:2] and lines[3] == single[3]
    assert (
        lines[2] == "run: 150 steps of 4 x 32 characters (2 processes, 2 blocks each)"
    )
    assert lines[4] == f"saved in {folder / 'two'}: ckpt.pt, best.pt, metrics.jsonl"
    assert lines[5].startswith("trained 150 steps in ")
    assert two.stderr == ""


def test_rank_0_alone_writes_a_single_process_checkpoint(runs):
    folder, _, _ = runs
    assert sorted(p.name for p in (folder / "two").iterdir()) == [
        "best.pt",
        "ckpt.pt",
        "metrics.jsonl",
    ]
    one, two = (
        load_checkpoint(folder / "one" / "ckpt.pt"),
        load_checkpoint(folder / "two" / "ckpt.pt"),
    )
    assert (
        two["step"] == 150
        and two["run"] == one["run"]
        and two["model"].keys() == one["model"].keys()
    )
    for name, weight in model_from(two).state_dict().items():
        torch.testing.assert_close(weight, one["model"][name], rtol=1e-4, atol=1e-5)


def test_resume_under_torchrun_after_a_kill(runs, small):
    folder, _, _ = runs
    out = folder / "killed"
    args = ["train", "shakespeare", "--data", small, "--out", out, *TINY]
    proc = subprocess.Popen(
        command(2, *args), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while not (out / "ckpt.pt").exists() and proc.poll() is None:
        time.sleep(0.005)
    # torchrun passes it on to both workers, which die at once
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) != 0
    step = load_checkpoint(out / "ckpt.pt")["step"]
    assert 0 < step < 150
    resumed = run(
        2,
        "train",
        "shakespeare",
        "--data",
        small,
        "--out",
        out,
        "--resume",
        "--quiet",
        "--eval-interval",
        "50",
        "--ckpt-interval",
        "5",
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after step {step}" in resumed.stdout
    assert without_ms(metrics(out)) == without_ms(metrics(folder / "two"))


def test_a_batch_that_does_not_split_evenly(small, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, expected in [
        (
            "0",
            [
                "microgpt: error: --batch-size 5 does not split evenly "
                "across 2 processes; use a multiple of 2"
            ],
        ),
        ("1", []),
    ]:
        monkeypatch.setenv("RANK", rank)
        assert (
            cli.main(
                [
                    "train",
                    "shakespeare",
                    "--data",
                    str(small),
                    "--out",
                    str(tmp_path),
                    "--batch-size",
                    "5",
                    "--device",
                    "cpu",
                    "--steps",
                    "3",
                ]
            )
            == 1
        )
        captured = capsys.readouterr()
        assert captured.err.splitlines() == expected and captured.out == ""


def test_ddp_does_not_broadcast_buffers(monkeypatch):
    made = {}
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(
        torch.nn.parallel,
        "DistributedDataParallel",
        lambda model, **kw: made.update(kw) or model,
    )
    distributed.wrap(torch.nn.Linear(2, 2), torch.device("cpu"))
    # older torch's name, this fake's signature
    assert made == {
        "device_ids": None,
        "broadcast_buffers": False,
    }


def test_gradients_sync_only_on_the_last_micro_batch():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
        with distributed.sync_gradients(ddp, False):
            assert not ddp.require_backward_grad_sync
        with distributed.sync_gradients(ddp, True):
            assert ddp.require_backward_grad_sync
    finally:
        dist.destroy_process_group()


def test_accumulation_in_two_processes_logs_the_losses_of_one(runs, small):
    folder, _, _ = runs
    acc = run(
        2,
        "train",
        "shakespeare",
        "--data",
        small,
        "--out",
        folder / "accum",
        *TINY,
        "--grad-accum",
        "2",
    )
    assert acc.returncode == 0, acc.stderr
    assert "(2 processes, 2 blocks each) in 2 micro-batches of 1" in acc.stdout
    for a, b in zip(metrics(folder / "one"), metrics(folder / "accum")):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4), a["step"]
