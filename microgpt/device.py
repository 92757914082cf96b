"""Choosing where tensors live: CUDA, then Apple's MPS, then the CPU, unless you say
otherwise.
"""

from __future__ import annotations

import os

import torch


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
