"""The book's shape, checked without building it: TOC, Colab setup cells, headings,
stored outputs, config.
"""

import configparser
import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
BOOK = REPO / "book"
CONFIG = yaml.safe_load((REPO / "_config.yml").read_text())
TOC = yaml.safe_load((REPO / "_toc.yml").read_text())
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
CHAPTERS = [nb for nb in NOTEBOOKS if nb.stem != "00_intro"]

SETUP_CELL = """\
# Setup: on Colab, install microgpt from GitHub; elsewhere nothing to do.
import sys

if "google.colab" in sys.modules:
    %pip install -q "microgpt @ git+{url}"
%matplotlib inline
import platform

import microgpt

print(f"microgpt {{microgpt.__version__}}, Python {{platform.python_version()}}")"""


def toc_files() -> list[str]:
    """Every ``file:`` of _toc.yml (root first), as written there: repo-relative, no
    suffix.
    """
    files = [TOC["root"]]
    for part in TOC.get("parts", []):
        files += [entry["file"] for entry in part["chapters"]]
    return files


def cells(path: Path, cell_type: str) -> list[dict]:
    return [
        c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == cell_type
    ]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def markdown_headings(path: Path) -> list[str]:
    """The heading lines of a notebook's markdown cells, skipping fenced code blocks."""
    headings = []
    for cell in cells(path, "markdown"):
        fence = None
        for line in source(cell).splitlines():
            stripped = line.lstrip()
            match = re.match(r"(`{3,}|~{3,}|:{3,})", stripped)
            if match and fence is None:
                fence = match.group(1)
            elif match and stripped.startswith(fence) and stripped.strip() == fence:
                fence = None
            elif fence is None and re.match(r"#{1,6} ", line):
                headings.append(line.rstrip())
    return headings


def output_text(output: dict) -> str:
    """Everything an output stores as text: stream text, tracebacks, and every textual
    mime type's data.
    """
    parts = [output.get("text", ""), output.get("ename", ""), output.get("evalue", "")]
    parts += output.get("traceback", [])
    for mime, value in output.get("data", {}).items():
        if mime.startswith("image/") and mime != "image/svg+xml":
            # base64 pixels: a run like 0xBdffCE3 inside them is no memory address
            continue
        parts.append(
            value
            if isinstance(value, str)
            else "".join(value)
            if isinstance(value, list)
            else ""
        )
    return "".join("".join(p) if isinstance(p, list) else p for p in parts)


def sanitize_patterns() -> dict[str, re.Pattern]:
    """The regexes nbval replaces before comparing (tests/nbval_sanitize.cfg): none
    should be needed.
    """
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "tests" / "nbval_sanitize.cfg")
    return {name: re.compile(cfg[name]["regex"]) for name in cfg.sections()}


def test_the_toc_and_the_book_folder_agree():
    listed = toc_files()
    assert len(listed) == len(set(listed)), f"_toc.yml lists a file twice: {listed}"
    for entry in listed:
        matches = [REPO / f"{entry}{suffix}" for suffix in (".ipynb", ".md", ".rst")]
        assert any(p.exists() for p in matches), (
            f"_toc.yml lists {entry}, but no such .ipynb/.md/.rst exists"
        )
    unlisted = [nb.name for nb in NOTEBOOKS if f"book/{nb.stem}" not in listed]
    assert not unlisted, (
        f"notebooks missing from _toc.yml (readers would never see them): {unlisted}"
    )
    assert TOC["root"] == "book/00_intro"


def test_the_toc_lists_chapters_in_order_and_the_reference_pages_last():
    listed = [f for f in toc_files() if f not in ("book/api", "book/references")]
    assert listed == sorted(listed), f"_toc.yml is not in chapter order: {listed}"
    last = TOC["parts"][-1]
    assert last["caption"] == "Reference" and [e["file"] for e in last["chapters"]] == [
        "book/api",
        "book/references",
    ]


