"""Recorded results (benchmarks, the full training run, the sweep): next to the
notebook, cached, or downloaded once.

A chapter opened alone (on Colab, or copied out of the repository) has no ``results/``
folder beside it; :func:`results_file` then fetches the file from the repository once
and keeps it in the cache. ``MICROGPT_RESULTS_URL`` replaces the repository's address (a
mirror, or a local server in tests).
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
    """Where the recorded results are served: ``$MICROGPT_RESULTS_URL``, else the
    repository's ``book/results``.
    """
    raw = REPOSITORY.replace(
        "https://github.com/", "https://raw.githubusercontent.com/"
    )
    return os.environ.get("MICROGPT_RESULTS_URL") or f"{raw}/{BRANCH}/book/results"


def results_file(name: str, missing_ok: bool = False) -> Path | None:
    """Path to the recorded result ``name`` (such as ``"bench_cpu.json"``): ./results/,
    else the cache, else fetched.

    With ``missing_ok`` a result that was never recorded gives None: absent from a
    ./results folder beside the notebook, or, with no such folder, absent from the
    server (HTTP 404).
    """
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
        raise ResultsError(
            f"{name!r} is not the name of a recorded result (such as 'bench_cpu.json')"
        )
    local = Path("results", *parts)
    if local.is_file():
        return local.resolve()
    if missing_ok and Path("results").is_dir():
        return None
    cached = cache_dir() / "results" / Path(*parts)
    if cached.is_file():
        return cached
    url = f"{results_url().rstrip('/')}/{name}"
    try:
        download(
            url,
            cached,
            fix="run the notebook from the repository's book/ folder, "
            "where results/ holds it",
        )
    except DataError as err:
        if missing_ok and err.status == 404:
            return None
        raise ResultsError(
            f"recorded result {name} is not in ./results or {cached.parent}: {err}"
        ) from None
    return cached
