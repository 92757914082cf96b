"""Part I's chapters build pieces inline to teach them; each must equal the package's
piece.
"""

import math
import random

import pytest

from microgpt import autograd, scalar
from microgpt.config import GPTConfig

from helpers import run_chapter_cells


def chapter_2_value() -> type:
    ns = run_chapter_cells(
        "02_autograd.ipynb",
        ["class Value:", "def backward(self):", "Value.__pow__ ="],
        {"math": math},
    )
    return ns["Value"]


def expression(a, b, c):
    """Every op of the engine, with plain numbers on both sides."""
    h = (a * b + c / a - b**2).relu() + (-c).exp() - (2 - a) * (3 / b) + (a + 1.5).log()
    return h * a - 0.5 + 2 * c


def test_chapter_2_value_equals_the_packages():
    Inline = chapter_2_value()
    for xs in ([1.2, -0.7, 0.3], [0.4, 2.0, -1.1]):
        ours = [Inline(x) for x in xs]
        theirs = [autograd.Value(x) for x in xs]
        out_ours, out_theirs = expression(*ours), expression(*theirs)
        out_ours.backward()
        out_theirs.backward()
        assert out_ours.data == out_theirs.data
        assert [v.grad for v in ours] == [v.grad for v in theirs]


def chapter_3(config: GPTConfig, weights: dict) -> dict:
    state = {
        name: [[autograd.Value(x) for x in row] for row in mat]
        for name, mat in weights.items()
    }
    markers = [
        "def linear(",
        "def rmsnorm(",
        "def softmax(",
        "def attention(",
        "def gpt(",
    ]
    return run_chapter_cells(
        "03_the_model.ipynb", markers, {"config": config, "state": state}
    )


def run_piece(piece) -> tuple:
    """Outputs and input gradients of ``piece(x, w)`` on fixed random inputs, under a
    weighted-sum loss.
    """
    rng = random.Random(1)
    x = [autograd.Value(rng.gauss(0, 1)) for _ in range(16)]
    w = [[autograd.Value(rng.gauss(0, 1)) for _ in range(16)] for _ in range(5)]
    out = piece(x, w)
    sum(o * (i + 1) for i, o in enumerate(out)).backward()
    return (
        [o.data for o in out],
        [v.grad for v in x],
        [v.grad for row in w for v in row],
    )


def test_chapter_3_blocks_equal_the_packages():
    config = GPTConfig(27)
    ns = chapter_3(config, scalar.init_weights(config, random.Random(0)))
    model = scalar.ScalarGPT(config, scalar.init_weights(config, random.Random(0)))
    assert run_piece(ns["linear"]) == run_piece(model.linear)
    assert run_piece(lambda x, w: ns["rmsnorm"](x)) == run_piece(
        lambda x, w: model.rmsnorm(x)
    )
    assert run_piece(lambda x, w: ns["softmax"](x)) == run_piece(
        lambda x, w: scalar.softmax(x)
    )


@pytest.mark.parametrize(
    "config", [GPTConfig(27), GPTConfig(7, block_size=8, n_layer=2, n_embd=8, n_head=2)]
)
def test_chapter_3_gpt_equals_the_packages(config):
    weights = scalar.init_weights(config, random.Random(2), std=0.3)
    ns = chapter_3(config, weights)
    model = scalar.ScalarGPT(config, weights, fused=False)
    bos = config.vocab_size - 1
    tokens = [bos, *(random.Random(3).randrange(bos) for _ in range(6)), bos]
    keys, values = (
        [[] for _ in range(config.n_layer)],
        [[] for _ in range(config.n_layer)],
    )
    cache = model.new_cache()
    losses = []
    for pos in range(len(tokens) - 1):
        logits = ns["gpt"](tokens[pos], pos, keys, values)
        assert [v.data for v in logits] == [
            v.data for v in model(tokens[pos], pos, cache)
        ]
        losses.append(-ns["softmax"](logits)[tokens[pos + 1]].log())
    loss = (1 / len(losses)) * sum(losses)
    loss.backward()
    package = scalar.doc_loss(model, tokens)
    package.backward()
    assert loss.data == package.data
    ours = [p.grad for mat in ns["state"].values() for row in mat for p in row]
    assert ours == [p.grad for p in model.params]


def test_chapter_4_training_loop_equals_scalar_train():
    ns = run_chapter_cells(
        "04_training_and_sampling.ipynb",
        ["def adam_step(", "def train_loop("],
        {"scalar": scalar},
    )
    config = GPTConfig(27)
    weights = scalar.init_weights(config, random.Random(4))
    rng = random.Random(5)
    docs = [
        [26, *(rng.randrange(26) for _ in range(rng.randrange(1, 9))), 26]
        for _ in range(6)
    ]
    mine, package = (
        scalar.ScalarGPT(config, weights, fused=True),
        scalar.ScalarGPT(config, weights, fused=True),
    )
    assert ns["train_loop"](mine, docs, 8) == scalar.train(package, docs, 8)
    assert mine.weights() == package.weights()
