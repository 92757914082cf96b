"""What several test files share: the command line as a user runs it, the tiny run
most training tests use, and the chapters' own code cells.
"""

import ast
import contextlib
import io
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from microgpt import cli
from microgpt.config import TrainConfig


def run_microgpt(
    *args,
    module: str = "microgpt",
    env: dict | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
    """``python -m microgpt ARGS`` (or another ``module``) as a user runs it, with its
    output captured as text.
    """
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def run_main(
    *args, main: Callable[[list[str]], int] = cli.main
) -> subprocess.CompletedProcess:
    """``main(ARGS)`` in this process, with what ``run_microgpt`` returns: the exit
    status and the output. Seconds faster than a new process (no interpreter, no torch
    import), for the tests that check what a command does rather than that it starts;
    a few tests keep ``run_microgpt`` for that.
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(list(map(str, args)))
        except SystemExit as exit:  # argparse's usage errors
            status = exit.code
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


def error_line(*args, main: Callable[[list[str]], int] = cli.main) -> str:
    """Run ``main(ARGS)`` in this process: it must exit with status 1 and exactly one
    error line on stderr (no traceback), which is returned.
    """
    result = run_main(*args, main=main)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert "error: " in lines[0], lines[0]
    return lines[0]


def tiny_run(**settings) -> TrainConfig:
    """A run of the 1-layer, 16-wide test model, in float32 unless ``settings`` say
    otherwise (so it trains the same on a CPU with bfloat16 instructions).
    """
    shape = {"block_size": 16, "n_layer": 1, "n_embd": 16, "n_head": 2}
    return TrainConfig(**{**shape, "dtype": "float32", **settings})


BOOK = Path(__file__).resolve().parent.parent / "book"


def run_chapter_cells(
    notebook: str,
    markers: Sequence[str],
    namespace: dict,
    *,
    definitions_only: bool = False,
) -> dict:
    """Exec into ``namespace``, in order, every code cell of ``book/notebook`` that
    contains one of ``markers`` (solutions excepted); returns ``namespace``.

    ``definitions_only`` execs only the cells' imports, functions and classes, for a
    cell whose checks need earlier cells. Every marker must be found.
    """
    found = set()
    for cell in json.loads((BOOK / notebook).read_text())["cells"]:
        source = "".join(cell["source"])
        hits = [m for m in markers if m in source]
        if cell["cell_type"] != "code" or not hits or "# Solutions" in source:
            continue
        tree = ast.parse(source)
        if definitions_only:
            kept = (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
            tree.body = [node for node in tree.body if isinstance(node, kept)]
        exec(compile(tree, notebook, "exec"), namespace)
        found.update(hits)
    assert found == set(markers), f"{notebook}: no cell contains {set(markers) - found}"
    return namespace
