"""Training: the names loop (the original's, batched) and the text loop (mini-batches,
AdamW, checkpoints).

Both loops share one step convention: a step updates the weights and returns the loss as
a detached tensor, without waiting for it; the loop calls ``.item()`` where it logs the
loss.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from microgpt import distributed
from microgpt.adam import FlatAdam, adam_update, bias_corrected
from microgpt.batching import (
    NamesData,
    TextSplits,
    batches_per_epoch,
    check_one_batch,
    get_batch,
    names_batch,
    names_tokens,
    val_batches,
)
from microgpt.checkpoint import (
    check_resumable,
    save_checkpoint,
    set_rng_state,
    truncate_metrics,
)
from microgpt.config import EPOCHS, TrainConfig
from microgpt.device import has_fused_adam
from microgpt.model import GPT
from microgpt.precision import attention_for, autocast, grad_scaler, resolve_dtype
from microgpt.schedules import linear_decay, warmup_cosine


class TrainingError(ValueError):
    """Training cannot go on (the loss stopped being finite); the message says what to
    change.
    """


def lm_loss(model: torch.nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy of the next character at every position, in float32 at least
    (16-bit logits are cast).
    """
    logits = model(x)
    logits = logits.float() if logits.element_size() < 4 else logits
    return F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))


def names_loss(model: torch.nn.Module, x: Tensor, y: Tensor, weight: Tensor) -> Tensor:
    """Mean over the batch of each name's mean cross-entropy; padding has weight 0 and
    never counts.
    """
    logits = model(x)
    losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
    return (losses * weight.flatten()).sum() / len(x)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def check_finite(loss: float, step: int, advice: str) -> None:
    """A :class:`TrainingError` if ``loss`` (of 1-based ``step``) is infinite or NaN."""
    if not math.isfinite(loss):
        raise TrainingError(f"the loss became {loss} at step {step}; {advice}")


def check_all_finite(losses: list[float], first_step: int, advice: str) -> None:
    """:func:`check_finite` on consecutive steps from ``first_step``: the error names
    the first bad one.
    """
    for step, loss in enumerate(losses, first_step):
        check_finite(loss, step, advice)


# --- names: the original microgpt's loop, batched -------------------------------------


NAMES_BETAS, NAMES_EPS = (0.85, 0.99), 1e-8  # the original's Adam


def make_names_optimizer(model: torch.nn.Module, lr: float = 0.01) -> FlatAdam:
    """Adam with the original's settings over the model's weights as one flat vector
    (build it after ``.to``).
    """
    return FlatAdam(model.parameters(), lr=lr, betas=NAMES_BETAS, eps=NAMES_EPS)


def names_step(
    model: torch.nn.Module,
    optimizer: FlatAdam,
    x: Tensor,
    y: Tensor,
    weight: Tensor,
    lr: float,
) -> Tensor:
    """One optimisation step at learning rate ``lr``; returns the loss (detached, not
    synchronised).
    """
    optimizer.lr = lr
    optimizer.zero_grad()
    loss = names_loss(model, x, y, weight)
    loss.backward()
    optimizer.step()
    return loss.detach()


def compiled_names_step(
    model: torch.nn.Module,
) -> Callable[[Tensor, Tensor, Tensor, float], Tensor]:
    """A names step ``step(x, y, weight, lr) -> loss`` compiled whole: loss, gradient
    and Adam in one graph.

    A one-name step is mostly fixed cost per call; differentiating inside the graph
    (torch.func) and updating the weights there replaces a forward, a backward, the
    autograd engine and an optimizer call with one call. The Adam state lives in the
    step (in the weights' dtype); the model's weights are updated in place.
    """
    # the same storage, no autograd
    params = {name: p.detach() for name, p in model.named_parameters()}
    m = {name: torch.zeros_like(p) for name, p in params.items()}
    v = {name: torch.zeros_like(p) for name, p in params.items()}
    device, count = next(iter(params.values())).device, 0

    def loss_of(weights: dict, x: Tensor, y: Tensor, weight: Tensor) -> Tensor:
        return names_loss(
            lambda idx: torch.func.functional_call(model, weights, (idx,)), x, y, weight
        )

    grad_and_loss = torch.func.grad_and_value(loss_of)

    def update(
        x: Tensor, y: Tensor, weight: Tensor, step_size: Tensor, bias2_sqrt: Tensor
    ) -> Tensor:
        grads, loss = grad_and_loss(params, x, y, weight)
        for name, p in params.items():
            adam_update(
                p,
                grads[name],
                m[name],
                v[name],
                step_size,
                bias2_sqrt,
                NAMES_BETAS,
                NAMES_EPS,
            )
        return loss

    graph = torch.compile(update, dynamic=False)

    def step(x: Tensor, y: Tensor, weight: Tensor, lr: float) -> Tensor:
        nonlocal count
        count += 1
        scalars = torch.tensor(
            bias_corrected(lr, count, NAMES_BETAS), dtype=torch.float64
        )
        step_size, bias2_sqrt = scalars.to(device)
        return graph(x, y, weight, step_size, bias2_sqrt)

    return step


