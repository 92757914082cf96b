"""Training on names with tensors: padding never counts, batch 1 in float64 retraces the
scalar engine.
"""

import json
import random

import pytest
import torch

from microgpt import scalar
from microgpt.config import GPTConfig
from microgpt.data import CharTokenizer, load_names
from microgpt.model import GPT, gpt_from_scalar, scalar_weights
from microgpt.names import (
    FlatAdam,
    encode_names,
    make_names_optimizer,
    names_batch,
    names_loss,
    names_step,
    train_names,
)
from microgpt.scalar import linear_decay

from helpers import run_chapter_cells, run_main, run_microgpt


@pytest.fixture(scope="module")
def shuffled(data_dir):
    """The names as ``microgpt train names`` sees them: shuffled by Random(42); the rng
    goes on to the init.
    """
    docs = load_names(data_dir / "names.txt")
    rng = random.Random(42)
    rng.shuffle(docs)
    return docs, CharTokenizer.from_docs(docs), rng.getstate()


def seed42_weights(shuffled) -> tuple[GPTConfig, dict]:
    """The default config and the initial weights ``microgpt train names`` draws after
    shuffling.
    """
    _, tok, rng_state = shuffled
    rng = random.Random()
    rng.setstate(rng_state)
    config = GPTConfig(tok.vocab_size)
    return config, scalar.init_weights(config, rng)


TOK = CharTokenizer("abcdefghijklmnopqrstuvwxyz")
DOCS = ["ab", "x", "abcdefghijklmnopqrstu", "emma", "zo"]


def test_names_are_encoded_once_padded_and_weighted():
    data = encode_names(DOCS, TOK, block_size=8)
    assert data.x.shape == data.y.shape == data.weight.shape == (5, 8)
    assert data.lengths == [3, 2, 8, 5, 3]
    assert data.x[0].tolist() == [26, 0, 1, 26, 26, 26, 26, 26]  # BOS a b, then padding
    assert data.y[0].tolist() == [0, 1, 26, 26, 26, 26, 26, 26]  # a b BOS, then padding
    # cut to the block
    assert data.x[2].tolist() == [26, *range(7)] and data.y[2].tolist() == list(
        range(8)
    )
    assert data.weight.dtype == torch.float64
    for row, n in zip(data.weight, data.lengths):
        assert row[:n].tolist() == [1 / n] * n and not row[n:].any()


def test_batches_follow_the_original_order_and_cut_the_padding():
    data = encode_names(DOCS, TOK, block_size=8)
    x, y, w = names_batch(data, step=0, batch_size=2)
    # the longest of names 0 and 1 has 3 positions
    assert torch.equal(x, data.x[:2, :3])
    # names 4, 0: wraps around
    x, y, w = names_batch(data, step=2, batch_size=2)
    assert torch.equal(x, data.x[[4, 0], :3]) and torch.equal(
        w, data.weight[[4, 0], :3]
    )
    # batch 1: name step % N, as the original
    x, _, _ = names_batch(data, step=7, batch_size=1)
    assert torch.equal(x, data.x[2:3, :8])
    x, _, _ = names_batch(data, step=0, batch_size=2, pad_to_block=True)
    assert x.shape == (2, 8)


def test_padding_never_contributes_to_loss_or_gradient():
    torch.manual_seed(0)
    model = GPT(GPTConfig(27, block_size=8), std=0.3).double()
    data = encode_names(DOCS, TOK, block_size=8).to("cpu", torch.float64)
    x, y, w = names_batch(data, 0, 5)
    loss = names_loss(model, x, y, w)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    noisy_x, noisy_y = x.clone(), y.clone()
    noisy_x[w == 0], noisy_y[w == 0] = 3, 7  # change every padded input and target
    noisy = names_loss(model, noisy_x, noisy_y, w)
    noisy.backward()
    assert noisy.item() == pytest.approx(loss.item(), rel=1e-14)
    for a, p in zip(grads, model.parameters()):
        assert torch.allclose(a, p.grad, rtol=1e-12, atol=1e-15)
    # and the batch loss is the mean of the per-name losses, each the original's
    # per-name mean
    alone = [names_loss(model, *names_batch(data, i, 1)).item() for i in range(5)]
    assert loss.item() == pytest.approx(sum(alone) / 5, rel=1e-13)


