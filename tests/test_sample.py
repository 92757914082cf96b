"""Sampling: the KV cache changes the speed, never the tokens; bad settings are clear
errors.
"""

import pytest
import torch

from microgpt import cli, sample
from microgpt.config import GPTConfig
from microgpt.data import CharTokenizer
from microgpt.model import GPT
from microgpt.sample import generate, nucleus, sample_docs, sample_next


@pytest.fixture
def model():
    """A float64 model with weights large enough that its distributions are far from
    uniform.
    """
    torch.manual_seed(0)
    return GPT(
        GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_embd=16, n_head=4), std=0.5
    ).double()


def both(model, idx, n, **kw):
    """The same generation with and without the cache, from the same seed."""
    cached = generate(model, idx, n, generator=torch.Generator().manual_seed(3), **kw)
    full = generate(
        model, idx, n, generator=torch.Generator().manual_seed(3), use_cache=False, **kw
    )
    return cached, full


@pytest.mark.parametrize("prompt_len", [1, 5, 8, 12])
def test_cache_gives_the_same_tokens_as_recomputing(model, prompt_len):
    idx = torch.randint(
        0, 11, (3, prompt_len), generator=torch.Generator().manual_seed(prompt_len)
    )
    # runs past block_size: the window slides
    cached, full = both(model, idx, 20, temperature=0.8)
    assert cached.shape == (3, 20)
    assert torch.equal(cached, full)


def test_top_k_gives_the_same_tokens_as_recomputing(model):
    cached, full = both(model, torch.zeros(4, 1, dtype=torch.long), 20, top_k=3)
    assert torch.equal(cached, full)


def test_stops_once_every_row_has_produced_the_stop_token(model):
    cached, full = both(
        model, torch.zeros(4, 1, dtype=torch.long), 200, temperature=2.0, stop_token=10
    )
    assert torch.equal(cached, full)
    rows = cached.tolist()
    first_stop = [row.index(10) for row in rows]  # every row has produced it ...
    # ... and the last row to do so did it at the last step
    assert max(first_stop) == len(rows[0]) - 1


def test_top_k_keeps_only_the_k_best():
    logits = torch.tensor([[0.0, 5.0, 1.0, 4.0, -2.0]])
    g = torch.Generator().manual_seed(0)
    draws = {sample_next(logits, 1.0, 2, g).item() for _ in range(200)}
    assert draws == {1, 3}
    assert {sample_next(logits, 1.0, 1, g).item() for _ in range(20)} == {1}
    # k above the vocabulary keeps everything
    assert sample_next(logits, 1.0, 99, g).shape == (
        1,
        1,
    )


def test_a_banned_token_is_never_drawn(model):
    cached, full = both(
        model, torch.zeros(4, 1, dtype=torch.long), 40, temperature=3.0, banned=10
    )
    assert torch.equal(cached, full) and not (cached == 10).any()
    assert (
        both(model, torch.zeros(4, 1, dtype=torch.long), 40, temperature=3.0)[0] == 10
    ).any()


def test_low_temperature_is_greedy():
    logits = torch.tensor([[0.0, 2.0, 1.0]] * 3)
    token = sample_next(logits, 1e-4, None, torch.Generator().manual_seed(0))
    assert token.flatten().tolist() == [1, 1, 1]


def test_same_seed_same_samples_and_names_stop_at_bos(model):
    tok = CharTokenizer("abcdefghij")  # 10 characters + BOS = 11
    first = sample_docs(model, tok, 8, temperature=1.0, seed=5)
    assert first == sample_docs(model, tok, 8, temperature=1.0, seed=5)
    assert first != sample_docs(model, tok, 8, temperature=1.0, seed=6)
    assert all(len(name) <= model.config.block_size for name in first)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"temperature": -1.0}, "temperature must be > 0"),
        ({"top_k": 0}, "top_k must be a positive integer"),
        ({"top_k": 2.5}, "top_k must be a positive integer"),
        ({"top_k": True}, "top_k must be a positive integer"),
    ],
)
def test_bad_settings_are_clear_errors(model, kw, message):
    with pytest.raises(ValueError, match=message):
        generate(model, torch.zeros(1, 1, dtype=torch.long), 3, **kw)


