"""The training page's Python against CPython, bit by bit
(book/04b_training_in_the_browser.md).

tests/bits_trace.py runs the names model in CPython and in Pyodide under Node
(tests/pyodide_run.mjs, with the files the page loads). Needs Node, the fetched Pyodide,
gcc and musl-dev (outside CI it skips without them) and Linux x86-64 with glibc, whose
FMA code paths it switches off (it skips on any other system).
"""

import json
import shutil

import pytest

import browser_bits
import musl_libm
from test_browser import cli_output, missing, musl_library  # noqa: F401  (a fixture)

REQUEST = {"seed": 42, "steps": 20}


@pytest.fixture(scope="module")
def envs(request) -> dict[str, dict[str, str]]:
    """CPython's environment on glibc, on glibc without its FMA paths, and on musl's
    math functions.
    """
    missing(
        None
        if shutil.which(browser_bits.NODE)
        else (
            f"needs Node ({browser_bits.NODE}) to run Pyodide outside a browser: "
            "apt-get install nodejs"
        ),
        None
        if (
            browser_bits.REPO
            / browser_bits.browser_site.PYODIDE_DIR
            / "pyodide.asm.wasm"
        ).is_file()
        else (
            f"needs Pyodide {browser_bits.browser_site.PYODIDE_VERSION} fetched: "
            f"{browser_bits.browser_site.FETCH}"
        ),
        None if musl_libm.unsupported() else musl_libm.missing(),
    )
    return browser_bits.environments(request.getfixturevalue("musl_library"))


@pytest.fixture(scope="module")
def page(envs) -> dict:
    """The page's Python's run, from its own seed-42 draw."""
    return browser_bits.pyodide(REQUEST)


def test_the_trace_is_the_command_lines_run(envs):
    run = browser_bits.cpython(REQUEST, envs["glibc"])
    printed = [
        line
        for line in cli_output(
            [
                "train",
                "names",
                "--engine",
                "scalar-fused",
                "--steps",
                "20",
                "--log-every",
                "1",
                "--exact-loss",
            ]
        )
        if line.startswith("step ")
    ]
    assert printed == [
        f"step {i:4d} /   20 | loss {loss}" for i, loss in enumerate(run["losses"], 1)
    ]
    assert (
        len(run["initial"]) == len(run["final"]) == 4192 and len(run["samples"]) == 20
    )


def test_on_musls_math_library_cpython_is_the_page_to_the_last_bit(envs, page):
    run = browser_bits.cpython(REQUEST, envs["musl"])
    assert run["initial"] == page["initial"]
    assert run["losses"] == page["losses"], browser_bits.first_difference(
        run["losses"], page["losses"]
    )
    assert run["final"] == page["final"] and run["samples"] == page["samples"]


def test_from_cpythons_weights_without_fma_the_page_repeats_cpythons_run_to_the_last_bit(  # noqa: E501  (renaming would change the test's ID)
    envs,
):
    run = browser_bits.cpython(REQUEST, envs["glibc_no_fma"])
    from_theirs = browser_bits.pyodide({**REQUEST, "weights": run["initial"]})
    assert from_theirs["initial"] == run["initial"]
    assert from_theirs["losses"] == run["losses"], browser_bits.first_difference(
        run["losses"], from_theirs["losses"]
    )
    assert (
        from_theirs["final"] == run["final"]
        and from_theirs["samples"] == run["samples"]
    )


def test_on_glibc_the_initial_weights_are_within_a_few_ulps(envs, page):
    run = browser_bits.cpython({**REQUEST, "steps": 1}, envs["glibc"])
    assert browser_bits.max_ulps(run["initial"], page["initial"]) <= 4
    assert (
        browser_bits.ulps(1.0, 1.0000000000000002)
        == 1
        == browser_bits.ulps(-0.5, -0.5000000000000001)
    )


def test_the_recorded_comparison_is_what_the_page_says():
    """The page's wording ("agrees on every input", "to the last bit") rests on these
    figures.
    """
    record = json.loads(
        (browser_bits.REPO / browser_bits.browser_site.BITS).read_text()
    )
    assert (
        record["pyodide"] == browser_bits.browser_site.PYODIDE_VERSION
        and record["seed"] == 42
    )
    assert record["params"] == 4192 and record["fma"], record["machine"]
    page_text = (
        browser_bits.REPO / "book" / "04b_training_in_the_browser.md"
    ).read_text()
    assert (
        record["fma_off"] == f"GLIBC_TUNABLES={browser_bits.FMA_OFF}"
        and record["fma_off"] in page_text
    )
    functions = record["functions"]
    assert all(row["differ_musl"] == 0 for row in functions.values()), functions
    assert (
        functions["exp"]["differ_glibc_no_fma"] == 0 < functions["exp"]["differ_glibc"]
    )
    assert (
        functions["gauss cos"]["differ_glibc_no_fma"] > 0
        and functions["gauss sin"]["differ_glibc_no_fma"] > 0
    )
    for same in (
        record["runs"]["own_weights_vs_musl"],
        record["runs"]["glibc_no_fma_weights_vs_glibc_no_fma"],
    ):
        assert (
            same["losses"]["differ"]
            == same["final"]["differ"]
            == same["initial"]["differ"]
            == 0
        )
        assert same["losses"]["of"] == record["steps"] and same["samples_equal"]
    assert record["runs"]["glibc_weights_vs_glibc"]["losses"]["differ"] > 0
