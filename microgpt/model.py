"""Chapters 5-6: the GPT of microgpt as a batched PyTorch module, the scalar engine's
maths on tensors.

Same architecture as :mod:`microgpt.scalar`, line for line: token and position
embeddings, RMSNorm without weights (after the embedding and before each sub-block),
multi-head causal attention, a ReLU MLP four times as wide, residual connections, no
biases, a separate ``lm_head`` and no final norm. The model knows nothing of training:
``model(idx)`` maps token ids ``(B, T)`` to logits ``(B, T, vocab)``.

Attention comes in three interchangeable functions with one signature (written out,
PyTorch's fused ``scaled_dot_product_attention``, and chapter 13's bfloat16 variant for
CPUs); ``GPT(config, attention=...)`` names one. The module ends with the bridge to the
scalar engine: :func:`gpt_from_scalar` loads its weights, :func:`scalar_weights` reads
them back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from microgpt.config import GPTConfig
from microgpt.scalar import Matrix, param_shapes

__all__ = [
    "GPT",
    "Block",
    "MLP",
    "CausalSelfAttention",
    "KVCache",
    "rmsnorm",
    "causal_mask",
    "ATTENTION",
    "explicit_attention",
    "sdpa_attention",
    "bf16_attention",
    "init_std",
]


def rmsnorm(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Scale each vector (last dimension) to unit root-mean-square, x / sqrt(mean(x**2)
    + eps); no learned weights.
    """
    return F.rms_norm(x, x.shape[-1:], eps=eps)


def causal_mask(size: int) -> Tensor:
    """A ``size x size`` additive mask: 0 where a position may look (itself and before),
    -inf after.
    """
    return torch.full((size, size), float("-inf")).triu(1)


