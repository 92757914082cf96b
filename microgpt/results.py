"""Recorded results (benchmarks, the full training run, the sweep): next to the notebook, cached, or downloaded once.

A chapter opened alone (on Colab, or copied out of the repository) has no ``results/`` folder beside it;
:func:`results_file` then fetches the file from the repository once and keeps it in the cache.
``MICROGPT_RESULTS_URL`` replaces the repository's address (a mirror, or a local server in tests).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from microgpt.data import DataError, cache_dir, download

REPOSITORY = "https://github.com/microgpt-book/microgpt"
BRANCH = "main"


class ResultsError(DataError):
    """A recorded result could not be found here, in the cache, or downloaded."""


def results_url() -> str:
    """Where the recorded results are served: ``$MICROGPT_RESULTS_URL``, else the repository's ``book/results``."""
    raw = REPOSITORY.replace("https://github.com/", "https://raw.githubusercontent.com/")
    return os.environ.get("MICROGPT_RESULTS_URL") or f"{raw}/{BRANCH}/book/results"


def results_file(name: str) -> Path:
    """Path to the recorded result ``name`` (such as ``"bench_cpu.json"``): ./results/, else the cache, else fetched."""
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
        raise ResultsError(f"{name!r} is not the name of a recorded result (such as 'bench_cpu.json')")
    local = Path("results", *parts)
    if local.is_file():
        return local.resolve()
    cached = cache_dir() / "results" / Path(*parts)
    if cached.is_file():
        return cached
    url = f"{results_url().rstrip('/')}/{name}"
    try:
        download(url, cached, fix="run the notebook from the repository's book/ folder, where results/ holds it")
    except DataError as err:
        raise ResultsError(f"recorded result {name} is not in ./results or {cached.parent}: {err}") from None
    return cached
