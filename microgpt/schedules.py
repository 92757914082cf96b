"""Learning-rate schedules: the original's linear decay for names, warmup then cosine
for text.
"""

from __future__ import annotations

import math


def linear_decay(step: int, steps: int, lr: float) -> float:
    """The original's schedule: ``lr`` at step 0, falling linearly towards 0 at
    ``steps``.
    """
    return lr * (1 - step / steps)


def warmup_cosine(
    step: int, steps: int, lr: float, warmup: int, final_ratio: float = 0.01
) -> float:
    """Learning rate at 0-based ``step``: linear warmup, then cosine decay to
    ``final_ratio * lr``.
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (
        final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    )
