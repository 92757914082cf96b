"""The first 200 steps of the default tiny-shakespeare run under three
initialisations, two seeds each.

Run from the repository root: ``python book/results/init_comparison/run.py
[INIT ...] [--seeds 1337 1338]`` (about 3 minutes a run on an idle core; start
one process per init to run them side by side). Each run writes
``INIT_seedSEED.json`` beside this file (the loss and the gradient norm before
clipping of every step, rewritten every 10 steps); ``summary.json`` says how
the runs were made.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

from microgpt.config import EPOCHS, GPTConfig, TrainConfig
from microgpt.data import load_shakespeare
from microgpt.model import GPT
from microgpt.text import batches_per_epoch, get_batch, split_text
from microgpt.train import lm_loss, warmup_cosine

# each run file holds the steps it has done so far
STEPS, SEEDS, THREADS = (
    200,
    (1337, 1338),
    1,
)


def init_original(model: GPT) -> None:
    """Every weight ~ N(0, 0.08), the names model's init, at any width."""
    for p in model.parameters():
        torch.nn.init.normal_(p, 0.0, 0.08)


def init_width(model: GPT) -> None:
    """Every weight ~ N(0, 0.32 / sqrt(n_embd)): 0.08 at width 16, smaller as
    the model widens.
    """
    for p in model.parameters():
        torch.nn.init.normal_(p, 0.0, 0.32 / math.sqrt(model.config.n_embd))


def init_gpt2(model: GPT) -> None:
    """GPT-2's: N(0, 0.02), the projections back into the residual stream /
    sqrt(2 n_layer).
    """
    for name, p in model.named_parameters():
        residual = name.endswith(("attn.wo.weight", "mlp.fc2.weight"))
        torch.nn.init.normal_(
            p,
            0.0,
            0.02 / math.sqrt(2 * model.config.n_layer) if residual else 0.02,
        )


# the default run's settings
DEFAULT = TrainConfig()

INITS = {"original": init_original, "width": init_width, "gpt2": init_gpt2}


def run(
    splits,
    config: GPTConfig,
    init,
    seed: int,
    total_steps: int,
    steps: int,
    save,
) -> dict:
    """The default run's first ``steps`` steps (its lr schedule, AdamW,
    clipping) in float32; ``save`` every 10.
    """
    torch.manual_seed(seed)
    model = GPT(config, attention="sdpa")
    init(model)
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=DEFAULT.lr,
        betas=(0.9, 0.99),
        weight_decay=0.1,
    )
    losses, norms = [], []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = warmup_cosine(
                step, total_steps, DEFAULT.lr, DEFAULT.warmup
            )
        x, y = get_batch(
            splits.train,
            step,
            seed,
            config.block_size,
            DEFAULT.batch_size,
        )
        loss = lm_loss(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norms.append(
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0).item()
        )
        opt.step()
        losses.append(loss.item())
        if (step + 1) % 10 == 0 or step + 1 == steps:
            save({"loss": losses, "grad_norm": norms})
    return {"loss": losses, "grad_norm": norms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "inits", nargs="*", choices=sorted(INITS), default=sorted(INITS)
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    splits = split_text(load_shakespeare())
    s, here = DEFAULT, Path(__file__).parent
    config = s.model(splits.tokenizer.vocab_size)
    total = EPOCHS * batches_per_epoch(
        len(splits.train), config.block_size, s.batch_size
    )
    summary = {
        "how": (
            "book/results/init_comparison/run.py: "
            f"the first steps of the default run's {total} "
            f"(batch {s.batch_size} x {s.block_size}, "
            f"peak lr {s.lr}, warmup {s.warmup}, "
            "AdamW betas (0.9, 0.99), wd 0.1, clip 1.0), "
            f"float32, {THREADS} thread"
        ),
        "machine": (
            f"{platform.machine()}, torch {torch.__version__}, "
            f"{THREADS} thread, shared with other jobs (losses only, no times)"
        ),
        # each docstring on one line, however the source wraps it
        "inits": {
            name: " ".join(INITS[name].__doc__.split()) for name in INITS
        },
        "vocab_size": splits.tokenizer.vocab_size,
        "files": (
            "INIT_seedSEED.json: loss and grad_norm (before clipping) "
            "of each step done, and the date"
        ),
    }
    (here / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    for name in args.inits:
        for seed in args.seeds:
            began, path = time.time(), here / f"{name}_seed{seed}.json"
            date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(began))

            def save(result, path=path, date=date):
                path.write_text(json.dumps({**result, "date": date}) + "\n")

            run(splits, config, INITS[name], seed, total, args.steps, save)
            print(f"{name} seed {seed}: {time.time() - began:.0f} s")


if __name__ == "__main__":
    main()
