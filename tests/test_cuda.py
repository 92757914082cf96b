"""On a CUDA GPU: both models train in bfloat16, float16 and float32, resume exactly,
sample, and the bench runs.

Skipped where torch sees no CUDA device (CI, laptops); ``tests/gpu/run.sh`` runs this
file on a GPU machine. Exact resume on CUDA is checked with
``torch.use_deterministic_algorithms(True)`` (and the cuBLAS workspace setting it
needs), because some CUDA kernels add in whatever order their threads finish (the
embedding's backward pass among them); without it, the resumed losses are checked to
agree to 1e-3, and whether they are bit-identical anyway is printed.
"""

import json
import os
import subprocess

import pytest
import torch

from microgpt import bench, cli, train
from microgpt.checkpoint import load_checkpoint
from microgpt.config import TrainConfig
from microgpt.device import cuda_auto, emulated, resolve_dtype
from microgpt.text import split_text

from helpers import run_microgpt

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"
)
CUDA = torch.device("cuda")
DTYPES = ["bfloat16", "float16", "float32"]


def microgpt(*args: str) -> subprocess.CompletedProcess:
    """The command line as a user runs it, on the GPU."""
    return run_microgpt(*args, env={**os.environ, "MICROGPT_DEVICE": "cuda"})


@pytest.fixture(scope="module")
def splits(data_dir):
    return split_text((data_dir / "tinyshakespeare.txt").read_text()[:200_000])


@pytest.fixture
def deterministic(monkeypatch):
    """Deterministic CUDA kernels for one test (cuBLAS needs a fixed workspace for
    it).
    """
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


def metrics(folder) -> list[dict]:
    return [
        {k: v for k, v in json.loads(line).items() if k != "ms"}
        for line in (folder / "metrics.jsonl").read_text().splitlines()
    ]


def train_cut_and_resume(
    splits, dtype: str, tmp_path, killed
) -> tuple[list[dict], list[dict]]:
    """30 steps straight, and 30 steps killed after the step-10 checkpoint then resumed:
    both metrics logs.
    """
    run = TrainConfig(64, 2, 64, 4, steps=30, batch_size=16, dtype=dtype)
    train.train_text(
        splits,
        run,
        tmp_path / "whole",
        device=CUDA,
        eval_interval=10,
        progress=False,
    )
    killed(
        splits,
        run,
        tmp_path / "cut",
        device=CUDA,
        eval_interval=10,
        ckpt_interval=10,
        progress=False,
    )
    ckpt = load_checkpoint(tmp_path / "cut" / "ckpt.pt")
    assert ckpt["step"] == 10 and (ckpt["scaler"] is not None) == (dtype == "float16")
    train.train_text(
        splits,
        run,
        tmp_path / "cut",
        device=CUDA,
        eval_interval=10,
        resume=ckpt,
        progress=False,
    )
    return metrics(tmp_path / "whole"), metrics(tmp_path / "cut")


