"""Shared test set-up: the datasets come from MICROGPT_DATA (CI points it at ../shared/data)."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The offline data folder; tests that need the real datasets fail loudly without it."""
    path = os.environ.get("MICROGPT_DATA")
    assert path, "set MICROGPT_DATA to the folder holding names.txt and tinyshakespeare.txt"
    return Path(path)
