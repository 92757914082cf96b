"""Memory: how many bytes training a model needs, and how many the device has free,
checked before allocating.
"""

from __future__ import annotations

import torch

from microgpt.config import GPTConfig


def param_count(config: GPTConfig) -> int:
    """The model's parameters, counted from its shape: embeddings, lm_head and 12
    n_embd^2 per layer.
    """
    d = config.n_embd
    return (2 * config.vocab_size + config.block_size) * d + 12 * config.n_layer * d * d


def training_bytes(config: GPTConfig, batch_size: int) -> int:
    """A rough upper estimate of training memory in float32: weights, gradients, two
    Adam moments, activations.

    Activations: about 20 saved tensors of ``batch x block x n_embd`` per layer, the
    logits (with their gradient and softmax) and the attention scores where an explicit
    mask materialises them.
    """
    c, tokens = config, batch_size * config.block_size
    weights = 4 * param_count(c) * 4
    activations = 4 * tokens * (20 * c.n_layer * c.n_embd + 3 * c.vocab_size)
    scores = 4 * 2 * batch_size * c.n_head * c.block_size**2 * c.n_layer
    return weights + activations + scores


def free_bytes(device: torch.device) -> int | None:
    """Bytes free on ``device``: CUDA's own count, the OS's available memory for the
    CPU, None if unknown.
    """
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                return next(
                    int(line.split()[1]) * 1024
                    for line in f
                    if line.startswith("MemAvailable:")
                )
        except (OSError, StopIteration, ValueError):
            return None  # not Linux: unknown, and not checked
    return None


def gib(n: int) -> str:
    """Bytes as GiB with one decimal."""
    return f"{n / 2**30:,.1f} GiB"


def check_fits(config: GPTConfig, batch_size: int, device: torch.device) -> None:
    """A MemoryError (one line, before anything is allocated) if training would not fit
    in ``device``'s memory.
    """
    need, free = training_bytes(config, batch_size), free_bytes(device)
    if free is not None and need > free:
        raise MemoryError(
            f"this model needs about {gib(need)} to train "
            f"({param_count(config):,} parameters, batch {batch_size} x "
            f"{config.block_size}) but {device} has {gib(free)} free; "
            "make it smaller (--n-embd, --n-layer, --block-size) or lower --batch-size"
        )
