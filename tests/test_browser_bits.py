"""The training page's Python against CPython, bit by bit (book/04b_training_in_the_browser.md).

tests/bits_trace.py runs the names model in CPython and in Pyodide under Node (tests/pyodide_run.mjs,
with the files the page loads). Needs Node and the fetched Pyodide (outside CI it skips without them)
and Linux x86-64 with glibc, whose FMA code paths it switches off (it skips on any other system).
"""

import json
import math
import platform
import shutil

import pytest

import browser_bits
from test_browser import cli_output, missing

STEPS = 20


@pytest.fixture(scope="module")
def node():
    if shutil.which(browser_bits.NODE) is None:
        missing(f"no Node ({browser_bits.NODE}) to run Pyodide outside a browser (apt-get install nodejs)")
    if not (browser_bits.REPO / browser_bits.browser_site.PYODIDE_DIR / "pyodide.asm.wasm").is_file():
        missing(f"no Pyodide at {browser_bits.browser_site.PYODIDE_DIR}: {browser_bits.browser_site.FETCH}")
    if platform.machine() != "x86_64" or not browser_bits.libc().startswith("glibc"):
        pytest.skip(f"GLIBC_TUNABLES needs Linux x86-64 with glibc, not {platform.machine()} {browser_bits.libc()}")


@pytest.fixture(scope="module")
def plain(node) -> dict:
    """CPython's run with glibc's FMA code paths switched off."""
    return browser_bits.cpython({"seed": 42, "steps": STEPS}, fma=False)


def test_the_trace_is_the_command_lines_run(node):
    run = browser_bits.cpython({"seed": 42, "steps": STEPS})
    printed = [line for line in cli_output(["train", "names", "--engine", "scalar-fused", "--steps", str(STEPS),
                                            "--log-every", "1"]) if line.startswith("step ")]
    assert printed == [f"step {i:4d} / {STEPS:4d} | loss {float(x):.4f}" for i, x in enumerate(run["losses"], 1)]
    assert len(run["initial"]) == len(run["final"]) == 4192 and len(run["samples"]) == 20


def test_from_cpythons_weights_the_page_repeats_cpythons_run_to_the_last_bit(plain):
    page = browser_bits.pyodide({"seed": 42, "steps": STEPS, "weights": plain["initial"]})
    assert page["initial"] == plain["initial"]
    assert page["losses"] == plain["losses"], browser_bits.first_difference(plain["losses"], page["losses"])
    assert page["final"] == plain["final"] and page["samples"] == plain["samples"]


def test_the_pages_own_initial_weights_are_within_a_few_doubles_of_cpythons(plain):
    page = browser_bits.pyodide({"seed": 42, "steps": 1})
    assert browser_bits.max_ulps(plain["initial"], page["initial"]) <= 4
    assert browser_bits.ulps(1.0, math.nextafter(1.0, 2.0)) == 1 == browser_bits.ulps(-0.5, math.nextafter(-0.5, -1))


def test_the_recorded_comparison_is_what_the_page_says():
    """The page's wording ("agree on every input", "identical to the last bit") rests on these figures."""
    record = json.loads((browser_bits.REPO / browser_bits.browser_site.BITS).read_text())
    assert record["pyodide"] == browser_bits.browser_site.PYODIDE_VERSION and record["seed"] == 42
    assert record["params"] == 4192 and record["fma"], record["machine"]
    page = (browser_bits.REPO / "book" / "04b_training_in_the_browser.md").read_text()
    assert record["fma_off"] == f"GLIBC_TUNABLES={browser_bits.FMA_OFF}" and record["fma_off"] in page
    functions = record["functions"]
    assert functions["exp"]["differ_no_fma"] == 0 < functions["exp"]["differ_fma"]
    assert functions["gauss cos"]["differ_no_fma"] > 0 and functions["gauss sin"]["differ_no_fma"] > 0
    same = record["runs"]["no_fma_weights_vs_no_fma"]
    assert same["losses"]["differ"] == same["final"]["differ"] == same["initial"]["differ"] == 0
    assert same["losses"]["of"] == record["steps"] and same["samples_equal"]
    assert record["runs"]["fma_weights_vs_fma"]["losses"]["differ"] > 0
