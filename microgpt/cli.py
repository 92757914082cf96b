"""The ``microgpt`` command line: train a model, print samples."""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence

from microgpt import __version__
from microgpt.config import GPTConfig
from microgpt.data import DataError, load_names
from microgpt.tokenizer import CharTokenizer


class CLIError(Exception):
    """A mistake in what the user asked for, reported as one line."""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a float > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
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
    from microgpt import scalar

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


def cmd_train_names(args: argparse.Namespace) -> None:
    """``microgpt train names``."""
    docs = load_names(args.data)
    if max(len(doc) for doc in docs) + 1 > args.block_size:
        print(f"note: documents longer than {args.block_size - 1} characters are cut to the block size",
              file=sys.stderr)
    if args.engine in ("scalar", "scalar-fused"):
        train_names_scalar(args, docs)
    else:
        raise CLIError(f"engine {args.engine!r} is not available yet")


def add_model_flags(p: argparse.ArgumentParser, block: int, embd: int, head: int, layer: int) -> None:
    """Flags that set the model's shape."""
    p.add_argument("--block-size", type=positive_int, default=block, help="context length (default %(default)s)")
    p.add_argument("--n-embd", type=positive_int, default=embd, help="embedding width (default %(default)s)")
    p.add_argument("--n-head", type=positive_int, default=head, help="attention heads (default %(default)s)")
    p.add_argument("--n-layer", type=positive_int, default=layer, help="transformer blocks (default %(default)s)")


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
    names.add_argument("--engine", choices=["scalar", "scalar-fused"], default="scalar",
                       help="scalar: the original's pure-Python engine; scalar-fused: the same maths, "
                            "one node per dot product (default %(default)s)")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; errors are one line on stderr and a non-zero exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (CLIError, DataError, ValueError) as err:
        print(f"microgpt: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("microgpt: interrupted", file=sys.stderr)
        return 130
    return 0
