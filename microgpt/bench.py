"""``python -m microgpt.bench [names|shakespeare|all]``: how fast is one training step on each rung of the ladder?

Every rung is one way to run the same training step. All rungs of a suite are built first, then timed
in interleaved rounds (each round runs every rung), so a machine that gets busier or cooler part-way
through slows every rung alike. The first round is warm-up and is not counted; a compiled rung's very
first step (the compilation) is timed apart, before the rounds. We report the median milliseconds per
step with its spread (minimum, quartiles, maximum), tokens per second, and each rung's speed-up over the
rung before it and over the first rung, in tokens per second (a batch of 32 names does 32 names' work in
one step). A rung slower than the one before it shows a speed-up below 1.

``names``: the 4,192-parameter model of Part I, from the scalar engine to batched torch (1 thread).
``shakespeare``: the 836K-parameter step of ``microgpt train shakespeare`` (32 blocks of 256
characters, AdamW, clipping), from plain float32 eager to what the package runs by default and to
``torch.compile``, with the achieved GFLOP/s against a matmul peak measured on the same device (the MFU),
the copy bandwidth, the default step's profile by group of operations, and the training loop's own step.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import random
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from microgpt import batching, scalar, train
from microgpt.checkpoint import read_metrics
from microgpt.config import SHAKESPEARE, GPTConfig
from microgpt.data import DataError, load_names, load_shakespeare
from microgpt.device import DeviceError, pick_device
from microgpt.model import GPT
from microgpt.port import gpt_from_scalar
from microgpt.precision import attention_kernel, grad_scaler, resolve_dtype
from microgpt.tokenizer import CharTokenizer

ALL_THREADS = torch.get_num_threads()  # torch's default (one per core), read before a suite changes it


@dataclass
class Rung:
    """One way to run a training step: ``step(i)`` does step ``i`` and returns the tokens it trained on."""

    name: str
    step: Callable[[int], int]
    steps_per_round: int
    flops_per_step: float = 0.0  # model FLOPs of one step (see step_flops); 0 where not counted
    dtype: str = "float32"  # the format of its matrix products, whose matmul peak it is compared with
    default: bool = False  # the step the package's own training command runs on this device
    compile_s: float | None = None  # seconds of the first, compiling step (compiled rungs only)
    shape: tuple[GPTConfig, int] | None = None  # the model's shape and batch size, where profiled by groups
    times: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)

    def run_round(self, start: int, sync: Callable[[], None], record: bool) -> int:
        """Run ``steps_per_round`` steps from step ``start``, timing each; returns the next step."""
        for i in range(start, start + self.steps_per_round):
            t0 = time.perf_counter()
            n = self.step(i)
            sync()
            if record:
                self.times.append(time.perf_counter() - t0)
                self.tokens.append(n)
        return start + self.steps_per_round

    def summary(self) -> dict:
        """Median ms per step and its spread, tokens per second (at the median step time) and GFLOP/s."""
        ms = spread([1000 * t for t in self.times])
        result = {"rung": self.name, "ms_per_step": ms["median"], "ms_spread": ms,
                  "tokens_per_s": statistics.mean(self.tokens) / ms["median"] * 1000,
                  "timed_steps": len(self.times), "dtype": self.dtype, "default": self.default}
        if self.flops_per_step:
            result["gflops_per_s"] = self.flops_per_step / ms["median"] / 1e6
        if self.compile_s is not None:
            result["compile_s"] = self.compile_s
        return result


def spread(values: Sequence[float]) -> dict:
    """The minimum, quartiles (median among them) and maximum of ``values``."""
    ordered = sorted(values)
    q1, median, q3 = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else ordered * 3
    return {"min": ordered[0], "q1": q1, "median": median, "q3": q3, "max": ordered[-1]}


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits until ``device`` has finished its queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def compile_now(rung: Rung, device: torch.device) -> Rung:
    """Run a compiled rung's first step now and keep its time as ``compile_s``, apart from the timed steps."""
    sync = synchronizer(device)
    sync()
    t0 = time.perf_counter()
    rung.step(0)
    sync()
    rung.compile_s = time.perf_counter() - t0
    return rung


