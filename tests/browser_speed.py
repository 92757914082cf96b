"""Record the training page's step time against CPython's, both engines:
book/results/browser_speed.json.

python tests/browser_speed.py [--steps 100] [--rounds 3] [--html _build/html]

Builds the book (or serves ``--html``), opens the training page in headless Chromium
like tests/test_browser.py, and times ``microgpt train names`` in the page and in this
CPython in interleaved rounds, from the command line's own summary line (the same timer
on both sides). Each round's two transcripts must agree line for line. Close other work
first: the numbers are wall-clock.
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import test_browser as tb  # tests/ is on sys.path when this file runs as a script

SUMMARY = re.compile(r"^trained \d+ steps in [\d.]+ s \(([\d.]+) ms/step")
ENGINES = {"fused": "scalar-fused", "atomic": "scalar"}


def ms_per_step(lines: list[str]) -> float:
    """The command line's own ms/step figure from its summary line."""
    return float(next(m.group(1) for line in lines if (m := SUMMARY.match(line))))


def browser_run(page, argv: list[str]) -> list[str]:
    """What the page printed for ``microgpt <argv>``, run with its controls."""
    tb.train_in_page(page, argv[5], argv[7], argv[3], argv[9])
    assert page.inner_text("#mgpt-status").startswith("Done"), page.inner_text(
        "#mgpt-log"
    )
    return tb.page_output(page)[1]


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    cores = len(
        [
            line
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("processor")
        ]
    )
    return f"{cpu}, {cores} cores"


def spread(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "median_ms": ordered[len(ordered) // 2],
        "min_ms": ordered[0],
        "max_ms": ordered[-1],
        "runs_ms": values,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--html", type=Path, help="an already built book (default: build one now)"
    )
    parser.add_argument("--json", type=Path, default=tb.REPO / tb.browser_site.SPEED)
    args = parser.parse_args()
    html = args.html
    if html is None:
        out = Path(tempfile.mkdtemp())
        build = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()"]
        subprocess.run(
            build
            + ["build", "-W", "--keep-going", "--path-output", str(out), str(tb.REPO)],
            check=True,
            capture_output=True,
        )
        html = out / "_build" / "html"
    from playwright.sync_api import sync_playwright

    handler = tb.functools.partial(tb.QuietHandler, directory=str(html))
    httpd = tb.http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    tb.threading.Thread(target=httpd.serve_forever, daemon=True).start()
    server = f"http://127.0.0.1:{httpd.server_address[1]}/"
    times = {engine: {"browser": [], "cpython": []} for engine in ENGINES}
    load_before = os.getloadavg()[0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=tb.CHROMIUM, args=tb.CHROMIUM_FLAGS
        )
        visit = tb.Visit(browser, server, tb.TRAINING)
        # load Python once, untimed
        browser_run(
            visit.page,
            [
                "train",
                "names",
                "--engine",
                "scalar-fused",
                "--steps",
                "1",
                "--seed",
                "42",
                "--temperature",
                "0.5",
                "--log-every",
                "1",
            ],
        )
        version = browser.version
        for _ in range(args.rounds):
            for engine, flag in ENGINES.items():
                argv = [
                    "train",
                    "names",
                    "--engine",
                    flag,
                    "--steps",
                    str(args.steps),
                    "--seed",
                    "42",
                    "--temperature",
                    "0.5",
                    "--log-every",
                    "1",
                ]
                page_lines, cpython_lines = (
                    browser_run(visit.page, argv),
                    tb.cli_output(argv),
                )
                assert tb.untimed(page_lines) == tb.untimed(cpython_lines), (
                    f"{engine}: the two printed different lines"
                )
                in_page, in_cpython = (
                    ms_per_step(page_lines),
                    ms_per_step(cpython_lines),
                )
                times[engine]["browser"].append(in_page)
                times[engine]["cpython"].append(in_cpython)
                print(
                    f"{engine}: browser {in_page:.1f} ms/step, "
                    f"CPython {in_cpython:.1f} ms/step",
                    flush=True,
                )
        assert not visit.outside and not visit.errors, (visit.outside, visit.errors)
        visit.close()
        browser.close()
    httpd.shutdown()
    record = {
        "command": "python tests/browser_speed.py " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "machine": machine(),
        "browser": f"headless Chromium {version}",
        "pyodide": tb.browser_site.PYODIDE_VERSION,
        "cpython": platform.python_version(),
        "steps": args.steps,
        "rounds": args.rounds,
        "transcripts_equal": True,
        "load_average": {
            "before": round(load_before, 2),
            "after": round(os.getloadavg()[0], 2),
        },
        "engines": {
            engine: {where: spread(values) for where, values in row.items()}
            for engine, row in times.items()
        },
    }
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"{time.perf_counter() - start:.0f} s")
