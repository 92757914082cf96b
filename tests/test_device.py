"""Device choice: CUDA > MPS > CPU, explicit choices win, missing devices are clear
errors.
"""

import pytest
import torch

from microgpt import device as dev


@pytest.fixture
def machine(monkeypatch):
    """Pretend the machine has the given accelerators."""

    def have(cuda: bool = False, mps: bool = False, cuda_count: int = 1):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(
            torch.cuda, "device_count", lambda: cuda_count if cuda else 0
        )
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
        monkeypatch.delenv("MICROGPT_DEVICE", raising=False)

    return have


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [
        (True, True, "cuda"),
        (True, False, "cuda"),
        (False, True, "mps"),
        (False, False, "cpu"),
    ],
)
def test_auto_prefers_cuda_then_mps_then_cpu(machine, cuda, mps, expected):
    machine(cuda=cuda, mps=mps)
    assert dev.pick_device().type == expected
    assert dev.pick_device("auto").type == expected


def test_explicit_choice_wins(machine, monkeypatch):
    machine(cuda=True, mps=True)
    assert dev.pick_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("MICROGPT_DEVICE", "mps")
    assert dev.pick_device() == torch.device("mps")
    assert dev.pick_device("CPU") == torch.device("cpu")


def test_missing_device_is_a_clear_error(machine):
    machine(cuda=False, mps=False)
    with pytest.raises(
        dev.DeviceError, match="'cuda' is not available.*available: cpu"
    ):
        dev.pick_device("cuda")
    with pytest.raises(dev.DeviceError, match="not available"):
        dev.pick_device("mps")
    with pytest.raises(dev.DeviceError, match="unknown device 'gpu'"):
        dev.pick_device("gpu")


def test_cuda_index_out_of_range(machine):
    machine(cuda=True, cuda_count=1)
    assert dev.pick_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(dev.DeviceError, match="1 CUDA device"):
        dev.pick_device("cuda:3")
