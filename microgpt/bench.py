"""``python -m microgpt.bench names``: how fast is one training step on each rung of the ladder?

Every rung is one way to run the same training step. All rungs are built first, then timed in
interleaved rounds (each round runs every rung), so a machine that gets busier or cooler part-way
through slows every rung alike. The first round is warm-up and is not counted. We report the median
milliseconds per step, tokens per second, and each rung's speed-up over the rung before it and over
the scalar engine, in tokens per second (a batch of 32 names does 32 names' work in one step).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from microgpt import scalar, train
from microgpt.config import GPTConfig
from microgpt.data import DataError, load_names
from microgpt.device import DeviceError, pick_device
from microgpt.model import GPT
from microgpt.tokenizer import CharTokenizer


@dataclass
class Rung:
    """One way to run a training step: ``step(i)`` does step ``i`` and returns the tokens it trained on."""

    name: str
    step: Callable[[int], int]
    steps_per_round: int
    times: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)

    def run_round(self, start: int, sync: Callable[[], None], record: bool) -> int:
        """Run ``steps_per_round`` steps from step ``start``, timing each; returns the next step."""
        for i in range(start, start + self.steps_per_round):
            t0 = time.perf_counter()
            n = self.step(i)
            sync()
            if record:
                self.times.append(time.perf_counter() - t0)
                self.tokens.append(n)
        return start + self.steps_per_round

    def summary(self) -> dict:
        """Median ms per step and tokens per second (mean tokens per step / median step time)."""
        ms = 1000 * statistics.median(self.times)
        return {"rung": self.name, "ms_per_step": ms, "tokens_per_s": statistics.mean(self.tokens) / ms * 1000,
                "timed_steps": len(self.times)}


def names_setup(seed: int = 42) -> tuple[list[str], CharTokenizer, GPTConfig, dict]:
    """The names run's data and initial weights, as ``microgpt train names`` makes them."""
    docs = load_names()
    rng = random.Random(seed)
    rng.shuffle(docs)
    tok = CharTokenizer.from_docs(docs)
    config = GPTConfig(tok.vocab_size)
    return docs, tok, config, scalar.init_weights(config, rng)


def scalar_rung(name: str, docs, tok, config, weights, fused: bool, steps: int) -> Rung:
    """The pure-Python engine: one name per step, exactly the original's loop body."""
    model = scalar.ScalarGPT(config, weights, fused=fused)
    optimizer = scalar.Adam(model.params)
    encoded = [tok.wrap(doc) for doc in docs[:2000]]

    def step(i: int) -> int:
        tokens = encoded[i % len(encoded)]
        scalar.doc_loss(model, tokens).backward()
        optimizer.step(0.01 * (1 - i / 1000))
        return min(len(tokens) - 1, config.block_size)

    return Rung(name, step, steps)


def torch_rung(name: str, docs, tok, config, weights, device: torch.device, batch_size: int, steps: int,
               compile: bool = False) -> Rung:
    """The batched torch step that ``microgpt train names`` runs (``train.names_step``), float32."""
    model = GPT.from_scalar_weights(config, weights, sdpa=True).to(device)
    optimizer = train.make_names_optimizer(model)
    data = train.encode_names(docs, tok, config.block_size).to(device)
    loss_fn = torch.compile(train.names_loss, dynamic=False) if compile else train.names_loss
    n = len(data.lengths)

    def step(i: int) -> int:
        x, y, weight = train.names_batch(data, i, batch_size, pad_to_block=compile)
        train.names_step(model, optimizer, loss_fn, x, y, weight, 0.01 * (1 - i % 1000 / 1000)).item()
        return sum(data.lengths[(i * batch_size + j) % n] for j in range(batch_size))

    return Rung(name, step, steps)


