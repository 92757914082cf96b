"""Sphinx extension: the files the in-browser training page needs, copied into the built book.

The page (book/04b_training_in_the_browser.md) trains microgpt under Pyodide, CPython compiled to
WebAssembly. Everything it loads is served from the book's own host under ``browser/``: Pyodide
itself (fetched from the npm registry before the build, never committed), the package's own
pure-Python modules (copied from ``microgpt/``, so there is one source), the names dataset (found
by the package, checked against its SHA-256) and the page's scripts. The page's recorded speeds
(book/results/browser_speed.json) and bit-by-bit comparison with CPython (browser_bits.json) become
MyST substitutions such as ``{{ browser_fused_ms }}`` and ``{{ bits_exp_differ_glibc }}``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

from microgpt import data

PYODIDE_VERSION = "314.0.8"
PYODIDE_DIR = Path("_build/pyodide/package")  # relative to the book's root
FETCH = (f"mkdir -p _build/pyodide && (cd _build/pyodide && npm pack -q pyodide@{PYODIDE_VERSION} "
         f"&& tar xzf pyodide-{PYODIDE_VERSION}.tgz)")
PYODIDE_FILES = ("pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip", "pyodide-lock.json")
# The command line and what it imports to train on the scalar engines: no torch, no third-party package.
MODULES = ("__init__", "autograd", "cli", "commands", "config", "data", "scalar", "tokenizer")
PAGE_FILES = ("page.js", "worker.js")
SPEED = Path("book/results/browser_speed.json")
BITS = Path("book/results/browser_bits.json")


def pyodide_dir(root: Path) -> Path:
    """The unpacked npm package, checked to be the pinned release; a clear error says how to fetch it."""
    folder = root / PYODIDE_DIR
    try:
        version = json.loads((folder / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        raise ExtensionError(f"Pyodide {PYODIDE_VERSION} is not in {folder}; fetch it first: {FETCH}") from None
    if version != PYODIDE_VERSION:
        raise ExtensionError(f"{folder} holds Pyodide {version}, the book pins {PYODIDE_VERSION}: {FETCH}")
    return folder


def speed_substitutions(root: Path) -> dict[str, str]:
    """The recorded browser and CPython step times as page substitutions (none before the first record)."""
    if not (root / SPEED).is_file():
        return {}
    record = json.loads((root / SPEED).read_text())
    subs = {"browser_machine": record["machine"], "browser_chromium": record["browser"],
            "browser_pyodide": record["pyodide"], "browser_cpython": record["cpython"],
            "browser_steps": str(record["steps"]), "browser_rounds": str(record["rounds"]),
            "browser_load_before": f"{record['load_average']['before']:.1f}",
            "browser_load_after": f"{record['load_average']['after']:.1f}"}
    for engine, row in record["engines"].items():
        for where in ("browser", "cpython"):
            subs[f"{where}_{engine}_ms"] = f"{row[where]['median_ms']:.1f}"
            subs[f"{where}_{engine}_range"] = f"{row[where]['min_ms']:.1f}-{row[where]['max_ms']:.1f}"
        subs[f"browser_{engine}_ratio"] = f"{row['browser']['median_ms'] / row['cpython']['median_ms']:.1f}"
    engines = record["engines"]
    download = sum((pyodide_dir(root) / name).stat().st_size for name in PYODIDE_FILES)
    subs["browser_download_mb"] = f"{download / 1e6:.0f}"
    atomic, fused = (engines[name]["browser"]["median_ms"] for name in ("atomic", "fused"))
    subs["browser_atomic_vs_fused"] = f"{atomic / fused:.1f}"
    subs["browser_fused_1000_s"] = f"{fused:.0f}"  # ms per step = seconds per 1,000 steps
    return subs


def bits_substitutions(root: Path) -> dict[str, str]:
    """Where the page's Python and CPython part (tests/browser_bits.py's record) as page substitutions."""
    if not (root / BITS).is_file():
        return {}
    record = json.loads((root / BITS).read_text())
    subs = {"bits_machine": record["machine"], "bits_libc": record["libc"], "bits_node": record["node"],
            "bits_cpython": record["cpython"],
            "bits_steps": f"{record['steps']:,}", "bits_params": f"{record['params']:,}"}
    for name, row in record["functions"].items():
        for field, value in row.items():  # inputs, differ_glibc, differ_glibc_no_fma, differ_musl, max_ulps
            subs[f"bits_{name.replace(' ', '_')}_{field}"] = f"{value:,}"
    subs["bits_function_ulps"] = str(max(row["max_ulps"] for row in record["functions"].values()))
    for run, row in record["runs"].items():
        for part in ("initial", "losses", "final"):
            subs[f"bits_{run}_{part}"] = f"{row[part]['differ']:,}"
            subs[f"bits_{run}_{part}_first"] = str(row[part]["first"])
        subs[f"bits_{run}_gap"] = f"{row['max_loss_gap']:.1e}"
        subs[f"bits_{run}_ulps"] = str(row["initial_max_ulps"])
        subs[f"bits_{run}_samples"] = "the same" if row["samples_equal"] else "different"
    return subs


def on_config_inited(app: Sphinx, config) -> None:
    root = Path(app.srcdir)
    pyodide_dir(root)  # fail at once, before rendering any page
    config.myst_substitutions = {**(config.myst_substitutions or {}), **speed_substitutions(root),
                                 **bits_substitutions(root)}


def on_build_finished(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    root, out = Path(app.srcdir), Path(app.outdir) / "browser"
    (out / "pyodide").mkdir(parents=True, exist_ok=True)
    (out / "microgpt").mkdir(exist_ok=True)
    for name in PYODIDE_FILES:
        shutil.copy2(pyodide_dir(root) / name, out / "pyodide" / name)
    for name in MODULES:
        shutil.copy2(root / "microgpt" / f"{name}.py", out / "microgpt" / f"{name}.py")
    for name in PAGE_FILES:
        shutil.copy2(root / "book" / "browser" / name, out / name)
    shutil.copy2(data.fetch("names"), out / "names.txt")  # MICROGPT_DATA or the cache, SHA-256 checked
    manifest = {"pyodide": PYODIDE_VERSION, "modules": list(MODULES)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", on_config_inited)
    app.connect("build-finished", on_build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
