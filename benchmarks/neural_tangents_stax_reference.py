"""Write neural-tangents kernels of convolutional, residual, LayerNorm and attention nets,
for tests/theory/test_stax.py.

Run in a separate environment (never a learnmech dependency; see
neural_tangents_reference.py for the environment):

    nt-venv/bin/python benchmarks/neural_tangents_stax_reference.py \
        tests/theory/data/nt_stax_reference.npz

Each case is a JSON list of layers (the same description the test turns into
learnmech.theory.stax layers); inputs are stored channel-first (PyTorch) and given to
neural-tangents channel-last.
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
    "gelu": stax.Gelu,
    "leaky_relu(0.2)": lambda: stax.LeakyRelu(0.2),
    "identity": stax.Identity,
}

D = "Dense"
C = "Conv"


def dense(out, w=1.0, b=0.0, p="ntk"):
    return {"type": D, "out": out, "w_std": w, "b_std": b, "parameterization": p}


def conv(out, k, stride=1, padding="SAME", w=1.0, b=0.0, p="ntk"):
    k = list(k) if isinstance(k, tuple | list) else [k, k]
    s = [stride] * len(k) if isinstance(stride, int) else list(stride)
    return {
        "type": C,
        "out": out,
        "kernel_size": k,
        "stride": s,
        "padding": padding,
        "w_std": w,
        "b_std": b,
        "parameterization": p,
    }


def act(name):
    return {"type": "Activation", "fn": name}


def pool(window, stride=None, padding="VALID"):
    w = list(window) if isinstance(window, tuple | list) else [window, window]
    s = None if stride is None else ([stride] * len(w) if isinstance(stride, int) else list(stride))
    return {"type": "AvgPool", "window": w, "stride": s, "padding": padding}


def attention(out, mechanism="softmax", w_qk=1.0, w_ov=1.0, b=None):
    return {
        "type": "Attention",
        "out": out,
        "heads": 2,
        "key": 8,
        "value": 8,
        "w_qk": w_qk,
        "w_ov": w_ov,
        "b_std": b,
        "mechanism": mechanism,
    }


GAP = {"type": "GlobalAvgPool"}
FLAT = {"type": "Flatten"}
LN = {"type": "LayerNorm", "eps": 1e-12}


def residual(branch, weights=(1.0, 1.0)):
    return {"type": "Residual", "branch": branch, "weights": list(weights)}


IMG = (2, 6, 6)  # channels, height, width
SEQ = (3, 7)
SMALL = (2, 4, 4)

CASES = [
    # the benchmark's architecture: 3 ReLU convolutions (SAME) and global average pooling
    dict(
        input=(1, 6, 6),
        net=[
            conv(8, 3),
            act("relu"),
            conv(8, 3),
            act("relu"),
            conv(8, 3),
            act("relu"),
            GAP,
            dense(1),
        ],
    ),
    dict(
        input=IMG,
        net=[
            conv(8, 3, 2, "VALID", 1.4, 0.1),
            act("erf"),
            conv(8, (2, 3), 1, "SAME", 1.2, 0.2),
            act("erf"),
            FLAT,
            dense(1, 1.1, 0.1),
        ],
    ),
    dict(
        input=IMG,
        net=[
            conv(8, 3, 1, "SAME", 1.3, 0.1),
            act("relu"),
            pool(2, 2, "SAME"),
            conv(8, 3, 1, "CIRCULAR", 1.2, 0.0),
            act("relu"),
            pool(3, 1, "VALID"),
            GAP,
            dense(1, 1.0, 0.1),
        ],
    ),
    dict(
        input=IMG,
        net=[
            conv(16, 3, 1, "SAME", 1.5, 0.1, "standard"),
            act("relu"),
            conv(16, 3, 2, "SAME", 1.2, 0.1, "standard"),
            act("relu"),
            GAP,
            dense(1, 1.0, 0.1, "standard"),
        ],
    ),
    dict(
        input=IMG,
        net=[
            conv(8, 3, 1, "SAME", 1.2, 0.0),
            residual(
                [
                    act("relu"),
                    conv(8, 3, 1, "SAME", 1.3, 0.1),
                    act("relu"),
                    conv(8, 3, 1, "SAME", 1.1, 0.0),
                ]
            ),
            residual(
                [
                    act("relu"),
                    conv(8, 3, 1, "SAME", 1.2, 0.1),
                    act("relu"),
                    conv(8, 3, 1, "SAME", 1.0, 0.0),
                ]
            ),
            act("relu"),
            GAP,
            dense(1),
        ],
    ),
    dict(
        input=SEQ,
        net=[
            conv(8, (3,), 1, "CIRCULAR", 1.3, 0.1),
            LN,
            act("abs"),
            attention(8, "softmax", 1.5, 1.2),
            act("relu"),
            GAP,
            dense(1),
        ],
    ),
    dict(
        input=SMALL,
        net=[
            conv(8, 3, 1, "SAME", 1.1, 0.2),
            attention(8, "identity", 0.7, 1.1, 0.1),
            act("relu"),
            FLAT,
            dense(1, 1.2, 0.0),
        ],
    ),
    dict(
        input=SMALL,
        net=[
            dense(8, 1.3, 0.1),
            act("leaky_relu(0.2)"),
            conv(8, 2, 1, "VALID", 1.2, 0.0),
            act("relu"),
            FLAT,
            dense(1, 1.0, 0.05, "standard"),
        ],
    ),
    dict(
        input=SEQ,
        net=[
            conv(8, (3,), 1, "SAME", 1.4, 0.1),
            act("gelu"),
            conv(8, (2,), 2, "VALID", 1.1, 0.0),
            act("gelu"),
            pool((2,), 1, "SAME"),
            GAP,
            dense(1),
        ],
    ),
    dict(
        input=SMALL,
        net=[
            conv(8, 3, 1, "SAME", 1.0, 0.1),
            LN,
            attention(8, "relu", 1.0, 1.0, 0.2),
            LN,
            residual([act("relu"), dense(8, 1.2, 0.1), act("erf"), dense(8, 1.1, 0.0)]),
            act("relu"),
            GAP,
            dense(1),
        ],
    ),
]


def random_net(rng, spatial):
    """A random architecture from every layer, composed as the infinite-width rules allow:
    an activation or LayerNorm follows an affine layer (Dense, Conv, Attention) or a sum
    of them; a residual block's input and branch output are affine outputs."""
    ndim = len(spatial)
    acts = ["relu", "erf", "abs", "leaky_relu(0.2)", "identity", "gelu"]

    def w():
        return round(float(rng.uniform(0.8, 1.6)), 2)

    def b():
        return None if rng.random() < 0.2 else round(float(rng.uniform(0.0, 0.3)), 2)

    def k():
        return [int(rng.integers(1, 4)) for _ in range(ndim)]

    def affine(same_size):
        r = rng.random()
        p = str(rng.choice(["ntk", "standard"])) if rng.random() < 0.3 else "ntk"
        if r < 0.55:
            pad = (
                str(rng.choice(["SAME", "CIRCULAR"]))
                if same_size
                else str(rng.choice(["SAME", "CIRCULAR", "VALID"]))
            )
            return conv(8, k(), 1, pad, w(), b(), p)
        if r < 0.8 or not same_size:
            return dense(8, w(), b(), p)
        mech = str(rng.choice(["softmax", "identity", "relu", "abs"]))
        return attention(8, mech, round(float(rng.uniform(0.3, 1.2)), 2), w(), b())

    layers = [conv(8, k(), 1, "SAME", w(), b())]
    for _ in range(int(rng.integers(1, 4))):
        r = rng.random()
        if r < 0.3:
            layers.append(residual([act(str(rng.choice(acts))), affine(True)]))
        elif r < 0.45:
            layers += [LN, act(str(rng.choice(acts))), affine(True)]
        else:
            layers.append(act(str(rng.choice(acts))))
            if rng.random() < 0.3:
                layers.append(pool(2 if ndim == 2 else [2], None, "SAME"))
            layers.append(affine(False))
    layers += [act(str(rng.choice(acts))), GAP if rng.random() < 0.6 else FLAT, dense(1, w(), b())]
    return layers


