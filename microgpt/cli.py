"""The ``microgpt`` command line: train a model, print samples, describe the machine.

This module is pure Python, as Part I is: the parser, the checks every command shares,
and the names run on the scalar engine. The commands that need PyTorch live in
:mod:`microgpt.cli_torch`, imported only when one of them runs, so the scalar
commands work where torch is not installed.

A mistake in what the user asked for is a :class:`CLIError`, printed as one line.
``--out`` is checked before any work and created only once every other check has
passed, so a failed command writes nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from microgpt import __version__, scalar
from microgpt.config import EPOCHS, GPTConfig, TrainConfig
from microgpt.data import CharTokenizer, DataError, load_names

# --- what every command shares --------------------------------------------------------


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


# --- names on the scalar engine -------------------------------------------------------


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


# --- the parser: flags, their checks, the commands ------------------------------------


def as_number(kind: type, text: str) -> int | float:
    """``kind(text)``; text that is no number gets argparse's usual "invalid int
    value" error.
    """
    try:
        return kind(text)
    except ValueError:
        message = f"invalid {kind.__name__} value: {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def require(ok: bool, rule: str, text: str) -> None:
    """An argparse error saying what the value ``text`` must be, unless ``ok``."""
    if not ok:
        raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = as_number(int, text)
    require(value >= 1, ">= 1", text)
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = as_number(int, text)
    require(value >= 0, ">= 0", text)
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    value = as_number(float, text)
    require(value > 0, "> 0", text)
    return value


def dropout_rate(text: str) -> float:
    """argparse type: a fraction in [0, 1)."""
    value = as_number(float, text)
    require(0 <= value < 1, "in [0, 1)", text)
    return value


def probability(text: str) -> float:
    """argparse type: a probability in (0, 1]."""
    value = as_number(float, text)
    require(0 < value <= 1, "in (0, 1]", text)
    return value


def warmup_value(text: str) -> int | float:
    """argparse type: warmup steps (an integer >= 0) or a fraction of the run's steps
    (0 <= f < 1, e.g. 0.05).
    """
    try:
        steps = int(text)
    except ValueError:
        fraction = as_number(float, text)
        rule = "a whole number of steps or a fraction in [0, 1)"
        require(0 <= fraction < 1, rule, text)
        return fraction
    require(steps >= 0, ">= 0", text)
    return steps


def cmd_train_names(args: argparse.Namespace) -> None:
    """``microgpt train names``."""
    if args.engine != "torch":
        torch_only = {
            "--batch-size": args.batch_size != 1,
            "--device": args.device,
            "--out": args.out,
            "--dtype": args.dtype != "float32",
            "--compile": args.compile,
            "--threads": args.threads is not None,
        }
        used = [flag for flag, given in torch_only.items() if given]
        if used:
            raise CLIError(
                f"{', '.join(used)}: only with --engine torch "
                "(the scalar engines run one name at a time)"
            )
    docs = load_names(args.data)
    if max(len(doc) for doc in docs) + 1 > args.block_size:
        print(
            f"note: documents longer than {args.block_size - 1} characters "
            "are cut to the block size",
            file=sys.stderr,
        )
    if args.engine == "torch":
        # Imported here, not at the top: the scalar engines (and --help) must run where
        # PyTorch is not installed.
        from microgpt import cli_torch

        cli_torch.train_names_torch(args, docs)
    else:
        train_names_scalar(args, docs)


def cmd_train_shakespeare(args: argparse.Namespace) -> None:
    """``microgpt train shakespeare``."""
    from microgpt import cli_torch  # PyTorch: see cmd_train_names

    cli_torch.train_shakespeare(args)


def cmd_sample(args: argparse.Namespace) -> None:
    """``microgpt sample``."""
    from microgpt import cli_torch  # PyTorch: see cmd_train_names

    cli_torch.sample_checkpoint(args)


def cmd_doctor(args: argparse.Namespace) -> None:
    """``microgpt doctor``: the environment report."""
    from microgpt import doctor  # PyTorch: see cmd_train_names

    doctor.main()


SMALL_WORK = "too small to share out across cores: more threads wait on each other"


def add_model_flags(
    p: argparse.ArgumentParser, block: int, embd: int, head: int, layer: int
) -> None:
    """Flags that set the model's shape."""
    p.add_argument(
        "--block-size",
        type=positive_int,
        default=block,
        help="context length (default %(default)s)",
    )
    p.add_argument(
        "--n-embd",
        type=positive_int,
        default=embd,
        help="embedding width (default %(default)s)",
    )
    p.add_argument(
        "--n-head",
        type=positive_int,
        default=head,
        help="attention heads (default %(default)s)",
    )
    p.add_argument(
        "--n-layer",
        type=positive_int,
        default=layer,
        help="transformer blocks (default %(default)s)",
    )


