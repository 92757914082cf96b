"""Sphinx extension: the files the in-browser training page needs, copied into
the built book.

The page (book/04b_training_in_the_browser.md) trains microgpt under Pyodide,
CPython compiled to WebAssembly. Pyodide is bundled with the book when it was
fetched from the npm registry before the build (``_build/pyodide/package``:
.ci/run does, so the published book and CI work offline); without it the build
still succeeds, and the page loads the same pinned release from Pyodide's CDN
and says so. Everything else is served from the book's own host under
``browser/``: the package's own pure-Python modules (copied from ``microgpt/``,
so there is one source), the names dataset (found by the package, checked
against its SHA-256), the page's scripts and ``manifest.json``, which tells the
worker where Pyodide is. Where Pyodide comes from, the page's recorded speeds
(book/results/browser_speed.json) and bit-by-bit comparison with CPython
(browser_bits.json) become MyST substitutions such as ``{{ pyodide_source }}``,
``{{ browser_fused_ms }}`` and ``{{ bits_exp_differ_glibc }}``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging

from microgpt import data

PYODIDE_VERSION = (
    # the one pin: the npm package bundled and the CDN release both follow it
    "314.0.8"
)
# The CPython version that release carries (its pyodide-lock.json says so;
# tests/test_browser.py checks), so the page can name the interpreter it
# compares with native CPython.
PYODIDE_PYTHON = "3.14.2"
# Pyodide's documented CDN
# (https://pyodide.org/en/stable/usage/downloading-and-deploying.html): the
# indexURL of one release, holding the same files as its npm package.
PYODIDE_CDN = f"https://cdn.jsdelivr.net/pyodide/v{PYODIDE_VERSION}/full/"
# relative to the book's root; bundled when it exists
PYODIDE_DIR = Path("_build/pyodide/package")
FETCH = (
    "mkdir -p _build/pyodide && (cd _build/pyodide && "
    f"npm pack -q pyodide@{PYODIDE_VERSION} "
    f"&& tar xzf pyodide-{PYODIDE_VERSION}.tgz)"
)
PYODIDE_FILES = (
    "pyodide.mjs",
    "pyodide.asm.mjs",
    "pyodide.asm.wasm",
    "python_stdlib.zip",
    "pyodide-lock.json",
)
# What a reader's browser downloads to start Python: PYODIDE_FILES' sizes in
# the pinned release, so the page can say it without the package at hand
# (tests/test_browser.py checks it against the bundled files).
PYODIDE_BYTES = 13_530_536
# The command line and what it imports to train on the scalar engines: no
# torch, no third-party package.
MODULES = (
    "__init__",
    "autograd",
    "cli",
    "config",
    "data",
    "scalar",
)
PAGE_FILES = ("page.js", "worker.js")
SPEED = Path("book/results/browser_speed.json")
BITS = Path("book/results/browser_bits.json")

logger = logging.getLogger(__name__)


def bundled_pyodide(root: Path) -> Path | None:
    """The fetched npm package, checked to be the pinned release with the files
    the page loads; None when it was not fetched (the page then loads Pyodide
    from its CDN). A wrong or broken copy is an error.
    """
    folder = root / PYODIDE_DIR
    if not folder.exists():
        return None
    try:
        version = json.loads((folder / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        raise ExtensionError(
            f"{folder} holds no readable Pyodide package.json; "
            f"remove it, or fetch Pyodide {PYODIDE_VERSION} again: {FETCH}"
        ) from None
    if version != PYODIDE_VERSION:
        raise ExtensionError(
            f"{folder} holds Pyodide {version}, "
            f"the book pins {PYODIDE_VERSION}: {FETCH}"
        )
    absent = [name for name in PYODIDE_FILES if not (folder / name).is_file()]
    if absent:
        raise ExtensionError(
            f"{folder} lacks {', '.join(absent)}; "
            f"fetch Pyodide {PYODIDE_VERSION} again: {FETCH}"
        )
    return folder


def pyodide_substitutions(root: Path) -> dict[str, str]:
    """Where the page's Pyodide comes from, in the page's words."""
    if bundled_pyodide(root) is not None:
        return {
            "pyodide_source": (
                f"Pyodide {PYODIDE_VERSION}, bundled with this book"
            ),
            "pyodide_from": "from the book's own host",
            "pyodide_offline": (
                "Nothing comes from another server, "
                "so the page keeps working offline once loaded."
            ),
        }
    return {
        "pyodide_source": (
            f"loaded from Pyodide's CDN, version {PYODIDE_VERSION}"
        ),
        "pyodide_from": (
            f"{PYODIDE_VERSION} from Pyodide's CDN, `{PYODIDE_CDN}`"
        ),
        "pyodide_offline": (
            "This copy of the book was built without Pyodide bundled "
            "(the published book bundles it); "
            "everything else comes from the book's own host."
        ),
    }


def speed_substitutions(root: Path) -> dict[str, str]:
    """The recorded browser and CPython step times as page substitutions (none
    before the first record).
    """
    if not (root / SPEED).is_file():
        return {}
    record = json.loads((root / SPEED).read_text())
    subs = {
        "browser_machine": record["machine"],
        "browser_chromium": record["browser"],
        "browser_pyodide": record["pyodide"],
        "browser_cpython": record["cpython"],
        "browser_steps": str(record["steps"]),
        "browser_rounds": str(record["rounds"]),
        "browser_load_before": f"{record['load_average']['before']:.1f}",
        "browser_load_after": f"{record['load_average']['after']:.1f}",
    }
    for engine, row in record["engines"].items():
        for where in ("browser", "cpython"):
            subs[f"{where}_{engine}_ms"] = f"{row[where]['median_ms']:.1f}"
            subs[f"{where}_{engine}_range"] = (
                f"{row[where]['min_ms']:.1f}-{row[where]['max_ms']:.1f}"
            )
        subs[f"browser_{engine}_ratio"] = (
            f"{row['browser']['median_ms'] / row['cpython']['median_ms']:.1f}"
        )
    engines = record["engines"]
    subs["browser_download_mb"] = f"{PYODIDE_BYTES / 1e6:.0f}"
    atomic, fused = (
        engines[name]["browser"]["median_ms"] for name in ("atomic", "fused")
    )
    subs["browser_atomic_vs_fused"] = f"{atomic / fused:.1f}"
    subs["browser_fused_1000_s"] = (
        f"{fused:.0f}"  # ms per step = seconds per 1,000 steps
    )
    return subs


def bits_substitutions(root: Path) -> dict[str, str]:
    """Where the page's Python and CPython part (tests/browser_bits.py's
    record) as page substitutions.
    """
    if not (root / BITS).is_file():
        return {}
    record = json.loads((root / BITS).read_text())
    subs = {
        "bits_machine": record["machine"],
        "bits_libc": record["libc"],
        "bits_node": record["node"],
        "bits_cpython": record["cpython"],
        "bits_steps": f"{record['steps']:,}",
        "bits_params": f"{record['params']:,}",
    }
    for name, row in record["functions"].items():
        for (
            field,
            value,
            # inputs, differ_glibc, differ_glibc_no_fma, differ_musl, max_ulps
        ) in row.items():
            subs[f"bits_{name.replace(' ', '_')}_{field}"] = f"{value:,}"
    subs["bits_function_ulps"] = str(
        max(row["max_ulps"] for row in record["functions"].values())
    )
    for run, row in record["runs"].items():
        for part in ("initial", "losses", "final"):
            subs[f"bits_{run}_{part}"] = f"{row[part]['differ']:,}"
            subs[f"bits_{run}_{part}_first"] = str(row[part]["first"])
        subs[f"bits_{run}_gap"] = f"{row['max_loss_gap']:.1e}"
        subs[f"bits_{run}_ulps"] = str(row["initial_max_ulps"])
        subs[f"bits_{run}_samples"] = (
            "the same" if row["samples_equal"] else "different"
        )
    return subs


def on_config_inited(app: Sphinx, config) -> None:
    root = Path(app.srcdir)
    # a wrong copy fails at once, before rendering any page
    bundled = bundled_pyodide(root)
    logger.info(
        f"browser page: Pyodide {PYODIDE_VERSION} "
        + (
            f"bundled from {bundled}"
            if bundled
            else (
                f"from {PYODIDE_CDN} "
                f"({PYODIDE_DIR} not fetched, so not bundled: {FETCH})"
            )
        )
    )
    config.myst_substitutions = {
        **(config.myst_substitutions or {}),
        "pyodide_python": PYODIDE_PYTHON,
        **pyodide_substitutions(root),
        **speed_substitutions(root),
        **bits_substitutions(root),
    }


def copy_site(root: Path, out: Path) -> dict:
    """Write the page's files into ``out`` (the built book's ``browser/``);
    returns its manifest.
    """
    (out / "microgpt").mkdir(parents=True, exist_ok=True)
    bundled = bundled_pyodide(root)
    if bundled is not None:
        (out / "pyodide").mkdir(exist_ok=True)
        for name in PYODIDE_FILES:
            shutil.copy2(bundled / name, out / "pyodide" / name)
    for name in MODULES:
        shutil.copy2(
            root / "microgpt" / f"{name}.py", out / "microgpt" / f"{name}.py"
        )
    for name in PAGE_FILES:
        shutil.copy2(root / "book" / "browser" / name, out / name)
    # MICROGPT_DATA or the cache, SHA-256 checked
    shutil.copy2(data.fetch("names"), out / "names.txt")
    # The worker loads Pyodide from pyodide_url, relative to itself: the
    # bundled copy or the CDN's.
    manifest = {
        "pyodide": PYODIDE_VERSION,
        "pyodide_url": "pyodide/" if bundled is not None else PYODIDE_CDN,
        "modules": list(MODULES),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def on_build_finished(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    copy_site(Path(app.srcdir), Path(app.outdir) / "browser")


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", on_config_inited)
    app.connect("build-finished", on_build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
