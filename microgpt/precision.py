"""Precision: which dtype a device trains in, and the autocast context that applies it."""

from __future__ import annotations

import contextlib

import torch


def resolve_dtype(name: str, device: torch.device) -> str:
    """``auto`` becomes bfloat16 where the hardware computes it natively, float32 elsewhere."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "bfloat16"
    return "float32"


def autocast(device: torch.device, dtype: str):
    """bf16 autocast (weights stay float32) or nothing."""
    if dtype == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
