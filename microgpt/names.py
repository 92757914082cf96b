"""Chapter 7: the original microgpt's names loop on tensors, a batch of names a step.

Every name is encoded once, as a padded row in the original's order; a batch is then a
pure function of the step number. The loss weights each name's positions by ``1/n`` so
a padded batch trains as the original's one name at a time would. Adam runs on one
flat vector, with the original's settings and linear decay.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from microgpt.data import CharTokenizer
from microgpt.scalar import linear_decay

# --- the data: one padded row per name ------------------------------------------------


@dataclass(frozen=True)
class NamesData:
    """Every name encoded once and right-padded: inputs, targets, loss weights (0 on
    padding), lengths.
    """

    x: torch.Tensor
    y: torch.Tensor
    weight: torch.Tensor
    lengths: list[int]

    def to(
        self, device: torch.device | str, dtype: torch.dtype = torch.float32
    ) -> NamesData:
        """The same data on ``device``, weights in the model's ``dtype`` (moved once,
        before training).
        """
        return NamesData(
            self.x.to(device),
            self.y.to(device),
            self.weight.to(device, dtype),
            self.lengths,
        )


def encode_names(
    docs: list[str], tokenizer: CharTokenizer, block_size: int
) -> NamesData:
    """Wrap each name in BOS, cut it to the block, pad with BOS; weight ``1/n`` on its
    ``n`` real positions.
    """
    rows = [tokenizer.wrap(doc)[: block_size + 1] for doc in docs]
    lengths = [len(row) - 1 for row in rows]
    padded = torch.tensor(
        [row + [tokenizer.bos] * (block_size + 1 - len(row)) for row in rows]
    )
    real = torch.arange(block_size) < torch.tensor(lengths)[:, None]
    # exact 1/n, rounded once by .to()
    weight = real / torch.tensor(lengths, dtype=torch.float64)[:, None]
    return NamesData(padded[:, :-1], padded[:, 1:], weight, lengths)


def names_batch(
    data: NamesData, step: int, batch_size: int, pad_to_block: bool = False
):
    """Step ``step``'s (x, y, weight): names ``step * batch_size + j`` (mod N), cut to
    the longest of them.
    """
    n = len(data.lengths)
    start = step * batch_size % n
    rows = [(start + j) % n for j in range(batch_size)]
    T = data.x.shape[1] if pad_to_block else max(data.lengths[i] for i in rows)
    if start + batch_size <= n:  # the usual case: a contiguous slice is a view, no copy
        return (
            data.x[start : start + batch_size, :T],
            data.y[start : start + batch_size, :T],
            data.weight[start : start + batch_size, :T],
        )
    index = torch.tensor(rows, device=data.x.device)
    return data.x[index, :T], data.y[index, :T], data.weight[index, :T]


def names_tokens(data: NamesData, step: int, batch_size: int) -> int:
    """How many positions step ``step``'s names train on (padding not counted)."""
    n = len(data.lengths)
    return sum(data.lengths[(step * batch_size + j) % n] for j in range(batch_size))


# --- the loss: each name's mean, padding never counts ---------------------------------


def names_loss(model: torch.nn.Module, x: Tensor, y: Tensor, weight: Tensor) -> Tensor:
    """Mean over the batch of each name's mean cross-entropy; padding has weight 0 and
    never counts.
    """
    logits = model(x)
    losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
    return (losses * weight.flatten()).sum() / len(x)


# --- Adam on one flat vector ----------------------------------------------------------
# torch.optim.Adam runs each line of Adam's formula once per weight tensor (or hands the
# list of tensors to one fused kernel). For a model this small the fixed cost of each
# call, not the arithmetic, sets the time: here every weight is a slice of one vector
# and every gradient a slice of another, so each line of the formula is one operation
# on every number at once. The maths is torch.optim.Adam's.


