"""The roofline of a training step: the work it asks for, the device's measured peaks,
and where its time goes.

:func:`step_flops` and :func:`group_work` count a step's FLOPs (and bytes) by formula;
:func:`matmul_peaks` and :func:`copy_bandwidth` measure what the device can do at best;
:func:`step_profile` splits a step's time into groups of operations (:func:`op_group`)
and sets each group's work against it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import torch
from torch.autograd import DeviceType

from microgpt.config import GPTConfig
from microgpt.device import resolve_dtype
from microgpt.model import GPT
from microgpt.timing import Rung, synchronizer


def step_flops(model: GPT, batch_size: int) -> float:
    """Model FLOPs of one training step on ``batch_size`` full blocks, counted as
    nanoGPT and PaLM count them.

    Each weight of a matrix product (every ``nn.Linear``) does one multiply-add per
    token forward (2 FLOPs) and two backward (4): 6 per weight per token. Attention's
    scores ``q @ k.T`` and weighted sum ``att @ v`` add ``2 * 2 * T * n_embd`` per token
    and layer forward, times 3 with the backward, over the full T x T square (a causal
    kernel skips about half of it). Embedding lookups, norms, softmax, the loss and the
    optimiser are not counted.
    """
    c = model.config
    linear = sum(
        m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear)
    )
    per_token = 6 * linear + 12 * c.n_layer * c.n_embd * c.block_size
    return per_token * batch_size * c.block_size


def matmul_gflops(
    device: torch.device, dtype: torch.dtype, n: int, reps: int = 20
) -> float:
    """GFLOP/s of an ``n x n`` by ``n x n`` matrix product on ``device``: the fastest of
    ``reps``, a peak.
    """
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
    """The device's measured matmul GFLOP/s in float32 and in the 16-bit format
    ``--dtype auto`` picks there.
    """
    n = 2048 if device.type == "cpu" else 8192
    peaks = {"size": n, "float32": matmul_gflops(device, torch.float32, n)}
    auto = resolve_dtype("auto", device)
    if auto != "float32":
        peaks[auto] = matmul_gflops(device, getattr(torch, auto), n)
    return peaks


def copy_bandwidth(device: torch.device, mib: int = 256, reps: int = 10) -> float:
    """GB/s of copying a ``mib`` MiB tensor (bytes read plus bytes written): the fastest
    of ``reps``, a peak.
    """
    a = torch.ones(mib * 2**18, device=device)
    b, sync, best = torch.empty_like(a), synchronizer(device), float("inf")
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        b.copy_(a)
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * a.numel() * a.element_size() / best / 1e9


GROUPS = (
    "matmuls",
    "attention",
    "norms and element-wise",
    "casts and copies",
    "cross-entropy",
    "optimizer",
)


def op_group(name: str, shapes: Sequence, block_size: int) -> str:
    """The part of the step a profiled operation belongs to, from its name and its
    inputs' shapes.

    Attention is the fused kernel, or every batched product and operation on a
    ``block_size x block_size`` score matrix.
    """
    op = name.removeprefix("aten::")
    if "attention" in op or any(
        len(s) >= 2 and s[-2:] == [block_size, block_size] for s in shapes
    ):
        return "attention"
    # the linear layers' products are 2-d (mm); the attention's, per head, batched
    if op == "bmm":
        return "attention"
    if op in ("mm", "addmm"):
        return "matmuls"
    # in any case: the optimizer's annotations read "Optimizer.step#AdamW.step"
    if (
        "adam" in op.lower()
        or op.startswith("_foreach")
        or op in ("linalg_vector_norm", "clamp", "stack")
    ):
        return "optimizer"
    if "log_softmax" in op or "nll_loss" in op:
        return "cross-entropy"
    if op in ("copy_", "_to_copy", "clone"):
        return "casts and copies"
    return "norms and element-wise"


def profile_groups(
    rung: Rung, block_size: int, device: torch.device, steps: int = 3
) -> dict[str, float]:
    """Milliseconds per step of each group of operations on ``rung``, profiled over
    ``steps`` steps (see :func:`group_times`).
    """
    # keeps the profiler's own start/stop lines out
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    on_gpu = device.type == "cuda"
    activities = [torch.profiler.ProfilerActivity.CPU]
    if on_gpu:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities, record_shapes=True) as prof:
        for i in range(steps):
            rung.step(i)
        synchronizer(device)()  # the kernels finish inside the profile
    ms = group_times(prof, block_size, on_gpu)
    return {group: total / steps for group, total in ms.items()}


def group_times(
    prof: torch.profiler.profile, block_size: int, on_gpu: bool
) -> dict[str, float]:
    """Milliseconds of each group of operations in a finished profile: each operation's
    self time; on a GPU, the time of the kernels it launched.

    On a GPU the profiler also lists every kernel as a row of its own, whose time its
    operation's row already holds; only the operations' rows are summed, so that each
    kernel counts once.
    """
    key = "self_device_time_total" if on_gpu else "self_cpu_time_total"
    ms = dict.fromkeys(GROUPS, 0.0)
    for event in prof.key_averages(group_by_input_shape=True):
        if event.device_type == DeviceType.CPU:
            group = op_group(event.key, event.input_shapes or [], block_size)
            ms[group] += getattr(event, key) / 1000
    return ms


def group_work(
    config: GPTConfig,
    batch_size: int,
    bytes_per_value: int,
    scores_in_memory: bool = False,
) -> dict[str, tuple[float, float]]:
    """(FLOPs, bytes moved) of one training step's groups, forward and backward, by
    formula (bytes: a lower bound).

    ``bytes_per_value``: 2 where products read bfloat16, 4 in float32. Matmuls: 6 FLOPs
    per weight per token, each product reading its two inputs and writing its output
    once. Attention: the full T x T square (as :func:`step_flops`), reading q, k, v, the
    output and their gradients; with ``scores_in_memory`` (an explicit attention, not a
    flash kernel) also 11 passes over each layer's ``B x H x T x T`` scores, weights and
    their gradients (4 forward, 7 backward). Norms and element-wise (RMSNorm, ReLU,
    residual additions, float32): about 30 FLOPs and 42 values moved per layer and
    channel of each token. Cross-entropy: about 7 FLOPs and 4 float32 values per logit.
    AdamW with clipping: about 18 FLOPs and 10 float32 values per parameter.
    """
    c, n, b = config, batch_size * config.block_size, bytes_per_value
    model = GPT(c)
    linears = [
        (m.in_features, m.out_features)
        for m in model.modules()
        if isinstance(m, torch.nn.Linear)
    ]
    params = sum(p.numel() for p in model.parameters())
    matmul_bytes = sum(3 * b * (n * (i + o) + i * o) for i, o in linears)
    # per layer
    scores = 11 * n * c.n_head * c.block_size * b if scores_in_memory else 0
    return {
        "matmuls": (6 * n * sum(i * o for i, o in linears), matmul_bytes),
        "attention": (
            12 * c.n_layer * c.n_embd * c.block_size * n,
            c.n_layer * (12 * n * c.n_embd * b + scores),
        ),
        "norms and element-wise": (
            30 * c.n_layer * n * c.n_embd,
            4 * 42 * c.n_layer * n * c.n_embd,
        ),
        "cross-entropy": (7 * n * c.vocab_size, 4 * 4 * n * c.vocab_size),
        "optimizer": (18 * params, 4 * 10 * params),
    }


def step_profile(rung: Rung, device: torch.device) -> dict:
    """Each group's ms per step (profiled) and, where its work is counted, GFLOP/s and
    FLOPs per byte.
    """
    config, batch_size = rung.shape
    groups = profile_groups(rung, config.block_size, device)
    work = group_work(
        config, batch_size, 2 if rung.dtype == "bfloat16" else 4, rung.scores_in_memory
    )
    rows = {}
    for name, ms in groups.items():
        rows[name] = row = {"ms": ms, "pct": 100 * ms / sum(groups.values())}
        if name in work and ms > 0:
            flops, nbytes = work[name]
            row.update(
                gflops_per_s=flops / ms / 1e6,
                flops_per_byte=flops / nbytes,
                gb_per_s=nbytes / ms / 1e6,
            )
    return {"rung": rung.name, "dtype": rung.dtype, "groups": rows}