def add_engine_flags(p: argparse.ArgumentParser) -> None:
    """``microgpt train names``: which engine runs the model, and how the torch one
    runs it.
    """
    p.add_argument(
        "--engine",
        choices=["torch", "scalar", "scalar-fused"],
        default="torch",
        help="torch: batched PyTorch; scalar: the original's pure-Python engine; "
        "scalar-fused: the same maths, one node per dot product "
        "(default %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=1,
        help="names per step, torch engine only (default %(default)s, the original's)",
    )
    p.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float32",
        help="torch engine precision (default %(default)s)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch engine: torch.compile the model and loss (the first step "
        "compiles for seconds; faster steps after that, so it pays on long runs "
        "only)",
    )


def add_torch_machine_flags(p: argparse.ArgumentParser) -> None:
    """``microgpt train names``: where the torch engine runs and what it writes."""
    p.add_argument(
        "--device",
        help="torch engine: auto, cpu, cuda, cuda:N or mps "
        "(default: $MICROGPT_DEVICE or auto)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help=f"torch engine: CPU threads (default {SMALL_WORK_THREADS}: "
        f"16-wide matrices are {SMALL_WORK})",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="torch engine: write DIR/metrics.jsonl and DIR/ckpt.pt",
    )


def add_names_output_flags(p: argparse.ArgumentParser) -> None:
    """``microgpt train names``: what it prints, the samples and the step lines."""
    p.add_argument(
        "--num-samples",
        type=int,
        default=20,
        help="names to sample (default %(default)s)",
    )
    p.add_argument(
        "--temperature",
        type=positive_float,
        default=0.5,
        help="sampling temperature (default %(default)s)",
    )
    p.add_argument(
        "--log-every",
        type=positive_int,
        default=100,
        help="when output is not a terminal, print a step line this often "
        "(default %(default)s)",
    )
    p.add_argument(
        "--exact-loss",
        action="store_true",
        help="print each step's loss with every digit (its repr), to compare two "
        "runs bit for bit",
    )


def add_names_parser(datasets) -> None:
    """``microgpt train names`` and its flags: the original's settings by default."""
    names = datasets.add_parser(
        "names",
        help="the original microgpt: 32K names, 4,192 parameters",
        description="Train the original microgpt on names and print samples. "
        "Defaults are the original's.",
    )
    add_engine_flags(names)
    add_torch_machine_flags(names)
    names.add_argument(
        "--steps",
        type=positive_int,
        default=1000,
        help="training steps (default %(default)s)",
    )
    names.add_argument(
        "--lr",
        type=positive_float,
        default=0.01,
        help="peak learning rate (default %(default)s)",
    )
    names.add_argument(
        "--seed", type=int, default=42, help="random seed (default %(default)s)"
    )
    add_model_flags(names, block=16, embd=16, head=4, layer=1)
    names.add_argument(
        "--data",
        metavar="FILE",
        help="your own file, one document a line (no checksum)",
    )
    add_names_output_flags(names)
    names.set_defaults(run=cmd_train_names)


# the defaults `microgpt train shakespeare --help` shows
DEFAULTS = TrainConfig()

# The flags that set a field of TrainConfig, named after it (``given_settings`` reads
# them back by name): flag, type, what the field is.
RUN_FLAGS = (
    ("--batch-size", positive_int, "blocks per step, all torchrun processes together"),
    ("--block-size", positive_int, "context length"),
    ("--n-embd", positive_int, "embedding width"),
    ("--n-head", positive_int, "attention heads"),
    ("--n-layer", positive_int, "transformer blocks"),
    ("--lr", positive_float, "peak learning rate"),
    (
        "--warmup",
        warmup_value,
        "warmup: a number of steps (100) or a fraction of the run (0.05)",
    ),
    (
        "--grad-accum",
        positive_int,
        "micro-batches per process and step, whose gradients add up before one "
        "update: the same step in less memory",
    ),
    ("--dropout", dropout_rate, "fraction of activations zeroed while training"),
    ("--seed", int, "random seed"),
)


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """The flags that override :class:`TrainConfig`, each help giving its default.

    A flag not given is None, so a fresh run takes the default and a resumed one the
    checkpoint's value.
    """
    p.add_argument(
        "--steps",
        type=positive_int,
        help=f"training steps (default {EPOCHS} epochs)",
    )
    for flag, kind, what in RUN_FLAGS:
        default = getattr(DEFAULTS, flag[2:].replace("-", "_"))
        p.add_argument(flag, type=kind, help=f"{what} (default {default})")
    p.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="compute precision; auto: bfloat16 where the hardware does it natively, "
        "float16 on older CUDA GPUs, else float32 "
        f"(default {DEFAULTS.dtype}; microgpt doctor says why)",
    )


