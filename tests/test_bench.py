"""The benchmark runs every rung of both ladders and reports them (speed itself is never
tested).
"""

import json
import subprocess

import pytest
import torch

from microgpt import bench, ladders, roofline, timing
from microgpt.config import GPTConfig, TrainConfig
from microgpt.device import resolve_dtype
from microgpt.model import GPT
from microgpt.text import get_batch

from helpers import run_main, run_microgpt

NAMES = [
    "scalar (atomic Values)",
    "scalar, fused dot products",
    "torch eager, batch 1",
    "torch eager, batch 32",
]
TEXT_DEFAULTS = TrainConfig()
SHAKESPEARE = ["fp32 eager (explicit mask)", "+ SDPA attention"]
BF16 = resolve_dtype("auto", torch.device("cpu")) == "bfloat16"


def bench_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m microgpt.bench ARGS`` as a user runs it."""
    return run_microgpt(*args, module="microgpt.bench")


@pytest.fixture(scope="module")
def both(tmp_path_factory, data_dir):
    """``all`` in its quickest form: one timed step per rung, the small Shakespeare
    shape, no compilation.
    """
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    result = bench_cli(
        "--small",
        "--steps",
        "1",
        "--rounds",
        "1",
        "--no-compile",
        "--device",
        "cpu",
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, json.loads(out.read_text())


def check_results(report: dict, names: list[str], stdout: str) -> None:
    assert [r["rung"] for r in report["results"]] == names
    first = report["results"][0]
    assert first["x_first_rung"] == 1.0 and first["x_rung_below"] is None
    for r in report["results"]:
        assert (
            r["ms_per_step"] > 0
            and r["tokens_per_s"] > 0
            and r["timed_steps"] == report["rounds"]
        )
        s = r["ms_spread"]
        assert (
            s["min"]
            <= s["q1"]
            <= s["median"]
            == r["ms_per_step"]
            <= s["q3"]
            <= s["max"]
        )
        assert r["rung"] in stdout


def test_all_is_the_default_and_runs_both_ladders(both):
    stdout, report = both
    assert list(report["suites"]) == ["names", "shakespeare"]
    assert report["command"].startswith(
        "python -m microgpt.bench --small --steps 1 --rounds 1 --no-compile "
        "--device cpu --json "
    )
    assert report["total_s"] > 0 and report["date"].endswith(" UTC")
    assert stdout.startswith("machine: ") and stdout.count("machine: ") == 2
    assert stdout.rstrip().endswith(" s in all")


def test_names_ladder(both):
    stdout, report = both
    names = report["suites"]["names"]
    check_results(names, NAMES, stdout)
    assert (
        names["machine"]["device"] == "cpu" and names["machine"]["torch_threads"] == 1
    )
    assert names["baseline"] == "scalar" and "matmul_peak_gflops_per_s" not in names
    assert not any(r["default"] for r in names["results"])


def test_shakespeare_ladder_reports_gflops_against_the_peaks(both):
    stdout, report = both
    text = report["suites"]["shakespeare"]
    check_results(text, SHAKESPEARE + ["+ bf16 autocast"] * BF16, stdout)
    assert text["machine"]["torch_threads"] == bench.ALL_THREADS
    peaks = text["matmul_peak_gflops_per_s"]
    assert (
        peaks["size"] == 2048 and peaks["float32"] > 0 and ("bfloat16" in peaks) == BF16
    )
    for r in text["results"]:
        assert r["gflops_per_s"] > 0 and r["pct_of_peak"] == pytest.approx(
            100 * r["gflops_per_s"] / peaks[r["dtype"]]
        )
    assert [r["rung"] for r in text["results"] if r["default"]] == [
        text["results"][-1]["rung"]
    ]
    assert "as `microgpt train shakespeare` runs on this device): " in stdout


def test_shakespeare_reports_the_profile_bandwidth_and_the_loop(both):
    stdout, report = both
    text = report["suites"]["shakespeare"]
    assert text["copy_gb_per_s"] > 0
    profile = text["profile"]
    assert profile["rung"] == text["results"][-1]["rung"] and list(
        profile["groups"]
    ) == list(roofline.GROUPS)
    assert sum(g["pct"] for g in profile["groups"].values()) == pytest.approx(100)
    assert (
        profile["groups"]["matmuls"]["gflops_per_s"] > 0
        and profile["groups"]["attention"]["ms"] > 0
    )
    loop = text["loop_ms"]
    assert 0 < loop["min"] <= loop["median"] <= loop["max"]
    assert "training loop (train.train_text, metrics.jsonl's ms): median " in stdout
    assert "profile of " in stdout and "copy " in stdout


def test_spread_is_min_quartiles_max():
    assert timing.spread([4.0, 1.0, 3.0, 2.0, 5.0]) == {
        "min": 1.0,
        "q1": 2.0,
        "median": 3.0,
        "q3": 4.0,
        "max": 5.0,
    }
    assert timing.spread([7.0]) == dict.fromkeys(
        ["min", "q1", "median", "q3", "max"], 7.0
    )


def test_profiled_operations_fall_into_the_steps_groups():
    square, rows = [[32, 4, 256, 256]], [[8192, 128], [128, 128]]
    assert (
        roofline.op_group("aten::_scaled_dot_product_flash_attention_for_cpu", [], 256)
        == "attention"
    )
    assert (
        roofline.op_group("aten::bmm", [[128, 256, 32], [128, 32, 256]], 256)
        == "attention"
    )
    assert roofline.op_group("aten::_softmax", square, 256) == "attention"
    assert roofline.op_group("aten::mm", rows, 256) == "matmuls"
    assert roofline.op_group("aten::_fused_adamw_", [], 256) == "optimizer"
    assert roofline.op_group("Optimizer.step#AdamW.step", [], 256) == "optimizer"
    assert roofline.op_group("aten::_log_softmax", [[8192, 66]], 256) == "cross-entropy"
    assert roofline.op_group("aten::_to_copy", rows, 256) == "casts and copies"
    assert roofline.op_group("aten::mul", rows, 256) == "norms and element-wise"


def test_group_work_counts_the_step_flops():
    config = GPTConfig(
        66,
        **{
            k: getattr(TEXT_DEFAULTS, k)
            for k in ("block_size", "n_layer", "n_embd", "n_head")
        },
    )
    work = roofline.group_work(config, 32, 2)
    assert work["matmuls"][0] + work["attention"][0] == roofline.step_flops(
        GPT(config), 32
    )
    assert all(flops > 0 and nbytes > 0 for flops, nbytes in work.values())


def test_an_explicit_attention_moves_its_scores_through_memory():
    config = GPTConfig(66, block_size=256, n_layer=4, n_embd=128, n_head=4)
    flash, explicit = (
        roofline.group_work(config, 32, 2, stored)["attention"]
        for stored in (False, True)
    )
    assert explicit[0] == flash[0]  # the same FLOPs
    # 11 passes over B x H x T x T bf16, 4 layers
    assert explicit[1] - flash[1] == 11 * 32 * 4 * 256 * 256 * 2 * 4
    # 128 vs about 15 FLOP/byte at this shape
    assert flash[0] / flash[1] > 8 * explicit[0] / explicit[1]


def test_the_rungs_say_whose_attention_stores_its_scores(data_dir):
    splits, config, _ = ladders.shakespeare_setup(small=True)
    data = (config, [get_batch(splits.train, 0, 1337, config.block_size, 2)])

    def rung(**kw):
        return ladders.text_rung("r", data, torch.device("cpu"), 1, **kw)

    assert rung(attention="explicit", dtype="float32").scores_in_memory
    assert not rung(attention="sdpa", dtype="float32").scores_in_memory
    assert rung(attention="bf16", dtype="bfloat16").scores_in_memory


def test_a_cpu_without_bfloat16_keeps_the_float32_sdpa_step(data_dir, monkeypatch):
    # no avx512_bf16, no amx_bf16
    report = {
        "avx2": True,
        "avx512_f": True,
        "num_physical_cores": 2,
    }
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: report, raising=False)
    rungs = ladders.shakespeare_rungs(
        torch.device("cpu"), steps=1, compile=False, small=True
    )
    assert [r.name for r in rungs] == ["fp32 eager (explicit mask)", ladders.REFERENCE]
    default = next(r for r in rungs if r.default)
    assert (
        default.name == ladders.REFERENCE
        and default.dtype == "float32"
        and not default.scores_in_memory
    )


@pytest.fixture(scope="module")
def names_compiled(tmp_path_factory, data_dir):
    """The names suite with its compiled rung: 2 rounds of 2 steps, on 2 threads
    (the suite's default is 1).
    """
    out = tmp_path_factory.mktemp("bench") / "names.json"
    result = bench_cli(
        "names",
        "--steps",
        "2",
        "--rounds",
        "2",
        "--threads",
        "2",
        "--device",
        "cpu",
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, json.loads(out.read_text())["suites"]["names"]


def test_steps_and_threads_flags_override_the_suite_defaults(names_compiled):
    names = names_compiled[1]
    assert names["machine"]["torch_threads"] == 2 and names["steps_per_round"] == 2
    # the scalar rungs run at least 1 a round
    assert [r["timed_steps"] for r in names["results"]] == [2, 2, 4, 4, 4]


def test_the_compiled_rung_reports_its_compile_time_apart(names_compiled):
    stdout, names = names_compiled
    compiled = names["results"][3]
    assert (
        compiled["rung"] == "torch compiled, batch 1"
        and compiled["compile_s"] > 0
        and not compiled["default"]
    )
    assert "torch compiled, batch 1: the first step took" in stdout


def test_step_flops_counts_matmul_weights_and_attention():
    config = GPTConfig(
        66,
        **{
            k: getattr(TEXT_DEFAULTS, k)
            for k in ("block_size", "n_layer", "n_embd", "n_head")
        },
    )
    linear = 4 * 12 * 128 * 128 + 128 * 66
    assert linear == 794_880
    assert roofline.step_flops(GPT(config), 32) == 32 * 256 * (
        6 * linear + 12 * 4 * 128 * 256
    )


def test_slower_rungs_are_shown_as_slower():
    assert [
        bench.ratio(x, say_slower=True) for x in (None, 0.5, 1.0, 2.345, 123.45)
    ] == ["-", "0.50 slower", "1.00", "2.35", "123.5"]
    assert bench.ratio(0.5) == "0.50"


def test_help_states_each_suites_defaults():
    result = run_main("--help", main=bench.main)
    assert result.returncode == 0
    help_text = " ".join(result.stdout.split())
    assert (
        "default: all" in help_text
        and "200 for names" in help_text
        and "8 for shakespeare" in help_text
    )
    assert (
        f"1 for names, whose matrices are tiny; all {bench.ALL_THREADS} for shakespeare"
        in help_text
    )


def test_bad_arguments_are_one_line_errors(tmp_path):
    result = bench_cli("names", "--device", "tpu", "--no-compile")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("microgpt.bench: error: unknown device 'tpu'")
    # the rest in this process: the same main, without a new interpreter each
    result = run_main("names", "--steps", "0", main=bench.main)
    assert result.returncode == 1 and "must be >= 1" in result.stderr
    assert run_main("nosuchsuite", main=bench.main).returncode == 2
    # refused before any timing
    result = run_main("names", "--json", tmp_path / "no" / "x.json", main=bench.main)
    assert result.returncode == 1 and result.stderr.startswith(
        "microgpt.bench: error: --json "
    )
    assert (
        "folder does not exist" in result.stderr
        and len(result.stderr.strip().splitlines()) == 1
    )


def test_the_machine_names_the_cpu_from_cpuinfo_else_from_python(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU @ 3.00GHz\n" * 2)
    # the one /proc/cpuinfo reader
    monkeypatch.setattr("microgpt.device.CPUINFO", cpuinfo)
    assert bench.machine(torch.device("cpu"))["cpu"] == "Test CPU @ 3.00GHz"
    monkeypatch.setattr("microgpt.device.CPUINFO", tmp_path / "missing")
    monkeypatch.setattr(bench.platform, "processor", lambda: "")
    monkeypatch.setattr(bench.platform, "machine", lambda: "arm64")
    assert bench.machine(torch.device("cpu"))["cpu"] == "arm64"
