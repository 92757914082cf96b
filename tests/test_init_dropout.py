"""Initialisation (a first loss near a uniform guess at every width, the names model's
0.08 kept) and dropout.
"""

import math

import pytest
import torch

from microgpt.config import GPTConfig, TrainConfig
from microgpt.data import load_shakespeare
from microgpt.model import GPT, init_std
from microgpt.text import get_batch, split_text
from microgpt.train import lm_loss


@pytest.fixture(scope="module")
def splits(data_dir):
    return split_text(load_shakespeare())


def first_loss(splits, config: GPTConfig, seed: int, batch: int) -> float:
    """The loss of a freshly made model on the first training batch, as train_text draws
    them.
    """
    torch.manual_seed(seed)
    model = GPT(config, attention="sdpa")
    x, y = get_batch(splits.train, 0, seed, config.block_size, batch)
    with torch.no_grad():
        return lm_loss(model, x, y).item()


def test_the_names_model_keeps_the_original_init():
    assert init_std(16) == 0.08
    config = GPTConfig(27)
    torch.manual_seed(42)
    default = GPT(config).state_dict()
    torch.manual_seed(42)
    original = GPT(config, std=0.08).state_dict()
    assert all(torch.equal(default[k], original[k]) for k in original)


def test_default_shakespeare_model_starts_near_a_uniform_guess(splits):
    run = TrainConfig()
    config = run.model(splits.tokenizer.vocab_size)
    uniform = math.log(config.vocab_size)  # ln 66 = 4.19
    assert abs(first_loss(splits, config, run.seed, run.batch_size) - uniform) < 0.3


@pytest.mark.parametrize("width", [32, 64, 256])
def test_first_loss_near_uniform_at_every_width(splits, width):
    config = GPTConfig(
        splits.tokenizer.vocab_size, block_size=64, n_layer=4, n_embd=width, n_head=4
    )
    assert abs(first_loss(splits, config, 0, 8) - math.log(config.vocab_size)) < 0.3
    torch.manual_seed(0)
    # the names model's std, kept at this width, starts far off from 64 up
    too_wide = GPT(config, std=0.08)
    x, y = get_batch(splits.train, 0, 0, config.block_size, 8)
    with torch.no_grad():
        assert (lm_loss(too_wide, x, y).item() - math.log(config.vocab_size) > 0.3) == (
            width >= 64
        )


CONFIG = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_embd=16, n_head=4)


def make(dropout: float, attention: str) -> GPT:
    torch.manual_seed(0)
    return GPT(CONFIG, attention, dropout=dropout)


@pytest.mark.parametrize("attention", ["explicit", "sdpa"])
def test_dropout_zero_changes_nothing(attention):
    model, x = (
        make(0.0, attention),
        torch.randint(0, 11, (3, 8), generator=torch.Generator().manual_seed(1)),
    )
    torch.manual_seed(5)
    trained = model.train()(x)
    state = torch.get_rng_state()
    torch.manual_seed(5)
    assert torch.equal(trained, model.eval()(x))
    assert torch.equal(state, torch.get_rng_state())  # no random numbers drawn either
    assert (
        make(0.0, attention).state_dict().keys()
        == make(0.5, attention).state_dict().keys()
    )


@pytest.mark.parametrize("attention", ["explicit", "sdpa"])
def test_dropout_acts_in_training_only(attention):
    x = torch.randint(0, 11, (3, 8), generator=torch.Generator().manual_seed(1))
    model, plain = make(0.5, attention), make(0.0, attention)
    # same weights
    assert all(
        torch.equal(a, b) for a, b in zip(model.parameters(), plain.parameters())
    )
    assert not torch.equal(model.train()(x), model(x))  # a new mask each call
    assert torch.equal(model.eval()(x), plain.eval()(x))  # evaluation: no dropout


def test_dropout_outside_0_1_is_a_clear_error():
    for p in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
            GPT(CONFIG, dropout=p)
