"""Timing a training step fairly: rungs, interleaved rounds, their spread, and the
machine's other load.

A :class:`Rung` is one way to run a training step. :func:`run` warms every rung up (one
round), then times them in interleaved rounds (each round runs every rung), so a machine
that gets busier or cooler part-way through slows every rung alike. A compiled rung's
first step (the compilation) is timed apart, by :func:`compile_now`, before the rounds.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from microgpt.config import GPTConfig


@dataclass
class Rung:
    """One way to run a training step: ``step(i)`` does step ``i`` and returns the
    tokens it trained on.
    """

    name: str
    step: Callable[[int], int]
    steps_per_round: int
    # model FLOPs of one step (see roofline.step_flops); 0 where not counted
    flops_per_step: float = 0.0
    # the format of its matrix products, whose matmul peak it is compared with
    dtype: str = "float32"
    # the step the package's own training command runs on this device
    default: bool = False
    # seconds of the first, compiling step (compiled rungs only)
    compile_s: float | None = None
    # the model's shape and batch size, where profiled by groups
    shape: tuple[GPTConfig, int] | None = None
    # its attention stores the T x T scores (explicit), not a flash kernel
    scores_in_memory: bool = False
    times: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)

    def run_round(self, start: int, sync: Callable[[], None], record: bool) -> int:
        """Run ``steps_per_round`` steps from step ``start``, timing each; returns the
        next step.
        """
        for i in range(start, start + self.steps_per_round):
            t0 = time.perf_counter()
            n = self.step(i)
            sync()
            if record:
                self.times.append(time.perf_counter() - t0)
                self.tokens.append(n)
        return start + self.steps_per_round

    def summary(self) -> dict:
        """Median ms per step and its spread, tokens per second (at the median step
        time) and GFLOP/s.
        """
        ms = spread([1000 * t for t in self.times])
        result = {
            "rung": self.name,
            "ms_per_step": ms["median"],
            "ms_spread": ms,
            "tokens_per_s": statistics.mean(self.tokens) / ms["median"] * 1000,
            "timed_steps": len(self.times),
            "dtype": self.dtype,
            "default": self.default,
        }
        if self.flops_per_step:
            result["gflops_per_s"] = self.flops_per_step / ms["median"] / 1e6
        if self.compile_s is not None:
            result["compile_s"] = self.compile_s
        return result


def spread(values: Sequence[float]) -> dict:
    """The minimum, quartiles (median among them) and maximum of ``values``."""
    ordered = sorted(values)
    q1, median, q3 = (
        statistics.quantiles(ordered, n=4, method="inclusive")
        if len(ordered) > 1
        else ordered * 3
    )
    return {"min": ordered[0], "q1": q1, "median": median, "q3": q3, "max": ordered[-1]}


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits until ``device`` has finished its queued work (a no-op on
    the CPU).
    """
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def compile_now(rung: Rung, device: torch.device) -> Rung:
    """Run a compiled rung's first step now and keep its time as ``compile_s``, apart
    from the timed steps.
    """
    sync = synchronizer(device)
    sync()
    t0 = time.perf_counter()
    rung.step(0)
    sync()
    rung.compile_s = time.perf_counter() - t0
    return rung


def run(rungs: Sequence[Rung], device: torch.device, rounds: int) -> list[dict]:
    """Warm every rung up (one round), then time ``rounds`` interleaved rounds; a
    summary per rung.
    """
    sync = synchronizer(device)
    gc.collect()
    # the set-up's objects (torch's included) are never rescanned: the scalar engine is
    # GC-bound
    gc.freeze()
    next_step = [0] * len(rungs)
    try:
        for r in range(rounds + 1):
            for k, rung in enumerate(rungs):
                next_step[k] = rung.run_round(next_step[k], sync, record=r > 0)
    finally:
        gc.unfreeze()
    results = [rung.summary() for rung in rungs]
    # speed-ups in tokens/s: fair across batch sizes
    for below, result in zip([None, *results], results):
        result["x_rung_below"] = (
            result["tokens_per_s"] / below["tokens_per_s"] if below else None
        )
        result["x_first_rung"] = result["tokens_per_s"] / results[0]["tokens_per_s"]
    return results


def cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds the whole machine has been busy, CPU seconds this process and its
    finished child processes have used); None off Linux.
    """
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system
    return busy / os.sysconf("SC_CLK_TCK"), own


def other_load(
    before: tuple[float, float] | None,
    after: tuple[float, float] | None,
    seconds: float,
) -> float | None:
    """The share (%) of the machine's CPU time that other processes used between two
    ``cpu_seconds()``, ``seconds`` apart (clock ticks can round an idle machine's share
    a hair below zero: it is kept at 0).
    """
    if before is None or after is None or seconds <= 0:
        return None
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, 100 * others / (seconds * (os.cpu_count() or 1)))