def names_rungs(device: torch.device, steps: int, compile: bool) -> list[Rung]:
    """The names ladder, slowest first: scalar, scalar fused, torch batch 1 (eager, compiled), torch batch 32."""
    docs, tok, config, weights = names_setup()
    rungs = [
        scalar_rung("scalar (atomic Values)", docs, tok, config, weights, fused=False, steps=max(1, steps // 20)),
        scalar_rung("scalar, fused dot products", docs, tok, config, weights, fused=True, steps=max(1, steps // 10)),
        torch_rung("torch eager, batch 1", docs, tok, config, weights, device, 1, steps),
    ]
    if compile:
        rungs.append(torch_rung("torch compiled, batch 1", docs, tok, config, weights, device, 1, steps, True))
    rungs.append(torch_rung("torch eager, batch 32", docs, tok, config, weights, device, 32, steps))
    return rungs


SUITES: dict[str, Callable[[torch.device, int, bool], list[Rung]]] = {"names": names_rungs}


def machine(device: torch.device) -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run(rungs: Sequence[Rung], device: torch.device, rounds: int) -> list[dict]:
    """Warm every rung up (one round), then time ``rounds`` interleaved rounds; a summary per rung."""
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    if device.type == "mps":
        sync = torch.mps.synchronize
    gc.collect()
    gc.freeze()  # the set-up's objects (torch's included) are never rescanned: the scalar engine is GC-bound
    next_step = [0] * len(rungs)
    try:
        for r in range(rounds + 1):
            for k, rung in enumerate(rungs):
                next_step[k] = rung.run_round(next_step[k], sync, record=r > 0)
    finally:
        gc.unfreeze()
    results = [rung.summary() for rung in rungs]
    for below, result in zip([None, *results], results):  # speed-ups in tokens/s: fair across batch sizes
        result["x_rung_below"] = result["tokens_per_s"] / below["tokens_per_s"] if below else None
        result["x_scalar"] = result["tokens_per_s"] / results[0]["tokens_per_s"]
    return results


def print_table(results: list[dict], info: dict) -> None:
    """The results as an aligned table, under a line saying where they were measured."""
    print(f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, torch {info['torch']} "
          f"({info['torch_threads']} thread(s)), device {info.get('gpu', info['device'])}")
    print(f"{'rung':<28} {'ms/step':>9} {'tokens/s':>11} {'x rung below':>13} {'x scalar':>9}")
    for r in results:
        below = f"{r['x_rung_below']:.1f}" if r["x_rung_below"] else "-"
        print(f"{r['rung']:<28} {r['ms_per_step']:>9.3f} {r['tokens_per_s']:>11,.0f} {below:>13} {r['x_scalar']:>9.1f}")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags, build the suite's rungs, time them, print (and optionally save) the results."""
    parser = argparse.ArgumentParser(prog="python -m microgpt.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("suite", choices=sorted(SUITES), help="which ladder to time")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: $MICROGPT_DEVICE or auto)")
    parser.add_argument("--steps", type=int, default=200,
                        help="timed steps per round of each torch rung; the scalar rungs run 1/20 and 1/10 "
                             "of that (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds after one warm-up (default %(default)s)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; 1 suits these tiny matrices (default %(default)s)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rung")
    parser.add_argument("--json", metavar="FILE", help="also write the machine and results as JSON")
    args = parser.parse_args(argv)
    try:
        if args.steps < 1 or args.rounds < 1 or args.threads < 1:
            raise ValueError("--steps, --rounds and --threads must be >= 1")
        device = pick_device(args.device)
        torch.set_num_threads(args.threads)
        t0 = time.perf_counter()
        rungs = SUITES[args.suite](device, args.steps, not args.no_compile)
        results = run(rungs, device, args.rounds)
    except (DataError, DeviceError, ValueError) as err:
        print(f"microgpt.bench: error: {err}", file=sys.stderr)
        return 1
    info = machine(device)
    print_table(results, info)
    print(f"({args.rounds} timed rounds after a warm-up round, {time.perf_counter() - t0:.0f} s in all)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"suite": args.suite, "machine": info, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
