"""Chapter 10: training on tiny-shakespeare: mini-batches of blocks, AdamW, warmup then
cosine decay, evaluation on every held-out block, checkpoints and a metrics log.

:func:`train_text` is the loop; each part of it is a function of its own: setting up
or resuming (:func:`prepare_text_run`), one step (:func:`text_step`, which calls
:func:`text_update`), the log (:class:`MetricsLog`), evaluation (:func:`evaluate`) and
the checkpoints (:func:`save_best`, :func:`save_text_run`). A step returns the loss
as a detached tensor without waiting for it; the log fetches a whole interval's
losses in one transfer.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from microgpt import distributed
from microgpt.checkpoint import check_resumable, save_checkpoint, set_rng_state
from microgpt.config import EPOCHS, TrainConfig
from microgpt.device import (
    attention_for,
    autocast,
    grad_scaler,
    has_fused_adam,
    resolve_dtype,
)
from microgpt.model import GPT
from microgpt.names import check_finite
from microgpt.text import (
    TextSplits,
    batches_per_epoch,
    check_one_batch,
    get_batch,
    val_batches,
)

# --- the pieces: schedule, loss, optimizer, one update --------------------------------


def warmup_cosine(
    step: int, steps: int, lr: float, warmup: int, final_ratio: float = 0.01
) -> float:
    """Learning rate at 0-based ``step``: linear warmup, then cosine decay to
    ``final_ratio * lr``.
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (
        final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    )


def lm_loss(model: torch.nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy of the next character at every position, in float32 at least
    (16-bit logits are cast).
    """
    logits = model(x)
    logits = logits.float() if logits.element_size() < 4 else logits
    return F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def check_all_finite(losses: list[float], first_step: int, advice: str) -> None:
    """:func:`check_finite` on consecutive steps from ``first_step``: the error names
    the first bad one.
    """
    for step, loss in enumerate(losses, first_step):
        check_finite(loss, step, advice)


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


# --- a run: start or resume, save, log ------------------------------------------------


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


def prepare_text_run(
    splits: TextSplits,
    run: TrainConfig,
    out: Path,
    device: torch.device,
    resume: dict | None,
) -> tuple[TrainConfig, list, TextRun]:
    """The run with its defaults made concrete, the validation batches, and the model
    and optimizer to start from (fresh, or ``resume``'s once it is checked to be the
    same run); ``out`` is created, and its metrics cut back to the checkpoint's step.
    """
    run = resolved(run, len(splits.train), device)
    if resume is not None:
        run_dict = dataclasses.asdict(run)
        check_resumable(resume, run_dict, splits.tokenizer, out / "ckpt.pt")
    val = val_batches(splits.val, run.block_size, run.batch_size)
    state = start_text_run(splits, run, device, resume)
    out.mkdir(parents=True, exist_ok=True)
    if distributed.is_main():
        # a killed run may have logged steps past its checkpoint
        truncate_metrics(out / "metrics.jsonl", through=state.step)
    return run, val, state


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


def read_metrics(path: Path, through: int | None = None) -> list[dict]:
    """The records of a metrics.jsonl file (up to step ``through``); a half-written last
    line is skipped.
    """
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if through is None or record["step"] <= through:
            records.append(record)
    return records


def truncate_metrics(path: Path, through: int) -> None:
    """Keep only the records of steps up to ``through`` (a killed run may have logged
    steps past its checkpoint).
    """
    kept = read_metrics(path, through)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(record) + "\n" for record in kept))
    tmp.replace(path)


def due(step: int, interval: int) -> bool:
    """Whether a task done every ``interval`` steps (0: never) falls after ``step``."""
    return interval > 0 and step % interval == 0


# --- the loop -------------------------------------------------------------------------


def text_step(
    replica: torch.nn.Module,
    state: TextRun,
    train_ids: Tensor,
    run: TrainConfig,
    step: int,
    device: torch.device,
) -> tuple[float, tuple[Tensor, Tensor]]:
    """Step ``step`` of ``run`` (counted from 1): its learning rate, this rank's rows
    of its batch and one update of ``replica``; returns the learning rate and the
    (loss, gradient norm) tensors.
    """
    lr = warmup_cosine(step - 1, run.steps, run.lr, run.warmup)
    x, y = get_batch(train_ids, step - 1, run.seed, run.block_size, run.batch_size)
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
    return lr, stats


def show_progress(bar: tqdm, lr: float, loss: float, tokens_per_s: float) -> None:
    """The progress bar's figures, shown at its next refresh."""
    bar.set_postfix(
        lr=f"{lr:.2e}", loss=f"{loss:.4f}", tok_s=f"{tokens_per_s:,.0f}", refresh=False
    )


def save_best(path: Path, state: TextRun, splits: TextSplits, step: int) -> None:
    """The model alone, for sampling, at the best validation loss so far."""
    model = state.model
    save_checkpoint(path, model, model.config, splits.tokenizer, "shakespeare", step)


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
    # set up: the run's defaults made concrete, checked before anything is written
    out, device, main = Path(out), torch.device(device), distributed.is_main()
    run, val, state = prepare_text_run(splits, run, out, device, resume)
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
            lr, stats = text_step(replica, state, splits.train, run, step, device)
            last = step == run.steps
            evaluating = due(step, eval_interval) or (eval_interval > 0 and last)
            saving = due(step, ckpt_interval) or last
            # evaluate: rank 0, on the unwrapped model
            record = {"step": step, "lr": lr}
            if main and evaluating:
                val_loss = evaluate(state.model, val, device, run.dtype)
                record["val_loss"] = val_loss
            # log: the time since the previous step's timestamp (so a log write or
            # checkpoint counts in the step after it); the losses are fetched at the
            # same steps on every rank
            log.add(record, stats)
            now = time.perf_counter()
            record["ms"], mark = round(1000 * (now - mark), 3), now
            if due(step, log_interval) or evaluating or saving:
                tokens_per_s = 1000 * run.batch_size * run.block_size / record["ms"]
                show_progress(bar, lr, log.flush(), tokens_per_s)
            # checkpoint: best.pt on a better validation loss, ckpt.pt when due
            if main and evaluating and val_loss < state.best:
                state.best = val_loss
                save_best(out / "best.pt", state, splits, step)
            if main and saving:
                save_text_run(out / "ckpt.pt", state, run, splits, step)
            bar.update()
    bar.close()
    steps_run = run.steps - start
    seconds = time.perf_counter() - began
    tokens = steps_run * run.batch_size * run.block_size
    return RunResult(state.model, steps_run, seconds, tokens, val_loss)
