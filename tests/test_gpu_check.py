"""The GPU check script's path without a GPU (CI's): doctor runs, the CUDA tests skip,
and it stops cleanly.
"""

import os
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="on a GPU, run tests/gpu/run.sh itself"
)
def test_without_a_gpu_the_script_skips_and_says_so(tmp_path, data_dir):
    done = subprocess.run(
        ["bash", str(REPO / "tests" / "gpu" / "run.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        env={
            "PATH": os.environ["PATH"],
            "MICROGPT_DATA": str(data_dir),
            "HOME": str(tmp_path),
        },
    )
    assert done.returncode == 0, done.stderr
    summary = (tmp_path / "summary.txt").read_text().splitlines()
    assert summary[0].startswith("doctor: exit 0") and summary[1].startswith(
        "cuda_tests: exit 0"
    )
    assert summary[2] == "no CUDA device: the CUDA tests skipped; nothing else to run"
    assert "cuda: none found" in (tmp_path / "doctor.log").read_text()
    assert "skipped" in (tmp_path / "cuda_tests.log").read_text()