def bias_corrected(
    lr: float, step: int, betas: tuple[float, float]
) -> tuple[float, float]:
    """Adam's step size ``lr / (1 - b1**step)`` and ``sqrt(1 - b2**step)`` at 1-based
    ``step``.
    """
    b1, b2 = betas
    return lr / (1 - b1**step), math.sqrt(1 - b2**step)


def adam_update(
    p: Tensor,
    grad: Tensor,
    m: Tensor,
    v: Tensor,
    step_size: Tensor | float,
    bias2_sqrt: Tensor | float,
    betas: tuple[float, float],
    eps: float,
) -> None:
    """Adam on ``p`` in place, as torch.optim.Adam computes it (the bias corrections are
    the two scalars).
    """
    b1, b2 = betas
    m.lerp_(grad, 1 - b1)  # m = b1 m + (1 - b1) g
    v.mul_(b2).addcmul_(grad, grad, value=1 - b2)  # v = b2 v + (1 - b2) g^2
    p.sub_(step_size * m / (v.sqrt() / bias2_sqrt + eps))


class FlatAdam:
    """Adam over ``params``, which become views of one flat vector (and their ``.grad``
    of another).

    Build it once the model is on its device and in its dtype: moving the model
    afterwards gives the parameters new storage that the optimizer no longer sees. Every
    weight is updated at every step, as if each had a gradient (a weight the loss did
    not touch has gradient 0).
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        self.params = list(params)
        if len({(p.device, p.dtype) for p in self.params}) != 1:
            raise ValueError(
                "FlatAdam needs every parameter on one device, in one dtype"
            )
        self.lr, self.betas, self.eps, self.steps = lr, betas, eps, 0
        self.weights = torch.cat([p.detach().reshape(-1) for p in self.params])
        self.grad = torch.zeros_like(self.weights)
        self.m, self.v = torch.zeros_like(self.weights), torch.zeros_like(self.weights)
        self.grads = self.views_of(self.grad)
        for p, w in zip(self.params, self.views_of(self.weights)):
            p.data = w  # p now reads and writes its slice of the flat vector
        self.zero_grad()

    def views_of(self, flat: Tensor) -> list[Tensor]:
        """``flat`` cut into one view per parameter, each of that parameter's shape."""
        parts = flat.split([p.numel() for p in self.params])
        return [part.view_as(p) for part, p in zip(parts, self.params)]

    def zero_grad(self) -> None:
        """Zero the flat gradient and make each ``.grad`` its view again (``backward``
        adds into it in place).
        """
        self.grad.zero_()
        for p, g in zip(self.params, self.grads):
            p.grad = g

    def step(self) -> None:
        """One Adam update of every weight at learning rate ``self.lr``."""
        self.steps += 1
        step_size, bias2_sqrt = bias_corrected(self.lr, self.steps, self.betas)
        adam_update(
            self.weights,
            self.grad,
            self.m,
            self.v,
            step_size,
            bias2_sqrt,
            self.betas,
            self.eps,
        )


# --- the loop: the original's Adam settings, one step, training -------------------


class TrainingError(ValueError):
    """Training cannot go on (the loss stopped being finite); the message says what to
    change.
    """


def check_finite(loss: float, step: int, advice: str) -> None:
    """A :class:`TrainingError` if ``loss`` (of 1-based ``step``) is infinite or NaN."""
    if not math.isfinite(loss):
        raise TrainingError(f"the loss became {loss} at step {step}; {advice}")


NAMES_BETAS, NAMES_EPS = (0.85, 0.99), 1e-8  # the original's Adam


def make_names_optimizer(model: torch.nn.Module, lr: float = 0.01) -> FlatAdam:
    """Adam with the original's settings over the model's weights as one flat vector
    (build it after ``.to``).
    """
    return FlatAdam(model.parameters(), lr=lr, betas=NAMES_BETAS, eps=NAMES_EPS)


