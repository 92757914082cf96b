"""Training: the loops, their learning-rate schedules, and the names and tiny-shakespeare data pipelines."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from microgpt import distributed
from microgpt.checkpoint import CheckpointError, save_checkpoint, set_rng_state
from microgpt.config import GPTConfig
from microgpt.precision import autocast, resolve_dtype  # noqa: F401 (re-exported for callers)
from microgpt.tokenizer import CharTokenizer


class TrainingError(ValueError):
    """Training cannot go on (a non-finite loss, data too short); the message says what to change."""


# --- tiny-shakespeare: one long text, cut into blocks ----------------------------------------------


@dataclass(frozen=True)
class TextSplits:
    """A text encoded once: its tokenizer, the training ids and the held-out validation ids."""

    tokenizer: CharTokenizer
    train: torch.Tensor
    val: torch.Tensor


def split_text(text: str, val_fraction: float = 0.1) -> TextSplits:
    """Encode ``text`` once and hold out its last ``val_fraction`` for validation."""
    tokenizer = CharTokenizer.from_docs([text])
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    n_val = int(len(ids) * val_fraction)
    return TextSplits(tokenizer, ids[: len(ids) - n_val], ids[len(ids) - n_val:])


def examples_per_epoch(n_tokens: int, block_size: int) -> int:
    """How many block-sized (input, target) examples fit in ``n_tokens`` at any chunk offset."""
    return max(0, (n_tokens - block_size) // block_size)


def batches_per_epoch(n_tokens: int, block_size: int, batch_size: int) -> int:
    """Full mini-batches per epoch (the last, partial one is dropped); an error if there are none."""
    n = examples_per_epoch(n_tokens, block_size) // batch_size
    if n == 0:
        raise TrainingError(
            f"the training text ({n_tokens:,} characters) is too short for one batch of "
            f"{batch_size} x {block_size} characters; lower --batch-size or --block-size"
        )
    return n


def epoch_plan(seed: int, epoch: int, n_examples: int, block_size: int) -> tuple[int, torch.Tensor]:
    """One epoch's random chunk offset and example order: a pure function of its arguments."""
    generator = torch.Generator().manual_seed(random.Random(f"{seed}/{epoch}").getrandbits(63))
    offset = int(torch.randint(block_size, (1,), generator=generator))
    return offset, torch.randperm(n_examples, generator=generator)


def get_batch(ids: torch.Tensor, step: int, seed: int, block_size: int, batch_size: int):
    """Training batch number ``step`` (0-based) as (inputs, targets), each ``batch_size x block_size``."""
    n = examples_per_epoch(len(ids), block_size)
    epoch, index = divmod(step, batches_per_epoch(len(ids), block_size, batch_size))
    offset, order = epoch_plan(seed, epoch, n, block_size)
    rows = order[index * batch_size:(index + 1) * batch_size]
    x = ids[offset:offset + n * block_size].view(n, block_size)
    y = ids[offset + 1:offset + 1 + n * block_size].view(n, block_size)
    return x[rows], y[rows]


def val_batches(ids: torch.Tensor, block_size: int, batch_size: int):
    """The validation split cut into consecutive blocks, in batches (the same every time)."""
    n = (len(ids) - 1) // block_size
    if n == 0:
        raise TrainingError(f"the validation split ({len(ids)} characters) is shorter than one block")
    x = ids[:n * block_size].view(n, block_size)
    y = ids[1:n * block_size + 1].view(n, block_size)
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, n, batch_size)]


# --- the schedule, precision and one step ---------------------------------------------------------


def warmup_cosine(step: int, steps: int, lr: float, warmup: int, final_ratio: float = 0.01) -> float:
    """Learning rate at 0-based ``step``: linear warmup, then cosine decay to ``final_ratio * lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def lm_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the next character at every position."""
    logits = model(x)
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))


@torch.no_grad()
def evaluate(model, batches, device: torch.device, dtype: str) -> float:
    """Mean validation loss over every block of the held-out text."""
    model.eval()
    total, count = 0.0, 0
    for x, y in batches:
        with autocast(device, dtype):
            total += lm_loss(model, x.to(device), y.to(device)).item() * len(x)
        count += len(x)
    model.train()
    return total / count


