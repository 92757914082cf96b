"""``microgpt doctor``: what this machine offers microgpt, for setting up and for bug
reports.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from pathlib import Path

import torch

import microgpt
from microgpt.book import results_url
from microgpt.cli import SMALL_WORK_THREADS
from microgpt.data import DATASETS, cache_dir, sha256_of
from microgpt.device import (
    BF16_CPU_FLAGS,
    FP16_CPU_FLAGS,
    DeviceError,
    auto_dtype,
    cpu_flags,
    pick_device,
    use_tf32,
)


def auto_line(device: torch.device) -> str:
    """What ``--dtype auto`` picks on ``device`` and why, plus TF32 where float32
    matmuls use it.
    """
    dtype, why = auto_dtype(device)
    tf32 = "; float32 matmuls in TF32" if use_tf32(device, "float32") else ""
    return f"--dtype auto -> {dtype} ({why}){tf32}"


def cpu_lines() -> list[str]:
    """The CPU: name, the vector instructions torch uses, bf16 support, threads."""
    report = getattr(torch.cpu, "get_capabilities", dict)()
    name = report.get("cpu_name") or platform.processor() or platform.machine()
    flags = sorted(cpu_flags() & {*BF16_CPU_FLAGS, *FP16_CPU_FLAGS})
    capability = torch.backends.cpu.get_cpu_capability()
    return [
        f"cpu: {name}, {os.cpu_count()} logical cores, torch kernels use {capability}",
        f"  16-bit instructions: {', '.join(flags) or 'none'}",
        f"  {auto_line(torch.device('cpu'))}",
        f"  threads: {torch.get_num_threads()} intra-op, "
        f"{torch.get_num_interop_threads()} inter-op"
        + (
            f" (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})"
            if "OMP_NUM_THREADS" in os.environ
            else ""
        ),
        *command_threads(),
    ]


def command_threads() -> list[str]:
    """The CPU threads each torch command runs on without ``--threads``, and where that
    number comes from.
    """
    small = (
        f"{SMALL_WORK_THREADS} (microgpt's default: its tensors are too small to "
        "share out across cores)"
    )
    return [
        "  threads per command (--threads N sets them):",
        f"    train names: {small}",
        f"    train shakespeare: {torch.get_num_threads()} (torch's default; under "
        "torchrun with several processes, 1 each unless OMP_NUM_THREADS is set)",
        f"    sample: {small}",
    ]


def cuda_lines() -> list[str]:
    """Every CUDA device with its name, compute capability, memory and precision."""
    if not torch.cuda.is_available():
        built = (
            f"torch built with CUDA {torch.version.cuda}"
            if torch.version.cuda
            else "a CPU-only torch build"
        )
        return [f"cuda: none found ({built})"]
    lines = [
        f"cuda: {torch.cuda.device_count()} device(s), "
        f"torch built with CUDA {torch.version.cuda}"
    ]
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        lines += [
            f"  cuda:{i}: {props.name}, compute capability "
            f"{props.major}.{props.minor}, {props.total_memory / 2**30:.1f} GiB",
            f"    {auto_line(torch.device('cuda', i))}",
        ]
    return lines


def mps_lines() -> list[str]:
    """Apple's MPS: available or not, and what microgpt does there."""
    if not torch.backends.mps.is_available():
        built = " (torch built with it)" if torch.backends.mps.is_built() else ""
        return [f"mps: not available{built}"]
    fallback = os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK", "unset")
    return [
        "mps: available (Apple GPU)",
        f"  {auto_line(torch.device('mps'))}",
        f"  PYTORCH_ENABLE_MPS_FALLBACK={fallback}; torch.compile is not used on MPS",
    ]


def data_lines() -> list[str]:
    """Where the datasets are, and whether each matches its SHA-256 (nothing is
    downloaded).
    """
    offline = os.environ.get("MICROGPT_DATA")
    lines = [f"data: MICROGPT_DATA={offline or 'unset'}, cache {cache_dir()}"]
    for name, dataset in DATASETS.items():
        places = [Path(offline).expanduser() / dataset.filename] if offline else []
        found = [p for p in [*places, cache_dir() / dataset.filename] if p.is_file()]
        if not found:
            lines.append(
                f"  {name}: not downloaded yet (fetched and checked on first use)"
            )
        else:
            ok = sha256_of(found[0]) == dataset.sha256
            state = "verified" if ok else "SHA-256 MISMATCH: delete it to re-download"
            lines.append(f"  {name}: {found[0]} ({state})")
    lines.append(
        f"results: ./results beside a notebook, else {cache_dir() / 'results'}, "
        f"else {results_url()}"
    )
    return lines


def report() -> list[str]:
    """The whole environment report, one line per fact."""
    try:
        chosen = (
            f"{pick_device()} "
            f"(MICROGPT_DEVICE={os.environ.get('MICROGPT_DEVICE', 'unset')})"
        )
    except DeviceError as err:
        chosen = f"error: {err}"
    compiler = next(
        (c for c in ("cl", "c++", "g++", "clang++") if shutil.which(c)), None
    )
    compile_note = (
        "C++ compiler " + compiler
        if compiler
        else "no C++ compiler found: run without --compile"
    )
    return [
        f"microgpt {microgpt.__version__} at {Path(microgpt.__file__).parent}",
        f"python {platform.python_version()} ({sys.executable}) "
        f"on {platform.platform()}",
        f"torch {torch.__version__}",
        *cpu_lines(),
        *cuda_lines(),
        *mps_lines(),
        f"default device: {chosen}",
        f"torch.compile: {compile_note}",
        *data_lines(),
    ]


def main() -> None:
    """Print the report."""
    print("\n".join(report()))


if __name__ == "__main__":
    main()
