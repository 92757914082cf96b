"""Karpathy's microgpt on scalar ``Value`` nodes: the reference every faster version is
checked against.
"""

from __future__ import annotations

import contextlib
import gc
import random
from collections.abc import Callable, Iterator, Sequence

from microgpt.autograd import Value, dot
from microgpt.config import GPTConfig

Matrix = list[list[float]]
KVCache = tuple[list[list[list[Value]]], list[list[list[Value]]]]


def param_shapes(config: GPTConfig) -> dict[str, tuple[int, int]]:
    """Every weight matrix as (nout, nin), in the original's order of initialisation."""
    d, v = config.n_embd, config.vocab_size
    shapes = {"wte": (v, d), "wpe": (config.block_size, d), "lm_head": (v, d)}
    for i in range(config.n_layer):
        for name in ("attn_wq", "attn_wk", "attn_wv", "attn_wo"):
            shapes[f"layer{i}.{name}"] = (d, d)
        shapes[f"layer{i}.mlp_fc1"] = (4 * d, d)
        shapes[f"layer{i}.mlp_fc2"] = (d, 4 * d)
    return shapes


def init_weights(
    config: GPTConfig, rng: random.Random, std: float = 0.08
) -> dict[str, Matrix]:
    """Random weights from ``rng.gauss(0, std)``, drawn row by row in the original's
    order.
    """
    return {
        name: [[rng.gauss(0, std) for _ in range(nin)] for _ in range(nout)]
        for name, (nout, nin) in param_shapes(config).items()
    }


def softmax(logits: Sequence[Value]) -> list[Value]:
    """Probabilities from logits, shifted by the max for numerical safety."""
    max_val = max(val.data for val in logits)
    exps = [(val - max_val).exp() for val in logits]
    total = sum(exps)
    return [e / total for e in exps]


class ScalarGPT:
    """The GPT as lists of ``Value``s; ``fused=True`` makes each dot product one node
    (same forward).
    """

    def __init__(
        self, config: GPTConfig, weights: dict[str, Matrix], fused: bool = False
    ):
        shapes = param_shapes(config)
        if list(weights) != list(shapes):
            raise ValueError(f"weights must have the keys {list(shapes)} in that order")
        for name, (nout, nin) in shapes.items():
            if len(weights[name]) != nout or any(
                len(row) != nin for row in weights[name]
            ):
                raise ValueError(f"weights[{name!r}] must be {nout} x {nin}")
        self.config = config
        self.fused = fused
        self.state = {
            name: [[Value(x) for x in row] for row in mat]
            for name, mat in weights.items()
        }
        self.params = [p for mat in self.state.values() for row in mat for p in row]

    @classmethod
    def init(
        cls, config: GPTConfig, rng: random.Random, fused: bool = False
    ) -> ScalarGPT:
        """A fresh model with the original's random initialisation."""
        return cls(config, init_weights(config, rng), fused)

    def weights(self) -> dict[str, Matrix]:
        """The current weights as a plain dict of nested lists (nout x nin): what
        crosses to torch.
        """
        return {
            name: [[p.data for p in row] for row in mat]
            for name, mat in self.state.items()
        }

    def new_cache(self) -> KVCache:
        """Empty per-layer key and value lists for one sequence."""
        n = self.config.n_layer
        return [[] for _ in range(n)], [[] for _ in range(n)]

    def dot(self, xs: Sequence[Value], ys: Sequence[Value]) -> Value:
        """``sum(x * y)``: one fused node, or the original's chain of atomic ops."""
        if self.fused:
            return dot(xs, ys)
        return sum(x * y for x, y in zip(xs, ys))

    def linear(self, x: Sequence[Value], w: Sequence[Sequence[Value]]) -> list[Value]:
        """Matrix (nout x nin) times vector, one dot product per output."""
        return [self.dot(row, x) for row in w]

    def rmsnorm(self, x: Sequence[Value]) -> list[Value]:
        """Scale ``x`` to unit root-mean-square (no learned weights)."""
        ms = self.dot(x, x) / len(x)
        scale = (ms + 1e-5) ** -0.5
        return [xi * scale for xi in x]

    def attention(
        self, q: list[Value], keys: list[list[Value]], values: list[list[Value]]
    ) -> list[Value]:
        """Multi-head attention of one query over every key and value seen so far."""
        hd = self.config.head_dim
        out: list[Value] = []
        for hs in range(0, self.config.n_embd, hd):
            q_h = q[hs : hs + hd]
            logits = [self.dot(q_h, k[hs : hs + hd]) / hd**0.5 for k in keys]
            weights = softmax(logits)
            out.extend(
                self.dot(weights, [v[j] for v in values]) for j in range(hs, hs + hd)
            )
        return out

    def __call__(self, token_id: int, pos_id: int, cache: KVCache) -> list[Value]:
        """Logits for the next token, given this token, its position and the cache of
        earlier ones.
        """
        s, keys, values = self.state, *cache
        x = [t + p for t, p in zip(s["wte"][token_id], s["wpe"][pos_id])]
        x = self.rmsnorm(x)
        for i in range(self.config.n_layer):
            residual = x
            x = self.rmsnorm(x)
            q = self.linear(x, s[f"layer{i}.attn_wq"])
            keys[i].append(self.linear(x, s[f"layer{i}.attn_wk"]))
            values[i].append(self.linear(x, s[f"layer{i}.attn_wv"]))
            x = self.linear(
                self.attention(q, keys[i], values[i]), s[f"layer{i}.attn_wo"]
            )
            x = [a + b for a, b in zip(x, residual)]
            residual = x
            x = self.rmsnorm(x)
            x = [h.relu() for h in self.linear(x, s[f"layer{i}.mlp_fc1"])]
            x = self.linear(x, s[f"layer{i}.mlp_fc2"])
            x = [a + b for a, b in zip(x, residual)]
        return self.linear(x, s["lm_head"])


