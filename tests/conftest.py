"""Shared test set-up: the datasets come from MICROGPT_DATA (CI points it at
../shared/data).
"""

import os
from pathlib import Path

import pytest

from microgpt import train

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The offline data folder; tests that need the real datasets fail loudly without
    it.
    """
    path = os.environ.get("MICROGPT_DATA")
    assert path, (
        "set MICROGPT_DATA to the folder holding names.txt and tinyshakespeare.txt"
    )
    return Path(path)


class Killed(Exception):
    """Stands for a kill -9 right after a checkpoint was written."""


@pytest.fixture
def killed_after_checkpoint(monkeypatch):
    """``train.train_text`` that dies right after writing its first ckpt.pt (call it
    with ``ckpt_interval``).
    """

    def run(*args, **kwargs) -> None:
        real_save = train.save_checkpoint

        def save_then_die(path, *save_args, **save_kwargs):
            real_save(path, *save_args, **save_kwargs)
            if Path(path).name == "ckpt.pt":
                raise Killed

        monkeypatch.setattr(train, "save_checkpoint", save_then_die)
        try:
            with pytest.raises(Killed):
                train.train_text(*args, **kwargs)
        finally:
            monkeypatch.setattr(train, "save_checkpoint", real_save)

    return run
