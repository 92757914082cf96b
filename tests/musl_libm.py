"""musl's exp, log, pow, sin and cos as a shared library to load in front of glibc's
(``LD_PRELOAD``).

python tests/musl_libm.py FOLDER    # prints FOLDER/libmusl_math.so

The training page's Python is CPython compiled to WebAssembly, whose C math library is
musl's. With this library preloaded, CPython on glibc takes those five functions from
musl too, as CPython on Alpine Linux does, and computes what the page computes. Built
from the objects in musl's static library (Debian and Ubuntu: ``apt-get install
musl-dev``) with gcc.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

LIBC_A = Path(os.environ.get("MUSL_LIBC_A", "/usr/lib/x86_64-linux-musl/libc.a"))
# The five functions and the helpers they call (range reduction, kernels, tables, error
# paths).
OBJECTS = (
    "exp",
    "exp_data",
    "log",
    "log_data",
    "pow",
    "pow_data",
    "sin",
    "cos",
    "__sin",
    "__cos",
    "__rem_pio2",
    "__rem_pio2_large",
    "__math_divzero",
    "__math_invalid",
    "__math_oflow",
    "__math_uflow",
    "__math_xflow",
)


def unsupported() -> str | None:
    """Why preloading in front of glibc cannot work on this system (it needs Linux
    x86-64 with glibc), or None.
    """
    name, version = platform.libc_ver()
    if platform.machine() != "x86_64" or name != "glibc":
        return (
            f"needs Linux x86-64 with glibc, this is {platform.machine()} "
            f"with {name or 'another C library'}"
        )
    return None


def missing() -> str | None:
    """Why the library cannot be built here, or None."""
    needs = []
    if not LIBC_A.is_file():
        needs.append(
            f"needs musl's static library (none at {LIBC_A}): "
            "apt-get install musl-dev, or set MUSL_LIBC_A"
        )
    if shutil.which("gcc") is None or shutil.which("ar") is None:
        needs.append(
            "needs gcc and ar to build musl's math functions: "
            "apt-get install gcc binutils"
        )
    return "; ".join(needs) or None


def build(folder: Path) -> Path:
    """Extract musl's math objects into ``folder`` and link them into
    ``folder/libmusl_math.so``.
    """
    objects = [f"{name}.lo" for name in OBJECTS]
    subprocess.run(["ar", "x", str(LIBC_A), *objects], cwd=folder, check=True)
    library = folder / "libmusl_math.so"
    subprocess.run(
        ["gcc", "-shared", "-nostdlib", "-Wl,-Bsymbolic", "-o", str(library), *objects],
        cwd=folder,
        check=True,
        capture_output=True,
        text=True,
    )
    return library


def environ(library: Path | None = None) -> dict[str, str]:
    """This process's environment without glibc's tunables or a preload, then with
    ``library`` preloaded.
    """
    env = {
        k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "LD_PRELOAD")
    }
    if library is not None:
        env["LD_PRELOAD"] = str(library)
    return env


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(
            "usage: python tests/musl_libm.py FOLDER  (builds FOLDER/libmusl_math.so)"
        )
    if unsupported() or missing():
        sys.exit(f"musl_libm.py: {unsupported() or missing()}")
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    print(build(target))
