"""Re-record the CPU benchmark on an idle machine and bring everything that quotes it up
to date, in one command.

python tests/record_bench.py [--skip-bench]

1. ``python -m microgpt.bench --json book/results/bench_cpu.json`` (both ladders,
   about two minutes);
2. README's two speed tables rewritten from that file (between the
   ``<!-- bench:... -->`` markers);
3. the chapters that read it re-executed in place (``jupyter execute``), so
   ``pytest --nbval`` compares them with it.

Run it with nothing else running: the bench reports the other processes' share of the
CPU, and it lands in the file and in the book.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

from microgpt.bench import ms_text

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "book" / "results" / "bench_cpu.json"
CHAPTERS = [
    "00_intro",
    "04_training_and_sampling",
    "07_batching_and_the_causal_mask",
    "08_devices",
    "13_performance",
]
LABELS = {  # README's wording of each rung
    "scalar (atomic Values)": (
        "scalar engine, atomic `Value`s (the original's algorithm)"
    ),
    "scalar, fused dot products": "scalar engine, fused dot products",
    "torch compiled, batch 1": (
        "torch compiled (loss, gradient and Adam in one graph), batch 1"
    ),
    "fp32 eager (explicit mask)": "fp32 eager, explicit mask",
    "+ SDPA attention": "+ SDPA attention (the reference step)",
}
HEADERS = {
    "names": (
        "| names model, 1 thread | ms/step | tokens/s | min-max ms | × scalar |\n"
        "|---|---:|---:|---:|---:|"
    ),
    "shakespeare": (
        "| Shakespeare step (32 × 256, 836K parameters), {threads} threads "
        "| ms/step | tokens/s | min-max ms | × fp32 eager |\n"
        "|---|---:|---:|---:|---:|"
    ),
}


def table(report: dict) -> str:
    """One suite's README table."""
    rows = [HEADERS[report["suite"]].format(threads=report["machine"]["torch_threads"])]
    for r in report["results"]:
        label = LABELS.get(r["rung"], r["rung"]) + (
            " (the default step)" if r["default"] else ""
        )
        spread = f"{ms_text(r['ms_spread']['min'])}-{ms_text(r['ms_spread']['max'])}"
        x = (
            f"{r['x_first_rung']:.2f}"
            if r["x_first_rung"] < 10
            else f"{r['x_first_rung']:,.0f}"
        )
        rows.append(
            f"| {label} | {ms_text(r['ms_per_step'])} "
            f"| {r['tokens_per_s']:,.0f} | {spread} | {x} |"
        )
    return "\n".join(rows)


def rewrite_readme(bench: dict) -> None:
    """Replace the text between each suite's markers in README.md with its table."""
    path = REPO / "README.md"
    readme = path.read_text()
    for name, report in bench["suites"].items():
        start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), flags=re.S)
        if not pattern.search(readme):
            raise SystemExit(f"README.md lacks the markers {start} ... {end}")
        text = f"{start}\n{table(report)}\n{end}"
        readme = pattern.sub(lambda _, text=text: text, readme)
    path.write_text(readme)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--skip-bench",
        action="store_true",
        help="reuse the recorded file (README and chapters only)",
    )
    args = parser.parse_args()
    if not args.skip_bench:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "microgpt.bench",
                "--json",
                str(RESULT.relative_to(REPO)),
            ],
            cwd=REPO,
            check=True,
        )
    rewrite_readme(json.loads(RESULT.read_text()))
    for chapter in CHAPTERS:
        print(f"executing book/{chapter}.ipynb", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "jupyter",
                "execute",
                "--inplace",
                "--timeout=600",
                f"book/{chapter}.ipynb",
            ],
            cwd=REPO,
            check=True,
        )
    print(
        "done: review `git diff`, then run pytest --nbval on "
        + " ".join(f"book/{c}.ipynb" for c in CHAPTERS)
    )


if __name__ == "__main__":
    main()
