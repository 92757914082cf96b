"""The hyper-parameters that fix a GPT's shape, shared by the scalar and the torch
model, and those of a Shakespeare training run.
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


# the default run's length, in passes over the training text
EPOCHS = 15


@dataclass(frozen=True)
class TrainConfig:
    """Everything that fixes a run of ``microgpt train shakespeare``: the model's shape
    and the run's settings, each default stated once, here.

    The command line's flags override it with ``dataclasses.replace``, and a resume
    must match the checkpoint's. Three defaults depend on the text and the machine:
    ``steps`` 0 is ``EPOCHS`` passes over the training text, a float ``warmup`` is a
    fraction of the run (0.05: its first 5%) and ``dtype`` "auto" is what the device
    computes natively; ``train.resolved`` turns them into numbers.
    """

    # the model (its vocabulary comes from the text)
    block_size: int = 256
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    # the run
    steps: int = 0
    batch_size: int = 32
    lr: float = 4e-3
    warmup: int | float = 100
    seed: int = 1337
    dtype: str = "auto"
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    grad_accum: int = 1
    dropout: float = 0.0
    data_sha256: str = ""

    def model(self, vocab_size: int) -> GPTConfig:
        """The shape of the GPT this run trains, for a vocabulary of ``vocab_size``."""
        return GPTConfig(
            vocab_size, self.block_size, self.n_layer, self.n_embd, self.n_head
        )

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> TrainConfig:
        """The run that wrote a checkpoint: its ``config`` (the shape) and ``run``."""
        shape = {k: v for k, v in ckpt["config"].items() if k != "vocab_size"}
        return cls(**{**shape, **ckpt["run"]})