# --- the run ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    """Everything besides the model's shape that fixes a run's trajectory; a resume must match it."""

    steps: int
    batch_size: int = 32
    lr: float = 4e-3
    warmup: int = 100
    seed: int = 1337
    dtype: str = "float32"
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    data_sha256: str = ""


def read_metrics(path: Path, through: int | None = None) -> list[dict]:
    """The records of a metrics.jsonl file (up to step ``through``); a half-written last line is skipped."""
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


def check_resumable(ckpt: dict, config: GPTConfig, run: RunConfig, tokenizer: CharTokenizer, path: Path) -> None:
    """A checkpoint may be resumed only with the same model, run settings and vocabulary."""
    if ckpt["dataset"] != "shakespeare" or not ckpt.get("optimizer"):
        raise CheckpointError(f"{path} is not a resumable text-training checkpoint")
    if ckpt["chars"] != tokenizer.chars or ckpt["run"].get("data_sha256") != run.data_sha256:
        raise CheckpointError(f"{path} was trained on another text; pass the same --data to resume it")
    if ckpt["config"] != dataclasses.asdict(config) or ckpt["run"] != dataclasses.asdict(run):
        raise CheckpointError(f"{path} was written by a run with different settings")
    if ckpt["step"] >= run.steps:
        raise CheckpointError(f"the run in {path.parent} already finished its {run.steps} steps; nothing to resume")


def make_text_optimizer(model: torch.nn.Module, run: RunConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over every weight, fused into one kernel where torch has one for the device."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(model.parameters(), lr=run.lr, betas=(0.9, 0.99),
                             weight_decay=run.weight_decay, fused=fused)


def text_step(model, optimizer, x, y, lr: float, grad_clip: float, device: torch.device, dtype: str) -> float:
    """One optimisation step at learning rate ``lr`` with gradient clipping; returns the loss."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast(device, dtype):
        loss = lm_loss(model, x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


@dataclass
class RunResult:
    """What a call to :func:`train_text` did."""

    model: torch.nn.Module
    steps_run: int
    seconds: float
    tokens: int
    val_loss: float | None


def train_text(splits: TextSplits, config: GPTConfig, run: RunConfig, out: str | Path, *,
               device: torch.device | str = "cpu", eval_interval: int = 0, ckpt_interval: int = 0,
               resume: dict | None = None, progress: bool = True) -> RunResult:
    """Train a GPT on ``splits`` into ``out/metrics.jsonl`` and ``out/ckpt.pt``; ``resume`` continues a checkpoint.

    Under torchrun every rank calls this: each trains on its share of the batch, rank 0 alone writes files.
    """
    from microgpt.model import GPT

    out, device, main = Path(out), torch.device(device), distributed.is_main()
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, metrics_path = out / "ckpt.pt", out / "metrics.jsonl"
    torch.manual_seed(run.seed)
    model = GPT(config, sdpa=True).to(device)
    optimizer = make_text_optimizer(model, run, device)
    start = 0
    if resume is not None:
        check_resumable(resume, config, run, splits.tokenizer, ckpt_path)
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        set_rng_state(resume["rng"])
        start = resume["step"]
    if main:
        kept = read_metrics(metrics_path, through=start)  # a killed run may have logged steps past its checkpoint
        metrics_path.with_suffix(".tmp").write_text("".join(json.dumps(r) + "\n" for r in kept))
        metrics_path.with_suffix(".tmp").replace(metrics_path)
    val = val_batches(splits.val, config.block_size, run.batch_size)
    batches_per_epoch(len(splits.train), config.block_size, run.batch_size)  # fail now if the text is too short
    val_loss, tokens_per_step = None, run.batch_size * config.block_size

    def save(step: int) -> None:
        save_checkpoint(ckpt_path, model, config, splits.tokenizer, "shakespeare", step, optimizer,
                        dataclasses.asdict(run))

    model.train()
    replica = distributed.wrap(model, device)  # under torchrun: DDP, which averages the gradients of all ranks
    bar = tqdm(total=run.steps, initial=start, file=sys.stderr, disable=not (progress and main), unit="step")
    began = time.perf_counter()
    with open(metrics_path if main else os.devnull, "a") as log:
        for step in range(start, run.steps):
            t0 = time.perf_counter()
            lr = warmup_cosine(step, run.steps, run.lr, run.warmup)
            x, y = get_batch(splits.train, step, run.seed, config.block_size, run.batch_size)
            x, y = distributed.share(x).to(device), distributed.share(y).to(device)  # this rank's rows
            loss = text_step(replica, optimizer, x, y, lr, run.grad_clip, device, run.dtype)
            loss = distributed.mean(loss, device)  # the whole batch's loss, the same on every rank
            if not math.isfinite(loss):
                raise TrainingError(f"the loss became {loss} at step {step + 1}; lower --lr (now {run.lr:g}) "
                                    f"or use --dtype float32")
            ms = 1000 * (time.perf_counter() - t0)
            record = {"step": step + 1, "loss": loss, "lr": lr, "ms": round(ms, 3)}
            if main and eval_interval and ((step + 1) % eval_interval == 0 or step + 1 == run.steps):
                record["val_loss"] = val_loss = evaluate(model, val, device, run.dtype)  # rank 0, unwrapped
            log.write(json.dumps(record) + "\n")
            log.flush()
            if main and ((ckpt_interval and (step + 1) % ckpt_interval == 0) or step + 1 == run.steps):
                save(step + 1)  # the unwrapped model's weights: the same checkpoint as a single process's
            bar.update()
            bar.set_postfix(lr=f"{lr:.2e}", loss=f"{loss:.4f}", tok_s=f"{tokens_per_step / ms * 1000:,.0f}",
                            refresh=False)
    bar.close()
    seconds = time.perf_counter() - began
    steps_run = run.steps - start
    return RunResult(model, steps_run, seconds, steps_run * tokens_per_step, val_loss)



# --- names: the original microgpt's loop, batched ---------------------------------------------------


@dataclass(frozen=True)
class NamesData:
    """Every name encoded once and right-padded: inputs, targets, loss weights (0 on padding), lengths."""

    x: torch.Tensor
    y: torch.Tensor
    weight: torch.Tensor
    lengths: list[int]

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> NamesData:
        """The same data on ``device``, weights in the model's ``dtype`` (moved once, before training)."""
        return NamesData(self.x.to(device), self.y.to(device), self.weight.to(device, dtype), self.lengths)


