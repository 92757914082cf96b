"""Chapter 8: where tensors live, which dtype they train in there, and whether the
model fits.

The device is CUDA, then Apple's MPS, then the CPU, unless you say otherwise.
``--dtype auto`` picks bfloat16 on CUDA GPUs of compute capability 8.0 or more (A100,
L4, H100, RTX 30xx+), float16 with gradient scaling on older ones with tensor cores (T4,
V100), bfloat16 on CPUs with bf16 instructions (``avx512_bf16`` or ``amx_bf16``), and
float32 everywhere else, Apple's MPS included. Memory is checked before allocating:
how many bytes training needs against how many the device has free.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from microgpt.config import GPTConfig

# --- the device -----------------------------------------------------------------------


class DeviceError(ValueError):
    """A device was asked for that this machine does not have."""


def available_devices() -> list[str]:
    """The device types this machine can use, fastest first."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if torch.backends.mps.is_available():
        found.append("mps")
    return [*found, "cpu"]


def pick_device(name: str | None = None) -> torch.device:
    """``name`` (or ``$MICROGPT_DEVICE``) if given, else the best available: CUDA > MPS
    > CPU.
    """
    name = (name or os.environ.get("MICROGPT_DEVICE") or "auto").strip().lower()
    have = available_devices()
    if name == "auto":
        return torch.device(have[0])
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(
            f"unknown device {name!r}; use auto, {', '.join(have)}"
        ) from None
    if device.type not in have:
        raise DeviceError(
            f"device {name!r} is not available on this machine; "
            f"available: {', '.join(have)}"
        )
    if (
        device.type == "cuda"
        and device.index is not None
        and device.index >= torch.cuda.device_count()
    ):
        raise DeviceError(
            f"{name} does not exist: this machine has "
            f"{torch.cuda.device_count()} CUDA device(s)"
        )
    return device


def has_fused_adam(device: torch.device) -> bool:
    """Whether torch has fused Adam/AdamW kernels for ``device``: for each of
    microgpt's device types in the torch it requires (>= 2.13; MPS has had them since
    2.5).
    """
    return device.type in ("cpu", "cuda", "mps")


# --- precision: the dtype each device computes natively -------------------------------


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
FP16_CPU_FLAGS = ("avx512_fp16", "amx_fp16")
CPUINFO = Path("/proc/cpuinfo")


class PrecisionError(ValueError):
    """A dtype the device cannot compute at all, or that microgpt does not run there."""


# oneDNN's instruction-set caps (ONEDNN_MAX_CPU_ISA) under which it runs no 16-bit
# instructions.
ISAS_WITHOUT_16_BIT = {
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
}


def cpuinfo(*names: str) -> list[str]:
    """The values of the ``name : value`` lines of /proc/cpuinfo whose name starts with
    one of ``names`` (one per logical CPU); none where the file is missing (not Linux).
    """
    try:
        lines = CPUINFO.read_text().splitlines()
    except OSError:
        return []
    return [line.split(":", 1)[1] for line in lines if line.startswith(names)]


def hardware_flags() -> set[str]:
    """The CPU's instruction-set flags: torch's own report where it has one, else the
    OS's (``flags`` on x86, ``Features`` on Arm), else none.
    """
    report = getattr(torch.cpu, "get_capabilities", None)
    if report is not None:
        return {name for name, value in report().items() if value is True}
    return {flag for value in cpuinfo("flags", "Features") for flag in value.split()}


def cpu_flags() -> set[str]:
    """The flags torch's kernels may use: the hardware's, less the 16-bit ones when
    ``ONEDNN_MAX_CPU_ISA`` caps oneDNN below them (as a CPU without bf16 would run)."""
    flags = hardware_flags()
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in ISAS_WITHOUT_16_BIT:
        flags -= {*BF16_CPU_FLAGS, *FP16_CPU_FLAGS}
    return flags


def capability(device: torch.device) -> tuple[int, int]:
    """A CUDA device's compute capability, such as (7, 5) for a T4 or (8, 0) for an
    A100.
    """
    return torch.cuda.get_device_capability(device)


def cuda_auto(major: int, minor: int) -> tuple[str, str]:
    """What ``--dtype auto`` picks on a CUDA GPU of compute capability ``major.minor``,
    and why.
    """
    if major >= 8:
        return (
            "bfloat16",
            f"compute capability {major}.{minor} >= 8.0 computes bfloat16 natively",
        )
    if major >= 7:
        return "float16", (
            f"compute capability {major}.{minor} < 8.0 only emulates bfloat16; "
            "float16 tensor cores, with gradient scaling"
        )
    return "float32", f"compute capability {major}.{minor} has no tensor cores"


def cpu_auto(flags: set[str]) -> tuple[str, str]:
    """What ``--dtype auto`` picks on a CPU with the instruction-set ``flags``, and
    why.
    """
    found = sorted(flags & set(BF16_CPU_FLAGS))
    if found:
        return "bfloat16", f"the CPU has {' and '.join(found)}"
    return "float32", "the CPU has no bfloat16 instructions (avx512_bf16 or amx_bf16)"


def auto_dtype(device: torch.device) -> tuple[str, str]:
    """What ``--dtype auto`` picks on ``device``, and why."""
    if device.type == "cuda":
        return cuda_auto(*capability(device))
    if device.type == "cpu":
        return cpu_auto(cpu_flags())
    return "float32", f"microgpt trains in float32 on {device.type}"