def to_nt(layers):
    out = []
    for spec in layers:
        t = spec["type"]
        if t == D:
            out.append(
                stax.Dense(
                    spec["out"],
                    spec["w_std"],
                    spec["b_std"],
                    parameterization=spec["parameterization"],
                )
            )
        elif t == C:
            out.append(
                stax.Conv(
                    spec["out"],
                    tuple(spec["kernel_size"]),
                    tuple(spec["stride"]),
                    spec["padding"],
                    spec["w_std"],
                    spec["b_std"],
                    parameterization=spec["parameterization"],
                )
            )
        elif t == "Activation":
            out.append(ACTS[spec["fn"]]())
        elif t == "AvgPool":
            s = None if spec["stride"] is None else tuple(spec["stride"])
            out.append(stax.AvgPool(tuple(spec["window"]), s, spec["padding"]))
        elif t == "GlobalAvgPool":
            out.append(stax.GlobalAvgPool())
        elif t == "Flatten":
            out.append(stax.Flatten())
        elif t == "LayerNorm":
            out.append(stax.LayerNorm(axis=-1, eps=spec["eps"]))
        elif t == "Attention":
            out.append(
                stax.GlobalSelfAttention(
                    spec["out"],
                    spec["key"],
                    spec["value"],
                    spec["heads"],
                    linear_scaling=True,
                    W_key_std=spec["w_qk"],
                    W_query_std=1.0,
                    W_value_std=spec["w_ov"],
                    W_out_std=1.0,
                    b_std=spec["b_std"],
                    attention_mechanism=spec["mechanism"].upper(),
                )
            )
        elif t == "Residual":
            assert spec["weights"] == [1.0, 1.0]
            out.append(
                stax.serial(
                    stax.FanOut(2),
                    stax.parallel(stax.Identity(), stax.serial(*to_nt(spec["branch"]))),
                    stax.FanInSum(),
                )
            )
        else:
            raise ValueError(t)
    return out


