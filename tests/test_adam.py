"""FlatAdam is torch.optim.Adam's maths on one flat vector, and the names path never
imports torch._dynamo.
"""

import subprocess
import sys

import pytest
import torch

from microgpt.config import GPTConfig
from microgpt.model import GPT
from microgpt.names import (
    FlatAdam,
    bias_corrected,
    make_names_optimizer,
    names_loss,
    names_step,
)

BETAS, EPS = (0.85, 0.99), 1e-8


def names_like_model(dtype: torch.dtype) -> GPT:
    """The names model's shape (4,192 weights in 9 tensors), seeded, in ``dtype``."""
    torch.manual_seed(0)
    return GPT(GPTConfig(27)).to(dtype)


def batches(steps: int) -> list[tuple[torch.Tensor, ...]]:
    """``steps`` random batches of 4 sequences of 16 tokens, every position weighted
    1/16.
    """
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 27, (steps, 4, 17), generator=g)
    return [(seq[:, :-1], seq[:, 1:], torch.full((4, 16), 1 / 16)) for seq in ids]


def train_50(dtype: torch.dtype, make_optimizer) -> tuple[list[float], torch.Tensor]:
    """50 names steps with the linear decay from 0.01; the losses and the final weights
    as one vector.
    """
    model = names_like_model(dtype)
    optimizer = make_optimizer(model)
    losses = []
    for step, (x, y, w) in enumerate(batches(50)):
        lr = 0.01 * (1 - step / 50)
        if isinstance(optimizer, FlatAdam):
            losses.append(names_step(model, optimizer, x, y, w.to(dtype), lr).item())
            continue
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad()
        loss = names_loss(model, x, y, w.to(dtype))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, torch.cat([p.detach().flatten() for p in model.parameters()])


def torch_adam(**kw):
    return lambda model: torch.optim.Adam(
        model.parameters(), lr=0.01, betas=BETAS, eps=EPS, **kw
    )


@pytest.mark.parametrize(
    "dtype, rtol, atol", [(torch.float64, 1e-12, 1e-15), (torch.float32, 1e-6, 1e-6)]
)
@pytest.mark.parametrize("kw", [{}, {"fused": True}], ids=["default", "fused"])
def test_flat_adam_is_torch_adam_over_50_steps(dtype, rtol, atol, kw):
    """float64: each weight and loss to 1e-12 relative; float32: to 1e-6 (a few rounding
    steps).
    """
    mine, mine_w = train_50(dtype, make_names_optimizer)
    theirs, theirs_w = train_50(dtype, torch_adam(**kw))
    assert mine_w.dtype == dtype
    assert torch.allclose(mine_w, theirs_w, rtol=rtol, atol=atol), (
        (mine_w - theirs_w).abs().max()
    )
    assert mine == pytest.approx(theirs, rel=rtol, abs=atol)


def test_weights_and_gradients_are_views_of_two_flat_vectors():
    model = names_like_model(torch.float64)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = FlatAdam(model.parameters(), lr=0.01)
    assert optimizer.weights.shape == optimizer.grad.shape == (4192,)
    # the same values, now shared
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    optimizer.weights[0] = 7.0
    assert next(model.parameters()).flatten()[0].item() == 7.0
    x, y, w = batches(1)[0]
    expected = torch.autograd.grad(
        names_loss(model, x, y, w.double()), list(model.parameters())
    )
    names_loss(model, x, y, w.double()).backward()
    assert torch.equal(optimizer.grad, torch.cat([g.flatten() for g in expected]))


def test_zero_grad_restores_the_views_that_model_zero_grad_dropped():
    model = names_like_model(torch.float64)
    optimizer = FlatAdam(model.parameters(), lr=0.01)
    model.zero_grad()  # set_to_none: the .grad views are gone
    assert all(p.grad is None for p in model.parameters())
    optimizer.zero_grad()
    x, y, w = batches(1)[0]
    names_loss(model, x, y, w.double()).backward()
    assert optimizer.grad.abs().sum() > 0 and not optimizer.grad.isnan().any()


def test_bias_corrections_and_mixed_parameters():
    assert bias_corrected(0.01, 1, BETAS) == pytest.approx(
        (0.01 / 0.15, 0.1), rel=1e-14
    )
    with pytest.raises(ValueError, match="one device, in one dtype"):
        FlatAdam(
            [
                torch.nn.Parameter(torch.zeros(2)),
                torch.nn.Parameter(torch.zeros(2, dtype=torch.float64)),
            ]
        )


DYNAMO_CHECK = """
import sys
from microgpt.cli import main
for argv in {runs}:
    assert main(argv) == 0, argv
print('torch._dynamo' in sys.modules)
"""


def dynamo_imported(code: str) -> bool:
    """Run ``code`` in a fresh interpreter, which prints whether torch._dynamo ended up
    imported.
    """
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1] == "True"


def test_train_names_never_imports_torch_dynamo(tmp_path, data_dir):
    """Importing torch._dynamo costs about as much CPU as importing torch; only
    --compile needs it.
    """
    short = ["train", "names", "--steps", "3", "--num-samples", "1"]
    runs = [
        short,
        [
            *short,
            "--engine",
            "torch",
            "--dtype",
            "float64",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "run"),
        ],
        [*short, "--engine", "scalar-fused"],
    ]
    # the check can fail where building a torch.optim optimizer imports it; a torch
    # whose optimizers no longer do makes the question moot
    if not dynamo_imported(
        "import sys, torch; torch.optim.Adam(torch.nn.Linear(2, 2).parameters());"
        "print('torch._dynamo' in sys.modules)"
    ):
        pytest.skip("this torch's optimizers do not import torch._dynamo")
    assert not dynamo_imported(DYNAMO_CHECK.format(runs=runs))
