"""The benchmark runs every rung of the names ladder and reports them (speed itself is never tested)."""

import json
import subprocess
import sys


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "microgpt.bench", *args], capture_output=True, text=True)


def test_names_ladder_runs_and_writes_json(tmp_path, data_dir):
    out = tmp_path / "bench.json"
    result = bench("names", "--steps", "2", "--rounds", "1", "--no-compile", "--device", "cpu", "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    rungs = [r["rung"] for r in report["results"]]
    assert rungs == ["scalar (atomic Values)", "scalar, fused dot products", "torch eager, batch 1",
                     "torch eager, batch 32"]
    assert report["machine"]["device"] == "cpu" and report["machine"]["torch_threads"] == 1
    first = report["results"][0]
    assert first["x_scalar"] == 1.0 and first["x_rung_below"] is None
    for r in report["results"]:
        assert r["ms_per_step"] > 0 and r["tokens_per_s"] > 0 and r["timed_steps"] >= 1
        assert r["rung"] in result.stdout
    assert result.stdout.startswith("machine: ")


def test_bad_arguments_are_one_line_errors():
    result = bench("names", "--device", "tpu", "--no-compile")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("microgpt.bench: error: unknown device 'tpu'")
    result = bench("names", "--steps", "0")
    assert result.returncode == 1 and "must be >= 1" in result.stderr
    assert bench("nosuchsuite").returncode == 2
