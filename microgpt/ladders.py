"""The benchmark's two ladders: each rung one way to run the same training step, slowest
first.

``names``: the 4,192-parameter model of Part I, from the scalar engine to batched torch.
``shakespeare``: the 836K-parameter step of ``microgpt train shakespeare`` (32 blocks of
256 characters, AdamW, clipping), from plain float32 eager to what the package runs by
default and to ``torch.compile``; and :func:`loop_ms`, the same step as the training
loop itself runs it.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import tempfile
from pathlib import Path

import torch

from microgpt import scalar, train
from microgpt.config import GPTConfig, TrainConfig
from microgpt.data import CharTokenizer, load_names, load_shakespeare
from microgpt.device import attention_for, grad_scaler, resolve_dtype
from microgpt.model import GPT, gpt_from_scalar
from microgpt.names import (
    compiled_names_step,
    encode_names,
    make_names_optimizer,
    names_batch,
    names_step,
    names_tokens,
)
from microgpt.roofline import step_flops
from microgpt.scalar import linear_decay
from microgpt.text import TextSplits, get_batch, split_text
from microgpt.timing import Rung, compile_now, spread
from microgpt.train import read_metrics

# --- names: the 4,192-parameter model, from scalars to batches ------------------------


def names_setup(seed: int = 42) -> tuple[list[str], CharTokenizer, GPTConfig, dict]:
    """The data and initial weights that ``microgpt train names`` starts from."""
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
        optimizer.step(linear_decay(i, 1000, 0.01))
        return min(len(tokens) - 1, config.block_size)

    return Rung(name, step, steps)


def torch_rung(
    name: str,
    docs,
    tok,
    config,
    weights,
    device: torch.device,
    batch_size: int,
    steps: int,
    compile: bool = False,
) -> Rung:
    """The batched torch step that ``microgpt train names`` runs (``names_step``
    or, compiled, ``compiled_names_step``), float32.
    """
    model = gpt_from_scalar(config, weights, attention="sdpa").to(device)
    data = encode_names(docs, tok, config.block_size).to(device)
    if compile:
        update = compiled_names_step(model)
    else:
        optimizer = make_names_optimizer(model)
        update = functools.partial(names_step, model, optimizer)

    def step(i: int) -> int:
        x, y, weight = names_batch(data, i, batch_size, pad_to_block=compile)
        update(x, y, weight, linear_decay(i % 1000, 1000, 0.01)).item()
        return names_tokens(data, i, batch_size)

    return Rung(name, step, steps)


def names_rungs(device: torch.device, steps: int, compile: bool) -> list[Rung]:
    """The names ladder, slowest first: scalar, scalar fused, torch batch 1 (eager,
    compiled), torch batch 32.
    """
    docs, tok, config, weights = names_setup()
    rungs = [
        scalar_rung(
            "scalar (atomic Values)",
            docs,
            tok,
            config,
            weights,
            fused=False,
            steps=max(1, steps // 20),
        ),
        scalar_rung(
            "scalar, fused dot products",
            docs,
            tok,
            config,
            weights,
            fused=True,
            steps=max(1, steps // 10),
        ),
        torch_rung(
            "torch eager, batch 1", docs, tok, config, weights, device, 1, steps
        ),
    ]
    if compile:
        compiled = torch_rung(
            "torch compiled, batch 1",
            docs,
            tok,
            config,
            weights,
            device,
            1,
            steps,
            True,
        )
        rungs.append(compile_now(compiled, device))
    rungs.append(
        torch_rung(
            "torch eager, batch 32", docs, tok, config, weights, device, 32, steps
        )
    )
    return rungs


# --- shakespeare: the 836K-parameter step, from plain float32 to the package's default


# --small: a quick check
SMALL = TrainConfig(block_size=64, n_embd=64, n_head=4, n_layer=2, batch_size=8)


def shakespeare_setup(
    small: bool = False,
) -> tuple[TextSplits, GPTConfig, int]:
    """The text, model shape and batch size of ``microgpt train shakespeare`` (its
    defaults, or ``SMALL``).
    """
    splits = split_text(load_shakespeare())
    run = SMALL if small else TrainConfig()
    return splits, run.model(splits.tokenizer.vocab_size), run.batch_size


def text_rung(
    name: str,
    data: tuple,
    device: torch.device,
    steps: int,
    *,
    attention: str,
    dtype: str,
    compile: bool = False,
    default: bool = False,
) -> Rung:
    """``train.text_update`` on the Shakespeare shape, with the attention, precision and
    compilation given.
    """
    config, batches = data
    run = TrainConfig(steps=1, batch_size=len(batches[0][0]))
    torch.manual_seed(run.seed)
    model = GPT(config, attention).to(device)
    optimizer = train.make_text_optimizer(model, run, device)
    flops = step_flops(model, run.batch_size)
    forward, scaler = (
        torch.compile(model) if compile else model,
        grad_scaler(device, dtype),
    )

    def step(i: int) -> int:
        x, y = batches[i % len(batches)]
        train.text_update(
            forward,
            optimizer,
            x,
            y,
            lr=run.lr,
            grad_clip=run.grad_clip,
            scaler=scaler,
            device=device,
            dtype=dtype,
        )
        return x.numel()

    return Rung(
        name,
        step,
        steps,
        flops,
        dtype,
        default,
        shape=(config, run.batch_size),
        scores_in_memory=attention != "sdpa",
    )


# float32 eager with the fused kernel: the reference step
REFERENCE = "+ SDPA attention"


def shakespeare_rungs(
    device: torch.device, steps: int, compile: bool, small: bool = False
) -> list[Rung]:
    """The Shakespeare ladder, each rung adding one change: SDPA, bf16 autocast,
    torch.compile.

    The second rung, float32 with PyTorch's fused attention, is the reference: the step
    as nanoGPT runs it on a CPU with --compile=False.
    """
    splits, config, batch_size = shakespeare_setup(small)
    seed = TrainConfig().seed
    batches = [
        tuple(
            t.to(device)
            for t in get_batch(splits.train, i, seed, config.block_size, batch_size)
        )
        for i in range(4)
    ]
    data, dtype = (config, batches), resolve_dtype(TrainConfig().dtype, device)
    attention = attention_for(device, dtype)  # as train_text would train
    rung = functools.partial(text_rung, data=data, device=device, steps=steps)
    rungs = [
        rung("fp32 eager (explicit mask)", attention="explicit", dtype="float32"),
        rung(REFERENCE, attention="sdpa", dtype="float32", default=dtype == "float32"),
    ]
    # only where resolve_dtype would train in it: natively supported
    if dtype != "float32":
        name = (
            "+ bf16 autocast" if dtype == "bfloat16" else "+ fp16 autocast, GradScaler"
        )
        rungs.append(rung(name, attention=attention, dtype=dtype, default=True))
    if compile:
        compiled = rung(
            "+ torch.compile", attention=attention, dtype=dtype, compile=True
        )
        rungs.append(compile_now(compiled, device))
    return rungs


def loop_ms(device: torch.device, steps: int, small: bool = False) -> dict:
    """The spread of ``metrics.jsonl``'s ``ms`` over ``steps`` steps of
    ``train.train_text`` on the default step (after 3 unrecorded ones): the step as the
    training loop runs it, batches, schedule and logging included.
    """
    splits = split_text(load_shakespeare())
    run = dataclasses.replace(SMALL if small else TrainConfig(), steps=steps + 3)
    with tempfile.TemporaryDirectory() as out:
        train.train_text(splits, run, out, device=device, progress=False)
        return spread([r["ms"] for r in read_metrics(Path(out) / "metrics.jsonl")[3:]])
