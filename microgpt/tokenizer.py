"""A character tokenizer: each distinct character gets an id, plus one BOS token that
marks edges.
"""

from __future__ import annotations

from collections.abc import Iterable


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
