"""Precision: what --dtype auto picks on each device class, emulation warnings, float16
with a GradScaler.
"""

import json

import pytest
import torch
import torch.nn.functional as F

from microgpt import cli, train
from microgpt.checkpoint import load_checkpoint
from microgpt.config import GPTConfig
from microgpt.device import (
    PrecisionError,
    attention_for,
    auto_dtype,
    autocast,
    cpu_auto,
    cpu_flags,
    cuda_auto,
    dtype_warning,
    emulated,
    grad_scaler,
    resolve_dtype,
    runs_tf32,
    set_matmul_precision,
    use_tf32,
)
from microgpt.model import GPT, bf16_attention, causal_mask
from microgpt.text import get_batch, split_text

from helpers import tiny_run

CUDA, CPU, MPS = torch.device("cuda"), torch.device("cpu"), torch.device("mps")


@pytest.fixture
def gpu(monkeypatch):
    """A CUDA device of the given compute capability, as torch reports it."""

    def make(major: int, minor: int) -> None:
        monkeypatch.setattr(
            torch.cuda, "get_device_capability", lambda device=None: (major, minor)
        )

    return make


@pytest.fixture
def cpu_with(monkeypatch):
    """A CPU whose instruction-set flags are exactly the given ones, as torch reports
    them.
    """

    def make(*flags: str) -> None:
        report = {flag: True for flag in flags} | {
            "num_physical_cores": 2,
            "cpu_name": "Test CPU",
        }
        monkeypatch.setattr(
            torch.cpu, "get_capabilities", lambda: report, raising=False
        )

    return make


@pytest.mark.parametrize(
    "capability, dtype",
    [
        ((9, 0), "bfloat16"),
        ((8, 0), "bfloat16"),
        ((8, 9), "bfloat16"),
        ((7, 5), "float16"),
        ((7, 0), "float16"),
        ((6, 1), "float32"),
    ],
)
def test_auto_on_cuda_follows_compute_capability(gpu, capability, dtype):
    gpu(*capability)
    assert resolve_dtype("auto", CUDA) == dtype
    assert f"{capability[0]}.{capability[1]}" in auto_dtype(CUDA)[1]


def test_auto_on_a_cpu_with_native_bfloat16(cpu_with):
    cpu_with("avx2", "avx512_f", "avx512_bf16")
    assert auto_dtype(CPU) == ("bfloat16", "the CPU has avx512_bf16")
    cpu_with("amx_bf16")
    assert resolve_dtype("auto", CPU) == "bfloat16"


def test_auto_on_a_cpu_without_native_bfloat16(cpu_with):
    # AVX-512 alone: oneDNN would run bf16, but emulated
    cpu_with("avx2", "avx512_f", "avx512_bw")
    assert resolve_dtype("auto", CPU) == "float32"
    assert "no bfloat16 instructions" in auto_dtype(CPU)[1]


def test_the_rules_answer_for_hardware_this_machine_lacks():
    assert cpu_auto({"avx2", "amx_bf16", "avx512_bf16"}) == (
        "bfloat16",
        "the CPU has amx_bf16 and avx512_bf16",
    )
    assert cpu_auto({"avx2", "avx512f"})[0] == "float32"
    assert cuda_auto(7, 5)[0] == "float16" and cuda_auto(9, 0)[0] == "bfloat16"
    assert [runs_tf32(major) for major in (6, 7, 8, 9)] == [False, False, True, True]


def test_cpu_flags_fall_back_to_the_os_then_to_none(monkeypatch, tmp_path):
    monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f amx_bf16\n")
    monkeypatch.setattr("microgpt.device.CPUINFO", cpuinfo)
    assert {"avx2", "amx_bf16"} <= cpu_flags()
    assert resolve_dtype("auto", CPU) == "bfloat16"
    monkeypatch.setattr("microgpt.device.CPUINFO", tmp_path / "missing")
    assert cpu_flags() == set()
    assert resolve_dtype("auto", CPU) == "float32"


def test_a_onednn_cap_below_bf16_makes_auto_float32(monkeypatch):
    monkeypatch.setattr(
        "microgpt.device.hardware_flags", lambda: {"avx2", "avx512f", "avx512_bf16"}
    )
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert resolve_dtype("auto", CPU) == "bfloat16"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert resolve_dtype("auto", CPU) == "float32"
    assert emulated("bfloat16", CPU) == "the CPU has no bfloat16 instructions"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_bf16")
    assert resolve_dtype("auto", CPU) == "bfloat16"


