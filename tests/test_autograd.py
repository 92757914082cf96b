"""The scalar autograd engine: every op's gradient, deep graphs, repeated backward, the
fused dot.
"""

import math
import random

import pytest

from microgpt.autograd import Value, dot, zero_grad

# Each op as a function of one or two Values, with inputs where it is smooth (log and **
# need x > 0, relu is tested away from its kink at 0). Plain numbers on either side
# exercise the reflected ops.
UNARY = {
    "neg": (lambda a: -a, 1.3),
    "log": (lambda a: a.log(), 1.7),
    "exp": (lambda a: a.exp(), 0.6),
    "relu+": (lambda a: a.relu(), 0.8),
    "relu-": (lambda a: a.relu(), -0.8),
    "pow 3": (lambda a: a**3, 1.2),
    "pow -0.5": (lambda a: a**-0.5, 1.9),
    "pow -1": (lambda a: a**-1, -0.7),
    "2.5 + a": (lambda a: 2.5 + a, 0.4),
    "2.5 - a": (lambda a: 2.5 - a, 0.4),
    "2.5 * a": (lambda a: 2.5 * a, 0.4),
    "2.5 / a": (lambda a: 2.5 / a, 0.4),
    "a + 2.5": (lambda a: a + 2.5, 0.4),
    "a - 2.5": (lambda a: a - 2.5, 0.4),
    "a * 2.5": (lambda a: a * 2.5, 0.4),
    "a / 2.5": (lambda a: a / 2.5, 0.4),
}
BINARY = {
    "a + b": lambda a, b: a + b,
    "a - b": lambda a, b: a - b,
    "a * b": lambda a, b: a * b,
    "a / b": lambda a, b: a / b,
    "mixed": lambda a, b: (a * b + a.exp() / b - (b**2).log()).relu() * a,
}


def numeric_grad(f, xs: list[float], i: int, h: float = 1e-6) -> float:
    """Central finite difference of ``f`` in its ``i``-th input."""
    up, down = list(xs), list(xs)
    up[i] += h
    down[i] -= h
    return (f(*map(Value, up)).data - f(*map(Value, down)).data) / (2 * h)


def grads(f, xs: list[float]) -> tuple[float, list[float]]:
    """Value and analytic gradients of ``f`` at ``xs``."""
    leaves = [Value(x) for x in xs]
    out = f(*leaves)
    out.backward()
    return out.data, [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("name", UNARY)
def test_unary_ops_match_finite_differences(name):
    f, x = UNARY[name]
    _, (g,) = grads(f, [x])
    assert g == pytest.approx(numeric_grad(f, [x], 0), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("name", BINARY)
def test_binary_ops_match_finite_differences(name):
    f, xs = BINARY[name], [1.3, 0.7]
    _, g = grads(f, xs)
    assert g == pytest.approx(
        [numeric_grad(f, xs, i) for i in range(2)], rel=1e-6, abs=1e-8
    )


def test_forward_values_are_plain_float_arithmetic():
    a, b = Value(1.5), Value(-0.25)
    assert (a + b).data == 1.25 and (a - b).data == 1.75 and (a * b).data == -0.375
    assert (a / b).data == 1.5 * (-0.25) ** -1 and (-a).data == -1.5
    assert (
        (a**2).data == 2.25
        and a.log().data == math.log(1.5)
        and b.exp().data == math.exp(-0.25)
    )
    assert b.relu().data == 0.0 and a.relu().data == 1.5
    assert (
        (2 - a).data == 0.5
        and (3 / a).data == 2.0
        and (1 + a).data == 2.5
        and (2 * a).data == 3.0
    )


def test_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    xs = [0.9, -0.4, 1.6]

    def f(
        a, b, c, exp=lambda t: t.exp(), log=lambda t: t.log(), relu=lambda t: t.relu()
    ):
        h = relu(a * b + c) + exp(b) / c - (a - 2) ** 2
        return log(h * h + 1) * a + 3 / (c + 1)

    value, g = grads(f, xs)
    t = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    out = f(*t)
    out.backward()
    assert value == pytest.approx(out.item(), rel=1e-14)
    assert g == pytest.approx([x.grad.item() for x in t], rel=1e-12)


def test_a_node_used_twice_gets_both_contributions():
    a = Value(3.0)
    out = a * a + a  # d/da = 2a + 1
    out.backward()
    assert a.grad == 7.0


def test_deep_chain_backpropagates_without_recursion():
    x = Value(1.0)
    y = x
    for _ in range(100_000):
        y = y * 1.0 + 0.0
    y.backward()
    assert x.grad == 1.0
    # x, and per link two constants and two op nodes
    assert len(y.topo_order()) == 1 + 4 * 100_000


def test_topo_order_puts_children_first_and_each_node_once():
    a, b = Value(2.0), Value(3.0)
    c = a * b
    d = c + a
    out = d * c
    order = out.topo_order()
    assert len(order) == len({id(n) for n in order}) == 5
    pos = {id(n): i for i, n in enumerate(order)}
    for node in order:
        assert all(pos[id(child)] < pos[id(node)] for child in node._children)


def test_backward_twice_doubles_leaves_and_resets_inner_nodes():
    a, b = Value(0.5), Value(-1.5)
    c = a * b
    out = c.exp() + a
    out.backward()
    first = (a.grad, b.grad, c.grad)
    out.backward()
    # leaves accumulate: exactly doubled
    assert (a.grad, b.grad) == (
        2 * first[0],
        2 * first[1],
    )
    assert c.grad == first[2]  # inner nodes start from zero on every backward
    zero_grad([a, b])
    assert (a.grad, b.grad) == (0.0, 0.0)
    out.backward()
    assert (a.grad, b.grad, c.grad) == first


def random_vectors(n: int, seed: int) -> tuple[list[Value], list[Value]]:
    rng = random.Random(seed)
    return [Value(rng.gauss(0, 1)) for _ in range(n)], [
        Value(rng.gauss(0, 1)) for _ in range(n)
    ]


@pytest.mark.parametrize("n", [1, 2, 16, 64])
def test_fused_dot_equals_the_atomic_sum(n):
    xs, ys = random_vectors(n, seed=n)
    atomic = sum(x * y for x, y in zip(xs, ys))
    fused = dot(xs, ys)
    # the same additions in the same order: bit for bit
    assert fused.data == atomic.data
    (atomic * atomic).backward()
    expected = [v.grad for v in xs + ys]
    zero_grad(xs + ys)
    (fused * fused).backward()
    assert [v.grad for v in xs + ys] == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_fused_dot_of_a_vector_with_itself():
    xs, _ = random_vectors(8, seed=0)
    out = dot(xs, xs)
    out.backward()
    assert [x.grad for x in xs] == pytest.approx([2 * x.data for x in xs], rel=1e-15)


def test_dot_refuses_vectors_of_different_lengths():
    xs, ys = random_vectors(3, seed=1)
    with pytest.raises(ValueError, match="same length"):
        dot(xs, ys[:2])


def test_repr_shows_data_and_grad():
    assert repr(Value(2.0)) == "Value(data=2.0, grad=0.0)"
