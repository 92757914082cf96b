"""What several test files share: the command line as a user runs it, and the tiny run
most training tests use.
"""

import subprocess
import sys

from microgpt.config import TrainConfig


def run_microgpt(
    *args,
    module: str = "microgpt",
    env: dict | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
    """``python -m microgpt ARGS`` (or another ``module``) as a user runs it, with its
    output captured as text.
    """
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def tiny_run(**settings) -> TrainConfig:
    """A run of the 1-layer, 16-wide test model, in float32 unless ``settings`` say
    otherwise (so it trains the same on a CPU with bfloat16 instructions).
    """
    shape = {"block_size": 16, "n_layer": 1, "n_embd": 16, "n_head": 2}
    return TrainConfig(**{**shape, "dtype": "float32", **settings})
