"""One names run traced to the last bit, the same code in CPython and in Pyodide (see
tests/browser_bits.py).

echo '{"seed": 42, "steps": 20}' | python tests/bits_trace.py

It imports only the standard library and microgpt's pure-Python modules, so it runs
wherever the training page's Python runs. Request keys are :func:`trace`'s arguments, or
``{"evaluate": inputs}``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
import sys
from collections.abc import Callable, Iterator

from microgpt import cli, data, scalar
from microgpt.cli import start_names

# The C math library's functions a names run calls, and where: the model's exp and log,
# and the three random.gauss draws each pair of initial weights from.
FUNCTIONS: dict[str, Callable[[float], float]] = {
    "exp": math.exp,
    "log": math.log,
    "gauss cos": math.cos,
    "gauss sin": math.sin,
    "gauss log": math.log,
}


@contextlib.contextmanager
def recording(inputs: dict[str, set[float]]) -> Iterator[None]:
    """Note every argument the run hands to exp and log, and to cos, sin and log inside
    ``random.gauss``.
    """
    saved = math.exp, math.log, random._cos, random._sin, random._log

    def spy(name: str, fn: Callable[[float], float]) -> Callable[[float], float]:
        def call(x: float) -> float:
            inputs[name].add(x)
            return fn(x)

        return call

    math.exp, math.log = spy("exp", saved[0]), spy("log", saved[1])
    random._cos, random._sin, random._log = (
        spy(f"gauss {n}", f) for n, f in zip(("cos", "sin", "log"), saved[2:])
    )
    try:
        yield
    finally:
        math.exp, math.log, random._cos, random._sin, random._log = saved


def trace(
    seed: int, steps: int, weights: list[str] | None = None, record: bool = False
) -> dict:
    """``microgpt train names --engine scalar-fused``, every weight and loss kept
    exactly (hex, repr).

    ``weights`` (hex) replace the initial weights after they are drawn, so the random
    stream stays the command line's, and are the ``initial`` returned; ``record`` also
    returns every libm input the run met, as sorted hex.
    """
    args = cli.build_parser().parse_args(
        [
            "train",
            "names",
            "--engine",
            "scalar-fused",
            "--seed",
            str(seed),
            "--steps",
            str(steps),
        ]
    )
    inputs: dict[str, set[float]] = {name: set() for name in FUNCTIONS}
    spying = recording(inputs) if record else contextlib.nullcontext()
    with contextlib.redirect_stdout(io.StringIO()), spying:
        docs = data.load_names(args.data)
        # shuffles docs with the seed
        rng, tok, config = start_names(args, docs)
        model = scalar.ScalarGPT.init(config, rng, fused=True)
        for p, w in zip(model.params, weights or []):
            p.data = float.fromhex(w)
        initial = [p.data.hex() for p in model.params]
        losses = scalar.train(model, [tok.wrap(doc) for doc in docs], steps, args.lr)
        samples = [
            tok.decode(scalar.generate(model, rng, args.temperature))
            for _ in range(args.num_samples)
        ]
    return {
        "initial": initial,
        "losses": [repr(loss) for loss in losses],
        "final": [p.data.hex() for p in model.params],
        "samples": samples,
        "inputs": {name: [x.hex() for x in sorted(xs)] for name, xs in inputs.items()}
        if record
        else {},
    }


def evaluate(inputs: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each function on each of its inputs (hex in, hex out), in this interpreter's C
    library.
    """
    return {
        name: [FUNCTIONS[name](float.fromhex(x)).hex() for x in xs]
        for name, xs in inputs.items()
    }


def answer(request: dict) -> str:
    """The JSON answer to one request: a trace, or an evaluation."""
    if "evaluate" in request:
        return json.dumps(evaluate(request["evaluate"]))
    return json.dumps(trace(**request))


if __name__ == "__main__":
    sys.stdout.write(answer(json.load(sys.stdin)))
