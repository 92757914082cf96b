"""The scalar GPT: its parameters, atomic vs fused engines, a pinned short run, the CLI
and the exact original.
"""

import math
import os
import random
import subprocess

import pytest

from microgpt import scalar
from microgpt.config import GPTConfig
from microgpt.data import CharTokenizer, load_names

from helpers import run_microgpt

CONFIG = GPTConfig(vocab_size=27)
ORIGINAL_SAMPLES = [
    "kamon",
    "ann",
    "karai",
    "jaire",
    "vialan",
    "karia",
    "yeran",
    "anna",
    "areli",
    "kaina",
    "konna",
    "keylen",
    "liole",
    "alerin",
    "earan",
    "lenne",
    "kana",
    "lara",
    "alela",
    "anton",
]


@pytest.fixture(scope="module")
def names(data_dir):
    """The names shuffled by seed 42, their tokenizer, and the rng's state right after
    the shuffle (as the CLI).
    """
    docs = load_names()
    rng = random.Random(42)
    rng.shuffle(docs)
    return docs, CharTokenizer.from_docs(docs), rng.getstate()


def test_parameter_shapes_are_the_originals_in_order():
    shapes = scalar.param_shapes(CONFIG)
    assert list(shapes) == [
        "wte",
        "wpe",
        "lm_head",
        "layer0.attn_wq",
        "layer0.attn_wk",
        "layer0.attn_wv",
        "layer0.attn_wo",
        "layer0.mlp_fc1",
        "layer0.mlp_fc2",
    ]
    assert (
        shapes["wte"] == (27, 16)
        and shapes["wpe"] == (16, 16)
        and shapes["layer0.mlp_fc1"] == (64, 16)
    )
    assert sum(nout * nin for nout, nin in shapes.values()) == 4192
    assert len(scalar.ScalarGPT.init(CONFIG, random.Random(0)).params) == 4192
    two = scalar.param_shapes(GPTConfig(27, n_layer=2))
    assert list(two)[-1] == "layer1.mlp_fc2" and len(two) == 15


def test_init_draws_gaussians_row_by_row_in_order():
    weights = scalar.init_weights(CONFIG, random.Random(7))
    rng = random.Random(7)
    flat = [x for mat in weights.values() for row in mat for x in row]
    assert flat == [rng.gauss(0, 0.08) for _ in range(4192)]
    model = scalar.ScalarGPT(CONFIG, weights)
    assert model.weights() == weights  # the plain dict round-trips


def test_softmax_sums_to_one_and_survives_large_logits():
    from microgpt.autograd import Value

    probs = scalar.softmax([Value(1000.0), Value(1001.0), Value(999.0)])
    assert sum(p.data for p in probs) == pytest.approx(1.0, abs=1e-15)
    assert probs[1].data == pytest.approx(
        1 / (1 + math.exp(-1) + math.exp(-2)), rel=1e-14
    )


def loss_and_grads(fused: bool, weights, tokens):
    model = scalar.ScalarGPT(CONFIG, weights, fused=fused)
    cache = model.new_cache()
    logits = [
        [v.data for v in model(tok, pos, cache)] for pos, tok in enumerate(tokens[:-1])
    ]
    loss = scalar.doc_loss(model, tokens)
    loss.backward()
    return logits, loss.data, [p.grad for p in model.params]


@pytest.mark.parametrize("seed", [0, 1])
def test_fused_and_atomic_agree(seed):
    rng = random.Random(seed)
    # larger than 0.08 so that attention is far from uniform
    weights = scalar.init_weights(CONFIG, rng, std=0.3)
    tokens = [26, *(rng.randrange(26) for _ in range(9)), 26]
    logits_a, loss_a, grads_a = loss_and_grads(False, weights, tokens)
    logits_f, loss_f, grads_f = loss_and_grads(True, weights, tokens)
    # the forward is bit for bit the same
    assert logits_f == logits_a and loss_f == loss_a
    # only the order of accumulation differs
    assert grads_f == pytest.approx(grads_a, rel=1e-12, abs=1e-12)
    assert any(g != 0 for g in grads_f)


def test_long_documents_are_cut_to_the_block():
    model = scalar.ScalarGPT.init(
        GPTConfig(27, block_size=4), random.Random(0), fused=True
    )
    tokens = [26, *range(10), 26]
    assert (
        scalar.doc_loss(model, tokens).data == scalar.doc_loss(model, tokens[:5]).data
    )


