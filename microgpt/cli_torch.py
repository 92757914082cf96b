"""The commands of :mod:`microgpt.cli` that run on PyTorch: names on tensors,
Shakespeare (fresh or resumed), samples from a checkpoint.

Each takes the parsed flags, checks what it can before any work, and raises
:class:`CLIError` for a mistake; the command line in :mod:`microgpt.cli` prints it as
one line.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import Tensor

from microgpt import distributed, scalar, train
from microgpt.checkpoint import (
    load_checkpoint,
    model_from,
    resumable,
    save_checkpoint,
    tokenizer_from,
)
from microgpt.cli import (
    SMALL_WORK_THREADS,
    CLIError,
    check_out,
    make_out,
    print_samples,
    print_summary,
    start_names,
    step_printer,
)
from microgpt.config import TrainConfig
from microgpt.data import load_shakespeare
from microgpt.device import (
    check_fits,
    dtype_warning,
    param_count,
    pick_device,
    set_matmul_precision,
)
from microgpt.model import gpt_from_scalar
from microgpt.names import NamesResult, encode_names, train_names
from microgpt.sample import generate, sample_docs
from microgpt.text import split_text


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """torch's CPU work on ``threads`` threads inside (None: torch's own number), and
    the number as it was after.

    Only the intra-op pool, which can change at any time:
    ``torch.set_num_interop_threads`` raises once parallel work has started, and
    microgpt runs nothing on the inter-op pool. Setting the number back keeps a
    notebook's (or a test's) own when it calls :func:`microgpt.cli.main`.
    """
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def on_threads(default: int | None) -> Callable[[Callable], Callable]:
    """A command ``f(args, ...)`` that runs, from its first line, on ``args.threads``
    CPU threads, else ``default``.
    """

    def wrap(command: Callable) -> Callable:
        @functools.wraps(command)
        def run(args: argparse.Namespace, *rest) -> None:
            with cpu_threads(args.threads or default):
                command(args, *rest)

        return run

    return wrap


def check_names_device(args: argparse.Namespace, device: torch.device) -> None:
    """Refuse what the device cannot run, before anything is written."""
    if args.dtype == "float64" and device.type == "mps":
        raise CLIError("MPS has no float64; use --dtype float32")
    if args.compile and device.type == "mps":
        raise CLIError(
            "--compile: microgpt does not use torch.compile on MPS (its MPS backend "
            "is a prototype); run without it"
        )


@on_threads(SMALL_WORK_THREADS)
def train_names_torch(args: argparse.Namespace, docs: list[str]) -> None:
    """The same model, initialisation and loop as the scalar engine, on PyTorch tensors:
    batched, on any device.
    """
    out = Path(args.out) if args.out else None
    if out:
        check_out(out)
    device = pick_device(args.device)
    check_names_device(args, device)
    rng, tok, config = start_names(args, docs)
    check_fits(config, args.batch_size, device)
    # the scalar engine's initial weights, exactly
    weights = scalar.init_weights(config, rng)
    model = gpt_from_scalar(
        config, weights, attention="sdpa", dtype=getattr(torch, args.dtype)
    ).to(device)
    print(f"num params: {model.num_params()}")
    print(f"engine: torch on {device}, {args.dtype}, batch size {args.batch_size}")
    data = encode_names(docs, tok, config.block_size)
    result = train_logged(model, data, args, out)
    print_summary(args.steps, result.seconds, result.tokens)
    if out:
        save_checkpoint(out / "ckpt.pt", model, config, tok, "names", args.steps)
        print(f"wrote {out / 'ckpt.pt'} and {out / 'metrics.jsonl'}")
    print_samples(
        sample_docs(model, tok, args.num_samples, args.temperature, seed=args.seed)
    )


def train_logged(
    model: torch.nn.Module, data: Tensor, args: argparse.Namespace, out: Path | None
) -> NamesResult:
    """Train, printing the loss as the scalar engine does and, with ``out``, writing
    one JSON line per step to ``out/metrics.jsonl``.
    """
    show = step_printer(args.steps, args.log_every, args.exact_loss)
    if out:
        make_out(out)
    with (out / "metrics.jsonl").open("w") if out else contextlib.nullcontext() as log:

        def on_step(record: dict) -> None:
            show(record["step"] - 1, record["loss"])
            if log:
                log.write(json.dumps(record) + "\n")

        return train_names(
            model,
            data,
            args.steps,
            args.batch_size,
            args.lr,
            compile=args.compile,
            on_step=on_step,
        )


def given_settings(args: argparse.Namespace) -> dict:
    """The fields of the run's ``TrainConfig`` that the command line's flags set."""
    names = (field.name for field in dataclasses.fields(TrainConfig))
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def resumed_settings(
    args: argparse.Namespace, resume: dict, train_chars: int, device: torch.device
) -> TrainConfig:
    """The run that wrote the checkpoint; a flag that contradicts it is an error."""
    if not resumable(resume):
        raise CLIError(
            f"{args.out}/ckpt.pt is not a resumable Shakespeare checkpoint (a names "
            "run's, or weights without an optimizer): start a new run with another "
            "--out"
        )
    saved, given = TrainConfig.from_checkpoint(resume), given_settings(args)
    asked = train.resolved(dataclasses.replace(saved, **given), train_chars, device)
    for name in given:
        if getattr(asked, name) != getattr(saved, name):
            flag = "--" + name.replace("_", "-")
            raise CLIError(
                f"{flag} {getattr(asked, name)} differs from the checkpoint's "
                f"{getattr(saved, name)}; drop it to resume the run as it was"
            )
    return saved


# torch's own: 836K parameters in 32 x 256 blocks keep every core busy
@on_threads(None)
def train_shakespeare(args: argparse.Namespace) -> None:
    """``microgpt train shakespeare``; under torchrun every process runs it, and only
    rank 0 prints.
    """
    with contextlib.redirect_stdout(
        sys.stdout if distributed.is_main() else io.StringIO()
    ):
        run_shakespeare(args)


def settle_run(
    args: argparse.Namespace, text: str, train_chars: int, device: torch.device
) -> tuple[TrainConfig, dict | None]:
    """The run's settings and the checkpoint it resumes (None for a fresh run).

    A fresh run is ``TrainConfig`` with the flags given; a resumed one is the run that
    wrote ``--out``'s checkpoint. Either way it records the text's SHA-256, and its
    defaults are made concrete for ``train_chars`` characters of it on ``device``.
    """
    ckpt_path, resume = Path(args.out) / "ckpt.pt", None
    if args.resume:
        if not ckpt_path.exists():
            raise CLIError(
                f"--resume: there is no checkpoint to resume in {args.out}; "
                "run without --resume to start"
            )
        resume = load_checkpoint(ckpt_path)
        run = resumed_settings(args, resume, train_chars, device)
    elif ckpt_path.exists():
        raise CLIError(
            f"{args.out} already holds a checkpoint; add --resume to continue it, "
            "or choose another --out"
        )
    else:
        run = dataclasses.replace(TrainConfig(), **given_settings(args))
    sha256 = hashlib.sha256(text.encode()).hexdigest()
    run = dataclasses.replace(run, data_sha256=sha256)
    return train.resolved(run, train_chars, device), resume


def check_batch_split(run: TrainConfig, world: int) -> None:
    """Each step's batch must share out evenly over the processes and micro-batches."""
    if run.batch_size % (world * run.grad_accum):
        parts = [f"{world} processes"] if world > 1 else []
        if run.grad_accum > 1:
            parts.append(f"{run.grad_accum} micro-batches")
        raise CLIError(
            f"--batch-size {run.batch_size} does not split evenly across "
            f"{' x '.join(parts)}; use a multiple of {world * run.grad_accum}"
        )