def emulated(dtype: str, device: torch.device) -> str | None:
    """Why ``dtype`` runs on ``device`` only emulated (slowly), or None where the
    hardware computes it.
    """
    if device.type == "cuda" and dtype in ("bfloat16", "float16"):
        major, minor = capability(device)
        if major < (8 if dtype == "bfloat16" else 7):
            return f"compute capability {major}.{minor} has no native {dtype}"
    if device.type == "cpu" and dtype in ("bfloat16", "float16"):
        if not cpu_flags() & set(
            BF16_CPU_FLAGS if dtype == "bfloat16" else FP16_CPU_FLAGS
        ):
            return f"the CPU has no {dtype} instructions"
    return None


def resolve_dtype(name: str, device: torch.device) -> str:
    """``auto`` becomes :func:`auto_dtype`'s pick; a dtype the device cannot run is a
    :class:`PrecisionError`.
    """
    if name == "auto":
        return auto_dtype(device)[0]
    if device.type == "mps" and name != "float32":
        why = (
            "MPS has no float64"
            if name == "float64"
            else "microgpt trains in float32 on MPS"
        )
        raise PrecisionError(f"--dtype {name}: {why}; use --dtype float32")
    return name


def dtype_warning(name: str, device: torch.device) -> str | None:
    """A one-line warning when ``name`` (already resolved) runs on ``device`` only
    emulated, else None.
    """
    why = emulated(name, device)
    if why is None:
        return None
    pick, reason = auto_dtype(device)
    return (
        f"--dtype {name} runs emulated on {device} ({why}), slower; "
        f"--dtype auto would pick {pick}: {reason}"
    )


def autocast(device: torch.device, dtype: str):
    """Mixed-precision autocast in bfloat16 or float16 (weights stay float32), or
    nothing for float32.
    """
    if dtype in ("bfloat16", "float16"):
        return torch.autocast(device.type, dtype=getattr(torch, dtype))
    return contextlib.nullcontext()


def grad_scaler(device: torch.device, dtype: str) -> torch.amp.GradScaler:
    """A gradient scaler, enabled for float16 only (whose small gradients would
    underflow unscaled).
    """
    return torch.amp.GradScaler(device.type, enabled=dtype == "float16")


def runs_tf32(major: int) -> bool:
    """Whether a CUDA GPU of compute capability ``major``.x has TF32 tensor cores
    (Ampere, 8.0, and newer).
    """
    return major >= 8


def use_tf32(device: torch.device, dtype: str) -> bool:
    """Whether float32 matmuls should run as TF32: float32 chosen on an Ampere or newer
    GPU.
    """
    return (
        dtype == "float32"
        and device.type == "cuda"
        and runs_tf32(capability(device)[0])
    )


def set_matmul_precision(device: torch.device, dtype: str) -> None:
    """TF32 matmuls where :func:`use_tf32` says so, full float32 otherwise."""
    torch.set_float32_matmul_precision("high" if use_tf32(device, dtype) else "highest")


def attention_for(device: torch.device, dtype: str) -> str:
    """The attention variant to train with (see ``model.ATTENTION``): "bf16" for a CPU
    training in bfloat16, where it is the fastest, else PyTorch's fused "sdpa".
    """
    return "bf16" if device.type == "cpu" and dtype == "bfloat16" else "sdpa"


# --- memory: what training needs, what the device has free ----------------------------


def param_count(config: GPTConfig) -> int:
    """The model's parameters, counted from its shape: embeddings, lm_head and 12
    n_embd^2 per layer.
    """
    d = config.n_embd
    return (2 * config.vocab_size + config.block_size) * d + 12 * config.n_layer * d * d


def training_bytes(config: GPTConfig, batch_size: int) -> int:
    """A rough upper estimate of training memory in float32: weights, gradients, two
    Adam moments, activations.

    Activations: about 20 saved tensors of ``batch x block x n_embd`` per layer, the
    logits (with their gradient and softmax) and the attention scores where an explicit
    mask materialises them.
    """
    c, tokens = config, batch_size * config.block_size
    weights = 4 * param_count(c) * 4
    activations = 4 * tokens * (20 * c.n_layer * c.n_embd + 3 * c.vocab_size)
    scores = 4 * 2 * batch_size * c.n_head * c.block_size**2 * c.n_layer
    return weights + activations + scores


def free_bytes(device: torch.device) -> int | None:
    """Bytes free on ``device``: CUDA's own count, the OS's available memory for the
    CPU, None if unknown.
    """
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                return next(
                    int(line.split()[1]) * 1024
                    for line in f
                    if line.startswith("MemAvailable:")
                )
        except (OSError, StopIteration, ValueError):
            return None  # not Linux: unknown, and not checked
    return None


def gib(n: int) -> str:
    """Bytes as GiB with one decimal."""
    return f"{n / 2**30:,.1f} GiB"


def check_fits(config: GPTConfig, batch_size: int, device: torch.device) -> None:
    """A MemoryError (one line, before anything is allocated) if training would not fit
    in ``device``'s memory.
    """
    need, free = training_bytes(config, batch_size), free_bytes(device)
    if free is not None and need > free:
        raise MemoryError(
            f"this model needs about {gib(need)} to train "
            f"({param_count(config):,} parameters, batch {batch_size} x "
            f"{config.block_size}) but {device} has {gib(free)} free; "
            "make it smaller (--n-embd, --n-layer, --block-size) or lower --batch-size"
        )
