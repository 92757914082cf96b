#!/usr/bin/env bash
# The clean learning-rate sweep of the default tiny-shakespeare run, and the dropout runs beside it.
#
#   bash book/results/lr_sweep/run.sh            (from the repository root, on an otherwise idle machine)
#
# Every run is `microgpt train shakespeare` at the default budget (15 epochs, 1,830 steps), made the
# same way: this code, the same THREADS, one run at a time, on one machine. Six peak learning rates
# span the current best on both sides, each with two seeds; then dropout 0.1 and 0.2 at the default
# peak, two seeds each. About 16 runs x 7 minutes on 2 idle AMD EPYC cores.
#
# Each run leaves book/results/lr_sweep/records/NAME.jsonl (its metrics.jsonl) and NAME.json (the command,
# date, machine, threads, torch, git commit, wall time, final and best validation loss); checkpoints go
# to a scratch folder (runs/lr_sweep/, ignored by git). summary.json gathers them for chapter 10.
# A run whose NAME.json exists is skipped, so the script can be stopped and started again.
set -euo pipefail
cd "$(dirname "$0")/../../.."
THREADS=${THREADS:-2}
LRS=${LRS:-"1e-3 2e-3 4e-3 6e-3 8e-3 1.2e-2"}
SEEDS=${SEEDS:-"1337 1338"}
DROPOUTS=${DROPOUTS-"0.1 0.2"}  # DROPOUTS="" runs none
DEFAULT_LR=${DEFAULT_LR:-4e-3}
HERE=${HERE:-book/results/lr_sweep}  # where records/ and summary.json go
EXTRA=${EXTRA:-}  # flags added to every run, e.g. a smoke test: EXTRA="--steps 4 --n-embd 16"
SCRATCH=${SCRATCH:-runs/lr_sweep}
mkdir -p "$HERE/records" "$SCRATCH"

one_run() {  # one_run NAME ARGS...: train, then record how
    local name=$1; shift
    [ -f "$HERE/records/$name.json" ] && { echo "$name: done already"; return; }
    rm -rf "$SCRATCH/$name"
    local began; began=$(date -u +"%Y-%m-%d %H:%M UTC")
    local t0; t0=$(date +%s.%N)
    OMP_NUM_THREADS=$THREADS microgpt train shakespeare --out "$SCRATCH/$name" --quiet "$@" \
        > "$SCRATCH/$name.log" 2>&1 || { echo "$name failed: $(tail -1 "$SCRATCH/$name.log")" >&2; exit 1; }
    local t1; t1=$(date +%s.%N)
    cp "$SCRATCH/$name/metrics.jsonl" "$HERE/records/$name.jsonl"
    python - "$HERE/records/$name" "$began" "$t0" "$t1" "$THREADS" "microgpt train shakespeare $*" <<'PY'
import json, platform, subprocess, sys
import torch
stem, began, t0, t1, threads, command = sys.argv[1:]
records = [json.loads(line) for line in open(stem + ".jsonl")]
vals = [r["val_loss"] for r in records if "val_loss" in r]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
args = command.split()
flag = lambda name, default: type(default)(args[args.index(name) + 1]) if name in args else default
json.dump({
    "command": f"OMP_NUM_THREADS={threads} {command} --out DIR --quiet",
    "date": began, "machine": f"{cpu}, {torch.get_num_threads()} threads available, {platform.system()}",
    "threads": int(threads), "torch": torch.__version__,
    "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "wall_seconds": round(float(t1) - float(t0), 1),
    "lr": flag("--lr", 4e-3), "seed": flag("--seed", 1337), "dropout": flag("--dropout", 0.0),
    "steps": records[-1]["step"], "final_val_loss": vals[-1], "best_val_loss": min(vals),
    "final_train_loss": sum(r["loss"] for r in records[-50:]) / len(records[-50:]),
}, open(stem + ".json", "w"), indent=1)
PY
    echo "$name: $(python -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"val {r['final_val_loss']:.4f}, {r['wall_seconds']:.0f} s\")" "$HERE/records/$name.json")"
}

for lr in $LRS; do
    for seed in $SEEDS; do
        one_run "lr${lr}_seed${seed}" --lr "$lr" --seed "$seed" $EXTRA
    done
done
for p in $DROPOUTS; do
    for seed in $SEEDS; do
        one_run "dropout${p}_seed${seed}" --lr "$DEFAULT_LR" --seed "$seed" --dropout "$p" $EXTRA
    done
done

python - "$HERE" <<'PY'
import json, pathlib, sys
here = pathlib.Path(sys.argv[1])
runs = [json.loads(p.read_text()) | {"name": p.stem} for p in sorted((here / "records").glob("*.json"))]
machines = sorted({r["machine"] for r in runs}); threads = sorted({r["threads"] for r in runs})
commits = sorted({r["commit"] for r in runs})
json.dump({
    "how": f"book/results/lr_sweep/run.sh: {len(runs)} runs of {sorted({r['steps'] for r in runs})} steps, one at a time, "
           f"{threads} threads, {machines}, commit(s) {commits}",
    "runs": runs,
}, open(here / "summary.json", "w"), indent=1)
print(f"wrote {here / 'summary.json'} ({len(runs)} runs)")
PY
