"""What serves the book rather than the model: its running figure and its recorded
results.

Every chapter opens with ``pipeline(...)``: the whole pipeline, from text to sampled
text, with the chapter's part lit. matplotlib is imported when a figure is drawn, not
with the module: the command line and Part I's pure-Python modules never need it.

Recorded results (benchmarks, the full training run, the sweep) sit next to the
notebook, in the cache, or are downloaded once: a chapter opened alone (on Colab, or
copied out of the repository) has no ``results/`` folder beside it, so
:func:`results_file` fetches the file from the repository once and keeps it in the
cache. ``MICROGPT_RESULTS_URL`` replaces the repository's address (a mirror, or a
local server in tests).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from microgpt.data import DataError, cache_dir, download

# --- the pipeline figure --------------------------------------------------------------


# : The stages as (key, label): the main row left to right, then the generation branch
# below ``lm_head``.
STAGES = [
    ("data", "text"),
    ("tokenizer", "tokenizer\nchars → ids"),
    ("embedding", "embeddings\ntoken +\nposition"),
    ("attention", "causal\nself-\nattention"),
    ("mlp", "MLP"),
    ("lm_head", "lm_head\n→ logits"),
    ("loss", "cross-\nentropy\nloss"),
    ("autograd", "backward\n(autograd)"),
    ("optimizer", "Adam\nupdate"),
    ("sampling", "sample\nnext token"),
]
ROW = [key for key, _ in STAGES if key != "sampling"]
PARTS = [
    "I  scalars, pure Python",
    "II  PyTorch tensors",
    "III  tiny-shakespeare",
    "IV  speed and scale",
]
LIT, DIM, EDGE = "#f5a623", "#eef1f5", "#44546a"


def pipeline(*stages: str, part: int | None = None):
    """Draw the pipeline with ``stages`` highlighted (keys of :data:`STAGES`) and Part
    ``part`` (1-4) marked.
    """
    unknown = sorted(set(stages) - {key for key, _ in STAGES})
    if unknown:
        raise ValueError(
            f"unknown stage(s) {unknown}; choose from {[key for key, _ in STAGES]}"
        )
    if part is not None and part not in range(1, len(PARTS) + 1):
        raise ValueError(f"part must be 1 to {len(PARTS)}, got {part}")
    # here, not at the top: only a figure needs matplotlib
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.4))
    ax.set(xlim=(-0.2, len(ROW) + 0.05), ylim=(-1.8, 1.9))
    ax.axis("off")
    for key, label in STAGES:
        x, y = (ROW.index(key), 0) if key in ROW else (ROW.index("lm_head"), -1.25)
        box(ax, x, y, 0.78, 1, label, lit=key in stages)
    draw_flow(ax)
    width = len(ROW) / len(PARTS)
    for j, name in enumerate(PARTS, start=1):
        box(
            ax, (j - 1) * width, -1.75, width - 0.1, 0.32, f"Part {name}", lit=j == part
        )
    fig.tight_layout()
    plt.close(fig)  # shown once, as the cell's value, not again by the inline backend
    return fig


def box(ax, x: float, y: float, w: float, h: float, label: str, lit: bool) -> None:
    """A rounded box with a centred label, orange and bold when ``lit``."""
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=0.08",
            facecolor=LIT if lit else DIM,
            edgecolor=EDGE,
            lw=1.6 if lit else 0.8,
        )
    )
    ax.text(
        x + w / 2,
        y + h / 2,
        label,
        ha="center",
        va="center",
        fontsize=8,
        fontweight="bold" if lit else "normal",
    )


def draw_flow(ax) -> None:
    """The arrows between the stages, the two loops back into the model, the brackets.

    Training's loop is dashed: Adam's new weights go back into every box of the GPT.
    Generation's loop is solid: the sampled token becomes the model's next input,
    until it is the end-of-name token.
    """
    arrow = {"arrowstyle": "->", "color": EDGE}
    for i in range(1, len(ROW)):
        ax.annotate("", (i, 0.5), (i - 0.22, 0.5), arrowprops=arrow)
    head = ROW.index("lm_head") + 0.39
    ax.annotate("", (head, -0.25), (head, -0.02), arrowprops=arrow)
    ax.text(head + 0.11, -0.14, "generation", fontsize=7.5, color=EDGE, va="center")
    # Generation's loop: from the sampler, under the row, up into the embeddings.
    embed, loop_y = ROW.index("embedding") + 0.39, -0.75
    ax.plot([ROW.index("lm_head"), embed], [loop_y, loop_y], color=EDGE, lw=1)
    ax.annotate("", (embed, -0.02), (embed, loop_y), arrowprops=arrow)
    ax.text(
        (embed + ROW.index("lm_head")) / 2,
        loop_y + 0.06,
        "the sampled token is the next input",
        ha="center",
        va="bottom",
        fontsize=7.5,
        color=EDGE,
    )
    bracket(ax, "embedding", "lm_head", 1.12, "GPT (the model)")
    bracket(ax, "attention", "mlp", 1.45, "× n_layer transformer blocks")
    bracket(ax, "loss", "optimizer", 1.12, "training step")
    # Training's loop: an arc from Adam back over to the model's bracket.
    start, end = ROW.index("optimizer") + 0.39, ROW.index("lm_head") + 0.55
    ax.annotate(
        "",
        (end, 1.45),
        (start, 1.45),
        arrowprops={**arrow, "ls": "--", "connectionstyle": "arc3,rad=0.3"},
    )
    ax.text(
        (start + end) / 2,
        1.6,
        "new weights, into every\nbox of the GPT",
        ha="center",
        va="center",
        fontsize=7.5,
        color=EDGE,
        linespacing=1.0,
    )


def bracket(ax, first: str, last: str, y: float, label: str) -> None:
    """A labelled bracket over the boxes of stages ``first`` to ``last``."""
    left, right = ROW.index(first) - 0.05, ROW.index(last) + 0.83
    ax.plot(
        [left, left, right, right], [y - 0.08, y, y, y - 0.08], color="#8a94a6", lw=1
    )
    ax.text(
        (left + right) / 2,
        y + 0.05,
        label,
        ha="center",
        va="bottom",
        fontsize=8,
        color=EDGE,
    )


# --- recorded results -----------------------------------------------------------------


REPOSITORY = "https://github.com/microgpt-book/microgpt"
BRANCH = "main"


class ResultsError(DataError):
    """A recorded result could not be found here, in the cache, or downloaded."""


def results_url() -> str:
    """Where the recorded results are served: ``$MICROGPT_RESULTS_URL``, else the
    repository's ``book/results``.
    """
    raw = REPOSITORY.replace(
        "https://github.com/", "https://raw.githubusercontent.com/"
    )
    return os.environ.get("MICROGPT_RESULTS_URL") or f"{raw}/{BRANCH}/book/results"


def results_file(name: str, missing_ok: bool = False) -> Path | None:
    """Path to the recorded result ``name`` (such as ``"bench_cpu.json"``): ./results/,
    else the cache, else fetched.

    With ``missing_ok`` a result that was never recorded gives None: absent from a
    ./results folder beside the notebook, or, with no such folder, absent from the
    server (HTTP 404).
    """
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
        raise ResultsError(
            f"{name!r} is not the name of a recorded result (such as 'bench_cpu.json')"
        )
    local = Path("results", *parts)
    if local.is_file():
        return local.resolve()
    if missing_ok and Path("results").is_dir():
        return None
    cached = cache_dir() / "results" / Path(*parts)
    if cached.is_file():
        return cached
    url = f"{results_url().rstrip('/')}/{name}"
    try:
        download(
            url,
            cached,
            fix="run the notebook from the repository's book/ folder, "
            "where results/ holds it",
        )
    except DataError as err:
        if missing_ok and err.status == 404:
            return None
        raise ResultsError(
            f"recorded result {name} is not in ./results or {cached.parent}: {err}"
        ) from None
    return cached