@dataclass
class NamesResult:
    """What a call to :func:`train_names` did: the loss of every step, the time it took,
    tokens seen.
    """

    losses: list[float]
    seconds: float
    tokens: int


def train_names(
    model: torch.nn.Module,
    data: NamesData,
    steps: int,
    batch_size: int = 1,
    lr: float = 0.01,
    *,
    compile: bool = False,
    on_step=None,
) -> NamesResult:
    """The original's loop on tensors: ``batch_size`` names a step, Adam, linear decay;
    ``on_step(record)``.
    """
    param = next(model.parameters())
    data = data.to(param.device, param.dtype)
    if compile:
        step_fn = compiled_names_step(model)
    else:
        step_fn = functools.partial(names_step, model, make_names_optimizer(model, lr))
    losses, tokens = [], 0
    model.train()
    began = time.perf_counter()
    for step in range(steps):
        t0 = time.perf_counter()
        # one shape: one compilation
        x, y, weight = names_batch(data, step, batch_size, pad_to_block=compile)
        lr_now = linear_decay(step, steps, lr)
        loss = step_fn(x, y, weight, lr_now).item()
        check_finite(loss, step + 1, f"lower --lr (now {lr:g})")
        losses.append(loss)
        tokens += names_tokens(data, step, batch_size)
        if on_step is not None:
            on_step(
                {
                    "step": step + 1,
                    "loss": loss,
                    "lr": lr_now,
                    "ms": round(1000 * (time.perf_counter() - t0), 3),
                }
            )
    return NamesResult(losses, time.perf_counter() - began, tokens)


# --- tiny-shakespeare: mini-batches of blocks, AdamW, checkpoints ---------------------


def resolved(run: TrainConfig, train_chars: int, device: torch.device) -> TrainConfig:
    """``run`` with its defaults made concrete: ``steps`` 0 becomes ``EPOCHS`` passes
    over a training text of ``train_chars`` characters, a float ``warmup`` a number of
    steps, and ``dtype`` "auto" the dtype ``device`` computes natively.
    """
    check_one_batch(train_chars, run.block_size, run.batch_size)
    steps = run.steps or EPOCHS * batches_per_epoch(
        train_chars, run.block_size, run.batch_size
    )
    warmup = run.warmup
    if isinstance(warmup, float):
        warmup = round(warmup * steps)
    dtype = resolve_dtype(run.dtype, device)
    return dataclasses.replace(run, steps=steps, warmup=warmup, dtype=dtype)


@dataclass
class RunResult:
    """What a call to :func:`train_text` did."""

    model: torch.nn.Module
    steps_run: int
    seconds: float
    tokens: int
    val_loss: float | None


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, batches, device: torch.device, dtype: str
) -> float:
    """Mean validation loss over every block of the held-out text."""
    model.eval()
    total, count = 0.0, 0
    for x, y in batches:
        with autocast(device, dtype):
            total += lm_loss(model, x.to(device), y.to(device)).item() * len(x)
        count += len(x)
    model.train()
    return total / count


def make_text_optimizer(
    model: torch.nn.Module, run: TrainConfig, device: torch.device
) -> torch.optim.AdamW:
    """AdamW over every weight, fused into one kernel where torch has one for the
    device.
    """
    fused = has_fused_adam(device)
    return torch.optim.AdamW(
        model.parameters(),
        lr=run.lr,
        betas=(0.9, 0.99),
        weight_decay=run.weight_decay,
        fused=fused,
    )


