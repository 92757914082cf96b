"""Where the training page's Python and CPython part, bit by bit:
book/results/browser_bits.json.

python tests/browser_bits.py [--steps 1000]

The page runs CPython compiled to WebAssembly, whose C math library is musl's; CPython
on Linux uses the GNU C library (glibc), which takes fused multiply-add (FMA) code paths
on processors that have the instruction. This script runs ``microgpt train names
--engine scalar-fused`` (seed 42) with tests/bits_trace.py in this CPython on three math
libraries: glibc as it is, glibc with its FMA paths switched off (``GLIBC_TUNABLES``)
and musl's functions preloaded in front of glibc's (tests/musl_libm.py); and in Pyodide
under Node (tests/pyodide_run.mjs: the pyodide.asm.wasm and package files the page
loads), from its own initial weights and from glibc's. It compares every initial weight,
every step's loss and every final weight exactly, and evaluates on each side every input
the glibc run handed to exp, log and (inside random.gauss) cos, sin and log. Linux
x86-64 with glibc, gcc and musl-dev only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "book" / "_ext"))
import browser_site  # noqa: E402  (the pinned Pyodide and the modules the page loads)

from microgpt import data  # noqa: E402

# tests/ is on sys.path when this file runs as a script
import musl_libm  # noqa: E402
from browser_speed import machine  # noqa: E402

TRACE = Path(__file__).with_name("bits_trace.py")
RUNNER = Path(__file__).with_name("pyodide_run.mjs")
# glibc then picks its plain SSE2 exp, log, pow, sin and cos
FMA_OFF = "glibc.cpu.hwcaps=-AVX2,-FMA"
NODE = os.environ.get("NODE", "node")


def environments(musl: Path) -> dict[str, dict[str, str]]:
    """CPython's environment for each C math library: glibc, glibc without its FMA
    paths, musl's in front.
    """
    glibc = musl_libm.environ()
    return {
        "glibc": glibc,
        "glibc_no_fma": {**glibc, "GLIBC_TUNABLES": FMA_OFF},
        "musl": musl_libm.environ(musl),
    }


def cpython(request: dict, env: dict[str, str]) -> dict:
    """tests/bits_trace.py's answer in a fresh CPython with the environment ``env``."""
    result = subprocess.run(
        [sys.executable, str(TRACE)],
        input=json.dumps(request),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def pyodide(request: dict) -> dict:
    """tests/bits_trace.py's answer in Pyodide under Node, with the package files the
    page loads.
    """
    home = "/home/pyodide"
    files = {
        f"{home}/microgpt/{m}.py": (REPO / "microgpt" / f"{m}.py").read_text()
        for m in browser_site.MODULES
    }
    files[f"{home}/bits_trace.py"] = TRACE.read_text()
    files["/request.json"] = json.dumps(request)
    code = (
        "import json, os, sys; os.environ['MICROGPT_DATA'] = '/data'; "
        f"sys.path.insert(0, {home!r}); "
        "import bits_trace; bits_trace.answer(json.load(open('/request.json')))"
    )
    job = {
        "pyodide": str(REPO / browser_site.PYODIDE_DIR),
        "files": files,
        "binary": {"/data/names.txt": str(data.fetch("names"))},
        "code": code,
    }
    result = subprocess.run(
        [NODE, str(RUNNER)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def first_difference(a: list[str], b: list[str]) -> dict:
    """How many entries of two equal-length lists differ, and the first (1-based), or
    None.
    """
    differ = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    return {
        "of": len(a),
        "differ": len(differ),
        "first": differ[0] + 1 if differ else None,
    }


def ulps(a: float, b: float) -> int:
    """How many doubles apart two finite doubles of the same sign are (0 when equal)."""
    bits = [struct.unpack("<q", struct.pack("<d", abs(x)))[0] for x in (a, b)]
    return abs(bits[0] - bits[1])


def max_ulps(a: list[str], b: list[str]) -> int:
    """The largest distance, in doubles, between two equal-length lists of hex
    floats.
    """
    return max(
        ulps(float.fromhex(x), float.fromhex(y)) for x, y in zip(a, b, strict=True)
    )


def compare(cpython_run: dict, pyodide_run: dict) -> dict:
    """A Pyodide run against a CPython run: weights, losses (with the largest gap),
    final weights, samples.
    """
    a, b = cpython_run["losses"], pyodide_run["losses"]
    return {
        "initial": first_difference(cpython_run["initial"], pyodide_run["initial"]),
        "initial_max_ulps": max_ulps(cpython_run["initial"], pyodide_run["initial"]),
        "losses": first_difference(a, b),
        "max_loss_gap": max(abs(float(x) - float(y)) for x, y in zip(a, b)),
        "final": first_difference(cpython_run["final"], pyodide_run["final"]),
        "samples_equal": cpython_run["samples"] == pyodide_run["samples"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=REPO / browser_site.BITS)
    args = parser.parse_args()
    if musl_libm.unsupported() or musl_libm.missing():
        sys.exit(f"browser_bits.py: {musl_libm.unsupported() or musl_libm.missing()}")
    request = {"seed": 42, "steps": args.steps}
    with tempfile.TemporaryDirectory() as folder:
        envs = environments(musl_libm.build(Path(folder)))
        runs = {
            lib: cpython({**request, "record": lib == "glibc"}, env)
            for lib, env in envs.items()
        }
        inputs = runs["glibc"].pop("inputs")
        print(f"CPython done; {sum(map(len, inputs.values()))} libm inputs", flush=True)
        values = {lib: cpython({"evaluate": inputs}, env) for lib, env in envs.items()}
    in_page = pyodide({"evaluate": inputs})
    functions = {
        name: {
            "inputs": len(xs),
            **{
                f"differ_{lib}": first_difference(values[lib][name], in_page[name])[
                    "differ"
                ]
                for lib in envs
            },
            "max_ulps": max(max_ulps(values[lib][name], in_page[name]) for lib in envs),
        }
        for name, xs in inputs.items()
    }
    print(json.dumps(functions), flush=True)
    own = pyodide(request)
    comparisons = {
        f"own_weights_vs_{lib}": compare(run, own) for lib, run in runs.items()
    }
    for lib in ("glibc", "glibc_no_fma"):
        from_theirs = pyodide({**request, "weights": runs[lib]["initial"]})
        comparisons[f"{lib}_weights_vs_{lib}"] = compare(runs[lib], from_theirs)
    node = subprocess.run(
        [NODE, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    record = {
        "command": " ".join(["python tests/browser_bits.py", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "machine": machine(),
        "fma": "fma" in Path("/proc/cpuinfo").read_text().split(),
        "libc": " ".join(platform.libc_ver()),
        "cpython": platform.python_version(),
        "pyodide": browser_site.PYODIDE_VERSION,
        "node": node,
        "fma_off": f"GLIBC_TUNABLES={FMA_OFF}",
        "seed": request["seed"],
        "steps": args.steps,
        "params": len(own["initial"]),
        "functions": functions,
        "runs": comparisons,
    }
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(comparisons, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"{time.perf_counter() - start:.0f} s")