def test_generate_checks_its_settings_once_not_every_token(model, monkeypatch):
    check, calls = sample.check_sampling, []

    def counted(*args):
        calls.append(args)
        check(*args)

    monkeypatch.setattr(sample, "check_sampling", counted)
    out = generate(model, torch.zeros(2, 1, dtype=torch.long), 20, 0.8, 3, top_p=0.9)
    assert out.shape == (2, 20) and calls == [(0.8, 3, 0.9)]


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"temperature": 0.0}, "temperature must be > 0, got 0.0"),
        ({"top_k": True}, "top_k must be a positive integer or None, got True"),
        ({"top_p": 90}, r"top_p must be in \(0, 1\] or None, got 90"),
    ],
)
def test_sample_next_alone_checks_its_settings(kw, message):
    # chapter 12 calls sample_next directly and prints these errors
    with pytest.raises(ValueError, match=f"^{message}$"):
        sample_next(torch.zeros(1, 5), **kw)


def test_bad_shapes_are_clear_errors(model):
    with pytest.raises(ValueError, match=r"idx must be \(B, T\)"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 0"):
        generate(model, torch.zeros(1, 1, dtype=torch.long), -1)


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.05, 0.3, 0.15]])
    logits, g = probs.log(), torch.Generator().manual_seed(0)

    def draw(p):
        return {sample_next(logits, 1.0, None, g, top_p=p).item() for _ in range(300)}

    assert draw(0.5) == {0}  # the likeliest alone holds 0.5
    assert draw(0.51) == {0, 2}  # 0.5 is not enough: the next likeliest joins
    assert draw(0.8) == {0, 2}  # 0.5 + 0.3 reaches 0.8
    assert draw(0.81) == {0, 2, 3}
    assert draw(1e-6) == {0}  # the likeliest token always stays
    assert draw(1.0) == {0, 1, 2, 3}


def test_top_p_renormalises_the_nucleus():
    logits = torch.tensor([[0.6, 0.3, 0.1]]).log()
    kept = nucleus(logits, 0.7).softmax(-1)
    assert torch.allclose(kept, torch.tensor([[2 / 3, 1 / 3, 0.0]]))


def test_top_p_works_per_row_and_after_top_k():
    logits = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]]).log()
    g = torch.Generator().manual_seed(0)
    rows = [
        sample_next(logits, 1.0, None, g, top_p=0.6).flatten().tolist()
        for _ in range(50)
    ]
    assert {tuple(r) for r in rows} == {(0, 2)}
    both_cuts = {
        sample_next(logits[:1], 1.0, 2, g, top_p=0.99).item() for _ in range(300)
    }
    # top-k removed token 2 first; the nucleus of what remains is both
    assert both_cuts == {
        0,
        1,
    }


def test_top_p_gives_the_same_tokens_as_recomputing(model):
    cached, full = both(model, torch.zeros(4, 1, dtype=torch.long), 20, top_p=0.9)
    assert torch.equal(cached, full)


@pytest.mark.parametrize("top_p", [0, 0.0, -0.1, 1.5, float("nan"), True, "0.9"])
def test_bad_top_p_is_a_clear_error(model, top_p):
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        generate(model, torch.zeros(1, 1, dtype=torch.long), 3, top_p=top_p)


@pytest.fixture(scope="module")
def names_checkpoint(tmp_path_factory, data_dir):
    """A names checkpoint after two steps of training."""
    out = tmp_path_factory.mktemp("names")
    assert (
        cli.main(
            [
                "train",
                "names",
                "--steps",
                "2",
                "--num-samples",
                "0",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out / "ckpt.pt"


def test_cli_top_p(names_checkpoint, capsys):
    capsys.readouterr()
    assert (
        cli.main(
            [
                "sample",
                "--checkpoint",
                str(names_checkpoint),
                "--top-p",
                "1e-9",
                "--num-samples",
                "5",
            ]
        )
        == 0
    )
    names = [
        line.partition(": ")[2]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("sample")
    ]
    # the nucleus is the likeliest letter alone: one name
    assert len(names) == 5 and len(set(names)) == 1
    assert (
        cli.main(
            [
                "sample",
                "--checkpoint",
                str(names_checkpoint),
                "--top-p",
                "1",
                "--num-samples",
                "5",
            ]
        )
        == 0
    )


@pytest.mark.parametrize("value", ["0", "1.5", "-0.2", "nan", "abc"])
def test_cli_bad_top_p_is_one_line(names_checkpoint, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sample", "--checkpoint", str(names_checkpoint), "--top-p", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "argument --top-p" in err[-1] and err[-1].startswith("microgpt")