def test_batch_1_loss_is_the_scalar_engines_per_name_loss():
    config = GPTConfig(27, block_size=8)
    weights = scalar.init_weights(config, random.Random(1), std=0.3)
    model = gpt_from_scalar(config, weights, dtype=torch.float64)
    data = encode_names(DOCS, TOK, block_size=8).to("cpu", torch.float64)
    s_model = scalar.ScalarGPT(config, weights, fused=True)
    for i, doc in enumerate(DOCS):
        expected = scalar.doc_loss(s_model, TOK.wrap(doc)).data
        assert names_loss(model, *names_batch(data, i, 1)).item() == pytest.approx(
            expected, rel=1e-13
        )


def test_linear_decay_is_the_originals():
    assert [linear_decay(s, 4, 0.01) for s in range(4)] == [
        0.01 * (1 - s / 4) for s in range(4)
    ]


def test_float64_batch_1_training_retraces_the_scalar_engine(shuffled):
    docs, tok, _ = shuffled
    config, weights = seed42_weights(shuffled)
    steps = 6
    s_model = scalar.ScalarGPT(config, weights, fused=True)
    s_losses = scalar.train(s_model, [tok.wrap(d) for d in docs[:steps]], steps)
    model = gpt_from_scalar(config, weights, dtype=torch.float64)
    result = train_names(model, encode_names(docs[:steps], tok, 16), steps)
    assert result.losses == pytest.approx(s_losses, rel=1e-9, abs=0)
    assert result.tokens == sum(len(d) + 1 for d in docs[:steps])
    trained = scalar_weights(model)
    for name, mat in s_model.weights().items():
        assert torch.allclose(
            torch.tensor(trained[name]), torch.tensor(mat), rtol=0, atol=1e-9
        ), name


def test_batched_training_lowers_the_loss(shuffled):
    docs, tok, _ = shuffled
    torch.manual_seed(0)
    model = GPT(GPTConfig(tok.vocab_size))
    records = []
    result = train_names(
        model,
        encode_names(docs[:2000], tok, 16),
        60,
        batch_size=32,
        on_step=records.append,
    )
    assert [r["step"] for r in records] == list(range(1, 61))
    assert records[0]["lr"] == 0.01 and records[-1]["lr"] == pytest.approx(0.01 / 60)
    assert sum(result.losses[-10:]) / 10 < result.losses[0] - 0.5


def test_cli_smoke_run_writes_metrics_and_a_checkpoint(tmp_path, data_dir):
    result = run_microgpt(
        "train",
        "names",
        "--steps",
        "20",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--num-samples",
        "3",
        "--out",
        str(tmp_path / "run"),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == ["num docs: 32033", "vocab size: 27", "num params: 4192"]
    assert any(
        line.startswith("trained 20 steps in ") and "ms/step" in line for line in lines
    )
    assert lines[-4] == "--- inference (new, hallucinated names) ---"
    assert [line[:10] for line in lines[-3:]] == [
        "sample  1:",
        "sample  2:",
        "sample  3:",
    ]
    records = [
        json.loads(line)
        for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in records] == list(range(1, 21))
    assert all(set(r) == {"step", "loss", "lr", "ms"} for r in records)
    ckpt = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)
    assert (
        ckpt["dataset"] == "names" and ckpt["step"] == 20 and len(ckpt["chars"]) == 26
    )