# --- names: the 4,192-parameter model, from scalars to batches -------------------------------------


def names_setup(seed: int = 42) -> tuple[list[str], CharTokenizer, GPTConfig, dict]:
    """The names run's data and initial weights, as ``microgpt train names`` makes them."""
    docs = load_names()
    rng = random.Random(seed)
    rng.shuffle(docs)
    tok = CharTokenizer.from_docs(docs)
    config = GPTConfig(tok.vocab_size)
    return docs, tok, config, scalar.init_weights(config, rng)


def scalar_rung(name: str, docs, tok, config, weights, fused: bool, steps: int) -> Rung:
    """The pure-Python engine: one name per step, exactly the original's loop body."""
    model = scalar.ScalarGPT(config, weights, fused=fused)
    optimizer = scalar.Adam(model.params)
    encoded = [tok.wrap(doc) for doc in docs[:2000]]

    def step(i: int) -> int:
        tokens = encoded[i % len(encoded)]
        scalar.doc_loss(model, tokens).backward()
        optimizer.step(0.01 * (1 - i / 1000))
        return min(len(tokens) - 1, config.block_size)

    return Rung(name, step, steps)


def torch_rung(name: str, docs, tok, config, weights, device: torch.device, batch_size: int, steps: int,
               compile: bool = False) -> Rung:
    """The batched torch step that ``microgpt train names`` runs (``train.names_step`` or, compiled,
    ``train.compiled_names_step``), float32."""
    model = gpt_from_scalar(config, weights, sdpa=True).to(device)
    data = batching.encode_names(docs, tok, config.block_size).to(device)
    if compile:
        names_step = train.compiled_names_step(model)
    else:
        optimizer = train.make_names_optimizer(model)
        names_step = functools.partial(train.names_step, model, optimizer)

    def step(i: int) -> int:
        x, y, weight = batching.names_batch(data, i, batch_size, pad_to_block=compile)
        names_step(x, y, weight, 0.01 * (1 - i % 1000 / 1000)).item()
        return batching.names_tokens(data, i, batch_size)

    return Rung(name, step, steps)