def test_mps_is_float32_only():
    assert resolve_dtype("auto", MPS) == "float32"
    assert resolve_dtype("float32", MPS) == "float32"
    with pytest.raises(
        PrecisionError,
        match="^--dtype float64: MPS has no float64; use --dtype float32$",
    ):
        resolve_dtype("float64", MPS)
    for dtype in ("bfloat16", "float16"):
        with pytest.raises(PrecisionError, match="microgpt trains in float32 on MPS"):
            resolve_dtype(dtype, MPS)


def test_an_explicit_dtype_is_kept_and_emulation_is_one_warning_line(gpu, cpu_with):
    gpu(7, 5)
    assert resolve_dtype("bfloat16", CUDA) == "bfloat16"
    note = dtype_warning("bfloat16", CUDA)
    assert (
        "emulated" in note
        and "--dtype auto would pick float16" in note
        and "\n" not in note
    )
    assert dtype_warning("float16", CUDA) is None
    gpu(8, 0)
    assert dtype_warning("bfloat16", CUDA) is None
    cpu_with("avx2")
    assert "the CPU has no bfloat16 instructions" in dtype_warning("bfloat16", CPU)
    assert dtype_warning("float32", CPU) is None


def test_tf32_only_for_float32_on_ampere_or_newer(gpu):
    gpu(8, 0)
    assert use_tf32(CUDA, "float32") and not use_tf32(CUDA, "bfloat16")
    gpu(7, 5)
    assert not use_tf32(CUDA, "float32")
    assert not use_tf32(CPU, "float32")
    try:
        set_matmul_precision(CPU, "float32")
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        torch.set_float32_matmul_precision("highest")


def test_autocast_casts_matmuls_to_the_chosen_dtype():
    a = torch.randn(4, 4)
    for dtype, expected in [
        ("bfloat16", torch.bfloat16),
        ("float16", torch.float16),
        ("float32", torch.float32),
    ]:
        with autocast(CPU, dtype):
            assert (a @ a).dtype == expected
    assert grad_scaler(CPU, "float16").is_enabled()
    assert not grad_scaler(CPU, "bfloat16").is_enabled()


# --- float16 for real on the CPU: the loss is scaled, the gradients unscaled before cli


@pytest.fixture(scope="module")
def splits(data_dir):
    return split_text((data_dir / "tinyshakespeare.txt").read_text()[:20_000])


def test_float16_step_unscales_before_clipping(splits):
    config = GPTConfig(splits.tokenizer.vocab_size, 16, 1, 16, 2)
    x, y = get_batch(splits.train, 0, 1337, 16, 4)
    torch.manual_seed(0)
    model = GPT(config, attention="sdpa")
    train.lm_loss(model, x, y).backward()
    true_norm = torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in model.parameters()])
    ).item()
    model.zero_grad(set_to_none=True)
    before = [p.detach().clone() for p in model.parameters()]
    scaler = grad_scaler(CPU, "float16")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    _, norm = train.text_update(
        model,
        optimizer,
        x,
        y,
        lr=1e-3,
        grad_clip=1.0,
        scaler=scaler,
        device=CPU,
        dtype="float16",
    )
    # the norm clipping saw: the true one, not 65,536x
    assert abs(norm.item() - true_norm) < 0.05 * true_norm
    assert scaler.get_scale() == 65536.0  # no overflow, so the scale stays
    assert all(not torch.equal(p, q) for p, q in zip(before, model.parameters()))


def test_float16_resume_is_exact_with_the_scaler_checkpointed(
    splits, tmp_path, killed_after_checkpoint
):
    run_config = tiny_run(steps=20, batch_size=4, dtype="float16")
    train.train_text(
        splits, run_config, tmp_path / "whole", eval_interval=10, progress=False
    )
    killed_after_checkpoint(
        splits,
        run_config,
        tmp_path / "cut",
        eval_interval=10,
        ckpt_interval=10,
        progress=False,
    )
    ckpt = load_checkpoint(tmp_path / "cut" / "ckpt.pt")
    assert ckpt["step"] == 10 and ckpt["scaler"]["_growth_tracker"] == 10
    train.train_text(
        splits,
        run_config,
        tmp_path / "cut",
        eval_interval=10,
        resume=ckpt,
        progress=False,
    )
    records = [
        [
            {k: v for k, v in json.loads(line).items() if k != "ms"}
            for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        ]
        for run in ("whole", "cut")
    ]
    assert records[0] == records[1]
    whole, cut = (
        load_checkpoint(tmp_path / run / "ckpt.pt") for run in ("whole", "cut")
    )
    assert cut["scaler"] == whole["scaler"] and whole["scaler"]["_growth_tracker"] == 20