def text_update(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    *,
    lr: float,
    grad_clip: float,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    dtype: str,
    accum: int = 1,
) -> tuple[Tensor, Tensor]:
    """One optimisation step on the batch ``x, y``, in ``accum`` equal micro-batches.

    Returns the loss and the gradient norm before clipping as tensors on the device:
    reading them waits for the step, so the loop reads them only when it logs.
    ``scaler`` is the run's GradScaler. For float16 it scales the loss so that small
    gradients survive, and adapts its scale from step to step; for float32 and
    bfloat16 it is disabled and changes nothing.
    """
    if len(x) % accum:
        raise ValueError(
            f"a batch of {len(x)} rows does not split into {accum} equal micro-batches"
        )
    set_lr(optimizer, lr)
    optimizer.zero_grad(set_to_none=True)
    # forward and backward, one micro-batch at a time: each loss is divided by accum,
    # so the summed gradients are the whole batch's; under DDP the processes average
    # their gradients once, during the last micro-batch's backward
    losses = []
    for i, (xs, ys) in enumerate(zip(x.chunk(accum), y.chunk(accum))):
        with distributed.sync_gradients(model, i == accum - 1):
            with autocast(device, dtype):
                loss = lm_loss(model, xs, ys) / accum
            scaler.scale(loss).backward()
        losses.append(loss.detach())
    # clip the true gradients (unscaled first), then update the weights
    scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return torch.stack(losses).sum(), norm.detach()


@dataclass
class TextRun:
    """What a text run carries from step to step: the model, its optimizer and gradient
    scaler, the next step to run and the best validation loss so far.
    """

    model: GPT
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    step: int = 0
    best: float = math.inf


def start_text_run(
    splits: TextSplits, run: TrainConfig, device: torch.device, resume: dict | None
) -> TextRun:
    """A seeded new model and its optimizer for ``run``, or the state of ``resume``."""
    torch.manual_seed(run.seed)
    config = run.model(splits.tokenizer.vocab_size)
    model = GPT(config, attention_for(device, run.dtype), dropout=run.dropout)
    model = model.to(device)
    optimizer = make_text_optimizer(model, run, device)
    state = TextRun(model, optimizer, grad_scaler(device, run.dtype))
    if resume is not None:
        model.load_state_dict(resume["model"])
        # a copy: the optimizer would adopt the checkpoint's tensors and update them
        optimizer.load_state_dict(copy.deepcopy(resume["optimizer"]))
        if resume.get("scaler"):
            state.scaler.load_state_dict(resume["scaler"])
        set_rng_state(resume["rng"])
        state.step, state.best = resume["step"], resume.get("best_val_loss", math.inf)
    return state


def save_text_run(
    path: Path, state: TextRun, run: TrainConfig, splits: TextSplits, step: int
) -> None:
    """A resumable checkpoint of ``state`` after ``step`` steps of ``run``."""
    config = state.model.config
    save_checkpoint(
        path,
        state.model,
        config,
        splits.tokenizer,
        "shakespeare",
        step,
        state.optimizer,
        dataclasses.asdict(run),
        state.scaler,
        best_val_loss=state.best,
    )


class MetricsLog:
    """metrics.jsonl: one record per step, written an interval at a time.

    Each step's loss and gradient norm stay on the device when :meth:`add` takes them;
    :meth:`flush` fetches the whole interval's in one transfer, averaged over the ranks,
    checks that they are finite and writes the records.
    """

    def __init__(self, file, advice: str):
        self.file, self.advice = file, advice
        self.pending: list[tuple[dict, Tensor]] = []

    def add(self, record: dict, stats: tuple[Tensor, Tensor]) -> None:
        """Keep a step's record (filled in until the flush) and (loss, grad norm)."""
        self.pending.append((record, torch.stack(stats)))

    def flush(self) -> float:
        """Write the kept records; returns the last step's loss. A non-finite loss
        raises :class:`TrainingError` naming the first bad step.
        """
        stacked = torch.stack([stats for _, stats in self.pending])
        values = distributed.mean_tensor(stacked).tolist()
        first = self.pending[0][0]["step"]
        check_all_finite([loss for loss, _ in values], first, self.advice)
        for (record, _), (loss, norm) in zip(self.pending, values):
            line = {"step": record["step"], "loss": loss, "grad_norm": norm}
            line.update((k, v) for k, v in record.items() if k != "step")
            self.file.write(json.dumps(line) + "\n")
        self.file.flush()
        self.pending.clear()
        return values[-1][0]