def run_line(run: TrainConfig, world: int, resume: dict | None) -> str:
    """The line that says how long the run is and how each batch is shared out."""
    line = f"run: {run.steps} steps of {run.batch_size} x {run.block_size} characters"
    if world > 1:
        line += f" ({world} processes, {run.batch_size // world} blocks each)"
    if run.grad_accum > 1:
        micro = run.batch_size // (world * run.grad_accum)
        line += f" in {run.grad_accum} micro-batches of {micro}"
    if resume:
        line += f", resuming after step {resume['step']}"
    return line


def run_shakespeare(args: argparse.Namespace) -> None:
    """Load the text, settle the settings (fresh or from the checkpoint), train, and
    report.
    """
    out = Path(args.out)
    check_out(out)
    text = load_shakespeare(args.data)
    splits, world = split_text(text), distributed.world_size()
    device = distributed.device_for_rank(pick_device(args.device))
    run, resume = settle_run(args, text, len(splits.train), device)
    config = run.model(splits.tokenizer.vocab_size)
    if note := dtype_warning(run.dtype, device):
        print(f"microgpt: warning: {note}", file=sys.stderr)
    set_matmul_precision(device, run.dtype)
    check_batch_split(run, world)
    check_fits(config, run.batch_size // (world * run.grad_accum), device)
    if distributed.is_main():
        make_out(out)
    print(
        f"text: {len(splits.train):,} training and {len(splits.val):,} validation "
        f"characters, vocab size {splits.tokenizer.vocab_size}"
    )
    print(
        f"model: {param_count(config):,} parameters, {config}, "
        f"device {device}, dtype {run.dtype}"
    )
    print(run_line(run, world, resume))
    distributed.init(device)
    try:
        result = train.train_text(
            splits,
            run,
            args.out,
            device=device,
            eval_interval=args.eval_interval,
            ckpt_interval=args.ckpt_interval,
            log_interval=args.log_interval,
            resume=resume,
            progress=not args.quiet,
        )
    finally:
        distributed.cleanup()
    if result.val_loss is not None:
        print(f"val loss {result.val_loss:.4f}")
    saved = [f for f in ("ckpt.pt", "best.pt", "metrics.jsonl") if (out / f).exists()]
    print(f"saved in {out}: {', '.join(saved)}")
    print_summary(result.steps_run, result.seconds, result.tokens)


@on_threads(SMALL_WORK_THREADS)
def sample_checkpoint(args: argparse.Namespace) -> None:
    """``microgpt sample``: names stop at BOS; text always runs to ``--max-chars``."""
    ckpt = load_checkpoint(args.checkpoint)
    device = pick_device(args.device)
    model, tok = model_from(ckpt, device), tokenizer_from(ckpt)
    names = ckpt["dataset"] == "names"
    prompt = args.prompt or ""
    try:
        ids = ([tok.bos] if names else []) + tok.encode(
            prompt or ("" if names else "\n")
        )
    except ValueError as err:
        raise CLIError(f"--prompt: {err}") from None
    max_chars = args.max_chars or (model.config.block_size if names else 500)
    num = args.num_samples or (20 if names else 1)
    generator = torch.Generator(device).manual_seed(args.seed)
    temperature = args.temperature or (0.5 if names else 0.8)
    rows = generate(
        model,
        torch.tensor([ids] * num, device=device),
        max_chars,
        temperature,
        args.top_k,
        generator,
        stop_token=tok.bos if names else None,
        banned=None if names else tok.bos,
        top_p=args.top_p,
    )
    texts = [
        prompt + tok.decode(row[: row.index(tok.bos)] if tok.bos in row else row)
        for row in rows.tolist()
    ]
    if names:
        print_samples(texts)
    for i, text in enumerate([] if names else texts, 1):
        print(f"--- sample {i} ---\n{text}")