@pytest.mark.parametrize("dtype", DTYPES)
def test_shakespeare_resumes_exactly_with_deterministic_kernels(
    splits, dtype, tmp_path, killed_after_checkpoint, deterministic
):
    whole, cut = train_cut_and_resume(splits, dtype, tmp_path, killed_after_checkpoint)
    assert cut == whole
    assert whole[-1]["loss"] < whole[0]["loss"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_shakespeare_resumes_closely_with_default_kernels(
    splits, dtype, tmp_path, killed_after_checkpoint
):
    whole, cut = train_cut_and_resume(splits, dtype, tmp_path, killed_after_checkpoint)
    gap = max(abs(a["loss"] - b["loss"]) for a, b in zip(whole, cut))
    print(
        f"{dtype}: resumed vs straight, largest loss difference {gap:.3g} "
        f"(bit-identical: {cut == whole})"
    )
    assert [r["step"] for r in cut] == [r["step"] for r in whole] and gap < 1e-3


@pytest.mark.parametrize("dtype", DTYPES)
def test_shakespeare_cli_trains_and_samples(dtype, tmp_path):
    out = tmp_path / dtype
    done = microgpt(
        "train",
        "shakespeare",
        "--out",
        str(out),
        "--steps",
        "20",
        "--dtype",
        dtype,
        "--quiet",
        "--eval-interval",
        "10",
        "--ckpt-interval",
        "10",
    )
    assert done.returncode == 0, done.stderr
    assert f"device cuda, dtype {dtype}" in done.stdout
    emulation = emulated(dtype, CUDA)
    assert ("runs emulated" in done.stderr) == (emulation is not None), done.stderr
    again = microgpt(
        "train",
        "shakespeare",
        "--out",
        str(out),
        "--steps",
        "20",
        "--resume",
        "--quiet",
    )
    assert again.returncode == 1 and "already finished its 20 steps" in again.stderr
    sample = microgpt(
        "sample",
        "--checkpoint",
        str(out / "ckpt.pt"),
        "--prompt",
        "ROMEO:",
        "--max-chars",
        "80",
    )
    assert sample.returncode == 0, sample.stderr
    assert (
        sample.stdout.startswith("--- sample 1 ---\nROMEO:")
        and len(sample.stdout.split("\n", 1)[1]) >= 86
    )


def test_auto_follows_this_gpus_compute_capability():
    major, minor = torch.cuda.get_device_capability()
    assert resolve_dtype("auto", CUDA) == cuda_auto(major, minor)[0]
    print(
        f"{torch.cuda.get_device_name()}: compute capability {major}.{minor}, "
        f"--dtype auto -> {resolve_dtype('auto', CUDA)}"
    )


def test_names_trains_on_the_gpu_like_on_the_cpu(tmp_path):
    steps = ["train", "names", "--steps", "20", "--num-samples", "3"]
    gpu = microgpt(*steps, "--device", "cuda", "--out", str(tmp_path / "names"))
    cpu = microgpt(*steps, "--device", "cpu")
    assert gpu.returncode == 0 and cpu.returncode == 0, gpu.stderr + cpu.stderr

    def losses(out: str) -> list[float]:
        return [
            float(line.rsplit(" ", 1)[1])
            for line in out.splitlines()
            if line.startswith("step")
        ]

    # float32 on both; rounding differs
    assert losses(gpu.stdout) == pytest.approx(losses(cpu.stdout), abs=1e-3)
    sample = microgpt(
        "sample",
        "--checkpoint",
        str(tmp_path / "names" / "ckpt.pt"),
        "--num-samples",
        "5",
    )
    assert sample.returncode == 0 and sample.stdout.count("sample ") == 5, sample.stderr


def test_names_batched_and_compiled_on_the_gpu():
    done = microgpt(
        "train",
        "names",
        "--steps",
        "30",
        "--batch-size",
        "32",
        "--compile",
        "--device",
        "cuda",
    )
    assert done.returncode == 0, done.stderr
    assert "step   30 /   30" in done.stdout


def test_the_bench_runs_on_the_gpu(tmp_path, data_dir):
    out = tmp_path / "bench.json"
    assert (
        bench.main(
            [
                "--small",
                "--steps",
                "2",
                "--rounds",
                "1",
                "--no-compile",
                "--device",
                "cuda",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    text = report["suites"]["shakespeare"]
    assert text["machine"]["device"] == "cuda" and any(
        r["default"] for r in text["results"]
    )
    auto = resolve_dtype("auto", CUDA)
    assert auto == "float32" or auto in text["matmul_peak_gflops_per_s"]


def test_doctor_names_the_gpu(capsys):
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    major, minor = torch.cuda.get_device_capability()
    assert (
        f"cuda:0: {torch.cuda.get_device_name(0)}, compute capability {major}.{minor}"
        in out
    )