def test_bfloat16_checkpoints_hold_no_scaler(splits, tmp_path):
    train.train_text(
        splits,
        tiny_run(steps=2, batch_size=4, dtype="bfloat16"),
        tmp_path,
        progress=False,
    )
    assert load_checkpoint(tmp_path / "ckpt.pt")["scaler"] is None


# --- the command line -----------------------------------------------------------------

TINY = (
    "--batch-size 4 --block-size 16 --n-embd 16 --n-head 2 --n-layer 1"
    " --device cpu --quiet --steps 2 --eval-interval 0"
).split()


@pytest.fixture(scope="module")
def small(tmp_path_factory, data_dir):
    path = tmp_path_factory.mktemp("data") / "small.txt"
    path.write_text((data_dir / "tinyshakespeare.txt").read_text()[:20_000])
    return path


def test_cli_float16_trains_and_says_so(small, tmp_path, capsys, cpu_with):
    cpu_with("avx512_fp16")
    assert (
        cli.main(
            [
                "train",
                "shakespeare",
                "--out",
                str(tmp_path),
                "--data",
                str(small),
                "--dtype",
                "float16",
                *TINY,
            ]
        )
        == 0
    )
    out = capsys.readouterr()
    assert "dtype float16" in out.out and out.err == ""
    assert load_checkpoint(tmp_path / "ckpt.pt")["scaler"]["scale"] == 65536.0


def test_cli_emulated_dtype_runs_with_one_warning_line(
    small, tmp_path, capsys, cpu_with
):
    cpu_with("avx2", "avx512_f")
    assert (
        cli.main(
            [
                "train",
                "shakespeare",
                "--out",
                str(tmp_path),
                "--data",
                str(small),
                "--dtype",
                "bfloat16",
                *TINY,
            ]
        )
        == 0
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "microgpt: warning: --dtype bfloat16 runs emulated on cpu"
    )
    assert "--dtype auto would pick float32" in err[0]


def test_cli_auto_on_a_cpu_without_bf16_trains_in_float32(
    small, tmp_path, capsys, cpu_with
):
    cpu_with("avx2")
    assert (
        cli.main(
            [
                "train",
                "shakespeare",
                "--out",
                str(tmp_path),
                "--data",
                str(small),
                *TINY,
            ]
        )
        == 0
    )
    assert "dtype float32" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "ckpt.pt")["run"]["dtype"] == "float32"


def test_bf16_attention_is_attention_in_bfloat16():
    """It matches float32 attention to bfloat16's precision, and no closer."""
    q, k, v = torch.randn(3, 2, 4, 10, 8).unbind(0)
    y = bf16_attention(q, k, v, causal_mask(10))
    assert y.dtype == torch.bfloat16
    exact = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(y.float(), exact, atol=3e-2)
    assert not torch.allclose(y.float(), exact, atol=1e-5)


def test_bf16_attention_is_only_chosen_for_bfloat16_on_a_cpu():
    assert attention_for(CPU, "bfloat16") == "bf16"
    assert attention_for(CPU, "float32") == "sdpa"
    assert attention_for(CUDA, "bfloat16") == "sdpa"


def test_a_model_on_bf16_attention_continues_its_cache_and_drops_out():
    """bf16 attention serves the KV cache (a slice of the mask) and attention dropout
    as SDPA does.
    """
    config = GPTConfig(vocab_size=11, block_size=12, n_layer=2, n_embd=16, n_head=2)
    torch.manual_seed(0)
    model = GPT(config, attention="bf16", dropout=0.5).eval()
    idx = torch.randint(0, 11, (2, 12))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        whole = model(idx)
        cache = model.new_cache()
        parts = torch.cat([model(idx[:, :5], cache), model(idx[:, 5:], cache)], dim=1)
        assert torch.allclose(whole.float(), parts.float(), atol=5e-2)
        model.train()
        # dropout draws new masks each call
        assert not torch.equal(model(idx), model(idx))


def test_an_unknown_attention_is_a_clear_error():
    config = GPTConfig(vocab_size=11, block_size=12, n_layer=1, n_embd=16, n_head=2)
    with pytest.raises(
        ValueError, match="attention must be one of explicit, sdpa, bf16"
    ):
        GPT(config, attention="flash")
