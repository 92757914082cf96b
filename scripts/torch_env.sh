#!/usr/bin/env bash
# One torch release in a throwaway virtual environment, and a command run in it from the repo root.
# requirements.txt and pyproject.toml admit a range of torch; this checks both ends of it (project
# issue 24: the tests and nbval pass on the oldest release admitted and on the newest one).
#
# Usage: scripts/torch_env.sh VERSION [DIR] [-- COMMAND...]
#   VERSION  a torch release on PyPI, e.g. 2.13.0 (the oldest admitted) or the newest
#   DIR      the venv's folder (default: ~/.cache/microgpt/torch-VERSION); reused when it already
#            has that torch, so a second run only checks the requirements and runs the command
#   COMMAND  run inside the venv from the repo root (default: pytest tests/, then nbval on book/)
# Set MICROGPT_DATA (and PYTHONHASHSEED=0 MICROGPT_DEVICE=cpu, as .ci/run does) before calling it.
# PYTHON picks the interpreter that makes the venv (default python3). The repo's .venv is not touched.
set -euo pipefail
[ $# -ge 1 ] && [ "$1" != -- ] || { sed -n '6,12p' "$0" >&2; exit 2; }
version=$1; shift
dir=${HOME}/.cache/microgpt/torch-$version
if [ $# -gt 0 ] && [ "$1" != -- ]; then dir=$1; shift; fi
[ "${1:-}" = -- ] && shift
cd "$(dirname "$0")/.."
dir=$(mkdir -p "$dir" && cd "$dir" && pwd)

# An empty constraints file replaces any machine-wide one in pip's config (which may cap torch), so
# the release asked for is the one installed; torch goes in first, then the rest with torch pinned
# (a no-op on a second run unless requirements.txt changed).
have=$("$dir/bin/python" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)
if [ "${have%%+*}" != "$version" ]; then
  "${PYTHON:-python3}" -m venv --clear "$dir"
  PIP_CONSTRAINT=/dev/null "$dir/bin/python" -m pip install -q "torch==$version"
fi
PIP_CONSTRAINT=/dev/null "$dir/bin/python" -m pip install -q -r requirements.txt "torch==$version"
source "$dir/bin/activate"
python -c 'import sys, torch; print(f"torch {torch.__version__}, Python {sys.version.split()[0]}, in", sys.prefix)'
if [ $# -eq 0 ]; then set -- bash -c 'pytest tests/ -q && pytest --nbval book/ -q'; fi
exec "$@"
