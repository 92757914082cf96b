"""Shared test set-up: the datasets come from MICROGPT_DATA (CI points it at
../shared/data).
"""

import os
from pathlib import Path

import pytest

from microgpt import train
from microgpt.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items) -> None:
    """The chapters first: tests/test_opened_alone.py runs for minutes, so with
    ``pytest -n`` it starts at once and the other files run beside it.
    """
    items.sort(key=lambda item: item.path.name != "test_opened_alone.py")


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
    """``train.train_text`` that dies right after writing its first ckpt.pt, as a kill
    would end the run there (call it with ``ckpt_interval``); returns that checkpoint,
    loaded.
    """

    def run(*args, **kwargs) -> dict:
        real_save, written = train.save_checkpoint, []

        def save_then_die(path, *save_args, **save_kwargs):
            real_save(path, *save_args, **save_kwargs)
            if Path(path).name == "ckpt.pt":  # best.pt is written just before it
                written.append(path)
                raise Killed

        monkeypatch.setattr(train, "save_checkpoint", save_then_die)
        try:
            with pytest.raises(Killed):
                train.train_text(*args, **kwargs)
        finally:
            monkeypatch.setattr(train, "save_checkpoint", real_save)
        return load_checkpoint(written[0])

    return run