def test_cli_torch_batch_1_float64_matches_the_scalar_cli(data_dir):
    torch_run = run_main(
        "train",
        "names",
        "--steps",
        "3",
        "--dtype",
        "float64",
        "--log-every",
        "1",
        "--num-samples",
        "0",
    )
    scalar_run = run_main(
        "train",
        "names",
        "--steps",
        "3",
        "--engine",
        "scalar-fused",
        "--log-every",
        "1",
        "--num-samples",
        "0",
    )
    assert torch_run.returncode == 0 and scalar_run.returncode == 0, (
        torch_run.stderr + scalar_run.stderr
    )
    step_lines = [
        [line for line in r.stdout.splitlines() if line.startswith("step")]
        for r in (torch_run, scalar_run)
    ]
    assert len(step_lines[0]) == 3 and step_lines[0] == step_lines[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--engine", "scalar", "--batch-size", "4"],
            "microgpt: error: --batch-size: only with --engine torch",
        ),
        (
            ["--engine", "scalar-fused", "--out", "x", "--device", "cpu"],
            "microgpt: error: --device, --out: only with",
        ),
        (["--device", "tpu"], "microgpt: error: unknown device 'tpu'"),
        (
            ["--n-head", "3"],
            "microgpt: error: n_embd (16) must be divisible by n_head (3)",
        ),
    ],
)
def test_bad_flags_are_one_line_errors(args, message, data_dir):
    result = run_main("train", "names", "--steps", "1", *args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr


def test_bad_flag_values_are_usage_errors():
    result = run_main("train", "names", "--batch-size", "0")
    assert (
        result.returncode == 2 and "--batch-size: must be >= 1, got 0" in result.stderr
    )
    result = run_main("train", "names", "--dtype", "float16")
    assert result.returncode == 2 and "invalid choice: 'float16'" in result.stderr


def test_chapter_7_training_loop_is_train_names(shuffled):
    namespace = {
        "torch": torch,
        "names_batch": names_batch,
        "batch_loss": names_loss,
    }
    chapter = "07_batching_and_the_causal_mask.ipynb"
    train_loop = run_chapter_cells(chapter, ["def train_loop("], namespace)[
        "train_loop"
    ]
    docs, tok, _ = shuffled
    config, weights = seed42_weights(shuffled)
    data = encode_names(docs[:500], tok, 16)
    for batch_size in (1, 8):
        mine = train_loop(gpt_from_scalar(config, weights), data, 20, batch_size)
        package = train_names(
            gpt_from_scalar(config, weights), data, 20, batch_size
        ).losses
        assert mine == package


def test_names_step_returns_the_detached_loss_and_uses_the_flat_adam(shuffled):
    docs, tok, _ = shuffled
    config, weights = seed42_weights(shuffled)
    model = gpt_from_scalar(config, weights)
    optimizer = make_names_optimizer(model)
    assert type(optimizer) is FlatAdam and (optimizer.betas, optimizer.eps) == (
        (0.85, 0.99),
        1e-8,
    )
    x, y, w = names_batch(encode_names(docs[:4], tok, 16), 0, 2)
    before = names_loss(model, x, y, w).item()
    loss = names_step(model, optimizer, x, y, w, 0.01)
    assert (
        isinstance(loss, torch.Tensor)
        and not loss.requires_grad
        and loss.item() == before
    )


def test_compiled_training_is_eager_training_with_adam_in_the_graph(shuffled):
    """float64, so that the in-graph Adam must agree with torch.optim.Adam to rounding,
    step after step.
    """
    docs, tok, _ = shuffled
    config, weights = seed42_weights(shuffled)
    data = encode_names(docs[:64], tok, 16)
    runs = []
    for compile in (False, True):
        model = gpt_from_scalar(config, weights, dtype=torch.float64)
        runs.append(
            (
                train_names(model, data, 20, batch_size=4, compile=compile).losses,
                model,
            )
        )
    (eager, eager_model), (compiled, compiled_model) = runs
    assert compiled == pytest.approx(eager, rel=1e-10)
    for a, b in zip(eager_model.parameters(), compiled_model.parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-10)
