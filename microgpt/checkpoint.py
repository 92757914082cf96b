"""Checkpoints: one file holding everything a run needs to be sampled from or resumed
exactly.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
import secrets
import sys
import zipfile
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # native Windows
    fcntl = None

import torch

from microgpt import __version__
from microgpt.config import GPTConfig
from microgpt.data import CharTokenizer
from microgpt.model import GPT

FORMAT = "microgpt-checkpoint"
FORMAT_VERSION = 1
KEYS = (
    "format",
    "format_version",
    "version",
    "dataset",
    "config",
    "chars",
    "model",
    "step",
)


class CheckpointError(ValueError):
    """A checkpoint is missing, damaged, foreign or does not fit the request."""


def _mps_available() -> bool:
    """Whether torch can use an Apple GPU here; dropout there has its own generator."""
    return torch.backends.mps.is_available()


def rng_state() -> dict[str, Any]:
    """Every random generator's state (Python, torch CPU, CUDA, MPS) as plain data."""
    version, internal, gauss = random.getstate()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    mps = torch.mps.get_rng_state() if _mps_available() else None
    return {
        "python": [version, list(internal), gauss],
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "mps": mps,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Put every random number generator back to a state saved by :func:`rng_state`.

    A state saved without an MPS generator (on a machine without one, or by an older
    microgpt) leaves this machine's MPS generator as it is.
    """
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if state.get("mps") is not None and _mps_available():
        torch.mps.set_rng_state(state["mps"])


def _flush_to_disk(fd: int) -> None:
    """Ask the OS to put a file's (or folder's) written bytes on the drive.

    On macOS ``fsync`` only hands the data to the drive, which may keep it
    in its own cache and write it later, out of order (Apple's fsync(2)
    man page); ``F_FULLFSYNC`` asks the drive to flush. File systems that
    do not support it get a plain ``fsync``.
    """
    if sys.platform == "darwin" and hasattr(fcntl, "F_FULLFSYNC"):
        try:
            fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
            return
        except OSError:
            pass
    os.fsync(fd)


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable, where the OS lets a program ask.

    POSIX systems record a rename in the folder's entry, which is fsynced
    like a file. Native Windows cannot open a folder with ``os.open``
    (PermissionError) and has no folder fsync, so there this step is
    skipped: NTFS journals the rename itself, but whether it survives a
    power cut right after ``atomic_save`` returns is up to NTFS.
    """
    if os.name == "nt":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            _flush_to_disk(fd)
        finally:
            os.close(fd)
    except OSError:
        # The new file is already in place, so an error here would turn a
        # finished save into one that stops training. Some file systems
        # (FUSE, network mounts) refuse to open or fsync a folder; SQLite
        # ignores that error as well. There the rename is as durable as
        # the file system makes it unasked.
        pass


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, flush, rename.

    A reader of ``path``, or a process killed mid-save, sees the whole old
    file or the whole new one, never a mix: POSIX promises that for
    ``rename`` within one file system; on Windows ``os.replace``
    (MoveFileEx within one volume) behaves so on NTFS in practice, without
    a documented promise, and fails while another process holds ``path``
    open. After a power cut, on a drive that honours cache flushes: on
    Linux and macOS the new file is there once this returns (unless the
    file system refused the folder fsync); on Windows the new file's bytes
    are on disk, but the rename may be lost, leaving the whole old file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    # a new file of our own (O_EXCL), with the mode any new file gets: 0o666 less the
    # umask (tempfile.mkstemp would make it private, 0o600)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            torch.save(obj, out)
            out.flush()
            _flush_to_disk(out.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    _sync_folder(path.parent)


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    config: GPTConfig,
    tokenizer: CharTokenizer,
    dataset: str,
    step: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    run: dict[str, Any] | None = None,
    scaler: torch.amp.GradScaler | None = None,
    best_val_loss: float | None = None,
) -> None:
    """Write a checkpoint atomically: weights, shape, vocabulary, and (to resume)
    optimizer, scaler, run, step, RNGs, and the best validation loss so far (which
    decides when ``best.pt`` is written again).
    """
    atomic_save(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": __version__,
            "dataset": dataset,
            "config": dataclasses.asdict(config),
            "chars": list(tokenizer.chars),
            "model": model.state_dict(),
            "step": step,
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "run": dict(run or {}),
            "scaler": scaler.state_dict()
            if scaler is not None and scaler.is_enabled()
            else None,
            "rng": rng_state(),
            "best_val_loss": best_val_loss,
        },
        path,
    )


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a checkpoint; anything that is not one of ours is a
    :class:`CheckpointError`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} is truncated or not a checkpoint (not a torch.save archive)"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    # torch reports damage as RuntimeError, EOFError, KeyError, ...
    except Exception as err:
        if isinstance(
            err, pickle.UnpicklingError
        ) and "Weights only load failed" in str(err):
            raise CheckpointError(
                f"{path} holds pickled objects other than tensors and plain data; "
                "refusing to load it (it is not a microgpt checkpoint, and loading it "
                "could run code)"
            ) from None
        raise CheckpointError(
            f"{path} is truncated or not a checkpoint ({type(err).__name__})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a microgpt checkpoint")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {ckpt.get('format_version')!r}; "
            f"this microgpt ({__version__}) reads format {FORMAT_VERSION}"
        )
    missing = [key for key in KEYS if key not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is damaged: it lacks {', '.join(missing)}")
    return ckpt


def tokenizer_from(ckpt: dict[str, Any]) -> CharTokenizer:
    """The tokenizer a checkpoint was trained with."""
    return CharTokenizer(ckpt["chars"])


def model_from(ckpt: dict[str, Any], device: torch.device | str = "cpu") -> GPT:
    """The trained model of a checkpoint, on ``device``, in eval mode."""
    config = GPTConfig(**ckpt["config"])
    if tokenizer_from(ckpt).vocab_size != config.vocab_size:
        raise CheckpointError(
            "checkpoint is damaged: its vocabulary does not match its config"
        )
    model = GPT(config)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise CheckpointError(
            f"checkpoint weights do not fit its config: {str(err).splitlines()[0]}"
        ) from None
    return model.to(device).eval()


# --- resuming a run -------------------------------------------------------------------


def resumable(ckpt: dict[str, Any]) -> bool:
    """Whether ``ckpt`` can be resumed: a text run's, saved with its optimizer."""
    return ckpt["dataset"] == "shakespeare" and bool(ckpt.get("optimizer"))


def check_resumable(
    ckpt: dict[str, Any],
    run: dict[str, Any],
    tokenizer: CharTokenizer,
    path: Path,
) -> None:
    """A checkpoint may be resumed only by the same run (``run``: the model's shape and
    the run's settings, as a dict) on the same text.
    """
    if not resumable(ckpt):
        raise CheckpointError(f"{path} is not a resumable text-training checkpoint")
    if ckpt["chars"] != tokenizer.chars or ckpt["run"].get("data_sha256") != run.get(
        "data_sha256"
    ):
        raise CheckpointError(
            f"{path} was trained on another text; pass the same --data to resume it"
        )
    # the shape is in "config" (and in "run" too, in newer checkpoints)
    saved = {**ckpt["config"], **ckpt["run"]}
    del saved["vocab_size"]
    if saved != run:
        raise CheckpointError(f"{path} was written by a run with different settings")
    if ckpt["step"] >= run["steps"]:
        raise CheckpointError(
            f"the run in {path.parent} already finished its {run['steps']} steps; "
            "nothing to resume"
        )