def add_interval_flags(p: argparse.ArgumentParser) -> None:
    """How often a run evaluates, saves and logs: not part of the run, so a resume
    may change them.
    """
    p.add_argument(
        "--eval-interval",
        type=non_negative_int,
        default=200,
        metavar="N",
        help="validation loss every N steps and at the end, 0 for none "
        "(default %(default)s)",
    )
    p.add_argument(
        "--ckpt-interval",
        type=non_negative_int,
        default=200,
        metavar="N",
        help="checkpoint every N steps, 0 for only at the end (default %(default)s)",
    )
    p.add_argument(
        "--log-interval",
        type=positive_int,
        default=50,
        metavar="N",
        help="fetch losses from the device and write metrics.jsonl every N steps "
        "(one record per step; default %(default)s)",
    )


def add_shakespeare_parser(datasets) -> None:
    """``microgpt train shakespeare`` and its flags."""
    p = datasets.add_parser(
        "shakespeare",
        help="an 836K-parameter GPT on tiny-shakespeare",
        description="Train a character-level GPT on tiny-shakespeare (last 10% held "
        "out for validation), writing OUT/ckpt.pt, OUT/best.pt and OUT/metrics.jsonl. "
        "With --resume, settings come from the checkpoint. Under torchrun, each "
        "process trains a replica on its share of every batch (data parallel).",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="folder for ckpt.pt, best.pt and metrics.jsonl",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run whose checkpoint is in --out",
    )
    add_run_flags(p)
    add_interval_flags(p)
    p.add_argument(
        "--device",
        help="auto, cpu, cuda, cuda:N or mps (default: $MICROGPT_DEVICE or auto)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="torch CPU threads per process (default: torch's own, $OMP_NUM_THREADS "
        "or one per core; torchrun sets OMP_NUM_THREADS=1 when it starts several "
        "processes; microgpt doctor says how many). On a machine busy with other "
        "work, fewer can be faster",
    )
    p.add_argument(
        "--data",
        metavar="FILE",
        help="your own text file instead of tiny-shakespeare (no checksum)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_train_shakespeare)


def add_sampling_flags(p: argparse.ArgumentParser) -> None:
    """``microgpt sample``: how the samples start, how long and how random they are."""
    p.add_argument(
        "--prompt",
        help="text the samples start with (every character must be in the vocabulary)",
    )
    p.add_argument(
        "--num-samples",
        type=positive_int,
        default=None,
        help="how many (default: 20 names, 1 text)",
    )
    p.add_argument(
        "--max-chars",
        type=positive_int,
        default=None,
        help="characters to generate (default: the block size for names, 500 for text)",
    )
    p.add_argument(
        "--temperature",
        type=positive_float,
        help="sampling temperature (default: 0.5 names, 0.8 text)",
    )
    p.add_argument(
        "--top-k",
        type=positive_int,
        default=None,
        help="sample only from the K likeliest (default: all)",
    )
    p.add_argument(
        "--top-p",
        type=probability,
        default=None,
        metavar="P",
        help="sample only from the likeliest tokens whose probabilities reach P, "
        "in (0, 1] (default: all)",
    )


def add_sample_parser(commands) -> None:
    """``microgpt sample`` and its flags."""
    p = commands.add_parser(
        "sample",
        help="print samples from a checkpoint",
        description="Print samples from a names or Shakespeare checkpoint. Names start "
        "from BOS and stop at BOS; Shakespeare samples continue the prompt (default: "
        "a newline) for exactly --max-chars.",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="PATH",
        help="a ckpt.pt written by microgpt train",
    )
    add_sampling_flags(p)
    p.add_argument(
        "--seed", type=int, default=42, help="random seed (default %(default)s)"
    )
    p.add_argument(
        "--device",
        help="auto, cpu, cuda, cuda:N or mps (default: $MICROGPT_DEVICE or auto)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=SMALL_WORK_THREADS,
        metavar="N",
        help="torch CPU threads (default %(default)s: one token at a time is "
        f"{SMALL_WORK})",
    )
    p.set_defaults(run=cmd_sample)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(
        prog="microgpt",
        description="Train the original microgpt on names, or a larger GPT on "
        "tiny-shakespeare; print samples from a checkpoint; report what this "
        "machine offers.",
    )
    parser.add_argument(
        "--version", action="version", version=f"microgpt {__version__}"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser(
        "train", help="train a model", description="Train a model."
    )
    datasets = train.add_subparsers(dest="dataset", required=True, metavar="DATASET")

    add_names_parser(datasets)
    add_shakespeare_parser(datasets)
    add_sample_parser(commands)
    commands.add_parser(
        "doctor",
        help="report Python, torch, devices, precision, threads and data "
        "(for bug reports)",
        description="Print what this machine offers microgpt: Python, torch, each "
        "device with what --dtype auto picks there and why, threads, and the "
        "datasets.",
    ).set_defaults(run=cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; errors are one line on stderr and a non-zero exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (CLIError, DataError, ValueError, OSError, MemoryError) as err:
        # torchrun: say it once, not N times
        if not isinstance(err, CLIError) or os.environ.get("RANK", "0") == "0":
            print(f"microgpt: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("microgpt: interrupted", file=sys.stderr)
        return 130
    return 0