def test_a_short_seeded_run_is_pinned(names):
    docs, tok, state = names
    rng = random.Random()
    rng.setstate(state)
    model = scalar.ScalarGPT.init(CONFIG, rng, fused=True)
    losses = scalar.train(model, [tok.wrap(d) for d in docs], steps=5)
    assert [repr(x) for x in losses] == [
        "3.3659669475848504",
        "3.4242727838717717",
        "3.176888918359416",
        "3.078989491916966",
        "3.2437452390517",
    ]
    # Adam zeroes the gradients after its update
    assert all(p.grad == 0.0 for p in model.params)


def test_adam_matches_torch():
    torch = pytest.importorskip("torch")
    from microgpt.autograd import Value

    start = [0.5, -1.0, 2.0]
    ours = [Value(x) for x in start]
    theirs = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    adam = scalar.Adam(ours)
    torch_adam = torch.optim.Adam([theirs], lr=0.01, betas=(0.85, 0.99), eps=1e-8)
    for step in range(4):
        lr = 0.01 * (1 - step / 4)
        loss = sum((p * p * p).exp() for p in ours)
        loss.backward()
        adam.step(lr)
        for group in torch_adam.param_groups:
            group["lr"] = lr
        torch_adam.zero_grad()
        (theirs**3).exp().sum().backward()
        torch_adam.step()
    assert [p.data for p in ours] == pytest.approx(theirs.tolist(), rel=1e-12)


def test_generate_stops_at_bos_and_at_the_block():
    model = scalar.ScalarGPT.init(CONFIG, random.Random(3), fused=True)
    for seed in range(5):
        out = scalar.generate(model, random.Random(seed), temperature=1.0)
        assert len(out) <= CONFIG.block_size and all(0 <= t < 26 for t in out)
    a = scalar.generate(model, random.Random(9), 0.5)
    assert a == scalar.generate(model, random.Random(9), 0.5)


def test_bad_inputs_raise():
    weights = scalar.init_weights(CONFIG, random.Random(0))
    with pytest.raises(ValueError, match="must be 16 x 16"):
        scalar.ScalarGPT(CONFIG, {**weights, "wpe": weights["wpe"][:-1]})
    with pytest.raises(ValueError, match="must be 27 x 16"):
        scalar.ScalarGPT(
            CONFIG, {**weights, "wte": [row[:-1] for row in weights["wte"]]}
        )
    with pytest.raises(ValueError, match="keys"):
        scalar.ScalarGPT(CONFIG, {k: weights[k] for k in reversed(weights)})
    with pytest.raises(ValueError, match="keys"):
        scalar.ScalarGPT(CONFIG, {k: v for k, v in weights.items() if k != "lm_head"})
    model = scalar.ScalarGPT(CONFIG, weights)
    for temperature in (0, -1.0):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            scalar.generate(model, random.Random(0), temperature)
    with pytest.raises(ValueError, match="at least two tokens"):
        scalar.doc_loss(model, [26])


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``microgpt train names ARGS``, with Python's string hashing fixed."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return run_microgpt("train", "names", *args, env=env, timeout=600)


def test_cli_short_run_prints_the_originals_format(data_dir):
    result = run_cli(
        "--engine",
        "scalar-fused",
        "--steps",
        "20",
        "--log-every",
        "10",
        "--num-samples",
        "3",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == ["num docs: 32033", "vocab size: 27", "num params: 4192"]
    assert [line[:25] for line in lines[3:5]] == [
        "step   10 /   20 | loss 3",
        "step   20 /   20 | loss 2",
    ]
    assert lines[5].startswith("trained 20 steps in ")
    assert lines[6] == "--- inference (new, hallucinated names) ---"
    assert [line[:11] for line in lines[7:]] == [
        "sample  1: ",
        "sample  2: ",
        "sample  3: ",
    ]


def test_cli_reproduces_the_original_exactly(data_dir):
    """The book's core promise: 1,000 steps of the original, same last loss, same 20
    names (fused engine).
    """
    result = run_cli("--engine", "scalar-fused")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "step 1000 / 1000 | loss 2.6497" in lines
    assert lines[-20:] == [
        f"sample {i:2d}: {name}" for i, name in enumerate(ORIGINAL_SAMPLES, 1)
    ]


def test_train_pauses_the_cycle_collector_and_restores_it():
    import gc

    model = scalar.ScalarGPT.init(CONFIG, random.Random(0), fused=True)
    seen = []
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            scalar.train(
                model,
                [[26, 1, 2, 26]],
                2,
                on_step=lambda step, loss: seen.append(gc.isenabled()),
            )
            assert gc.isenabled() == enabled
        finally:
            gc.enable()
    assert seen == [False] * 4
