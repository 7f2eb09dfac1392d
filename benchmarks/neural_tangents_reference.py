"""Write reference kernels computed by neural-tangents, for tests/theory/test_kernels_nt.py.

Run in a separate environment (never a learnmech dependency):

    python -m venv nt-venv
    nt-venv/bin/pip install jax==0.4.26 jaxlib==0.4.26 tf2jax==0.3.6 neural-tangents==0.6.5 \
        "numpy<2" "scipy<1.14"
    nt-venv/bin/python benchmarks/neural_tangents_reference.py tests/theory/data/nt_reference.npz

Each case is a stax.serial(Dense(w, W_std, b_std), act, ..., Dense(1, W_std, b_std)) network;
the file stores the inputs, the configuration and neural-tangents' NNGP and NTK, so the test
compares learnmech against the peer without needing JAX installed.
"""

from __future__ import annotations

import json
import sys

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from neural_tangents import stax  # noqa: E402

ACTS = {
    "relu": stax.Relu,
    "erf": stax.Erf,
    "abs": stax.Abs,
    "identity": stax.Identity,
    "leaky_relu(0.2)": lambda: stax.LeakyRelu(0.2),
    "gelu": stax.Gelu,
}

CASES = [
    dict(activation="relu", depth=1, w_std=1.5, b_std=0.1, parameterization="ntk"),
    dict(activation="relu", depth=4, w_std=1.4, b_std=0.3, parameterization="ntk"),
    dict(activation="relu", depth=10, w_std=1.0, b_std=None, parameterization="ntk"),
    dict(activation="erf", depth=3, w_std=1.2, b_std=0.2, parameterization="ntk"),
    dict(activation="abs", depth=2, w_std=0.9, b_std=0.1, parameterization="ntk"),
    dict(activation="identity", depth=2, w_std=1.1, b_std=0.5, parameterization="ntk"),
    dict(activation="leaky_relu(0.2)", depth=3, w_std=1.3, b_std=0.05, parameterization="ntk"),
    dict(activation="relu", depth=2, w_std=1.3, b_std=0.2, parameterization="standard", width=64),
    dict(activation="erf", depth=2, w_std=1.0, b_std=None, parameterization="standard", width=32),
    dict(activation="gelu", depth=2, w_std=1.2, b_std=0.1, parameterization="ntk"),
    dict(activation="gelu", depth=3, w_std=1.5, b_std=None, parameterization="ntk"),
]


def network(activation, depth, w_std, b_std, parameterization, width=512):
    layers = []
    for _ in range(depth):
        layers += [
            stax.Dense(width, w_std, b_std, parameterization=parameterization),
            ACTS[activation](),
        ]
    layers += [stax.Dense(1, w_std, b_std, parameterization=parameterization)]
    return stax.serial(*layers)


def main(path: str) -> None:
    rng = np.random.RandomState(20260101)
    x1 = rng.randn(24, 5)
    x2 = rng.randn(17, 5) * 1.5
    out = {"x1": x1, "x2": x2}
    meta = []
    for i, case in enumerate(CASES):
        _, _, kernel_fn = network(**case)
        k11 = kernel_fn(x1, None, ("nngp", "ntk"))
        k12 = kernel_fn(x1, x2, ("nngp", "ntk"))
        out[f"case{i}_nngp11"] = np.asarray(k11.nngp)
        out[f"case{i}_ntk11"] = np.asarray(k11.ntk)
        out[f"case{i}_nngp12"] = np.asarray(k12.nngp)
        out[f"case{i}_ntk12"] = np.asarray(k12.ntk)
        meta.append(case)
    out["cases"] = np.array(json.dumps(meta))
    np.savez(path, **out)
    print(f"wrote {len(CASES)} cases to {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "nt_reference.npz")
