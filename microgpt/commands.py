"""What every command shares, and the names run on Part I's engine: pure Python, no
PyTorch.

A mistake in what the user asked for is a :class:`CLIError`, which the command line
prints as one line. ``--out`` is checked before any work and created only once every
other check has passed, so a failed command writes nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from microgpt import scalar
from microgpt.config import GPTConfig
from microgpt.tokenizer import CharTokenizer

# torch's CPU threads where every tensor is small: the names model (16-wide matrices)
# and sampling (one token at a time). Work that small does not share out across cores:
# more threads only wait on each other, and on whatever else the machine runs.
# ``--threads N`` overrides it; Shakespeare's training keeps torch's own number.
SMALL_WORK_THREADS = 1


class CLIError(Exception):
    """A mistake in what the user asked for, reported as one line."""


def check_out(out: Path) -> None:
    """``--out`` must be a folder, or one that can be made, in a writable place; checked
    before any work.
    """
    existing = next(p for p in [out, *out.parents] if p.exists())
    if not existing.is_dir():
        raise CLIError(f"--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"--out {out}: cannot write in {existing}")


def make_out(out: Path) -> None:
    """Create the ``--out`` folder (once every other check has passed); failing is a
    one-line error.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(
            f"--out {out}: cannot create it ({err.strerror or err})"
        ) from None


def step_printer(
    steps: int, every: int, exact: bool = False
) -> Callable[[int, float], None]:
    """Print the original's step line: in place on a terminal, every ``every`` steps
    otherwise.

    ``exact`` prints the loss with every digit (its ``repr``) instead of four decimals.
    """
    tty = sys.stdout.isatty()
    # on a terminal, each line covers the longest one before it (an exact loss varies in
    # length)
    width = 0

    def show(step: int, loss: float) -> None:
        nonlocal width
        value = repr(loss) if exact else f"{loss:.4f}"
        line = f"step {step + 1:4d} / {steps:4d} | loss {value}"
        if tty:
            width = max(width, len(line))
            print(
                line.ljust(width), end="\n" if step + 1 == steps else "\r", flush=True
            )
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


def start_names(
    args: argparse.Namespace, docs: list[str]
) -> tuple[random.Random, CharTokenizer, GPTConfig]:
    """Shuffle the names with ``--seed``, build the tokenizer and the model's shape;
    print the original's first lines.

    Every engine starts here, so all of them see the same order, vocabulary and random
    stream.
    """
    rng = random.Random(args.seed)
    rng.shuffle(docs)
    tok = CharTokenizer.from_docs(docs)
    print(f"num docs: {len(docs)}")
    print(f"vocab size: {tok.vocab_size}")
    return (
        rng,
        tok,
        GPTConfig(
            tok.vocab_size, args.block_size, args.n_layer, args.n_embd, args.n_head
        ),
    )


def train_names_scalar(args: argparse.Namespace, docs: list[str]) -> None:
    """The original microgpt, on the pure-Python engine (atomic or fused)."""
    rng, tok, config = start_names(args, docs)
    model = scalar.ScalarGPT.init(config, rng, fused=args.engine == "scalar-fused")
    print(f"num params: {len(model.params)}")
    encoded = [tok.wrap(doc) for doc in docs]
    start = time.perf_counter()
    scalar.train(
        model,
        encoded,
        args.steps,
        args.lr,
        step_printer(args.steps, args.log_every, args.exact_loss),
    )
    seconds = time.perf_counter() - start
    tokens = sum(
        min(len(encoded[s % len(encoded)]) - 1, config.block_size)
        for s in range(args.steps)
    )
    print_summary(args.steps, seconds, tokens)
    print_samples(
        [
            tok.decode(scalar.generate(model, rng, args.temperature))
            for _ in range(args.num_samples)
        ]
    )
