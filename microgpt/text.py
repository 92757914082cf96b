"""Chapter 9: tiny-shakespeare as training data: one long text, split once, cut into
blocks.

The text is encoded once. Each epoch cuts the training ids into blocks from a random
offset and shuffles their order, both drawn from the seed, so a batch is a pure function
of the step and the seed and a resumed run sees exactly the batches it would have seen.
Validation reads every held-out block, in order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from microgpt.data import CharTokenizer, DataError


@dataclass(frozen=True)
class TextSplits:
    """A text encoded once: its tokenizer, the training ids and the held-out validation
    ids.
    """

    tokenizer: CharTokenizer
    train: torch.Tensor
    val: torch.Tensor


def split_text(text: str, val_fraction: float = 0.1) -> TextSplits:
    """Encode ``text`` once and hold out its last ``val_fraction`` for validation."""
    tokenizer = CharTokenizer.from_docs([text])
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    n_val = int(len(ids) * val_fraction)
    return TextSplits(tokenizer, ids[: len(ids) - n_val], ids[len(ids) - n_val :])


def examples_per_epoch(n_tokens: int, block_size: int) -> int:
    """How many block-sized (input, target) examples fit in ``n_tokens`` at any chunk
    offset.
    """
    return max(0, (n_tokens - block_size) // block_size)


def batches_per_epoch(n_tokens: int, block_size: int, batch_size: int) -> int:
    """Full mini-batches per epoch (the last, partial one is dropped); 0 if the text is
    too short for one.
    """
    return examples_per_epoch(n_tokens, block_size) // batch_size


def check_one_batch(n_tokens: int, block_size: int, batch_size: int) -> None:
    """A :class:`DataError` unless ``n_tokens`` of training text hold at least one full
    batch.
    """
    if batches_per_epoch(n_tokens, block_size, batch_size) == 0:
        raise DataError(
            f"the training text ({n_tokens:,} characters) is too short for one "
            f"batch of {batch_size} x {block_size} characters; lower --batch-size "
            "or --block-size"
        )


def epoch_plan(
    seed: int, epoch: int, n_examples: int, block_size: int
) -> tuple[int, torch.Tensor]:
    """One epoch's random chunk offset and example order: a pure function of its
    arguments.
    """
    generator = torch.Generator().manual_seed(
        random.Random(f"{seed}/{epoch}").getrandbits(63)
    )
    offset = int(torch.randint(block_size, (1,), generator=generator))
    return offset, torch.randperm(n_examples, generator=generator)


def get_batch(
    ids: torch.Tensor, step: int, seed: int, block_size: int, batch_size: int
):
    """Training batch number ``step`` (0-based) as (inputs, targets), each ``batch_size
    x block_size``.
    """
    check_one_batch(len(ids), block_size, batch_size)
    n = examples_per_epoch(len(ids), block_size)
    epoch, index = divmod(step, batches_per_epoch(len(ids), block_size, batch_size))
    offset, order = epoch_plan(seed, epoch, n, block_size)
    rows = order[index * batch_size : (index + 1) * batch_size]
    x = ids[offset : offset + n * block_size].view(n, block_size)
    y = ids[offset + 1 : offset + 1 + n * block_size].view(n, block_size)
    return x[rows], y[rows]


def val_batches(ids: torch.Tensor, block_size: int, batch_size: int):
    """The validation split cut into consecutive blocks, in batches (the same every
    time).
    """
    n = (len(ids) - 1) // block_size
    if n == 0:
        raise DataError(
            f"the validation split ({len(ids)} characters) is shorter than one "
            f"block ({block_size})"
        )
    x = ids[: n * block_size].view(n, block_size)
    y = ids[1 : n * block_size + 1].view(n, block_size)
    return [
        (x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, n, batch_size)
    ]
