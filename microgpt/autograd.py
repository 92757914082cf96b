"""A scalar reverse-mode autograd engine: every number remembers where it came from."""

from __future__ import annotations

import math
from collections.abc import Sequence


class Value:
    """A scalar node: its ``data``, the ``grad`` of the loss w.r.t. it, its children and
    local gradients.
    """

    __slots__ = ("data", "grad", "_children", "_local_grads")

    def __init__(self, data: float, children: tuple = (), local_grads: tuple = ()):
        self.data = data
        self.grad = 0.0
        self._children = children
        self._local_grads = local_grads

    def __repr__(self) -> str:
        return f"Value(data={self.data!r}, grad={self.grad!r})"

    def __add__(self, other: Value | float) -> Value:
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, (self, other), (1.0, 1.0))

    def __mul__(self, other: Value | float) -> Value:
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data))

    def __pow__(self, k: float) -> Value:
        return Value(self.data**k, (self,), (k * self.data ** (k - 1),))

    def log(self) -> Value:
        return Value(math.log(self.data), (self,), (1 / self.data,))

    def exp(self) -> Value:
        e = math.exp(self.data)
        return Value(e, (self,), (e,))

    def relu(self) -> Value:
        return Value(max(0.0, self.data), (self,), (float(self.data > 0),))

    def __neg__(self) -> Value:
        return self * -1

    def __radd__(self, other: float) -> Value:
        return self + other

    def __sub__(self, other: Value | float) -> Value:
        return self + (-other)

    def __rsub__(self, other: float) -> Value:
        return other + (-self)

    def __rmul__(self, other: float) -> Value:
        return self * other

    def __truediv__(self, other: Value | float) -> Value:
        return self * other**-1

    def __rtruediv__(self, other: float) -> Value:
        return other * self**-1

    def topo_order(self) -> list[Value]:
        """Every node this one depends on, children before parents: the original's
        recursive depth-first order, walked with an explicit stack so that deep graphs
        cannot overflow.
        """
        order: list[Value] = []
        seen = {self}
        stack = [(self, iter(self._children))]
        while stack:
            node, children = stack[-1]
            for child in children:
                if child not in seen:
                    seen.add(child)
                    stack.append((child, iter(child._children)))
                    break
            else:
                stack.pop()
                order.append(node)
        return order

    def backward(self) -> None:
        """Fill ``grad`` of every node below this one by the chain rule.

        Leaves (nodes with no children, such as parameters) *accumulate*: a second
        ``backward()`` adds the same gradients again, as in PyTorch. Inner nodes are
        reset each time. Zero the leaves' grads yourself (``zero_grad``) between steps;
        the optimisers here do it for you.
        """
        order = self.topo_order()
        for node in order:
            if node._children:
                node.grad = 0.0
        self.grad = 1.0
        for node in reversed(order):
            grad = node.grad
            for child, local in zip(node._children, node._local_grads):
                child.grad += local * grad


def dot(xs: Sequence[Value], ys: Sequence[Value]) -> Value:
    """One fused node for ``sum(x * y)``: the forward sums in the same order as the
    atomic ops.
    """
    if len(xs) != len(ys):
        raise ValueError(
            f"dot needs two vectors of the same length, got {len(xs)} and {len(ys)}"
        )
    xd = [x.data for x in xs]
    yd = [y.data for y in ys]
    acc = 0.0
    for a, b in zip(xd, yd):
        acc += a * b
    return Value(acc, (*xs, *ys), (*yd, *xd))


def zero_grad(params: Sequence[Value]) -> None:
    """Set every parameter's gradient back to zero."""
    for p in params:
        p.grad = 0.0
