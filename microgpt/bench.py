"""``python -m microgpt.bench [names|shakespeare|all]``: how fast is one training step
on each rung of the ladder?

Every rung is one way to run the same training step. All rungs of a suite are built
first, then timed in interleaved rounds (each round runs every rung), so a machine that
gets busier or cooler part-way through slows every rung alike. The first round is
warm-up and is not counted; a compiled rung's very first step (the compilation) is timed
apart, before the rounds. We report the median milliseconds per step with its spread
(minimum, quartiles, maximum), tokens per second, and each rung's speed-up over the rung
before it and over the first rung, in tokens per second (a batch of 32 names does 32
names' work in one step). A rung slower than the one before it shows a speed-up below 1.

The ladders are in :mod:`microgpt.ladders`, the timing in :mod:`microgpt.timing`, the
peaks and the profile in :mod:`microgpt.roofline`; this module runs them and prints (or
saves) the report.

``names``: the 4,192-parameter model of Part I, from the scalar engine to batched torch
(1 thread). ``shakespeare``: the 836K-parameter step of ``microgpt train shakespeare``
(32 blocks of 256 characters, AdamW, clipping), from plain float32 eager to what the
package runs by default and to ``torch.compile``, with the achieved GFLOP/s against a
matmul peak measured on the same device (the MFU), the copy bandwidth, the default
step's profile by group of operations, and the training loop's own step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import torch

from microgpt.data import DataError
from microgpt.device import DeviceError, cpuinfo, pick_device
from microgpt.ladders import REFERENCE, loop_ms, names_rungs, shakespeare_rungs
from microgpt.roofline import copy_bandwidth, matmul_peaks, step_profile
from microgpt.timing import Rung, cpu_seconds, other_load, run

# torch's default (one per core), read before a suite changes it
ALL_THREADS = torch.get_num_threads()


@dataclass(frozen=True)
class Suite:
    """A ladder: how to build its rungs, its default steps per round and threads, and
    its first rung's label.
    """

    build: Callable[..., list[Rung]]
    steps: int
    threads: int
    baseline: str
    # measure the matmul peaks, the copy bandwidth, the training loop; profile the
    # default
    peaks: bool = False
    shrinks: bool = False  # ``build`` takes ``small`` (--small)


SUITES = {
    "names": Suite(names_rungs, steps=200, threads=1, baseline="scalar"),
    "shakespeare": Suite(
        shakespeare_rungs,
        steps=8,
        threads=ALL_THREADS,
        baseline="fp32",
        peaks=True,
        shrinks=True,
    ),
}


def machine(device: torch.device) -> dict:
    """What the numbers were measured on."""
    models = cpuinfo("model name")  # Linux names it; elsewhere Python guesses
    cpu = models[0].strip() if models else platform.processor() or platform.machine()
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run_suite(
    name: str,
    device: torch.device,
    steps: int | None,
    rounds: int,
    compile: bool,
    threads: int | None,
    small: bool = False,
) -> dict:
    """Build and time one suite at its default (or the given) steps and threads; its
    report as a dict.
    """
    suite = SUITES[name]
    steps = steps or suite.steps
    torch.set_num_threads(threads or suite.threads)
    rungs = (
        suite.build(device, steps, compile, small)
        if suite.shrinks
        else suite.build(device, steps, compile)
    )
    t0, before = time.perf_counter(), cpu_seconds()
    results = run(rungs, device, rounds)
    load = other_load(before, cpu_seconds(), time.perf_counter() - t0)
    report = {
        "suite": name,
        "machine": machine(device),
        "steps_per_round": steps,
        "rounds": rounds,
        "other_load_pct": load,
        "baseline": suite.baseline,
        "results": results,
    }
    if suite.peaks:
        report["matmul_peak_gflops_per_s"] = peaks = matmul_peaks(device)
        report["copy_gb_per_s"] = copy_bandwidth(device)
        for r in results:
            # MFU against the measured peak
            r["pct_of_peak"] = 100 * r["gflops_per_s"] / peaks[r["dtype"]]
        report["profile"] = step_profile(next(r for r in rungs if r.default), device)
        report["loop_ms"] = loop_ms(device, steps * rounds, small)
    return report


def machine_line(info: dict) -> str:
    """One line saying where the numbers were measured."""
    return (
        f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, "
        f"torch {info['torch']} ({info['torch_threads']} thread(s)), "
        f"device {info.get('gpu', info['device'])}"
    )


def ms_text(ms: float) -> str:
    """Milliseconds to 3 decimals below 10, 1 below 100, none above: as precise as a
    step's spread allows.
    """
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def ratio(x: float | None, say_slower: bool = False) -> str:
    """A speed-up as the tables print it: 2 decimals below 10, 1 above; below 1,
    'slower' if asked.
    """
    if x is None:
        return "-"
    text = f"{x:.2f}" if x < 10 else f"{x:.1f}"
    return f"{text} slower" if say_slower and x < 1 else text


def print_table(results: list[dict], info: dict, baseline: str = "scalar") -> None:
    """The results as an aligned table, under a line saying where they were measured."""
    print(machine_line(info))
    flops = "gflops_per_s" in results[0]
    extra = f" {'GFLOP/s':>8} {'% peak':>7}" if flops else ""
    print(
        f"{'rung':<28} {'ms/step':>9} {'min-max':>17} {'tokens/s':>11} "
        f"{'x rung below':>13} {'x ' + baseline:>9}{extra}"
    )
    for r in results:
        extra = f" {r['gflops_per_s']:>8.1f} {r['pct_of_peak']:>6.1f}%" if flops else ""
        low, high = (ms_text(r["ms_spread"][k]) for k in ("min", "max"))
        print(
            f"{r['rung']:<28} {r['ms_per_step']:>9.3f} {f'{low}-{high}':>17} "
            f"{r['tokens_per_s']:>11,.0f} {ratio(r['x_rung_below'], True):>13} "
            f"{ratio(r['x_first_rung']):>9}{extra}"
        )


def print_profile(profile: dict, peaks: dict, bandwidth: float) -> None:
    """The default step's profile by group: ms, share, and achieved GFLOP/s and GB/s
    where counted.
    """
    print(
        f"profile of {profile['rung']} ({profile['dtype']}), self time by group; "
        "peaks: matmul "
        + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items() if k != "size")
        + f" GFLOP/s, copy {bandwidth:.0f} GB/s"
    )
    print(
        f"  {'group':<24} {'ms':>7} {'share':>6} {'GFLOP/s':>8} "
        f"{'FLOP/byte':>10} {'GB/s':>6}"
    )
    for name, g in profile["groups"].items():
        counted = (
            f" {g['gflops_per_s']:>8.1f} {g['flops_per_byte']:>10.1f} "
            f"{g['gb_per_s']:>6.1f}"
            if "gflops_per_s" in g
            else ""
        )
        print(f"  {name:<24} {g['ms']:>7.1f} {g['pct']:>5.1f}%{counted}")


def print_speedups(report: dict) -> None:
    """The default step's speed-up over the first rung (and, for Shakespeare, its
    time against the float32 SDPA reference), and each compiled rung's compile time.
    """
    results, first = report["results"], report["results"][0]["rung"]
    reference = None
    if report["suite"] == "shakespeare":
        reference = next((r for r in results if r["rung"] == REFERENCE), None)
    for r in results:
        if r["default"]:
            against = ""
            if reference and reference is not r:
                ratio = r["ms_per_step"] / reference["ms_per_step"]
                against = f"; {ratio:.2f}x the time of the float32 SDPA rung"
            print(
                f"default step ({r['rung']}, as `microgpt train {report['suite']}` "
                f"runs on this device): {r['x_first_rung']:.2f}x the {first} rung"
                + against
            )
        if "compile_s" in r:
            print(
                f"{r['rung']}: the first step took {r['compile_s']:.1f} s "
                "(compiling; not in the table)"
            )


def print_peak_notes(report: dict) -> None:
    """How GFLOP/s and % peak are counted, the profile, and the training loop's step
    against the default rung (Shakespeare only: the names suite has no peaks).
    """
    p = report["matmul_peak_gflops_per_s"]
    half = "".join(f", {k} {p[k]:.0f}" for k in ("bfloat16", "float16") if k in p)
    print(
        f"matmul peak ({p['size']}x{p['size']}, fastest of 20): "
        f"float32 {p['float32']:.0f}{half} GFLOP/s; "
        "% peak is against the rung's matmul format"
    )
    print(
        "GFLOP/s: 6 FLOPs per matmul weight per token, plus 12 x n_layer x n_embd "
        "x block_size per token for attention (the full T x T square); % peak is "
        "the MFU against the measured matmul peak"
    )
    print_profile(report["profile"], p, report["copy_gb_per_s"])
    loop = report["loop_ms"]
    default = next(r for r in report["results"] if r["default"])
    print(
        f"training loop (train.train_text, metrics.jsonl's ms): "
        f"median {loop['median']:.1f} ms ({loop['min']:.1f}-{loop['max']:.1f}), "
        f"{loop['median'] / default['ms_per_step']:.2f}x the default rung"
    )


def print_notes(report: dict) -> None:
    """The lines under a table: the speed-ups, compile times, peaks and the load."""
    print_speedups(report)
    if "matmul_peak_gflops_per_s" in report:
        print_peak_notes(report)
    load = report["other_load_pct"]
    busy = "" if load is None else f"; other processes used {load:.0f}% of the CPU time"
    print(
        f"({report['rounds']} timed rounds of {report['steps_per_round']} steps "
        f"after a warm-up round{busy})"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line's flags."""
    parser = argparse.ArgumentParser(
        prog="python -m microgpt.bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "suite",
        nargs="?",
        default="all",
        choices=[*SUITES, "all"],
        help="which ladder to time (default: all, one after the other)",
    )
    parser.add_argument(
        "--device",
        help="auto, cpu, cuda, cuda:N or mps (default: $MICROGPT_DEVICE or auto)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        help="timed steps per round of each rung (default: 200 for names, whose "
        "scalar rungs run 1/20 and 1/10 of that; 8 for shakespeare); a value given "
        "applies to every suite",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="timed rounds after one warm-up (default %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: 1 for names, whose matrices are tiny; "
        f"all {ALL_THREADS} for shakespeare); a value given applies to every suite",
    )
    parser.add_argument(
        "--no-compile", action="store_true", help="skip the torch.compile rungs"
    )
    parser.add_argument(
        "--json", metavar="FILE", help="also write the machine and results as JSON"
    )
    parser.add_argument(
        "--small",
        action="store_true",
        help="shakespeare: a 2-layer, 64-wide model on 8 blocks of 64 characters "
        "instead of the default shape; a quick check that every rung runs (the tests "
        "use it), not a measurement",
    )
    return parser.parse_args(argv)


def write_json(
    path: str, argv: Sequence[str] | None, total: float, reports: dict
) -> None:
    """Save the command, the date, the total time and every suite's report (machine,
    results, peaks).
    """
    command = shlex.join(
        ["python", "-m", "microgpt.bench", *(sys.argv[1:] if argv is None else argv)]
    )
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with open(path, "w") as f:
        json.dump(
            {"command": command, "date": date, "total_s": total, "suites": reports},
            f,
            indent=2,
        )
        f.write("\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags, then build, time and print each suite (and optionally save the
    results).
    """
    args = parse_args(argv)
    began, reports = time.perf_counter(), {}
    try:
        if any(
            v is not None and v < 1 for v in (args.steps, args.rounds, args.threads)
        ):
            raise ValueError("--steps, --rounds and --threads must be >= 1")
        if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
            raise ValueError(f"--json {args.json}: its folder does not exist")
        device = pick_device(args.device)
        compile = not args.no_compile and device.type != "mps"
        if compile != (not args.no_compile):
            print(
                "microgpt.bench: no torch.compile rungs on MPS "
                "(microgpt does not compile there)",
                file=sys.stderr,
            )
        for name in SUITES if args.suite == "all" else [args.suite]:
            reports[name] = report = run_suite(
                name, device, args.steps, args.rounds, compile, args.threads, args.small
            )
            print_table(report["results"], report["machine"], report["baseline"])
            print_notes(report)
            print()
        total = time.perf_counter() - began
        print(f"{total:.0f} s in all")
        if args.json:
            write_json(args.json, argv, total, reports)
    except (DataError, DeviceError, ValueError, OSError) as err:
        print(f"microgpt.bench: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
