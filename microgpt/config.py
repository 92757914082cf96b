"""The hyper-parameters that fix a GPT's shape, shared by the scalar and the torch
model, and the runs' defaults.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a GPT: vocabulary, context length, depth, width and heads (the
    original's defaults).
    """

    vocab_size: int
    block_size: int = 16
    n_layer: int = 1
    n_embd: int = 16
    n_head: int = 4

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_embd", "n_head"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"GPTConfig.{name} must be a positive integer, got {value!r}"
                )
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}) "
                "so that every head gets the same width"
            )

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.n_embd // self.n_head


# `microgpt train shakespeare`'s defaults: the 836K-parameter model's shape and its
# run's settings.
SHAKESPEARE = {
    "block_size": 256,
    "n_embd": 128,
    "n_head": 4,
    "n_layer": 4,
    "batch_size": 32,
    "lr": 4e-3,
    "warmup": 100,
    "seed": 1337,
    "dtype": "auto",
    "grad_accum": 1,
    "dropout": 0.0,
}
SHAKESPEARE_EPOCHS = 15  # the default run's length, in passes over the training text
