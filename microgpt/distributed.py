"""Data-parallel training across the processes ``torchrun`` starts: one model replica
per process, each a rank.
"""

from __future__ import annotations

import contextlib
import inspect
import os

import torch
import torch.distributed as dist

from microgpt.device import DeviceError


def world_size() -> int:
    """How many processes train together: ``$WORLD_SIZE`` as torchrun sets it, 1 without
    torchrun.
    """
    return int(os.environ.get("WORLD_SIZE", 1))


def rank() -> int:
    """This process's number, 0 to ``world_size() - 1``: ``$RANK`` as torchrun sets it,
    0 without torchrun.
    """
    return int(os.environ.get("RANK", 0))


def is_main() -> bool:
    """Whether this is rank 0, the one process that prints and writes files."""
    return rank() == 0


def device_for_rank(device: torch.device) -> torch.device:
    """Under torchrun each process takes its own GPU, ``cuda:$LOCAL_RANK``; CPU
    processes share the CPU.
    """
    if world_size() == 1:
        return device
    if device.type == "cuda":
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    if device.type != "cpu":
        raise DeviceError(
            "distributed training runs on CUDA (NCCL) or the CPU (gloo), "
            f"not on {device.type}"
        )
    return device


def init(device: torch.device) -> None:
    """Join the process group torchrun set up: NCCL between GPUs, gloo between CPU
    processes.
    """
    if world_size() == 1:
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")


def cleanup() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def share(batch: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous rows of a global batch (all rows when alone)."""
    n = len(batch) // world_size()
    return batch[rank() * n : (rank() + 1) * n]


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` wrapped in DistributedDataParallel, which averages gradients across
    ranks; alone, ``model`` itself.

    The buffers are not sent before every forward: the only ones are the causal masks,
    equal on every rank from the start. (torch 2.13 renamed DDP's ``broadcast_buffers``
    to ``forward_sync_buffers``.)
    """
    if world_size() == 1:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    ddp = torch.nn.parallel.DistributedDataParallel
    renamed = "forward_sync_buffers" in inspect.signature(ddp).parameters
    return ddp(
        model,
        device_ids=device_ids,
        **{"forward_sync_buffers" if renamed else "broadcast_buffers": False},
    )


def sync_gradients(
    model: torch.nn.Module, sync: bool
) -> contextlib.AbstractContextManager:
    """Where ``sync`` is False and ``model`` is DDP, its ``no_sync()``: backward keeps
    the gradients local.

    With gradient accumulation, only the last micro-batch's backward needs the
    all-reduce: the gradients summed locally until then are averaged across ranks at
    once.
    """
    if sync or not isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return model.no_sync()


def mean_tensor(values: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``values`` over all ranks, in one all-reduce (``values``
    itself in one process).
    """
    if world_size() == 1:
        return values
    total = values.double()
    dist.all_reduce(total)
    return total / world_size()
