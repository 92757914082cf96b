"""The ``microgpt`` command line: train a model, print samples."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from microgpt import __version__, scalar
from microgpt.config import SHAKESPEARE, SHAKESPEARE_EPOCHS, GPTConfig
from microgpt.data import DataError, load_names, load_shakespeare
from microgpt.tokenizer import CharTokenizer


class CLIError(Exception):
    """A mistake in what the user asked for, reported as one line."""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a float > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def warmup_value(text: str) -> int | float:
    """argparse type: warmup steps (an integer >= 0) or a fraction of the run's steps (0 <= f < 1, e.g. 0.05)."""
    try:
        return non_negative_int(text)
    except ValueError:
        value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of steps or a fraction in [0, 1), got {text}")
    return value


def dropout_rate(text: str) -> float:
    """argparse type: a probability 0 <= p < 1."""
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def probability(text: str) -> float:
    """argparse type: a float in (0, 1]."""
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def step_printer(steps: int, every: int):
    """Print the original's step line: in place on a terminal, every ``every`` steps otherwise."""
    tty = sys.stdout.isatty()

    def show(step: int, loss: float) -> None:
        line = f"step {step + 1:4d} / {steps:4d} | loss {loss:.4f}"
        if tty:
            print(line, end="\n" if step + 1 == steps else "\r", flush=True)
        elif (step + 1) % every == 0 or step + 1 == steps:
            print(line, flush=True)

    return show


def print_summary(steps: int, seconds: float, tokens: int) -> None:
    """The one-line speed summary every training run ends with."""
    print(
        f"trained {steps} steps in {seconds:.1f} s "
        f"({1000 * seconds / steps:.2f} ms/step, {tokens / seconds:,.0f} tokens/s)"
    )


def print_samples(samples: Sequence[str]) -> None:
    """Samples in the original's format."""
    print("--- inference (new, hallucinated names) ---")
    for i, text in enumerate(samples, 1):
        print(f"sample {i:2d}: {text}")


def train_names_scalar(args: argparse.Namespace, docs: list[str]) -> None:
    """The original microgpt, on the pure-Python engine (atomic or fused)."""
    rng = random.Random(args.seed)
    rng.shuffle(docs)
    tok = CharTokenizer.from_docs(docs)
    print(f"num docs: {len(docs)}")
    print(f"vocab size: {tok.vocab_size}")
    config = GPTConfig(tok.vocab_size, args.block_size, args.n_layer, args.n_embd, args.n_head)
    model = scalar.ScalarGPT.init(config, rng, fused=args.engine == "scalar-fused")
    print(f"num params: {len(model.params)}")
    encoded = [tok.wrap(doc) for doc in docs]
    start = time.perf_counter()
    scalar.train(model, encoded, args.steps, args.lr, step_printer(args.steps, args.log_every))
    seconds = time.perf_counter() - start
    tokens = sum(min(len(encoded[s % len(encoded)]) - 1, config.block_size) for s in range(args.steps))
    print_summary(args.steps, seconds, tokens)
    print_samples([tok.decode(scalar.generate(model, rng, args.temperature)) for _ in range(args.num_samples)])