def encode_names(docs: list[str], tokenizer: CharTokenizer, block_size: int) -> NamesData:
    """Wrap each name in BOS, cut it to the block, pad with BOS; weight ``1/n`` on its ``n`` real positions."""
    rows = [tokenizer.wrap(doc)[: block_size + 1] for doc in docs]
    lengths = [len(row) - 1 for row in rows]
    padded = torch.tensor([row + [tokenizer.bos] * (block_size + 1 - len(row)) for row in rows])
    real = torch.arange(block_size) < torch.tensor(lengths)[:, None]
    weight = real / torch.tensor(lengths, dtype=torch.float64)[:, None]  # exact 1/n, rounded once by .to()
    return NamesData(padded[:, :-1], padded[:, 1:], weight, lengths)


def names_batch(data: NamesData, step: int, batch_size: int, pad_to_block: bool = False):
    """Step ``step``'s (x, y, weight): names ``step * batch_size + j`` (mod N), cut to the longest of them."""
    n = len(data.lengths)
    start = step * batch_size % n
    rows = [(start + j) % n for j in range(batch_size)]
    T = data.x.shape[1] if pad_to_block else max(data.lengths[i] for i in rows)
    if start + batch_size <= n:  # the usual case: a contiguous slice is a view, no copy
        return data.x[start : start + batch_size, :T], data.y[start : start + batch_size, :T], \
            data.weight[start : start + batch_size, :T]
    index = torch.tensor(rows, device=data.x.device)
    return data.x[index, :T], data.y[index, :T], data.weight[index, :T]


def names_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of each name's mean cross-entropy; padding has weight 0 and never counts."""
    logits = model(x)
    losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
    return (losses * weight.flatten()).sum() / len(x)


def linear_decay(step: int, steps: int, lr: float) -> float:
    """The original's schedule: ``lr`` at step 0, falling linearly towards 0 at ``steps``."""
    return lr * (1 - step / steps)