def names_step(
    model: torch.nn.Module,
    optimizer: FlatAdam,
    x: Tensor,
    y: Tensor,
    weight: Tensor,
    lr: float,
) -> Tensor:
    """One optimisation step at learning rate ``lr``; returns the loss (detached, not
    synchronised).
    """
    optimizer.lr = lr
    optimizer.zero_grad()
    loss = names_loss(model, x, y, weight)
    loss.backward()
    optimizer.step()
    return loss.detach()


def compiled_names_step(
    model: torch.nn.Module,
) -> Callable[[Tensor, Tensor, Tensor, float], Tensor]:
    """A names step ``step(x, y, weight, lr) -> loss`` compiled whole: loss, gradient
    and Adam in one graph.

    A one-name step is mostly fixed cost per call; differentiating inside the graph
    (torch.func) and updating the weights there replaces a forward, a backward, the
    autograd engine and an optimizer call with one call. The Adam state lives in the
    step (in the weights' dtype); the model's weights are updated in place.
    """
    # the same storage, no autograd
    params = {name: p.detach() for name, p in model.named_parameters()}
    m = {name: torch.zeros_like(p) for name, p in params.items()}
    v = {name: torch.zeros_like(p) for name, p in params.items()}
    device, count = next(iter(params.values())).device, 0

    def loss_of(weights: dict, x: Tensor, y: Tensor, weight: Tensor) -> Tensor:
        return names_loss(
            lambda idx: torch.func.functional_call(model, weights, (idx,)), x, y, weight
        )

    grad_and_loss = torch.func.grad_and_value(loss_of)

    def update(
        x: Tensor, y: Tensor, weight: Tensor, step_size: Tensor, bias2_sqrt: Tensor
    ) -> Tensor:
        grads, loss = grad_and_loss(params, x, y, weight)
        hyper = (step_size, bias2_sqrt, NAMES_BETAS, NAMES_EPS)
        for name, p in params.items():
            adam_update(p, grads[name], m[name], v[name], *hyper)
        return loss

    graph = torch.compile(update, dynamic=False)

    def step(x: Tensor, y: Tensor, weight: Tensor, lr: float) -> Tensor:
        nonlocal count
        count += 1
        scalars = torch.tensor(
            bias_corrected(lr, count, NAMES_BETAS), dtype=torch.float64
        )
        step_size, bias2_sqrt = scalars.to(device)
        return graph(x, y, weight, step_size, bias2_sqrt)

    return step


@dataclass
class NamesResult:
    """What a call to :func:`train_names` did: the loss of every step, the time it took,
    tokens seen.
    """

    losses: list[float]
    seconds: float
    tokens: int


def train_names(
    model: torch.nn.Module,
    data: NamesData,
    steps: int,
    batch_size: int = 1,
    lr: float = 0.01,
    *,
    compile: bool = False,
    on_step=None,
) -> NamesResult:
    """The original's loop on tensors: ``batch_size`` names a step, Adam, linear decay;
    ``on_step(record)``.
    """
    param = next(model.parameters())
    data = data.to(param.device, param.dtype)
    if compile:
        step_fn = compiled_names_step(model)
    else:
        step_fn = functools.partial(names_step, model, make_names_optimizer(model, lr))
    losses, tokens = [], 0
    model.train()
    began = time.perf_counter()
    for step in range(steps):
        t0 = time.perf_counter()
        # one shape: one compilation
        x, y, weight = names_batch(data, step, batch_size, pad_to_block=compile)
        lr_now = linear_decay(step, steps, lr)
        loss = step_fn(x, y, weight, lr_now).item()
        check_finite(loss, step + 1, f"lower --lr (now {lr:g})")
        losses.append(loss)
        tokens += names_tokens(data, step, batch_size)
        if on_step is not None:
            on_step(
                {
                    "step": step + 1,
                    "loss": loss,
                    "lr": lr_now,
                    "ms": round(1000 * (time.perf_counter() - t0), 3),
                }
            )
    return NamesResult(losses, time.perf_counter() - began, tokens)