RANDOM_CASES = 10  # appended to CASES, drawn with numpy's default_rng(16)


def main(path: str) -> None:
    gen = np.random.default_rng(16)
    for i in range(RANDOM_CASES):
        spatial = (5, 5) if i % 2 == 0 else (7,)
        CASES.append(dict(input=(2, *spatial), net=random_net(gen, spatial)))
    rng = np.random.RandomState(20261130)
    out = {}
    meta = []
    for i, case in enumerate(CASES):
        shape = case["input"]
        x1 = rng.randn(6, *shape)
        x2 = rng.randn(5, *shape) * 1.3
        _, _, kernel_fn = stax.serial(*to_nt(case["net"]))
        last = (0, *range(2, len(shape) + 1), 1)  # NCHW -> NHWC
        k11 = kernel_fn(np.transpose(x1, last), None, ("nngp", "ntk"))
        k12 = kernel_fn(np.transpose(x1, last), np.transpose(x2, last), ("nngp", "ntk"))
        out[f"case{i}_x1"] = x1
        out[f"case{i}_x2"] = x2
        out[f"case{i}_nngp11"] = np.asarray(k11.nngp)
        out[f"case{i}_ntk11"] = np.asarray(k11.ntk)
        out[f"case{i}_nngp12"] = np.asarray(k12.nngp)
        out[f"case{i}_ntk12"] = np.asarray(k12.ntk)
        meta.append(case["net"])
    out["cases"] = np.array(json.dumps(meta))
    np.savez(path, **out)
    print(f"wrote {len(CASES)} cases to {path}")


if __name__ == "__main__":
    main(sys.argv[1])