def due(step: int, interval: int) -> bool:
    """Whether a task done every ``interval`` steps (0: never) falls after ``step``."""
    return interval > 0 and step % interval == 0


def train_text(
    splits: TextSplits,
    run: TrainConfig,
    out: str | Path,
    *,
    device: torch.device | str = "cpu",
    eval_interval: int = 0,
    ckpt_interval: int = 0,
    log_interval: int = 50,
    resume: dict | None = None,
    progress: bool = True,
) -> RunResult:
    """Train the GPT ``run`` describes on ``splits`` into ``out/metrics.jsonl`` and
    ``out/ckpt.pt``; ``resume`` continues a checkpoint.

    Validation runs every ``eval_interval`` steps and at the end, a checkpoint is saved
    every ``ckpt_interval`` steps and at the end, and each improvement of the validation
    loss also writes ``out/best.pt``. Under torchrun every rank calls this: each trains
    on its share of the batch, and rank 0 alone evaluates and writes files.
    """
    # set up: numbers for the run's defaults, checked before anything is written
    out, device, main = Path(out), torch.device(device), distributed.is_main()
    run = resolved(run, len(splits.train), device)
    if resume is not None:
        run_dict = dataclasses.asdict(run)
        check_resumable(resume, run_dict, splits.tokenizer, out / "ckpt.pt")
    val = val_batches(splits.val, run.block_size, run.batch_size)
    state = start_text_run(splits, run, device, resume)
    out.mkdir(parents=True, exist_ok=True)
    if main:
        # a killed run may have logged steps past its checkpoint
        truncate_metrics(out / "metrics.jsonl", through=state.step)
    start, val_loss = state.step, None
    state.model.train()
    # under torchrun: DDP, which averages the gradients of all ranks
    replica = distributed.wrap(state.model, device)
    hidden = not (progress and main)
    bar = tqdm(
        total=run.steps, initial=start, file=sys.stderr, disable=hidden, unit="step"
    )
    began = mark = time.perf_counter()
    with open(out / "metrics.jsonl" if main else os.devnull, "a") as file:
        log = MetricsLog(file, f"lower --lr (now {run.lr:g}) or use --dtype float32")
        for step in range(start + 1, run.steps + 1):
            # update: this rank's rows of the step's batch, one optimizer step
            lr = warmup_cosine(step - 1, run.steps, run.lr, run.warmup)
            x, y = get_batch(
                splits.train, step - 1, run.seed, run.block_size, run.batch_size
            )
            x, y = distributed.share(x).to(device), distributed.share(y).to(device)
            stats = text_update(
                replica,
                state.optimizer,
                x,
                y,
                lr=lr,
                grad_clip=run.grad_clip,
                scaler=state.scaler,
                device=device,
                dtype=run.dtype,
                accum=run.grad_accum,
            )
            last = step == run.steps
            evaluating = due(step, eval_interval) or (eval_interval > 0 and last)
            saving = due(step, ckpt_interval) or last
            # evaluate: rank 0, on the unwrapped model
            record = {"step": step, "lr": lr}
            if main and evaluating:
                val_loss = evaluate(state.model, val, device, run.dtype)
                record["val_loss"] = val_loss
            # log: every step's time, from its start to the next's; the losses
            # fetched at the same steps on every rank
            log.add(record, stats)
            now = time.perf_counter()
            record["ms"], mark = round(1000 * (now - mark), 3), now
            if due(step, log_interval) or evaluating or saving:
                loss = log.flush()
                speed = run.batch_size * run.block_size / record["ms"] * 1000
                bar.set_postfix(
                    lr=f"{lr:.2e}",
                    loss=f"{loss:.4f}",
                    tok_s=f"{speed:,.0f}",
                    refresh=False,
                )
            # checkpoint: best.pt on a better validation loss, ckpt.pt when due
            if main and evaluating and val_loss < state.best:
                state.best = val_loss
                model, tokenizer = state.model, splits.tokenizer
                config = model.config
                save_checkpoint(
                    out / "best.pt", model, config, tokenizer, "shakespeare", step
                )
            if main and saving:
                save_text_run(out / "ckpt.pt", state, run, splits, step)
            bar.update()
    bar.close()
    steps_run = run.steps - start
    seconds = time.perf_counter() - began
    tokens = steps_run * run.batch_size * run.block_size
    return RunResult(state.model, steps_run, seconds, tokens, val_loss)
