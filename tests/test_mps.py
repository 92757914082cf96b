"""Apple's MPS, simulated (no Mac here): float32 only, fused optimizers where torch has
them, no torch.compile, and every command either runs or stops with one line saying why.
"""

import pytest
import torch

from microgpt import bench, cli
from microgpt.device import has_fused_adam, pick_device, resolve_dtype, use_tf32

MPS = torch.device("mps")


@pytest.fixture
def mac(monkeypatch):
    """A machine whose only accelerator is MPS, as torch reports it."""
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("MICROGPT_DEVICE", raising=False)


def one_error_line(capsys, argv) -> str:
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_auto_picks_mps_and_float32(mac):
    assert pick_device() == MPS
    assert resolve_dtype("auto", MPS) == "float32"
    assert not use_tf32(MPS, "float32")


def test_fused_adam_where_torch_has_it():
    assert all(has_fused_adam(torch.device(t)) for t in ("cpu", "cuda", "mps"))


@pytest.mark.parametrize(
    "dtype, why",
    [
        ("bfloat16", "microgpt trains in float32 on MPS"),
        ("float16", "microgpt trains in float32 on MPS"),
    ],
)
def test_shakespeare_refuses_16_bit_on_mps_and_writes_nothing(
    mac, capsys, tmp_path, data_dir, dtype, why
):
    out = tmp_path / "run"
    line = one_error_line(
        capsys,
        ["train", "shakespeare", "--out", str(out), "--dtype", dtype, "--steps", "1"],
    )
    assert line == f"microgpt: error: --dtype {dtype}: {why}; use --dtype float32"
    assert not out.exists()


def test_names_refuses_float64_and_compile_on_mps(mac, capsys):
    assert "MPS has no float64" in one_error_line(
        capsys, ["train", "names", "--dtype", "float64", "--steps", "1"]
    )
    line = one_error_line(capsys, ["train", "names", "--compile", "--steps", "1"])
    assert "--compile: microgpt does not use torch.compile on MPS" in line


def test_data_parallel_on_mps_is_one_line(mac, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    line = one_error_line(
        capsys, ["train", "shakespeare", "--out", str(tmp_path / "run"), "--steps", "1"]
    )
    assert (
        "distributed training runs on CUDA (NCCL) or the CPU (gloo), not on mps" in line
    )


def test_bench_skips_compiled_rungs_on_mps(mac, monkeypatch, capsys):
    asked = []

    def stop(name, device, steps, rounds, compile, *rest):
        asked.append(compile)
        raise ValueError("stopped before timing anything")

    monkeypatch.setattr(bench, "run_suite", stop)
    assert bench.main(["names"]) == 1
    assert asked == [False]
    assert "no torch.compile rungs on MPS" in capsys.readouterr().err
