"""``microgpt doctor``: the environment report, on this machine and on patched GPUs,
Macs and CPUs.
"""

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from microgpt import cli, doctor


def test_the_report_on_this_machine(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("MICROGPT_DATA", str(data_dir))
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert f"torch {torch.__version__}" in out and "python " in out
    assert f"threads: {torch.get_num_threads()} intra-op" in out
    assert (
        "    train names: 1 (microgpt's default" in out
        and "    sample: 1 (microgpt's default" in out
    )
    assert f"    train shakespeare: {torch.get_num_threads()} (torch's default" in out
    assert f"names: {data_dir / 'names.txt'} (verified)" in out
    assert f"shakespeare: {data_dir / 'tinyshakespeare.txt'} (verified)" in out
    assert "--dtype auto -> " in out


def test_a_damaged_or_missing_dataset_is_reported(tmp_path, monkeypatch):
    (tmp_path / "names.txt").write_text("tampered\n")
    monkeypatch.setenv("MICROGPT_DATA", str(tmp_path))
    monkeypatch.setenv("MICROGPT_CACHE", str(tmp_path / "cache"))
    lines = doctor.data_lines()
    assert any("names: " in line and "SHA-256 MISMATCH" in line for line in lines)
    assert any("shakespeare: not downloaded yet" in line for line in lines)


def test_cuda_devices_with_name_capability_and_precision(monkeypatch):
    cards = [
        SimpleNamespace(name="Tesla T4", major=7, minor=5, total_memory=15 * 2**30),
        SimpleNamespace(
            name="NVIDIA A100-SXM4-40GB", major=8, minor=0, total_memory=40 * 2**30
        ),
    ]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: cards[i])
    monkeypatch.setattr(
        torch.cuda,
        "get_device_capability",
        lambda device=None: (
            cards[torch.device(device).index].major,
            cards[torch.device(device).index].minor,
        ),
    )
    text = "\n".join(doctor.cuda_lines())
    assert "cuda:0: Tesla T4, compute capability 7.5, 15.0 GiB" in text
    assert (
        "--dtype auto -> float16 (compute capability 7.5 < 8.0 only emulates bfloat16"
        in text
    )
    assert "cuda:1: NVIDIA A100-SXM4-40GB, compute capability 8.0" in text
    assert (
        "--dtype auto -> bfloat16 (compute capability 8.0 >= 8.0" in text
        and "TF32" in text
    )


def test_a_mac(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setenv("PYTORCH_ENABLE_MPS_FALLBACK", "1")
    text = "\n".join(doctor.mps_lines())
    assert (
        "mps: available" in text
        and "--dtype auto -> float32 (microgpt trains in float32 on mps)" in text
    )
    assert "PYTORCH_ENABLE_MPS_FALLBACK=1" in text


@pytest.mark.parametrize(
    "flags, pick", [({"avx512_bf16": True}, "bfloat16"), ({"avx2": True}, "float32")]
)
def test_cpu_precision_follows_its_instructions(monkeypatch, flags, pick):
    monkeypatch.setattr(
        torch.cpu,
        "get_capabilities",
        lambda: {"cpu_name": "Test CPU", **flags},
        raising=False,
    )
    text = "\n".join(doctor.cpu_lines())
    assert text.startswith("cpu: Test CPU") and f"--dtype auto -> {pick}" in text


def test_python_dash_m_runs_it(data_dir):
    result = subprocess.run(
        [sys.executable, "-m", "microgpt.doctor"], capture_output=True, text=True
    )
    assert (
        result.returncode == 0
        and result.stdout.startswith("microgpt ")
        and result.stderr == ""
    )


def test_it_says_each_commands_threads(monkeypatch):
    """1 for names and sample; torch's own number (whatever it is now) for Shakespeare's
    training.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        lines = doctor.cpu_lines()
    finally:
        torch.set_num_threads(before)
    assert "  threads per command (--threads N sets them):" in lines
    assert (
        "    train names: 1 (microgpt's default: "
        "its tensors are too small to share out across cores)"
    ) in lines
    assert any(
        line.startswith("    train shakespeare: 3 (torch's default; under torchrun")
        for line in lines
    )
    assert (
        "    sample: 1 (microgpt's default: "
        "its tensors are too small to share out across cores)"
    ) in lines


def test_omp_num_threads_is_torchs_default():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "microgpt", "doctor"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "threads: 1 intra-op" in result.stdout
        and "(OMP_NUM_THREADS=1)" in result.stdout
    )
    assert "    train shakespeare: 1 (torch's default" in result.stdout