def doc_loss(model: ScalarGPT, tokens: Sequence[int]) -> Value:
    """Mean next-token cross-entropy over one document (already wrapped in BOS)."""
    n = min(model.config.block_size, len(tokens) - 1)
    if n < 1:
        raise ValueError("a document needs at least two tokens (BOS ... BOS)")
    cache = model.new_cache()
    losses = []
    for pos in range(n):
        probs = softmax(model(tokens[pos], pos, cache))
        losses.append(-probs[tokens[pos + 1]].log())
    return (1 / n) * sum(losses)


class Adam:
    """Adam with the original's settings; ``step(lr)`` updates the parameters and zeroes
    their grads.
    """

    def __init__(
        self,
        params: Sequence[Value],
        betas: tuple[float, float] = (0.85, 0.99),
        eps: float = 1e-8,
    ):
        self.params = list(params)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.m = [0.0] * len(self.params)
        self.v = [0.0] * len(self.params)
        self.t = 0

    def step(self, lr: float) -> None:
        """One bias-corrected Adam update at learning rate ``lr``."""
        self.t += 1
        b1, b2, m, v = self.beta1, self.beta2, self.m, self.v
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t  # bias corrections
        for i, p in enumerate(self.params):
            g = p.grad
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g**2
            p.data -= lr * (m[i] / c1) / ((v[i] / c2) ** 0.5 + self.eps)
            p.grad = 0.0


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cycle collector. Our graphs hold no cycles, so reference counting
    frees them; the collector's scans of their tens of thousands of nodes would cost
    more than the arithmetic.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def linear_decay(step: int, steps: int, lr: float) -> float:
    """The original's schedule: ``lr`` at step 0, falling linearly towards 0 at
    ``steps``.
    """
    return lr * (1 - step / steps)


def train(
    model: ScalarGPT,
    docs: Sequence[Sequence[int]],
    steps: int,
    lr: float = 0.01,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """The original's loop: one document per step, Adam, learning rate decaying linearly
    to zero.
    """
    optimizer = Adam(model.params)
    losses = []
    with gc_paused():
        for step in range(steps):
            loss = doc_loss(model, docs[step % len(docs)])
            loss.backward()
            optimizer.step(linear_decay(step, steps, lr))
            losses.append(loss.data)
            if on_step:
                on_step(step, loss.data)
    return losses


def generate(
    model: ScalarGPT, rng: random.Random, temperature: float = 0.5
) -> list[int]:
    """Sample one document token by token from BOS until BOS comes back or the block is
    full.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    bos = model.config.vocab_size - 1
    cache = model.new_cache()
    token, out = bos, []
    for pos in range(model.config.block_size):
        probs = softmax([logit / temperature for logit in model(token, pos, cache)])
        token = rng.choices(
            range(model.config.vocab_size), weights=[p.data for p in probs]
        )[0]
        if token == bos:
            break
        out.append(token)
    return out
