"""The book's running pipeline figure: it draws every stage, lights the asked ones,
refuses unknown ones.
"""

import matplotlib
import pytest

from microgpt.book import STAGES, pipeline

matplotlib.use("Agg")


def texts(fig) -> dict[str, str]:
    """Each text drawn on the figure, mapped to its font weight."""
    return {t.get_text(): t.get_fontweight() for t in fig.axes[0].texts}


def test_every_stage_is_drawn_and_only_the_asked_ones_are_lit():
    drawn = texts(pipeline("attention", "mlp", part=2))
    for key, label in STAGES:
        assert drawn[label] == ("bold" if key in ("attention", "mlp") else "normal"), (
            key
        )
    assert drawn["Part II  PyTorch tensors"] == "bold"
    assert drawn["Part I  scalars, pure Python"] == "normal"


def test_nothing_lit_without_arguments():
    assert set(texts(pipeline()).values()) == {"normal"}


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (("attenton",), {}, "unknown stage"),
        ((), {"part": 5}, "part must be 1 to 4"),
    ],
)
def test_bad_arguments_are_refused(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipeline(*args, **kwargs)
