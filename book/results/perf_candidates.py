"""Time candidate changes to the default tiny-shakespeare step, interleaved,
and write perf_candidates.json.

python book/results/perf_candidates.py            (from the repository root, on
an otherwise idle machine)

Each candidate is the default step (32 x 256 tokens, bfloat16 autocast, AdamW)
with one choice of the attention kernel, the RMSNorm and compilation; the
float32 SDPA step is timed beside them as the reference. Rounds are interleaved
(candidate 1, 2, ..., then again), so a change of load hits every candidate
alike. Chapter 13 reads the JSON.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import microgpt.model as model_module
from microgpt import train
from microgpt.bench import machine
from microgpt.config import TrainConfig
from microgpt.device import grad_scaler
from microgpt.ladders import shakespeare_setup
from microgpt.model import GPT, bf16_attention, sdpa_attention
from microgpt.text import get_batch
from microgpt.timing import cpu_seconds, other_load

OUT = Path(__file__).with_name("perf_candidates.json")
# timed rounds per candidate, steps per round
ROUNDS, STEPS = (
    int(os.environ.get("ROUNDS", 10)),
    2,
)


def composed_rmsnorm(x, eps: float = 1e-5):
    """RMSNorm as four element-wise operations (what F.rms_norm replaces)."""
    return x * (x.pow(2).mean(-1, keepdim=True) + eps) ** -0.5


def float32_flash(q, k, v, mask, dropout=0.0):
    """SDPA's flash kernel in float32 inside bfloat16 autocast."""
    with torch.autocast("cpu", enabled=False):
        return sdpa_attention(q.float(), k.float(), v.float(), mask, dropout)


def bf16_explicit_fp32_softmax(q, k, v, mask, dropout=0.0):
    """Scores and weighted sum as bfloat16 products, the mask and softmax in
    float32.
    """
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5 + mask
    return scores.softmax(-1).to(v.dtype) @ v


# name: (dtype, attention, rmsnorm, compile)
CANDIDATES = {
    "reference: float32, SDPA": ("float32", sdpa_attention, F.rms_norm, False),
    "bf16, float32 flash attention": (
        "bfloat16",
        float32_flash,
        composed_rmsnorm,
        False,
    ),
    "bf16, bf16 flash attention": (
        "bfloat16",
        sdpa_attention,
        composed_rmsnorm,
        False,
    ),
    "bf16, explicit, float32 softmax": (
        "bfloat16",
        bf16_explicit_fp32_softmax,
        composed_rmsnorm,
        False,
    ),
    "bf16, explicit, bf16 softmax": (
        "bfloat16",
        bf16_attention,
        composed_rmsnorm,
        False,
    ),
    "  + F.rms_norm (the default step)": (
        "bfloat16",
        bf16_attention,
        F.rms_norm,
        False,
    ),
    "  + torch.compile": ("bfloat16", bf16_attention, F.rms_norm, True),
}


def rmsnorm_of(kind):
    """The model's rmsnorm for a candidate: the composed formula or PyTorch's
    fused one.
    """
    return (
        composed_rmsnorm
        if kind is composed_rmsnorm
        else (lambda x, eps=1e-5: F.rms_norm(x, x.shape[-1:], eps=eps))
    )


def make_step(name, batches, config, batch_size):
    """A function running one default step of candidate ``name`` on batch
    ``i``.
    """
    dtype, attention, norm, compile = CANDIDATES[name]
    torch.manual_seed(1337)
    model = GPT(config)
    for block in model.layers:
        # candidates beyond the model's own variants: set the function directly
        block.attn.attend = attention
    run = TrainConfig(steps=1, batch_size=batch_size)
    optimizer = train.make_text_optimizer(model, run, torch.device("cpu"))
    forward = torch.compile(model) if compile else model
    device = torch.device("cpu")
    scaler = grad_scaler(device, dtype)

    def step(i: int) -> None:
        model_module.rmsnorm = rmsnorm_of(norm)
        x, y = batches[i % len(batches)]
        train.text_update(
            forward,
            optimizer,
            x,
            y,
            lr=run.lr,
            grad_clip=run.grad_clip,
            scaler=scaler,
            device=device,
            dtype=dtype,
        )

    return step


def quartiles(values: list[float]) -> dict:
    """min, quartiles, median and max of the timings, in ms."""
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {
        "min": min(values),
        "q1": q1,
        "median": median,
        "q3": q3,
        "max": max(values),
        "n": len(values),
    }


def main() -> int:
    threads = torch.get_num_threads()
    splits, config, batch_size = shakespeare_setup()
    batches = [
        get_batch(splits.train, i, 1337, config.block_size, batch_size)
        for i in range(4)
    ]
    steps = {
        name: make_step(name, batches, config, batch_size)
        for name in CANDIDATES
    }
    # warm-up (and compilation) outside the timed rounds
    for step in steps.values():
        step(0), step(1)
    times = {name: [] for name in steps}
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    for r in range(ROUNDS):
        for name, step in steps.items():
            start = time.perf_counter()
            for i in range(STEPS):
                step(r * STEPS + i)
            times[name].append((time.perf_counter() - start) / STEPS * 1000)
    load = other_load(cpu0, cpu_seconds(), time.perf_counter() - t0)
    info = machine(torch.device("cpu"))
    note = (
        f"{info['cpu']}, torch {torch.__version__}, {threads} threads; "
        f"{ROUNDS} interleaved rounds of {STEPS} steps per candidate "
        "after a warm-up; other processes used "
        f"{load or 0:.0f}% of the CPU time"
    )
    OUT.write_text(
        json.dumps(
            {
                "command": "python book/results/perf_candidates.py",
                "note": note,
                "runs": [
                    {
                        "what": (
                            "the default step (32 x 256 tokens), "
                            "one change per candidate"
                        ),
                        "threads": threads,
                        "timed": ROUNDS,
                        "results": [
                            {"name": n} | quartiles(t)
                            for n, t in times.items()
                        ],
                    }
                ],
            },
            indent=1,
        )
        + "\n"
    )
    for name, t in times.items():
        print(
            f"{name:36s} median {statistics.median(t):7.1f} ms  "
            f"({min(t):.0f}-{max(t):.0f})"
        )
    print(f"wrote {OUT} ({note})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