def explicit_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor, dropout: float = 0.0
) -> Tensor:
    """Attention written out: scores, the additive causal ``mask``, softmax, weighted
    sum of the values.

    ``q`` is ``(B, H, T, head_dim)``, ``k`` and ``v`` ``(B, H, S, head_dim)`` (S keys:
    any cached ones, then the T new ones) and ``mask`` ``(T, S)``. The ``(T, S)`` table
    of scores is made in memory. ``dropout`` zeroes that fraction of the attention
    weights (the model passes 0 outside training).
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)) + mask
    weights = scores.softmax(dim=-1)
    return (F.dropout(weights, dropout) if dropout else weights) @ v


def sdpa_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor, dropout: float = 0.0
) -> Tensor:
    """The same maths in one call of ``F.scaled_dot_product_attention``, whose fused
    kernels never store the table of scores.

    With as many keys as queries (nothing cached) the kernel applies the causal mask
    itself, which lets it skip the masked half; after a cached prefix it adds ``mask``.
    """
    if q.size(2) == k.size(2):
        return F.scaled_dot_product_attention(
            q, k, v, dropout_p=dropout, is_causal=True
        )
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)


def bf16_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor, dropout: float = 0.0
) -> Tensor:
    """The explicit maths with the scores, softmax and weighted sum all in bfloat16.

    For CPUs training in bfloat16: there PyTorch's fused kernel is slower in bfloat16
    than in float32, and both are slower than these three bfloat16 operations
    (``python -m microgpt.bench shakespeare`` times the step).
    """
    with torch.autocast(q.device.type, enabled=False):
        (B, H, T, D), S = q.shape, k.shape[2]
        q, k, v = (t.bfloat16().reshape(B * H, -1, D) for t in (q, k, v))
        bias = mask.to(torch.bfloat16).expand(B * H, T, S)
        scores = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=D**-0.5)
        weights = scores.softmax(-1)
        weights = F.dropout(weights, dropout) if dropout else weights
        return (weights @ v).view(B, H, T, D)


# The attention variants a GPT can be built with: GPT(config, attention="sdpa")
ATTENTION = {
    "explicit": explicit_attention,
    "sdpa": sdpa_attention,
    "bf16": bf16_attention,
}


@dataclass
class KVCache:
    """Keys and values of the positions already seen, per layer, so each new token costs
    one position.

    Make one with ``model.new_cache()`` and pass it to ``model(idx, cache)`` repeatedly:
    every call appends its positions. It holds at most ``block_size`` positions
    (positions are absolute).
    """

    keys: list[Tensor | None]
    values: list[Tensor | None]
    length: int = field(default=0)


class CausalSelfAttention(nn.Module):
    """Multi-head attention where each position sees only itself and the positions
    before it.
    """

    def __init__(
        self, config: GPTConfig, attention: str = "explicit", dropout: float = 0.0
    ):
        super().__init__()
        d = config.n_embd
        self.n_head, self.head_dim = config.n_head, config.head_dim
        self.attend = ATTENTION[attention]
        self.dropout = dropout
        self.wq = nn.Linear(d, d, bias=False)
        self.wk = nn.Linear(d, d, bias=False)
        self.wv = nn.Linear(d, d, bias=False)
        self.wo = nn.Linear(d, d, bias=False)
        self.register_buffer("mask", causal_mask(config.block_size), persistent=False)
        self.resid_drop = nn.Dropout(dropout)

    def heads(self, x: Tensor) -> Tensor:
        """(B, T, C) -> (B, n_head, T, head_dim): each head gets its own slice of the
        channels.
        """
        B, T, _ = x.shape
        return x.view(B, T, self.n_head, self.head_dim).transpose(1, 2)

    def forward(
        self, x: Tensor, cache: KVCache | None = None, layer: int = 0
    ) -> Tensor:
        """Attend over the positions of ``x`` and, with a cache, over the cached ones
        before them.
        """
        B, T, C = x.shape
        q, k, v = self.heads(self.wq(x)), self.heads(self.wk(x)), self.heads(self.wv(x))
        start = 0
        if cache is not None:
            start = cache.length
            if cache.keys[layer] is not None:
                k = torch.cat([cache.keys[layer], k], dim=2)
                v = torch.cat([cache.values[layer], v], dim=2)
            cache.keys[layer], cache.values[layer] = k, v
        # rows: the T new positions; columns: every position so far
        mask = self.mask[start : start + T, : start + T]
        y = self.attend(q, k, v, mask, self.dropout if self.training else 0.0)
        return self.resid_drop(self.wo(y.transpose(1, 2).reshape(B, T, C)))


class MLP(nn.Module):
    """Two linear maps with a ReLU between, four times as wide in the middle."""

    def __init__(self, config: GPTConfig, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.fc2 = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(F.relu(self.fc1(x))))


class Block(nn.Module):
    """One transformer block: normalised attention and normalised MLP, each added back
    to the residual.
    """

    def __init__(
        self, config: GPTConfig, attention: str = "explicit", dropout: float = 0.0
    ):
        super().__init__()
        self.attn = CausalSelfAttention(config, attention, dropout)
        self.mlp = MLP(config, dropout)

    def forward(
        self, x: Tensor, cache: KVCache | None = None, layer: int = 0
    ) -> Tensor:
        x = x + self.attn(rmsnorm(x), cache, layer)
        return x + self.mlp(rmsnorm(x))


def init_std(n_embd: int) -> float:
    """The weights' standard deviation at width ``n_embd``: the original's 0.08 at width
    16, times sqrt(16 / n_embd).

    Each output of a linear layer sums ``n_embd`` products, so its spread grows as
    sqrt(n_embd) times the weights'; scaling the weights down by the same factor keeps
    the first logits, and the first loss, near a uniform guess (ln vocab_size) at every
    width.
    """
    return 0.32 / math.sqrt(n_embd)


class GPT(nn.Module):
    """microgpt's GPT. ``attention`` names how attention is computed, always the same
    maths: "explicit" (written out), "sdpa" (PyTorch's fused kernel) or "bf16" (the
    explicit maths in bfloat16, faster on CPUs that train in it).

    Every weight starts ~ N(0, ``std``), by default :func:`init_std` of the width.
    ``dropout`` zeroes that fraction of the embeddings, attention weights and residual
    branches while training (0: none, and the outputs are exactly those of a model
    without dropout).
    """

    def __init__(
        self,
        config: GPTConfig,
        attention: str = "explicit",
        std: float | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT needs a GPTConfig, got {type(config).__name__}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if attention not in ATTENTION:
            raise ValueError(
                f"attention must be one of {', '.join(ATTENTION)}, got {attention!r}"
            )
        self.config, self.attention = config, attention
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(dropout)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.layers = nn.ModuleList(
            Block(config, attention, dropout) for _ in range(config.n_layer)
        )
        for p in self.parameters():
            nn.init.normal_(
                p, mean=0.0, std=init_std(config.n_embd) if std is None else std
            )

    def forward(self, idx: Tensor, cache: KVCache | None = None) -> Tensor:
        """Logits ``(B, T, vocab)`` for token ids ``idx`` ``(B, T)``, continuing
        ``cache`` if given.
        """
        if idx.dim() != 2 or idx.dtype != torch.long:
            raise ValueError(
                "idx must be a (B, T) LongTensor of token ids, "
                f"got {idx.dtype} {tuple(idx.shape)}"
            )
        start = cache.length if cache is not None else 0
        T = idx.shape[1]
        if start + T > self.config.block_size:
            raise ValueError(
                f"cannot run {start + T} positions: "
                f"block_size is {self.config.block_size} "
                "(crop the context to its last block_size tokens)"
            )
        # position t: row t of wpe
        x = self.drop(rmsnorm(self.wte(idx) + self.wpe.weight[start : start + T]))
        for i, block in enumerate(self.layers):
            x = block(x, cache, i)
        if cache is not None:
            cache.length += T
        return self.lm_head(x)

    def new_cache(self) -> KVCache:
        """An empty key/value cache for :meth:`forward`."""
        n = self.config.n_layer
        return KVCache([None] * n, [None] * n)

    def num_params(self) -> int:
        """How many numbers the model learns."""
        return sum(p.numel() for p in self.parameters())


# --- the bridge to the scalar engine --------------------------------------------------
# The scalar engine names a weight ``layer0.attn_wq`` and stores it as ``nout`` lists of
# ``nin`` floats; the torch model calls it ``layers.0.attn.wq.weight``, an ``nout x
# nin`` tensor: the same layout as ``nn.Linear.weight``, so nothing is transposed, only
# renamed.


def torch_name(scalar_name: str) -> str:
    """The state-dict key of a scalar weight: ``layer0.attn_wq`` ->
    ``layers.0.attn.wq.weight``.
    """
    if not scalar_name.startswith("layer"):
        return f"{scalar_name}.weight"
    layer, rest = scalar_name[len("layer") :].split(".")
    module, weight = rest.split("_")
    return f"layers.{layer}.{module}.{weight}.weight"


def check_weights(config: GPTConfig, weights: dict[str, Matrix]) -> None:
    """A ValueError unless ``weights`` has every weight of ``config``, each ``nout x
    nin`` nested lists.
    """
    shapes = param_shapes(config)
    if sorted(weights) != sorted(shapes):
        missing, extra = (
            sorted(set(shapes) - set(weights)),
            sorted(set(weights) - set(shapes)),
        )
        raise ValueError(
            f"weights do not fit {config}: missing {missing}, unexpected {extra}"
        )
    for name, (nout, nin) in shapes.items():
        rows = weights[name]
        if len(rows) != nout or any(len(row) != nin for row in rows):
            raise ValueError(
                f"weights[{name!r}] must be {nout} x {nin} (nested lists, nout x nin)"
            )


def gpt_from_scalar(
    config: GPTConfig,
    weights: dict[str, Matrix],
    attention: str = "explicit",
    dtype: torch.dtype | None = None,
) -> GPT:
    """A GPT holding the scalar engine's ``weights``, in ``dtype``; the global torch RNG
    is left as it was.
    """
    check_weights(config, weights)
    # GPT() draws random weights that are overwritten at once
    with torch.random.fork_rng(devices=[]):
        model = GPT(config, attention).to(dtype)
    state = {
        torch_name(name): torch.tensor(rows, dtype=model.wte.weight.dtype)
        for name, rows in weights.items()
    }
    model.load_state_dict(state)
    return model


def scalar_weights(model: GPT) -> dict[str, Matrix]:
    """The weights as the scalar engine's dict of nested lists of Python floats, in its
    order.
    """
    params = dict(model.named_parameters())
    return {
        name: params[torch_name(name)].detach().cpu().tolist()
        for name in param_shapes(model.config)
    }