class FusedAdam:
    """Adam as one call to PyTorch's fused kernel: what ``torch.optim.Adam(fused=True)`` computes, minus the
    per-step bookkeeping around it (about 0.1 ms, a quarter of a compiled one-name step on a CPU).

    It keeps ``torch.optim``'s ``param_groups`` (one group; ``lr`` may change between steps) and ``zero_grad``.
    """

    def __init__(self, params, lr: float = 0.01, betas: tuple[float, float] = (0.85, 0.99), eps: float = 1e-8):
        self.params = list(params)
        self.param_groups = [{"params": self.params, "lr": lr, "betas": betas, "eps": eps}]
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]  # float32, as torch.optim's

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients (always by setting them to None)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter, in place, from its ``.grad``."""
        group = self.param_groups[0]
        torch._foreach_add_(self.steps, 1)  # the kernel reads the step count for its bias corrections
        torch._fused_adam_(self.params, [p.grad for p in self.params], self.exp_avg, self.exp_avg_sq, [],
                           self.steps, lr=group["lr"], beta1=group["betas"][0], beta2=group["betas"][1],
                           weight_decay=0.0, eps=group["eps"], amsgrad=False, maximize=False)


def make_names_optimizer(model: torch.nn.Module, lr: float = 0.01) -> FusedAdam | torch.optim.Adam:
    """Adam with the original's settings: :class:`FusedAdam` where torch has the fused kernel (CPU, CUDA)."""
    if next(model.parameters()).device.type in ("cpu", "cuda"):
        return FusedAdam(model.parameters(), lr)
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.85, 0.99), eps=1e-8)


def compiled_names_loss(model: torch.nn.Module):
    """``names_loss`` and its gradient as one compiled graph (torch.func + torch.compile); it sets ``.grad``.

    A one-name step is mostly fixed cost per call; differentiating inside the graph replaces a compiled
    forward, a compiled backward and the autograd engine between them with one call.
    """
    params = dict(model.named_parameters())

    def loss_of(weights: dict, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return names_loss(lambda idx: torch.func.functional_call(model, weights, (idx,)), x, y, weight)

    graph = torch.compile(torch.func.grad_and_value(loss_of), dynamic=False)

    def loss_fn(_model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        grads, loss = graph({name: p.detach() for name, p in params.items()}, x, y, weight)
        for name, p in params.items():
            p.grad = grads[name]
        return loss

    return loss_fn


def names_step(model, optimizer, loss_fn, x, y, weight, lr: float) -> torch.Tensor:
    """One optimisation step at learning rate ``lr``; returns the loss (detached, not synchronised).

    ``loss_fn(model, x, y, weight)`` returns the loss, which is backpropagated here, or (as
    :func:`compiled_names_loss` does) sets the gradients itself and returns a loss without a graph.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model, x, y, weight)
    if loss.requires_grad:
        loss.backward()
    optimizer.step()
    return loss.detach()


@dataclass
class NamesResult:
    """What a call to :func:`train_names` did: the loss of every step, the time it took, tokens seen."""

    losses: list[float]
    seconds: float
    tokens: int


def train_names(model: torch.nn.Module, data: NamesData, steps: int, batch_size: int = 1, lr: float = 0.01, *,
                compile: bool = False, on_step=None) -> NamesResult:
    """The original's loop on tensors: ``batch_size`` names a step, Adam, linear decay; ``on_step(record)``."""
    param = next(model.parameters())
    data = data.to(param.device, param.dtype)
    optimizer = make_names_optimizer(model, lr)
    loss_fn = compiled_names_loss(model) if compile else names_loss
    losses, tokens = [], 0
    model.train()
    began = time.perf_counter()
    for step in range(steps):
        t0 = time.perf_counter()
        x, y, weight = names_batch(data, step, batch_size, pad_to_block=compile)  # one shape: one compilation
        lr_now = linear_decay(step, steps, lr)
        loss = names_step(model, optimizer, loss_fn, x, y, weight, lr_now).item()
        if not math.isfinite(loss):
            raise TrainingError(f"the loss became {loss} at step {step + 1}; lower --lr (now {lr:g})")
        losses.append(loss)
        tokens += sum(data.lengths[(step * batch_size + j) % len(data.lengths)] for j in range(batch_size))
        if on_step is not None:
            on_step({"step": step + 1, "loss": loss, "lr": lr_now, "ms": round(1000 * (time.perf_counter() - t0), 3)})
    return NamesResult(losses, time.perf_counter() - began, tokens)