def check_out(out: Path) -> None:
    """``--out`` must be a folder, or one that can be made, in a writable place; checked before any work."""
    existing = next(p for p in [out, *out.parents] if p.exists())
    if not existing.is_dir():
        raise CLIError(f"--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"--out {out}: cannot write in {existing}")


def make_out(out: Path) -> None:
    """Create the ``--out`` folder (once every other check has passed); failing is a one-line error."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(f"--out {out}: cannot create it ({err.strerror or err})") from None


def train_names_torch(args: argparse.Namespace, docs: list[str]) -> None:
    """The same model, initialisation and loop on PyTorch tensors: batched, on any device."""
    # Imported here, not at the top: the scalar engines (and --help) must run where PyTorch is not installed.
    import json

    import torch

    from microgpt import batching, memory, train
    from microgpt.checkpoint import save_checkpoint
    from microgpt.device import pick_device
    from microgpt.port import gpt_from_scalar
    from microgpt.sample import sample_docs

    out = Path(args.out) if args.out else None
    if out:
        check_out(out)
    device = pick_device(args.device)
    if args.dtype == "float64" and device.type == "mps":
        raise CLIError("MPS has no float64; use --dtype float32")
    if args.compile and device.type == "mps":
        raise CLIError("--compile: microgpt does not use torch.compile on MPS (its MPS backend is a prototype); "
                       "run without it")
    rng = random.Random(args.seed)
    rng.shuffle(docs)
    tok = CharTokenizer.from_docs(docs)
    print(f"num docs: {len(docs)}")
    print(f"vocab size: {tok.vocab_size}")
    config = GPTConfig(tok.vocab_size, args.block_size, args.n_layer, args.n_embd, args.n_head)
    memory.check_fits(config, args.batch_size, device)
    weights = scalar.init_weights(config, rng)  # the scalar engine's initial weights, exactly
    model = gpt_from_scalar(config, weights, sdpa=True, dtype=getattr(torch, args.dtype)).to(device)
    print(f"num params: {model.num_params()}")
    print(f"engine: torch on {device}, {args.dtype}, batch size {args.batch_size}")
    show = step_printer(args.steps, args.log_every)
    if out:
        make_out(out)
    with (out / "metrics.jsonl").open("w") if out else contextlib.nullcontext() as log:
        def on_step(record: dict) -> None:
            show(record["step"] - 1, record["loss"])
            if log:
                log.write(json.dumps(record) + "\n")

        data = batching.encode_names(docs, tok, config.block_size)
        result = train.train_names(model, data, args.steps, args.batch_size, args.lr,
                                   compile=args.compile, on_step=on_step)
    print_summary(args.steps, result.seconds, result.tokens)
    if out:
        save_checkpoint(out / "ckpt.pt", model, config, tok, "names", args.steps)
        print(f"wrote {out / 'ckpt.pt'} and {out / 'metrics.jsonl'}")
    print_samples(sample_docs(model, tok, args.num_samples, args.temperature, seed=args.seed))


def cmd_train_names(args: argparse.Namespace) -> None:
    """``microgpt train names``."""
    if args.engine != "torch":
        torch_only = {"--batch-size": args.batch_size != 1, "--device": args.device, "--out": args.out,
                      "--dtype": args.dtype != "float32", "--compile": args.compile}
        used = [flag for flag, given in torch_only.items() if given]
        if used:
            raise CLIError(f"{', '.join(used)}: only with --engine torch (the scalar engines run one name at a time)")
    docs = load_names(args.data)
    if max(len(doc) for doc in docs) + 1 > args.block_size:
        print(f"note: documents longer than {args.block_size - 1} characters are cut to the block size",
              file=sys.stderr)
    if args.engine == "torch":
        train_names_torch(args, docs)
    else:
        train_names_scalar(args, docs)


def add_model_flags(p: argparse.ArgumentParser, block: int, embd: int, head: int, layer: int) -> None:
    """Flags that set the model's shape."""
    p.add_argument("--block-size", type=positive_int, default=block, help="context length (default %(default)s)")
    p.add_argument("--n-embd", type=positive_int, default=embd, help="embedding width (default %(default)s)")
    p.add_argument("--n-head", type=positive_int, default=head, help="attention heads (default %(default)s)")
    p.add_argument("--n-layer", type=positive_int, default=layer, help="transformer blocks (default %(default)s)")


def resumed_settings(args: argparse.Namespace, resume: dict, device, data_sha256: str):
    """A checkpoint's model shape and run settings; a flag that contradicts them is an error."""
    from microgpt import precision, train  # torch: see train_names_torch

    if resume["dataset"] != "shakespeare" or not resume.get("optimizer"):
        raise CLIError(f"{args.out}/ckpt.pt is not a resumable Shakespeare checkpoint")
    config, run = GPTConfig(**resume["config"]), train.RunConfig(**{**resume["run"], "data_sha256": data_sha256})
    for name in [*SHAKESPEARE, "steps"]:
        given, saved = getattr(args, name), getattr(config if hasattr(config, name) else run, name)
        if name == "dtype" and given is not None:
            given = precision.resolve_dtype(given, device)
        if name == "warmup" and isinstance(given, float):
            given = round(given * run.steps)
        if given is not None and given != saved:
            flag = "--" + name.replace("_", "-")
            raise CLIError(f"{flag} {given} differs from the checkpoint's {saved}; drop it to resume the run as it was")
    return config, run


def cmd_train_shakespeare(args: argparse.Namespace) -> None:
    """``microgpt train shakespeare``; under torchrun every process runs it, and only rank 0 prints."""
    from microgpt import distributed  # torch: see train_names_torch

    with contextlib.redirect_stdout(sys.stdout if distributed.is_main() else io.StringIO()):
        train_shakespeare(args)


def train_shakespeare(args: argparse.Namespace) -> None:
    """Load the text, settle the settings (fresh or from the checkpoint), train, and report."""
    from microgpt import batching, distributed, memory, precision, train  # torch: see train_names_torch
    from microgpt.checkpoint import load_checkpoint
    from microgpt.device import pick_device

    check_out(Path(args.out))
    text = load_shakespeare(args.data)
    data_sha256 = hashlib.sha256(text.encode()).hexdigest()
    device = distributed.device_for_rank(pick_device(args.device))
    splits, ckpt_path, world = batching.split_text(text), Path(args.out) / "ckpt.pt", distributed.world_size()
    resume = None
    if args.resume:
        if not ckpt_path.exists():
            raise CLIError(f"--resume: there is no checkpoint to resume in {args.out}; run without --resume to start")
        resume = load_checkpoint(ckpt_path)
        config, run = resumed_settings(args, resume, device, data_sha256)
    elif ckpt_path.exists():
        raise CLIError(f"{args.out} already holds a checkpoint; add --resume to continue it, or choose another --out")
    else:
        flags = {name: getattr(args, name) for name in SHAKESPEARE}
        config, run = train.text_settings(splits, device, data_sha256, args.steps, **flags)
    if note := precision.warning(run.dtype, device):
        print(f"microgpt: warning: {note}", file=sys.stderr)
    precision.set_matmul_precision(device, run.dtype)
    if run.batch_size % (world * run.grad_accum):
        parts = [f"{world} processes"] * (world > 1) + [f"{run.grad_accum} micro-batches"] * (run.grad_accum > 1)
        raise CLIError(f"--batch-size {run.batch_size} does not split evenly across {' x '.join(parts)}; "
                       f"use a multiple of {world * run.grad_accum}")
    memory.check_fits(config, run.batch_size // (world * run.grad_accum), device)
    if distributed.is_main():
        make_out(Path(args.out))
    print(f"text: {len(splits.train):,} training and {len(splits.val):,} validation characters, "
          f"vocab size {splits.tokenizer.vocab_size}")
    print(f"model: {memory.param_count(config):,} parameters, {config}, device {device}, dtype {run.dtype}")
    print(f"run: {run.steps} steps of {run.batch_size} x {config.block_size} characters"
          + (f" ({world} processes, {run.batch_size // world} blocks each)" if world > 1 else "")
          + (f" in {run.grad_accum} micro-batches of {run.batch_size // (world * run.grad_accum)}"
             if run.grad_accum > 1 else "")
          + (f", resuming after step {resume['step']}" if resume else ""))
    distributed.init(device)
    try:
        result = train.train_text(splits, config, run, args.out, device=device, eval_interval=args.eval_interval,
                                  ckpt_interval=args.ckpt_interval, log_interval=args.log_interval, resume=resume,
                                  progress=not args.quiet)
    finally:
        distributed.cleanup()
    if result.val_loss is not None:
        print(f"val loss {result.val_loss:.4f}")
    print(f"wrote {ckpt_path} and {Path(args.out) / 'metrics.jsonl'}")
    print_summary(result.steps_run, result.seconds, result.tokens)


def add_shakespeare_parser(datasets) -> None:
    """``microgpt train shakespeare`` and its flags."""
    p = datasets.add_parser(
        "shakespeare", help="an 836K-parameter GPT on tiny-shakespeare",
        description="Train a character-level GPT on tiny-shakespeare (last 10% held out for validation), "
                    "writing OUT/ckpt.pt and OUT/metrics.jsonl. With --resume, settings come from the checkpoint. "
                    "Under torchrun, each process trains a replica on its share of every batch (data parallel).",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for ckpt.pt and metrics.jsonl")
    p.add_argument("--resume", action="store_true", help="continue the run whose checkpoint is in --out")
    p.add_argument("--steps", type=positive_int, help=f"training steps (default {SHAKESPEARE_EPOCHS} epochs)")
    p.add_argument("--batch-size", type=positive_int,
                   help=f"blocks per step, all torchrun processes together (default {SHAKESPEARE['batch_size']})")
    p.add_argument("--block-size", type=positive_int, help=f"context length (default {SHAKESPEARE['block_size']})")
    p.add_argument("--n-embd", type=positive_int, help=f"embedding width (default {SHAKESPEARE['n_embd']})")
    p.add_argument("--n-head", type=positive_int, help=f"attention heads (default {SHAKESPEARE['n_head']})")
    p.add_argument("--n-layer", type=positive_int, help=f"transformer blocks (default {SHAKESPEARE['n_layer']})")
    p.add_argument("--lr", type=positive_float, help=f"peak learning rate (default {SHAKESPEARE['lr']})")
    p.add_argument("--warmup", type=warmup_value,
                   help=f"warmup: a number of steps (100) or a fraction of the run (0.05) "
                        f"(default {SHAKESPEARE['warmup']})")
    p.add_argument("--grad-accum", type=positive_int, metavar="N",
                   help="split each process's share of a batch into N micro-batches whose gradients add up before "
                        "one update: the same step in less memory (default 1)")
    p.add_argument("--dropout", type=dropout_rate,
                   help=f"fraction of activations zeroed while training (default {SHAKESPEARE['dropout']})")
    p.add_argument("--seed", type=int, help=f"random seed (default {SHAKESPEARE['seed']})")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"],
                   help="compute precision; auto: bfloat16 where the hardware does it natively, float16 on "
                        "older CUDA GPUs, else float32 (default auto; microgpt doctor says why)")
    p.add_argument("--eval-interval", type=non_negative_int, default=200, metavar="N",
                   help="validation loss every N steps and at the end, 0 for none (default %(default)s)")
    p.add_argument("--ckpt-interval", type=non_negative_int, default=200, metavar="N",
                   help="checkpoint every N steps, 0 for only at the end (default %(default)s)")
    p.add_argument("--log-interval", type=positive_int, default=50, metavar="N",
                   help="fetch losses from the device and write metrics.jsonl every N steps (one record per step; "
                        "default %(default)s)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: $MICROGPT_DEVICE or auto)")
    p.add_argument("--data", metavar="FILE", help="your own text file instead of tiny-shakespeare (no checksum)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_train_shakespeare)


def cmd_sample(args: argparse.Namespace) -> None:
    """``microgpt sample``: names stop at BOS; text always runs to ``--max-chars``."""
    import torch  # here, not at the top: see train_names_torch

    from microgpt.checkpoint import load_checkpoint, model_from, tokenizer_from
    from microgpt.device import pick_device
    from microgpt.sample import generate

    ckpt = load_checkpoint(args.checkpoint)
    device = pick_device(args.device)
    model, tok = model_from(ckpt, device), tokenizer_from(ckpt)
    names = ckpt["dataset"] == "names"
    prompt = args.prompt or ""
    try:
        ids = ([tok.bos] if names else []) + tok.encode(prompt or ("" if names else "\n"))
    except ValueError as err:
        raise CLIError(f"--prompt: {err}") from None
    max_chars = args.max_chars or (model.config.block_size if names else 500)
    num = args.num_samples or (20 if names else 1)
    generator = torch.Generator(device).manual_seed(args.seed)
    temperature = args.temperature or (0.5 if names else 0.8)
    rows = generate(model, torch.tensor([ids] * num, device=device), max_chars, temperature,
                    args.top_k, generator, stop_token=tok.bos if names else None, banned=None if names else tok.bos,
                    top_p=args.top_p)
    texts = []
    for row in rows.tolist():
        texts.append(prompt + tok.decode(row[: row.index(tok.bos)] if tok.bos in row else row))
    if names:
        print_samples(texts)
    for i, text in enumerate([] if names else texts, 1):
        print(f"--- sample {i} ---\n{text}")


def add_sample_parser(commands) -> None:
    """``microgpt sample`` and its flags."""
    p = commands.add_parser(
        "sample", help="print samples from a checkpoint",
        description="Print samples from a names or Shakespeare checkpoint. Names start from BOS and stop at "
                    "BOS; Shakespeare samples continue the prompt (default: a newline) for exactly --max-chars.",
    )
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="a ckpt.pt written by microgpt train")
    p.add_argument("--prompt", help="text the samples start with (every character must be in the vocabulary)")
    p.add_argument("--num-samples", type=positive_int, default=None, help="how many (default: 20 names, 1 text)")
    p.add_argument("--max-chars", type=positive_int, default=None,
                   help="characters to generate (default: the block size for names, 500 for text)")
    p.add_argument("--temperature", type=positive_float, help="sampling temperature (default: 0.5 names, 0.8 text)")
    p.add_argument("--top-k", type=positive_int, default=None, help="sample only from the K likeliest (default: all)")
    p.add_argument("--top-p", type=probability, default=None, metavar="P",
                   help="sample only from the likeliest tokens whose probabilities reach P, in (0, 1] (default: all)")
    p.add_argument("--seed", type=int, default=42, help="random seed (default %(default)s)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: $MICROGPT_DEVICE or auto)")
    p.set_defaults(run=cmd_sample)


def cmd_doctor(args: argparse.Namespace) -> None:
    """``microgpt doctor``: the environment report."""
    from microgpt import doctor

    doctor.main()


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(prog="microgpt", description=__doc__)
    parser.add_argument("--version", action="version", version=f"microgpt {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser("train", help="train a model", description="Train a model.")
    datasets = train.add_subparsers(dest="dataset", required=True, metavar="DATASET")

    names = datasets.add_parser(
        "names", help="the original microgpt: 32K names, 4,192 parameters",
        description="Train the original microgpt on names and print samples. Defaults are the original's.",
    )
    names.add_argument("--engine", choices=["torch", "scalar", "scalar-fused"], default="torch",
                       help="torch: batched PyTorch; scalar: the original's pure-Python engine; scalar-fused: "
                            "the same maths, one node per dot product (default %(default)s)")
    names.add_argument("--batch-size", type=positive_int, default=1,
                       help="names per step, torch engine only (default %(default)s, the original's)")
    names.add_argument("--device", help="torch engine: auto, cpu, cuda, cuda:N or mps "
                                        "(default: $MICROGPT_DEVICE or auto)")
    names.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                       help="torch engine precision (default %(default)s)")
    names.add_argument("--compile", action="store_true",
                       help="torch engine: torch.compile the model and loss (the first step compiles for "
                            "seconds; faster steps after that, so it pays on long runs only)")
    names.add_argument("--out", metavar="DIR", help="torch engine: write DIR/metrics.jsonl and DIR/ckpt.pt")
    names.add_argument("--steps", type=positive_int, default=1000, help="training steps (default %(default)s)")
    names.add_argument("--lr", type=positive_float, default=0.01, help="peak learning rate (default %(default)s)")
    names.add_argument("--seed", type=int, default=42, help="random seed (default %(default)s)")
    add_model_flags(names, block=16, embd=16, head=4, layer=1)
    names.add_argument("--num-samples", type=int, default=20, help="names to sample (default %(default)s)")
    names.add_argument("--temperature", type=positive_float, default=0.5,
                       help="sampling temperature (default %(default)s)")
    names.add_argument("--data", metavar="FILE", help="your own file, one document a line (no checksum)")
    names.add_argument("--log-every", type=positive_int, default=100,
                       help="when output is not a terminal, print a step line this often (default %(default)s)")
    names.set_defaults(run=cmd_train_names)
    add_shakespeare_parser(datasets)
    add_sample_parser(commands)
    commands.add_parser("doctor", help="report Python, torch, devices, precision, threads and data (for bug reports)",
                        description="Print what this machine offers microgpt: Python, torch, each device with "
                                    "what --dtype auto picks there and why, threads, and the datasets.",
                        ).set_defaults(run=cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; errors are one line on stderr and a non-zero exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (CLIError, DataError, ValueError, OSError, MemoryError) as err:
        if not isinstance(err, CLIError) or os.environ.get("RANK", "0") == "0":  # torchrun: say it once, not N times
            print(f"microgpt: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("microgpt: interrupted", file=sys.stderr)
        return 130
    return 0
