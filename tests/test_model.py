"""The torch GPT is the scalar GPT: same weights, same loss, same gradient for every
parameter.
"""

import random

import pytest
import torch
import torch.nn.functional as F

from microgpt import scalar
from microgpt.config import GPTConfig
from microgpt.data import CharTokenizer, load_names
from microgpt.model import (
    GPT,
    causal_mask,
    gpt_from_scalar,
    rmsnorm,
    scalar_weights,
    torch_name,
)

CONFIG = GPTConfig(vocab_size=27)


@pytest.fixture
def float64():
    """Run the test with float64 as torch's default dtype, then put the old one back."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(scope="module")
def seed42(data_dir):
    """What ``microgpt train names`` starts from: docs shuffled by Random(42), then the
    scalar init.
    """
    docs = load_names(data_dir / "names.txt")
    rng = random.Random(42)
    rng.shuffle(docs)
    tok = CharTokenizer.from_docs(docs)
    config = GPTConfig(tok.vocab_size)
    return tok, config, scalar.init_weights(config, rng)


def one_name_per_length(tok: CharTokenizer, rng: random.Random) -> list[list[int]]:
    """A random name of every length 1..15, wrapped in BOS."""
    return [
        tok.wrap("".join(rng.choice(tok.chars) for _ in range(n))) for n in range(1, 16)
    ]


def torch_loss_and_grads(model: GPT, tokens: list[int]) -> tuple[float, dict]:
    """The torch model's mean cross-entropy on one wrapped name, and each weight's
    gradient as a tensor.
    """
    model.zero_grad()
    idx = torch.tensor([tokens[:-1]])
    loss = F.cross_entropy(model(idx)[0], torch.tensor(tokens[1:]))
    loss.backward()
    params = dict(model.named_parameters())
    return loss.item(), {
        name: params[torch_name(name)].grad
        for name in scalar.param_shapes(model.config)
    }


def scalar_loss_and_grads(
    model: scalar.ScalarGPT, tokens: list[int]
) -> tuple[float, dict]:
    """The scalar engine's loss on one wrapped name, and each weight's gradient as a
    tensor.
    """
    for p in model.params:
        p.grad = 0.0
    loss = scalar.doc_loss(model, tokens)
    loss.backward()
    grads = {
        name: torch.tensor([[p.grad for p in row] for row in mat])
        for name, mat in model.state.items()
    }
    return loss.data, grads


def assert_same(
    torch_model: GPT, scalar_model: scalar.ScalarGPT, tokens: list[int]
) -> None:
    """Loss to 1e-12 relative; every gradient matrix to 1e-12 of its largest entry."""
    t_loss, t_grads = torch_loss_and_grads(torch_model, tokens)
    s_loss, s_grads = scalar_loss_and_grads(scalar_model, tokens)
    assert t_loss == pytest.approx(s_loss, rel=1e-12, abs=0)
    assert list(t_grads) == list(s_grads)
    for name, s_grad in s_grads.items():
        scale = s_grad.abs().max().item()
        assert scale > 0, f"{name} got no gradient: the comparison would be empty"
        err = (t_grads[name] - s_grad).abs().max().item()
        assert err <= 1e-12 * scale, (
            f"{name}: max |torch - scalar| = {err:.3g}, largest grad {scale:.3g}"
        )


@pytest.mark.parametrize("fused", [False, True], ids=["atomic", "fused"])
def test_equal_to_scalar_engine_with_random_weights(float64, fused):
    rng = random.Random(7)
    # larger than 0.08 so attention is far from uniform
    weights = scalar.init_weights(CONFIG, rng, std=0.3)
    tok = CharTokenizer("abcdefghijklmnopqrstuvwxyz")
    torch_model = gpt_from_scalar(CONFIG, weights)
    scalar_model = scalar.ScalarGPT(CONFIG, weights, fused=fused)
    for tokens in one_name_per_length(tok, rng):
        assert_same(torch_model, scalar_model, tokens)


def test_equal_to_scalar_engine_at_the_seed_42_init(float64, seed42):
    tok, config, weights = seed42
    torch_model = gpt_from_scalar(config, weights)
    scalar_model = scalar.ScalarGPT(config, weights, fused=True)
    for tokens in one_name_per_length(tok, random.Random(42)):
        assert_same(torch_model, scalar_model, tokens)


def test_equal_with_two_layers_and_one_head(float64):
    config = GPTConfig(vocab_size=5, block_size=6, n_layer=2, n_embd=8, n_head=1)
    weights = scalar.init_weights(config, random.Random(3), std=0.3)
    assert_same(
        gpt_from_scalar(config, weights),
        scalar.ScalarGPT(config, weights),
        [4, 0, 1, 3, 2, 0, 4],
    )


def test_right_padded_batch_gives_each_name_its_own_logits(float64):
    model = gpt_from_scalar(
        CONFIG, scalar.init_weights(CONFIG, random.Random(1), std=0.3)
    )
    names = [[26, 1, 2], [26, 5, 6, 7, 8, 9, 10], [26], [26, *range(15)]]
    T = max(map(len, names))
    batch = torch.tensor([name + [0] * (T - len(name)) for name in names])
    logits = model(batch)
    for row, name in zip(logits, names):
        alone = model(torch.tensor([name]))[0]
        assert torch.allclose(row[: len(name)], alone, rtol=1e-13, atol=1e-14)
    assert not torch.allclose(logits[0, 3:], logits[1, 3:]), (
        "padding positions should differ between rows"
    )


def test_round_trip_is_exact(float64):
    weights = scalar.init_weights(CONFIG, random.Random(5))
    model = gpt_from_scalar(CONFIG, weights)
    assert scalar_weights(model) == weights
    assert all(type(x) is float for row in scalar_weights(model)["wte"] for x in row)
    assert list(scalar_weights(model)) == list(scalar.param_shapes(CONFIG))


def test_porting_weights_leaves_the_global_rng_alone():
    weights = scalar.init_weights(CONFIG, random.Random(5))
    torch.manual_seed(7)
    state = torch.get_rng_state()
    model = gpt_from_scalar(CONFIG, weights, attention="sdpa", dtype=torch.float64)
    assert torch.equal(torch.get_rng_state(), state)
    assert model.wte.weight.dtype == torch.float64 and scalar_weights(model) == weights


def test_default_init_shapes_and_dtype():
    torch.manual_seed(0)
    model = GPT(CONFIG)
    assert model.num_params() == 4192  # the original's count
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert 0.07 < model.wte.weight.std().item() < 0.09
    assert model(torch.zeros(3, 16, dtype=torch.long)).shape == (3, 16, 27)
    assert list(model.state_dict()) == [
        torch_name(n) for n in scalar.param_shapes(CONFIG)
    ]


def test_float64_default_dtype_gives_a_float64_model(float64):
    model = GPT(CONFIG)
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert model.layers[0].attn.mask.dtype == torch.float64


def test_no_biases_and_no_norm_weights():
    model = GPT(GPTConfig(vocab_size=10, n_layer=3))
    assert all(name.endswith(".weight") for name, _ in model.named_parameters())
    assert len(list(model.parameters())) == 3 + 3 * 6


def test_the_mask_and_rmsnorm():
    mask = causal_mask(4)
    assert torch.equal(mask == 0, torch.ones(4, 4, dtype=torch.bool).tril())
    assert torch.isinf(mask[0, 1]) and mask[0, 1] < 0
    x = torch.randn(3, 8, dtype=torch.float64) * 5
    y = rmsnorm(x)
    assert torch.allclose(
        y.pow(2).mean(-1), torch.ones(3, dtype=torch.float64), rtol=1e-5
    )


def test_sdpa_attention_is_the_same(float64):
    weights = scalar.init_weights(CONFIG, random.Random(2), std=0.3)
    idx = torch.randint(0, 27, (4, 16), generator=torch.Generator().manual_seed(0))
    explicit, fused = (
        gpt_from_scalar(CONFIG, weights),
        gpt_from_scalar(CONFIG, weights, attention="sdpa"),
    )
    assert torch.allclose(explicit(idx), fused(idx), rtol=1e-12, atol=1e-13)
    explicit(idx).sum().backward()
    fused(idx).sum().backward()
    for a, b in zip(explicit.parameters(), fused.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("attention", ["explicit", "sdpa"])
def test_cache_continues_exactly(float64, attention):
    model = gpt_from_scalar(
        CONFIG, scalar.init_weights(CONFIG, random.Random(4), std=0.3), attention
    )
    idx = torch.randint(0, 27, (2, 16), generator=torch.Generator().manual_seed(1))
    cache = model.new_cache()
    pieces = [
        model(idx[:, :5], cache),
        *(model(idx[:, t : t + 1], cache) for t in range(5, 16)),
    ]
    assert cache.length == 16
    assert torch.allclose(torch.cat(pieces, dim=1), model(idx), rtol=1e-12, atol=1e-13)
    with pytest.raises(ValueError, match="block_size is 16"):
        model(idx[:, :1], cache)


def test_bad_input_is_a_clear_error():
    model = GPT(CONFIG)
    with pytest.raises(ValueError, match="cannot run 17 positions: block_size is 16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, T\) LongTensor"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"\(B, T\) LongTensor"):
        model(torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="GPTConfig"):
        GPT({"vocab_size": 27})
    with pytest.raises(ValueError, match="divisible by n_head"):
        GPT(GPTConfig(vocab_size=27, n_embd=15))


def test_bad_weights_are_a_clear_error():
    weights = scalar.init_weights(CONFIG, random.Random(0))
    with pytest.raises(ValueError, match=r"missing \['wpe'\]"):
        gpt_from_scalar(CONFIG, {k: v for k, v in weights.items() if k != "wpe"})
    short = dict(weights, lm_head=weights["lm_head"][:-1])
    with pytest.raises(ValueError, match=r"weights\['lm_head'\] must be 27 x 16"):
        gpt_from_scalar(CONFIG, short)
    ragged = dict(weights, wte=[*weights["wte"][:-1], weights["wte"][-1][:3]])
    with pytest.raises(ValueError, match=r"weights\['wte'\] must be 27 x 16"):
        gpt_from_scalar(CONFIG, ragged)
