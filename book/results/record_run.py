"""Record a finished default tiny-shakespeare run as the book's reference run.

python book/results/record_run.py RUN_DIR RUN_LOG RECORD_JSON   (from the
repository root)

RUN_DIR is the run's --out folder, RUN_LOG its printed output, RECORD_JSON the
sweep's record of how the run was made (book/results/lr_sweep/run.sh writes all
three). Writes, into book/results/: shakespeare_metrics.jsonl (its metrics),
shakespeare_model.pt (its final checkpoint without the optimizer state, for
sampling), shakespeare_samples.txt (three samples drawn from it) and
shakespeare_run.json.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from microgpt.config import TrainConfig

HERE = Path(__file__).parent
SAMPLE = ["--num-samples", "3", "--max-chars", "400", "--seed", "42"]


def is_default(record: dict) -> bool:
    """Whether the run used the default settings (the sweep's flags set only
    what the defaults set too).
    """
    default = TrainConfig()
    return (record["lr"], record["seed"], record["dropout"]) == (
        default.lr,
        default.seed,
        default.dropout,
    )


def main(run_dir: str, log: str, record_json: str) -> int:
    record = json.loads(Path(record_json).read_text())
    if not is_default(record):
        print(
            f"{record_json} is not a default run "
            "(lr, seed, dropout differ from config.TrainConfig's)",
            file=sys.stderr,
        )
        return 1
    shutil.copyfile(
        Path(run_dir) / "metrics.jsonl", HERE / "shakespeare_metrics.jsonl"
    )
    ckpt = torch.load(
        Path(run_dir) / "ckpt.pt", map_location="cpu", weights_only=False
    )
    # sampling needs the weights only
    ckpt["optimizer"], ckpt["scaler"] = None, None
    torch.save(ckpt, HERE / "shakespeare_model.pt")
    model = str(HERE / "shakespeare_model.pt")
    samples = subprocess.run(
        [
            sys.executable,
            "-m",
            "microgpt",
            "sample",
            "--checkpoint",
            model,
            *SAMPLE,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (HERE / "shakespeare_samples.txt").write_text(samples)
    summary = Path(log).read_text().strip().splitlines()[-1]
    run = {
        "command": "microgpt train shakespeare --out runs/shakespeare",
        "made_as": record["command"],
        "date": record["date"],
        "machine": record["machine"],
        "torch": record["torch"],
        "commit": record["commit"],
        "dtype": ckpt["run"]["dtype"],
        "load": (
            "made as one run of the learning-rate sweep "
            "(book/results/lr_sweep/run.sh); "
            "other jobs ran beside it at the lowest CPU priority"
        ),
        "wall_seconds": record["wall_seconds"],
        "summary": summary,
        "final_val_loss": record["final_val_loss"],
        "best_val_loss": record["best_val_loss"],
        "final_train_loss": record["final_train_loss"],
        "sample_command": (
            "microgpt sample --checkpoint book/results/shakespeare_model.pt "
            f"{' '.join(SAMPLE)}"
        ),
    }
    (HERE / "shakespeare_run.json").write_text(
        json.dumps(run, indent=1) + "\n"
    )
    print(
        f"recorded {run_dir}: val {run['final_val_loss']:.4f}, "
        f"{run['wall_seconds']:.0f} s; {summary}"
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        # the docstring's usage paragraph, on one line
        sys.exit(__doc__.split("\n\n")[1].replace("\n", " "))
    sys.exit(main(*sys.argv[1:]))
