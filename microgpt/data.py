"""Chapter 1: the data and the tokenizer.

The two datasets are found offline, in a cache, or downloaded from a pinned URL and
checked against their SHA-256. The tokenizer gives each distinct character an id, plus
one BOS token that marks the edges of a document.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# --- the datasets ---------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """A file the book trains on: its name on disk, its source URL and its SHA-256."""

    filename: str
    url: str
    sha256: str


DATASETS = {
    "names": Dataset(
        "names.txt",
        "https://raw.githubusercontent.com/karpathy/makemore/988aa59/names.txt",
        "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d",
    ),
    "shakespeare": Dataset(
        "tinyshakespeare.txt",
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
        "tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    ),
}


class DataError(RuntimeError):
    """A dataset could not be found, downloaded or verified; the message says how to fix
    it.

    ``status`` is the HTTP status of a download the server refused (404: no such file),
    None for every other failure, so that a caller can tell "not there" from "offline".
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def cache_dir() -> Path:
    """Where downloads are kept: ``$MICROGPT_CACHE``, else ``$XDG_CACHE_HOME/microgpt``
    or ``~/.cache/microgpt``.
    """
    if os.environ.get("MICROGPT_CACHE"):
        return Path(os.environ["MICROGPT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "microgpt"


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


DATA_FIX = "put the file in a folder and set MICROGPT_DATA to it"


def download(
    url: str,
    dest: Path,
    sha256: str | None = None,
    fix: str = DATA_FIX,
    timeout: float = 30.0,
) -> None:
    """Fetch ``url`` to ``dest`` atomically, keeping it only if its SHA-256 matches
    ``sha256`` (when given).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    print(f"downloading {dest.name} from {url}", file=sys.stderr)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=timeout) as response,
        ):
            out.write(response.read())
        got = sha256_of(Path(tmp))
        if sha256 is not None and got != sha256:
            raise DataError(
                f"{dest.name} downloaded from {url} has SHA-256 {got}, "
                f"expected {sha256}; nothing was cached. Retry later, or {fix}."
            )
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as err:
        status = err.code if isinstance(err, urllib.error.HTTPError) else None
        raise DataError(
            f"could not download {dest.name} from {url} ({err}). "
            f"Check your network and retry, or {fix}.",
            status,
        ) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def fetch(name: str) -> Path:
    """Path to a verified copy of dataset ``name``: ``$MICROGPT_DATA`` first, then the
    cache, then download.
    """
    if name not in DATASETS:
        raise DataError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}"
        )
    dataset = DATASETS[name]
    offline = os.environ.get("MICROGPT_DATA")
    if offline:
        path = Path(offline).expanduser() / dataset.filename
        if path.is_file():
            if sha256_of(path) != dataset.sha256:
                raise DataError(
                    f"{path} (from MICROGPT_DATA) does not match the SHA-256 of "
                    f"{dataset.filename}; replace it with a good copy, or unset "
                    "MICROGPT_DATA to download it."
                )
            return path
    cached = cache_dir() / dataset.filename
    if cached.is_file() and sha256_of(cached) == dataset.sha256:
        return cached
    try:
        download(dataset.url, cached, dataset.sha256)
    except DataError as err:
        looked = [f"{offline} (MICROGPT_DATA)"] if offline else []
        raise DataError(
            f"{err} Looked for it in: {', '.join([*looked, str(cache_dir())])}.",
            err.status,
        ) from None
    return cached


def read_text(path: str | os.PathLike) -> str:
    """Read a user's own text file as UTF-8, with a clear error if it is missing,
    unreadable or binary.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise DataError(
            f"cannot read data file {path}: {err.strerror or err}"
        ) from None
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path} is not a text file (not UTF-8: "
            f"byte {err.object[err.start]:#04x} at position {err.start})"
        ) from None
    if "\x00" in text:
        raise DataError(f"{path} is not a text file (it holds NUL bytes)")
    return text


def load_names(path: str | os.PathLike | None = None) -> list[str]:
    """The names dataset (or your own file, one document a line) without blank lines."""
    text = read_text(path if path is not None else fetch("names"))
    docs = [line.strip() for line in text.splitlines() if line.strip()]
    if not docs:
        raise DataError(f"{path} holds no non-empty lines")
    return docs


def load_shakespeare(path: str | os.PathLike | None = None) -> str:
    """The tiny-shakespeare text (or your own file), as one string."""
    text = read_text(path if path is not None else fetch("shakespeare"))
    if not text:
        raise DataError(f"{path} is empty")
    return text


# --- the tokenizer --------------------------------------------------------------------


class CharTokenizer:
    """Ids 0..n-1 are the sorted unique characters, ``bos = n`` and ``vocab_size = n +
    1``.
    """

    def __init__(self, chars: Iterable[str]):
        self.chars: list[str] = sorted(set(chars))
        if any(len(ch) != 1 for ch in self.chars):
            raise ValueError("a CharTokenizer vocabulary holds single characters only")
        self.bos: int = len(self.chars)
        self.vocab_size: int = len(self.chars) + 1
        self._ids = {ch: i for i, ch in enumerate(self.chars)}

    @classmethod
    def from_docs(cls, docs: Iterable[str]) -> CharTokenizer:
        """Build the vocabulary from every character that occurs in ``docs``."""
        return cls(ch for doc in docs for ch in doc)

    def encode(self, text: str) -> list[int]:
        """Turn text into ids; a character outside the vocabulary is a ``ValueError``
        naming it.
        """
        try:
            return [self._ids[ch] for ch in text]
        except KeyError as err:
            raise ValueError(
                f"character {err.args[0]!r} is not in the vocabulary "
                f"({len(self.chars)} characters: {''.join(self.chars)!r})"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """Turn ids back into text; BOS marks a boundary and decodes to nothing."""
        out = []
        for i in ids:
            if not 0 <= i <= self.bos:
                raise ValueError(
                    f"token id {i} is outside the vocabulary (0..{self.bos})"
                )
            if i != self.bos:
                out.append(self.chars[i])
        return "".join(out)

    def wrap(self, doc: str) -> list[int]:
        """Encode one document with BOS at each end, as the names model trains on it."""
        return [self.bos, *self.encode(doc), self.bos]

    def __repr__(self) -> str:
        chars = "".join(self.chars)
        return f"CharTokenizer(vocab_size={self.vocab_size}, chars={chars!r})"