def names_rungs(device: torch.device, steps: int, compile: bool) -> list[Rung]:
    """The names ladder, slowest first: scalar, scalar fused, torch batch 1 (eager, compiled), torch batch 32."""
    docs, tok, config, weights = names_setup()
    rungs = [
        scalar_rung("scalar (atomic Values)", docs, tok, config, weights, fused=False, steps=max(1, steps // 20)),
        scalar_rung("scalar, fused dot products", docs, tok, config, weights, fused=True, steps=max(1, steps // 10)),
        torch_rung("torch eager, batch 1", docs, tok, config, weights, device, 1, steps),
    ]
    if compile:
        compiled = torch_rung("torch compiled, batch 1", docs, tok, config, weights, device, 1, steps, True)
        rungs.append(compile_now(compiled, device))
    rungs.append(torch_rung("torch eager, batch 32", docs, tok, config, weights, device, 32, steps))
    return rungs


# --- shakespeare: the 836K-parameter step, from plain float32 to the package's default ----------------


SMALL = {"block_size": 64, "n_embd": 64, "n_head": 4, "n_layer": 2, "batch_size": 8}  # --small: a quick check


def shakespeare_setup(small: bool = False) -> tuple[batching.TextSplits, GPTConfig, int]:
    """The text, model shape and batch size of ``microgpt train shakespeare`` (its defaults, or ``SMALL``)."""
    splits = batching.split_text(load_shakespeare())
    s = SMALL if small else SHAKESPEARE
    config = GPTConfig(splits.tokenizer.vocab_size, s["block_size"], s["n_layer"], s["n_embd"], s["n_head"])
    return splits, config, s["batch_size"]


def step_flops(model: GPT, batch_size: int) -> float:
    """Model FLOPs of one training step on ``batch_size`` full blocks, counted as nanoGPT and PaLM count them.

    Each weight of a matrix product (every ``nn.Linear``) does one multiply-add per token forward
    (2 FLOPs) and two backward (4): 6 per weight per token. Attention's scores ``q @ k.T`` and weighted
    sum ``att @ v`` add ``2 * 2 * T * n_embd`` per token and layer forward, times 3 with the backward,
    over the full T x T square (a causal kernel skips about half of it). Embedding lookups, norms,
    softmax, the loss and the optimiser are not counted.
    """
    c = model.config
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    per_token = 6 * linear + 12 * c.n_layer * c.n_embd * c.block_size
    return per_token * batch_size * c.block_size


def text_rung(name: str, data: tuple, device: torch.device, steps: int, *, sdpa: bool, dtype: str,
              compile: bool = False, default: bool = False) -> Rung:
    """``train.text_step`` on the Shakespeare shape, with the attention, precision and compilation given."""
    config, batches = data
    run = train.RunConfig(steps=1, batch_size=len(batches[0][0]))
    torch.manual_seed(run.seed)
    model = GPT(config, sdpa=sdpa).to(device).use_kernel(attention_kernel(device, dtype))
    optimizer = train.make_text_optimizer(model, run, device)
    flops = step_flops(model, run.batch_size)
    forward, scaler = torch.compile(model) if compile else model, grad_scaler(device, dtype)

    def step(i: int) -> int:
        x, y = batches[i % len(batches)]
        train.text_step(forward, optimizer, x, y, run.lr, run.grad_clip, device, dtype, scaler)
        return x.numel()

    return Rung(name, step, steps, flops, dtype, default, shape=(config, run.batch_size))


REFERENCE = "+ SDPA attention"  # float32 eager with the fused kernel: the reference step


def shakespeare_rungs(device: torch.device, steps: int, compile: bool, small: bool = False) -> list[Rung]:
    """The Shakespeare ladder, each rung adding one change: SDPA, bf16 autocast, torch.compile.

    The second rung, float32 with PyTorch's fused attention, is the reference: the step as nanoGPT runs it.
    """
    splits, config, batch_size = shakespeare_setup(small)
    seed = SHAKESPEARE["seed"]
    batches = [tuple(t.to(device) for t in batching.get_batch(splits.train, i, seed, config.block_size, batch_size))
               for i in range(4)]
    data, dtype = (config, batches), resolve_dtype(SHAKESPEARE["dtype"], device)
    rungs = [text_rung("fp32 eager (explicit mask)", data, device, steps, sdpa=False, dtype="float32"),
             text_rung(REFERENCE, data, device, steps, sdpa=True, dtype="float32", default=dtype == "float32")]
    if dtype != "float32":  # only where resolve_dtype would train in it: natively supported
        name = "+ bf16 autocast" if dtype == "bfloat16" else "+ fp16 autocast, GradScaler"
        rungs.append(text_rung(name, data, device, steps, sdpa=True, dtype=dtype, default=True))
    if compile:
        compiled = text_rung("+ torch.compile", data, device, steps, sdpa=True, dtype=dtype, compile=True)
        rungs.append(compile_now(compiled, device))
    return rungs


def matmul_gflops(device: torch.device, dtype: torch.dtype, n: int, reps: int = 20) -> float:
    """GFLOP/s of an ``n x n`` by ``n x n`` matrix product on ``device``: the fastest of ``reps``, a peak."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    sync, best = synchronizer(device), float("inf")
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def matmul_peaks(device: torch.device) -> dict:
    """The device's measured matmul GFLOP/s in float32 and in the 16-bit format ``--dtype auto`` picks there."""
    n = 2048 if device.type == "cpu" else 8192
    peaks = {"size": n, "float32": matmul_gflops(device, torch.float32, n)}
    auto = resolve_dtype("auto", device)
    if auto != "float32":
        peaks[auto] = matmul_gflops(device, getattr(torch, auto), n)
    return peaks


def copy_bandwidth(device: torch.device, mib: int = 256, reps: int = 10) -> float:
    """GB/s of copying a ``mib`` MiB tensor (bytes read plus bytes written): the fastest of ``reps``, a peak."""
    a = torch.ones(mib * 2**18, device=device)
    b, sync, best = torch.empty_like(a), synchronizer(device), float("inf")
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        b.copy_(a)
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * a.numel() * a.element_size() / best / 1e9


GROUPS = ("matmuls", "attention", "norms and element-wise", "casts and copies", "cross-entropy", "optimizer")


def op_group(name: str, shapes: Sequence, block_size: int) -> str:
    """The part of the step a profiled operation belongs to, from its name and its inputs' shapes.

    Attention is the fused kernel, or every batched product and operation on a ``block_size x block_size``
    score matrix.
    """
    op = name.removeprefix("aten::")
    if "attention" in op or any(len(s) >= 2 and s[-2:] == [block_size, block_size] for s in shapes):
        return "attention"
    if op == "bmm":  # the linear layers' products are 2-d (mm); the attention's, per head, batched
        return "attention"
    if op in ("mm", "addmm"):
        return "matmuls"
    if "adam" in op or op.startswith("_foreach") or op in ("linalg_vector_norm", "clamp", "stack"):
        return "optimizer"
    if "log_softmax" in op or "nll_loss" in op:
        return "cross-entropy"
    if op in ("copy_", "_to_copy", "clone"):
        return "casts and copies"
    return "norms and element-wise"


def profile_groups(rung: Rung, block_size: int, steps: int = 3) -> dict[str, float]:
    """Milliseconds per step of each group of operations (self time, from torch.profiler) on ``rung``."""
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # keeps the profiler's own start/stop lines out
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        for i in range(steps):
            rung.step(i)
    ms = dict.fromkeys(GROUPS, 0.0)
    for event in prof.key_averages(group_by_input_shape=True):
        ms[op_group(event.key, event.input_shapes or [], block_size)] += event.self_cpu_time_total / 1000 / steps
    return ms


def group_work(config: GPTConfig, batch_size: int, bytes_per_value: int) -> dict[str, tuple[float, float]]:
    """(FLOPs, bytes moved) of one training step's groups, forward and backward, by formula (bytes: a lower bound).

    ``bytes_per_value``: 2 where products read bfloat16, 4 in float32. Matmuls: 6 FLOPs per weight per
    token, each product reading its two inputs and writing its output once. Attention: the full T x T
    square (as :func:`step_flops`), a fused kernel reading q, k, v, the output and their gradients.
    Norms and element-wise (RMSNorm, ReLU, residual additions, float32): about 30 FLOPs and 42 values
    moved per layer and channel of each token. Cross-entropy: about 7 FLOPs and 4 float32 values per
    logit. AdamW with clipping: about 18 FLOPs and 10 float32 values per parameter.
    """
    c, n, b = config, batch_size * config.block_size, bytes_per_value
    model = GPT(c)
    linears = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    params = sum(p.numel() for p in model.parameters())
    matmul_bytes = sum(3 * b * (n * (i + o) + i * o) for i, o in linears)
    return {"matmuls": (6 * n * sum(i * o for i, o in linears), matmul_bytes),
            "attention": (12 * c.n_layer * c.n_embd * c.block_size * n, 12 * c.n_layer * n * c.n_embd * b),
            "norms and element-wise": (30 * c.n_layer * n * c.n_embd, 4 * 42 * c.n_layer * n * c.n_embd),
            "cross-entropy": (7 * n * c.vocab_size, 4 * 4 * n * c.vocab_size),
            "optimizer": (18 * params, 4 * 10 * params)}


# --- running and reporting ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Suite:
    """A ladder: how to build its rungs, its default steps per round and threads, and its first rung's label."""

    build: Callable[..., list[Rung]]
    steps: int
    threads: int
    baseline: str
    peaks: bool = False  # measure the matmul peaks, the copy bandwidth, the training loop; profile the default
    shrinks: bool = False  # ``build`` takes ``small`` (--small)


SUITES = {
    "names": Suite(names_rungs, steps=200, threads=1, baseline="scalar"),
    "shakespeare": Suite(shakespeare_rungs, steps=8, threads=ALL_THREADS, baseline="fp32", peaks=True,
                         shrinks=True),
}


def machine(device: torch.device) -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds the whole machine has been busy, CPU seconds this process has used); None off Linux."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def run(rungs: Sequence[Rung], device: torch.device, rounds: int) -> list[dict]:
    """Warm every rung up (one round), then time ``rounds`` interleaved rounds; a summary per rung."""
    sync = synchronizer(device)
    gc.collect()
    gc.freeze()  # the set-up's objects (torch's included) are never rescanned: the scalar engine is GC-bound
    next_step = [0] * len(rungs)
    try:
        for r in range(rounds + 1):
            for k, rung in enumerate(rungs):
                next_step[k] = rung.run_round(next_step[k], sync, record=r > 0)
    finally:
        gc.unfreeze()
    results = [rung.summary() for rung in rungs]
    for below, result in zip([None, *results], results):  # speed-ups in tokens/s: fair across batch sizes
        result["x_rung_below"] = result["tokens_per_s"] / below["tokens_per_s"] if below else None
        result["x_first_rung"] = result["tokens_per_s"] / results[0]["tokens_per_s"]
    return results


def other_load(before: tuple[float, float] | None, after: tuple[float, float] | None, seconds: float) -> float | None:
    """The share (%) of the machine's CPU time that other processes used between two ``cpu_seconds()``."""
    if before is None or after is None or seconds <= 0:
        return None
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, 100 * others / (seconds * (os.cpu_count() or 1)))


def step_profile(rung: Rung) -> dict:
    """Each group's ms per step (profiled) and, where its work is counted, GFLOP/s and FLOPs per byte."""
    config, batch_size = rung.shape
    groups = profile_groups(rung, config.block_size)
    work = group_work(config, batch_size, 2 if rung.dtype == "bfloat16" else 4)
    rows = {}
    for name, ms in groups.items():
        rows[name] = row = {"ms": ms, "pct": 100 * ms / sum(groups.values())}
        if name in work and ms > 0:
            flops, nbytes = work[name]
            row.update(gflops_per_s=flops / ms / 1e6, flops_per_byte=flops / nbytes, gb_per_s=nbytes / ms / 1e6)
    return {"rung": rung.name, "dtype": rung.dtype, "groups": rows}


def loop_ms(device: torch.device, steps: int, small: bool = False) -> dict:
    """The spread of ``metrics.jsonl``'s ``ms`` over ``steps`` steps of ``train.train_text`` on the default step
    (after 3 unrecorded ones): the step as the training loop runs it, batches, schedule and logging included."""
    splits, config, batch_size = shakespeare_setup(small)
    run = train.RunConfig(steps=steps + 3, batch_size=batch_size, dtype=resolve_dtype(SHAKESPEARE["dtype"], device))
    with tempfile.TemporaryDirectory() as out:
        train.train_text(splits, config, run, out, device=device, progress=False)
        return spread([r["ms"] for r in read_metrics(Path(out) / "metrics.jsonl")[3:]])


def run_suite(name: str, device: torch.device, steps: int | None, rounds: int, compile: bool,
              threads: int | None, small: bool = False) -> dict:
    """Build and time one suite at its default (or the given) steps and threads; its report as a dict."""
    suite = SUITES[name]
    steps = steps or suite.steps
    torch.set_num_threads(threads or suite.threads)
    rungs = suite.build(device, steps, compile, small) if suite.shrinks else suite.build(device, steps, compile)
    t0, before = time.perf_counter(), cpu_seconds()
    results = run(rungs, device, rounds)
    load = other_load(before, cpu_seconds(), time.perf_counter() - t0)
    report = {"suite": name, "machine": machine(device), "steps_per_round": steps, "rounds": rounds,
              "other_load_pct": load, "baseline": suite.baseline, "results": results}
    if suite.peaks:
        report["matmul_peak_gflops_per_s"] = peaks = matmul_peaks(device)
        report["copy_gb_per_s"] = bandwidth = copy_bandwidth(device)
        for r in results:
            r["pct_of_peak"] = 100 * r["gflops_per_s"] / peaks[r["dtype"]]  # MFU against the measured peak
        report["profile"] = step_profile(next(r for r in rungs if r.default))
        report["loop_ms"] = loop_ms(device, steps * rounds, small)
    return report


def machine_line(info: dict) -> str:
    """One line saying where the numbers were measured."""
    return (f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, torch {info['torch']} "
            f"({info['torch_threads']} thread(s)), device {info.get('gpu', info['device'])}")


def ms_text(ms: float) -> str:
    """Milliseconds to 3 decimals below 10, 1 below 100, none above: as precise as a step's spread allows."""
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def ratio(x: float | None, say_slower: bool = False) -> str:
    """A speed-up as the tables print it: 2 decimals below 10, 1 above; below 1, 'slower' if asked."""
    if x is None:
        return "-"
    text = f"{x:.2f}" if x < 10 else f"{x:.1f}"
    return f"{text} slower" if say_slower and x < 1 else text


def print_table(results: list[dict], info: dict, baseline: str = "scalar") -> None:
    """The results as an aligned table, under a line saying where they were measured."""
    print(machine_line(info))
    flops = "gflops_per_s" in results[0]
    extra = f" {'GFLOP/s':>8} {'% peak':>7}" if flops else ""
    print(f"{'rung':<28} {'ms/step':>9} {'min-max':>17} {'tokens/s':>11} {'x rung below':>13} "
          f"{'x ' + baseline:>9}{extra}")
    for r in results:
        extra = f" {r['gflops_per_s']:>8.1f} {r['pct_of_peak']:>6.1f}%" if flops else ""
        low, high = (ms_text(r["ms_spread"][k]) for k in ("min", "max"))
        print(f"{r['rung']:<28} {r['ms_per_step']:>9.3f} {f'{low}-{high}':>17} {r['tokens_per_s']:>11,.0f} "
              f"{ratio(r['x_rung_below'], True):>13} {ratio(r['x_first_rung']):>9}{extra}")


def print_profile(profile: dict, peaks: dict, bandwidth: float) -> None:
    """The default step's profile by group: ms, share, and achieved GFLOP/s and GB/s where counted."""
    print(f"profile of {profile['rung']} ({profile['dtype']}), self time by group; peaks: matmul "
          + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items() if k != "size") + f" GFLOP/s, copy {bandwidth:.0f} GB/s")
    print(f"  {'group':<24} {'ms':>7} {'share':>6} {'GFLOP/s':>8} {'FLOP/byte':>10} {'GB/s':>6}")
    for name, g in profile["groups"].items():
        counted = (f" {g['gflops_per_s']:>8.1f} {g['flops_per_byte']:>10.1f} {g['gb_per_s']:>6.1f}"
                   if "gflops_per_s" in g else "")
        print(f"  {name:<24} {g['ms']:>7.1f} {g['pct']:>5.1f}%{counted}")


def print_notes(report: dict) -> None:
    """The lines under a table: the default step's speed-up, compile times, the matmul peaks, the load."""
    results, first = report["results"], report["results"][0]["rung"]
    reference = next((r for r in results if r["rung"] == REFERENCE), None) if report["suite"] == "shakespeare" else None
    for r in results:
        if r["default"]:
            print(f"default step ({r['rung']}, as `microgpt train {report['suite']}` runs on this device): "
                  f"{r['x_first_rung']:.2f}x the {first} rung"
                  + (f"; {r['ms_per_step'] / reference['ms_per_step']:.2f}x the time of the float32 SDPA rung"
                     if reference and reference is not r else ""))
        if "compile_s" in r:
            print(f"{r['rung']}: the first step took {r['compile_s']:.1f} s (compiling; not in the table)")
    if "matmul_peak_gflops_per_s" in report:
        p = report["matmul_peak_gflops_per_s"]
        half = "".join(f", {k} {p[k]:.0f}" for k in ("bfloat16", "float16") if k in p)
        print(f"matmul peak ({p['size']}x{p['size']}, fastest of 20): float32 {p['float32']:.0f}{half} GFLOP/s; "
              "% peak is against the rung's matmul format")
        print("GFLOP/s: 6 FLOPs per matmul weight per token, plus 12 x n_layer x n_embd x block_size per token "
              "for attention (the full T x T square); % peak is the MFU against the measured matmul peak")
        print_profile(report["profile"], p, report["copy_gb_per_s"])
        loop, default = report["loop_ms"], next(r for r in results if r["default"])
        print(f"training loop (train.train_text, metrics.jsonl's ms): median {loop['median']:.1f} ms "
              f"({loop['min']:.1f}-{loop['max']:.1f}), {loop['median'] / default['ms_per_step']:.2f}x the default rung")
    load = report["other_load_pct"]
    print(f"({report['rounds']} timed rounds of {report['steps_per_round']} steps after a warm-up round"
          + (f"; other processes used {load:.0f}% of the CPU time" if load is not None else "") + ")")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line's flags."""
    parser = argparse.ArgumentParser(prog="python -m microgpt.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("suite", nargs="?", default="all", choices=[*SUITES, "all"],
                        help="which ladder to time (default: all, one after the other)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: $MICROGPT_DEVICE or auto)")
    parser.add_argument("--steps", type=int,
                        help="timed steps per round of each rung (default: 200 for names, whose scalar rungs run "
                             "1/20 and 1/10 of that; 8 for shakespeare); a value given applies to every suite")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds after one warm-up (default %(default)s)")
    parser.add_argument("--threads", type=int,
                        help=f"torch CPU threads (default: 1 for names, whose matrices are tiny; all {ALL_THREADS} "
                             "for shakespeare); a value given applies to every suite")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rungs")
    parser.add_argument("--json", metavar="FILE", help="also write the machine and results as JSON")
    parser.add_argument("--small", action="store_true",
                        help="shakespeare: a 2-layer, 64-wide model on 8 blocks of 64 characters instead of the "
                             "default shape; a quick check that every rung runs (the tests use it), not a measurement")
    return parser.parse_args(argv)


def write_json(path: str, argv: Sequence[str] | None, total: float, reports: dict) -> None:
    """Save the command, the date, the total time and every suite's report (machine, results, peaks)."""
    command = shlex.join(["python", "-m", "microgpt.bench", *(sys.argv[1:] if argv is None else argv)])
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with open(path, "w") as f:
        json.dump({"command": command, "date": date, "total_s": total, "suites": reports}, f, indent=2)
        f.write("\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags, then build, time and print each suite (and optionally save the results)."""
    args = parse_args(argv)
    began, reports = time.perf_counter(), {}
    try:
        if any(v is not None and v < 1 for v in (args.steps, args.rounds, args.threads)):
            raise ValueError("--steps, --rounds and --threads must be >= 1")
        if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
            raise ValueError(f"--json {args.json}: its folder does not exist")
        device = pick_device(args.device)
        compile = not args.no_compile and device.type != "mps"
        if compile != (not args.no_compile):
            print("microgpt.bench: no torch.compile rungs on MPS (microgpt does not compile there)", file=sys.stderr)
        for name in SUITES if args.suite == "all" else [args.suite]:
            reports[name] = report = run_suite(name, device, args.steps, args.rounds, compile, args.threads,
                                               args.small)
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
