"""Sampling from a trained GPT, one token at a time, with a key/value cache.

Each new token needs the keys and values of every earlier position. The cache keeps
them, so a step runs the model on one position instead of the whole context. The
positions are absolute (learned ``wpe``), so once the context outgrows ``block_size``
the window slides: every position shifts, the cache no longer fits, and each further
step recomputes the last ``block_size`` tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor

from microgpt.data import CharTokenizer


def is_number(value: object, kind: type | tuple[type, ...]) -> bool:
    """Whether ``value`` is a ``kind``, a bool excluded (Python counts True as 1)."""
    return isinstance(value, kind) and not isinstance(value, bool)


def check_sampling(
    temperature: float, top_k: int | None, top_p: float | None = None
) -> None:
    """Reject a temperature that is not > 0, a top-k that is not a positive integer, a
    top-p outside (0, 1].

    ``generate`` calls it once, before the first token, so that a caller's mistake is a
    clear error rather than an odd sample or a failure deep inside torch.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if top_k is not None and not (is_number(top_k, int) and top_k >= 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and not (is_number(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")


def nucleus(logits: Tensor, top_p: float) -> Tensor:
    """``logits`` with all but the nucleus set to -inf: the likeliest tokens whose
    probabilities first sum to ``top_p``.

    A token stays when the tokens likelier than it hold less than ``top_p`` between
    them, so the likeliest one always stays (Holtzman et al., 2020).
    """
    probs, order = logits.softmax(dim=-1).sort(dim=-1, descending=True)
    # probability of the tokens ranked above each one
    before = probs.cumsum(dim=-1) - probs
    drop = torch.zeros_like(before, dtype=torch.bool).scatter(
        -1, order, before >= top_p
    )
    return logits.masked_fill(drop, float("-inf"))


def draw(
    logits: Tensor,
    temperature: float,
    top_k: int | None,
    generator: torch.Generator | None,
    banned: int | None,
    top_p: float | None,
) -> Tensor:
    """One token id per row of ``logits`` (B, vocab): scaled by ``1/temperature``, then
    cut to the ``top_k`` best, then to the nucleus of probability ``top_p``.

    A ``banned`` token is never drawn (e.g. BOS in running text, where it never occurs).
    The settings are not checked here: ``generate`` checks them once, not every token.
    """
    logits = logits / temperature
    if banned is not None:
        logits[:, banned] = float("-inf")
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        logits = nucleus(logits, top_p)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)


def sample_next(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    banned: int | None = None,
    top_p: float | None = None,
) -> Tensor:
    """``draw`` with its settings checked: one token id per row of ``logits`` (B,
    vocab), for a caller drawing one token at a time.
    """
    check_sampling(temperature, top_k, top_p)
    return draw(logits, temperature, top_k, generator, banned, top_p)


@torch.no_grad()
def generate(
    model,
    idx: Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    stop_token: int | None = None,
    use_cache: bool = True,
    banned: int | None = None,
    top_p: float | None = None,
) -> Tensor:
    """Extend ``idx`` (B, T) by up to ``max_new_tokens``; stop early once every row has
    produced ``stop_token``.

    ``use_cache=False`` recomputes the whole (cropped) context every step: slower, and
    the same tokens unless a draw lands within rounding of a boundary between two.
    """
    check_sampling(temperature, top_k, top_p)
    if idx.dim() != 2 or idx.shape[1] < 1:
        raise ValueError(
            f"idx must be (B, T) with T >= 1, got shape {tuple(idx.shape)}"
        )
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    block, start = model.config.block_size, idx.shape[1]
    cache = model.new_cache() if use_cache else None
    stopped = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
    logits = model(idx[:, -block:], cache)[:, -1]
    for i in range(max_new_tokens):
        token = draw(logits, temperature, top_k, generator, banned, top_p)
        idx = torch.cat([idx, token], dim=1)
        if stop_token is not None:
            stopped |= token[:, 0] == stop_token
            if stopped.all():
                break
        if i + 1 == max_new_tokens:
            break
        if cache is not None and cache.length < block:
            # one new position; the cache holds the rest
            logits = model(token, cache)[:, -1]
        else:
            # the window slid (or no cache): recompute it
            logits = model(idx[:, -block:])[:, -1]
    return idx[:, start:]


def sample_docs(
    model,
    tokenizer: CharTokenizer,
    num: int,
    temperature: float = 0.5,
    top_k: int | None = None,
    seed: int = 42,
) -> list[str]:
    """``num`` documents (names), each sampled from BOS until BOS comes back or the
    block is full.
    """
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    bos = torch.full((num, 1), tokenizer.bos, dtype=torch.long, device=device)
    rows = generate(
        model,
        bos,
        model.config.block_size,
        temperature,
        top_k,
        generator,
        stop_token=tokenizer.bos,
    )
    out = []
    for row in rows.tolist():
        out.append(
            tokenizer.decode(
                row[: row.index(tokenizer.bos)] if tokenizer.bos in row else row
            )
        )
    return out
