#!/usr/bin/env bash
# The GPU check, offline, in <= 5 minutes on one CUDA GPU:
#   1. microgpt doctor;  2. tests/test_cuda.py (bf16, float16, float32: train, exact resume, sample, bench);
#   3. python -m microgpt.bench --device cuda (the recorded GPU ladders);  4. chapters 8, 12 and 13 executed on the GPU.
# Each part writes its results under OUT (default gpu_check/) as soon as it finishes, and a line to OUT/summary.txt,
# so a run cut short still leaves the parts that finished. Usage: bash tests/gpu/run.sh [OUT]
# Offline: the datasets come from MICROGPT_DATA (default: ../shared/data or shared/data beside the repository) and
# the package is installed without downloads (or, failing that, imported from the working tree).
# Where torch sees no CUDA device, part 2 skips its tests and the script stops there (exit 0): that is CI's path.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=$(mkdir -p "${1:-${OUT:-gpu_check}}" && cd "${1:-${OUT:-gpu_check}}" && pwd)
for d in "${MICROGPT_DATA:-}" ../shared/data shared/data; do
  if [ -n "$d" ] && [ -f "$d/tinyshakespeare.txt" ]; then export MICROGPT_DATA=$(cd "$d" && pwd); break; fi
done
[ -n "${MICROGPT_DATA:-}" ] || { echo "gpu check: no datasets; set MICROGPT_DATA to a folder holding them" >&2; exit 1; }
export PYTHONHASHSEED=0 MICROGPT_RESULTS_URL=http://127.0.0.1:9/offline  # results come from book/results only
unset MICROGPT_DEVICE
python -c "import microgpt" 2>/dev/null \
  || python -m pip install -q --no-deps --no-index --no-build-isolation -e . 2>/dev/null \
  || export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

part() {  # part NAME SECONDS COMMAND...: run one part with a time limit, log it, record its status
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc in $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
  return $rc
}

: >"$OUT/summary.txt"
part doctor 60 python -m microgpt doctor
part cuda_tests 150 python -m pytest tests/test_cuda.py -q -rs -s -p no:cacheprovider --junitxml="$OUT/cuda_tests.xml"
if ! python -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "no CUDA device: the CUDA tests skipped; nothing else to run" | tee -a "$OUT/summary.txt"
  exit 0
fi
part bench 120 python -m microgpt.bench --device cuda --json "$OUT/bench_cuda.json"
mkdir -p "$OUT/chapters"
for nb in 08_devices 12_generation 13_performance; do
  part "chapter_$nb" 90 python - "$nb" "$OUT/chapters" <<'PY'
import sys, nbclient, nbformat
name, out = sys.argv[1], sys.argv[2]
nb = nbformat.read(f"book/{name}.ipynb", as_version=4)
try:
    nbclient.NotebookClient(nb, timeout=300, resources={"metadata": {"path": "book"}}).execute()
finally:
    nbformat.write(nb, f"{out}/{name}.ipynb")
PY
done
echo "done: results in $OUT" | tee -a "$OUT/summary.txt"