def test_the_config_builds_from_committed_outputs_and_points_at_the_repository():
    assert CONFIG["execute"]["execute_notebooks"] == "off"
    assert CONFIG["repository"]["branch"] == "main"
    assert re.fullmatch(
        r"https://github\.com/[\w.-]+/[\w.-]+", CONFIG["repository"]["url"]
    )
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    for pattern in (".*", "_build", "tests", "venv", ".venv"):
        assert pattern in CONFIG["exclude_patterns"], (
            f"_config.yml's exclude_patterns lacks {pattern!r}"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_first_code_cell_is_the_colab_setup_cell(path):
    cell = cells(path, "code")[0]
    first = source(cell)
    tags = set(cell["metadata"].get("tags", []))
    assert {"hide-input", "nbval-ignore-output"} <= tags, (
        f"{path.name}: the setup cell must be collapsed and unchecked"
    )
    expected = SETUP_CELL.format(url=CONFIG["repository"]["url"])
    assert first.startswith(expected + "\n") or first == expected, (
        f"{path.name}: the first code cell must begin with "
        "tests/test_book.py's SETUP_CELL, "
        f"installing from {CONFIG['repository']['url']} (the URL in _config.yml)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_title_and_the_chapter_sections(path):
    headings = markdown_headings(path)
    titles = [h for h in headings if h.startswith("# ")]
    assert len(titles) == 1, f"{path.name}: exactly one H1 expected, found {titles}"
    assert headings[0] == titles[0], (
        f"{path.name}: the H1 must be the first heading, found {headings[0]!r}"
    )
    if path in CHAPTERS:
        assert "## Summary" in headings, f"{path.name}: no '## Summary' section"
        assert "## Exercises" in headings, f"{path.name}: no '## Exercises' section"
        assert headings.index("## Summary") < headings.index("## Exercises"), (
            f"{path.name}: Summary after Exercises"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_executed_top_to_bottom_in_one_kernel(path):
    counts = [c["execution_count"] for c in cells(path, "code")]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: execution counts {counts}, expected 1..n"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_stored_errors_or_machine_specific_outputs(path):
    patterns = sanitize_patterns()
    assert patterns, "tests/nbval_sanitize.cfg defines no patterns"
    for n, cell in enumerate(cells(path, "code"), start=1):
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", (
                f"{path.name} code cell {n} stores an error: {output['ename']}"
            )
            text = output_text(output)
            for name, pattern in patterns.items():
                found = pattern.search(text)
                assert not found, (
                    f"{path.name} code cell {n} stores {name}: {found.group(0)!r}"
                )


def test_the_api_reference_documents_every_module():
    modules = sorted(
        p.stem for p in (REPO / "microgpt").glob("*.py") if not p.stem.startswith("__")
    )
    api = (BOOK / "api.md").read_text()
    documented = re.findall(r"^\.\. automodule:: microgpt\.(\w+)$", api, flags=re.M)
    assert sorted(documented) == modules, (
        f"book/api.md documents {documented}; the package has {modules}"
    )


def test_readme_figures_are_the_recorded_ones():
    """README quotes the recorded bench and Shakespeare run; its figures must be the
    files' figures.
    """
    readme = (REPO / "README.md").read_text()
    bench = json.loads((BOOK / "results" / "bench_cpu.json").read_text())["suites"]
    for suite in ("names", "shakespeare"):
        for r in bench[suite]["results"]:
            ms = r["ms_per_step"]
            shown = f"{ms:.3f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"
            row = f"| {shown} | {r['tokens_per_s']:,.0f} |"
            assert row in readme, f"README lacks the {suite} rung {r['rung']!r}: {row}"
    run = json.loads((BOOK / "results" / "shakespeare_run.json").read_text())
    assert f"took {run['wall_seconds'] / 60:.1f} minutes" in readme
    assert f"validation loss of {run['final_val_loss']:.3f}" in readme
