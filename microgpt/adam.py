"""Adam on one flat vector: every weight and every gradient of the model is a view of
one of two vectors.

``torch.optim.Adam`` runs each line of Adam's formula once per weight tensor (or hands
the list of tensors to one fused kernel). For a small model the fixed cost of each call,
not the arithmetic, sets the time: here the model's weights are slices of one vector and
its gradients slices of another, so each line of the formula is one operation on every
number at once. The maths is ``torch.optim.Adam``'s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn


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
