"""The bridge between the scalar engine's weights (nested lists) and the PyTorch GPT (a
state dict).

The scalar engine names a weight ``layer0.attn_wq`` and stores it as ``nout`` lists of
``nin`` floats; the torch model calls it ``layers.0.attn.wq.weight``, an ``nout x nin``
tensor: the same layout as ``nn.Linear.weight``, so nothing is transposed, only renamed.
"""

from __future__ import annotations

import torch

from microgpt.config import GPTConfig
from microgpt.model import GPT
from microgpt.scalar import Matrix, param_shapes


def torch_name(scalar_name: str) -> str:
    """The state-dict key of a scalar weight: ``layer0.attn_wq`` ->
    ``layers.0.attn.wq.weight``.
    """
    if not scalar_name.startswith("layer"):
        return f"{scalar_name}.weight"
    layer, rest = scalar_name[len("layer") :].split(".")
    module, weight = rest.split("_")
    return f"layers.{layer}.{module}.{weight}.weight"


def check_weights(config: GPTConfig, weights: dict[str, Matrix]) -> None:
    """A ValueError unless ``weights`` has every weight of ``config``, each ``nout x
    nin`` nested lists.
    """
    shapes = param_shapes(config)
    if sorted(weights) != sorted(shapes):
        missing, extra = (
            sorted(set(shapes) - set(weights)),
            sorted(set(weights) - set(shapes)),
        )
        raise ValueError(
            f"weights do not fit {config}: missing {missing}, unexpected {extra}"
        )
    for name, (nout, nin) in shapes.items():
        rows = weights[name]
        if len(rows) != nout or any(len(row) != nin for row in rows):
            raise ValueError(
                f"weights[{name!r}] must be {nout} x {nin} (nested lists, nout x nin)"
            )


def gpt_from_scalar(
    config: GPTConfig,
    weights: dict[str, Matrix],
    attention: str = "explicit",
    dtype: torch.dtype | None = None,
) -> GPT:
    """A GPT holding the scalar engine's ``weights``, in ``dtype``; the global torch RNG
    is left as it was.
    """
    check_weights(config, weights)
    # GPT() draws random weights that are overwritten at once
    with torch.random.fork_rng(devices=[]):
        model = GPT(config, attention).to(dtype)
    state = {
        torch_name(name): torch.tensor(rows, dtype=model.wte.weight.dtype)
        for name, rows in weights.items()
    }
    model.load_state_dict(state)
    return model


def scalar_weights(model: GPT) -> dict[str, Matrix]:
    """The weights as the scalar engine's dict of nested lists of Python floats, in its
    order.
    """
    params = dict(model.named_parameters())
    return {
        name: params[torch_name(name)].detach().cpu().tolist()
        for name in param_shapes(model.config)
    }
