"""The bad-input corpus (issue #19): every case exits 2 with one line on stderr, no
traceback, and leaves an existing store byte-for-byte unchanged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from learnmech.cli import main
from learnmech.lab.runner import run_study

# {store} is a valid store holding one toy run, {tmp} a scratch folder
CASES: list[tuple[str, list[str], str]] = [
    # run: options and --set values
    ("unknown study", ["run", "nope", "--store", "{store}"], "unknown study"),
    ("seeds 0", ["run", "toy", "--seeds", "0", "--store", "{store}"], "--seeds"),
    ("seeds -3", ["run", "toy", "--seeds", "-3", "--store", "{store}"], "--seeds"),
    ("seeds text", ["run", "toy", "--seeds", "many", "--store", "{store}"], "--seeds"),
    ("workers 0", ["run", "toy", "--workers", "0", "--store", "{store}"], "--workers"),
    ("executor", ["run", "toy", "--executor", "slurm", "--store", "{store}"], "slurm"),
    ("device", ["run", "toy", "--device", "tpu", "--store", "{store}"], "--device"),
    ("device index", ["run", "toy", "--device", "cuda:99", "--store", "{store}"], "cuda"),
    ("scale", ["run", "toy", "--scale", "huge", "--store", "{store}"], "huge"),
    ("control", ["run", "toy", "--control", "nope", "--store", "{store}"], "nope"),
    ("set no =", ["run", "toy", "--set", "points", "--store", "{store}"], "key=value"),
    ("set no key", ["run", "toy", "--set", "=3", "--store", "{store}"], "key=value"),
    ("set unknown", ["run", "toy", "--set", "bogus=1", "--store", "{store}"], "bogus"),
    ("set negative", ["run", "toy", "--set", "points=-1", "--store", "{store}"], "points"),
    ("set zero", ["run", "toy", "--set", "points=0", "--store", "{store}"], "points"),
    ("set text", ["run", "toy", "--set", "points=lots", "--store", "{store}"], "points"),
    ("set float", ["run", "toy", "--set", "points=2.5", "--store", "{store}"], "points"),
    ("set nan", ["run", "toy", "--set", "slope=nan", "--store", "{store}"], "slope"),
    ("set inf", ["run", "toy", "--set", "slope=inf", "--store", "{store}"], "slope"),
    ("set fullwidth", ["run", "toy", "--set", "points=４", "--store", "{store}"], "non-ASCII"),
    ("set list", ["run", "toy", "--set", "points=1,2", "--store", "{store}"], "points"),
    ("set json", ["run", "toy", "--set", "points={{}}", "--store", "{store}"], "points"),
    ("wide width", ["run", "wide-nets", "--set", "widths=-3,8", "--store", "{store}"], "widths"),
    ("wide one", ["run", "wide-nets", "--set", "widths=64", "--store", "{store}"], "widths"),
    ("wide dtype", ["run", "wide-nets", "--set", "dtype=float16", "--store", "{store}"], "dtype"),
    (
        "quanta subsets",
        ["run", "quanta", "--set", "n_tasks=1000", "--store", "{store}"],
        "C(n_bits, k)",
    ),
    (
        "quanta widths",
        ["run", "quanta", "--set", "param_widths=8,16", "--store", "{store}"],
        "at least 3",
    ),
    (
        "saddle acts",
        ["run", "saddle-to-saddle", "--set", "acts=gelu", "--store", "{store}"],
        "gelu",
    ),
    (
        "saddle s",
        ["run", "saddle-to-saddle", "--set", "singular_values=1", "--store", "{store}"],
        "singular_values",
    ),
    ("grokking p", ["run", "grokking", "--set", "p=24", "--store", "{store}"], "prime"),
    (
        "grokking wd",
        ["run", "grokking", "--set", "weight_decays=-1", "--store", "{store}"],
        "weight_decays",
    ),
    (
        "fourier-order magnitudes",
        ["run", "fourier-order", "--set", "magnitudes=1", "--store", "{store}"],
        "one value per frequency",
    ),
    (
        "fourier-order frequency",
        [
            "run",
            "fourier-order",
            "--set",
            "frequencies=12",
            "--set",
            "magnitudes=1",
            "--store",
            "{store}",
        ],
        "at most (p − 1)/2",
    ),
    (
        "catapult widths",
        ["run", "catapult", "--set", "widths=256", "--store", "{store}"],
        "widths",
    ),
    ("bogus flag", ["run", "toy", "--bogus", "--store", "{store}"], "--bogus"),
    ("no study", ["run", "--store", "{store}"], "STUDY"),
    # stores
    ("store is a dir", ["run", "toy", "--store", "{tmp}"], "directory"),
    ("store garbage", ["runs", "list", "--store", "{tmp}/garbage.duckdb"], "store"),
    ("store missing", ["runs", "list", "--store", "{tmp}/none.duckdb"], "no store"),
    ("store in file", ["run", "toy", "--store", "{tmp}/garbage.duckdb/x.duckdb"], "store"),
    ("runs show none", ["runs", "show", "nope", "--store", "{store}"], "nope"),
    ("runs show %", ["runs", "show", "%", "--store", "{store}"], "%"),
    ("runs show _", ["runs", "show", "_", "--store", "{store}"], "_"),
    ("runs export id", ["runs", "export", "../x", "--store", "{store}"], "x"),
    ("runs export fmt", ["runs", "export", "toy", "--format", "xls", "--store", "{store}"], "xls"),
    ("report none", ["report", "nope", "--store", "{store}"], "nope"),
    ("lab study", ["lab", "--study", "nope", "--store", "{store}"], "nope"),
    ("lab scale", ["lab", "--scale", "huge", "--store", "{store}"], "huge"),
    # fit scaling
    ("fit missing", ["fit", "scaling", "{tmp}/none.csv"], "no such file"),
    ("fit dir", ["fit", "scaling", "{tmp}"], "directory"),
    ("fit empty", ["fit", "scaling", "{tmp}/empty.csv"], "empty"),
    ("fit binary", ["fit", "scaling", "{tmp}/garbage.duckdb"], "garbage.duckdb"),
    ("fit text", ["fit", "scaling", "{tmp}/text.csv"], "not a number"),
    ("fit negative", ["fit", "scaling", "{tmp}/negative.csv"], "not positive"),
    ("fit ragged", ["fit", "scaling", "{tmp}/ragged.csv"], "fields"),
    ("fit no loss", ["fit", "scaling", "{tmp}/noloss.csv"], "loss"),
    ("fit few", ["fit", "scaling", "{tmp}/few.csv"], "too few"),
    ("fit law", ["fit", "scaling", "{tmp}/good.csv", "--law", "nope"], "nope"),
    ("fit col", ["fit", "scaling", "{tmp}/good.csv", "--n-col", "zz"], "zz"),
    ("fit boot", ["fit", "scaling", "{tmp}/good.csv", "--bootstrap", "-1"], "--bootstrap"),
    ("fit holdout", ["fit", "scaling", "{tmp}/good.csv", "--holdout", "-2"], "--holdout"),
    ("fit delta", ["fit", "scaling", "{tmp}/good.csv", "--huber-delta", "0"], "huber"),
    ("fit drop", ["fit", "scaling", "{tmp}/good.csv", "--drop-highest", "99"], "drop-highest"),
    ("fit cluster", ["fit", "scaling", "{tmp}/good.csv", "--cluster", "zz"], "cluster"),
    ("fit compute", ["fit", "scaling", "{tmp}/good.csv", "--compute", "abc"], "compute"),
    ("fit plot", ["fit", "scaling", "{tmp}/good.csv", "--plot", "/proc/learnmech.png"], "--plot"),
    # plan
    ("plan ref", ["plan", "nocolon", "--width", "64", "--store", "{store}"], "module:function"),
    ("plan module", ["plan", "no_such_mod:spec", "--width", "64", "--store", "{store}"], "import"),
    ("plan target", ["plan", "docs.examples.plan_mlp:small", "--store", "{store}"], "budget"),
    ("plan width", ["plan", "docs.examples.plan_mlp:small", "--width", "-4"], "width"),
    ("plan budget", ["plan", "docs.examples.plan_mlp:small", "--budget", "-1"], "budget"),
    ("plan verify", ["plan", "verify", "{tmp}/noplan", "--store", "{store}"], "no plan"),
    # kernels
    ("kernels no net", ["kernels", "{tmp}/none.json", "{tmp}/x.npy", "--out", "k.npz"], "no such"),
    ("kernels json", ["kernels", "{tmp}/broken.json", "{tmp}/x.npy", "--out", "k.npz"], "JSON"),
    (
        "kernels layer",
        ["kernels", "{tmp}/maxpool.json", "{tmp}/x.npy", "--out", "k.npz"],
        "MaxPool",
    ),
    ("kernels field", ["kernels", "{tmp}/negconv.json", "{tmp}/x.npy", "--out", "k.npz"], "Conv"),
    (
        "kernels compose",
        ["kernels", "{tmp}/net.json", "{tmp}/xvec.npy", "--out", "k.npz"],
        "window",
    ),
    ("kernels no x", ["kernels", "{tmp}/net.json", "{tmp}/none.npy", "--out", "k.npz"], "no such"),
    (
        "kernels bad x",
        ["kernels", "{tmp}/net.json", "{tmp}/garbage.duckdb", "--out", "k.npz"],
        "not a readable",
    ),
    ("kernels nan", ["kernels", "{tmp}/net.json", "{tmp}/xnan.npy", "--out", "k.npz"], "NaN"),
    ("kernels text", ["kernels", "{tmp}/net.json", "{tmp}/xstr.npy", "--out", "k.npz"], "numbers"),
    (
        "kernels x2",
        ["kernels", "{tmp}/net.json", "{tmp}/x.npy", "--x2", "{tmp}/x6.npy", "--out", "k.npz"],
        "same shape",
    ),
    ("kernels out", ["kernels", "{tmp}/net.json", "{tmp}/x.npy", "--out", "k.csv"], ".npz"),
    (
        "kernels get",
        ["kernels", "{tmp}/net.json", "{tmp}/x.npy", "--out", "k.npz", "--get", "cov"],
        "--get",
    ),
    (
        "kernels budget",
        ["kernels", "{tmp}/net.json", "{tmp}/x.npy", "--out", "k.npz", "--budget-gb", "0"],
        "--budget-gb",
    ),
    (
        "kernels small",
        ["kernels", "{tmp}/net.json", "{tmp}/x.npy", "--out", "k.npz", "--budget-gb", "1e-7"],
        "too small",
    ),
    (
        "kernels write",
        ["kernels", "{tmp}/net.json", "{tmp}/x.npy", "--out", "/proc/k.npz"],
        "--out",
    ),
    (
        "kernels no x2",
        ["kernels", "{tmp}/net.json", "{tmp}/x.npy", "--x2", "{tmp}/none.npy", "--out", "k.npz"],
        "no such",
    ),
    (
        "kernels npz",
        ["kernels", "{tmp}/net.json", "{tmp}/several.npz", "--out", "k.npz"],
        "several arrays",
    ),
    ("kernels 1-d x", ["kernels", "{tmp}/net.json", "{tmp}/x1d.npy", "--out", "k.npz"], "shape"),
    ("kernels 5-d x", ["kernels", "{tmp}/net.json", "{tmp}/x5d.npy", "--out", "k.npz"], "shape"),
    ("kernels empty x", ["kernels", "{tmp}/net.json", "{tmp}/x0.npy", "--out", "k.npz"], "empty"),
    (
        "kernels dtype",
        ["kernels", "{tmp}/net.json", "{tmp}/x.npy", "--out", "k.npz", "--dtype", "float16"],
        "float16",
    ),
    ("kernels out dir", ["kernels", "{tmp}/net.json", "{tmp}/x.npy", "--out", "{tmp}"], ".npz"),
    (
        "kernels gaussian",
        ["kernels", "{tmp}/actfirst.json", "{tmp}/x.npy", "--out", "k.npz"],
        "not Gaussian",
    ),
    (
        "kernels spatial",
        ["kernels", "{tmp}/nopool.json", "{tmp}/x.npy", "--out", "k.npz"],
        "spatial shape",
    ),
    (
        "kernels budget nan",
        ["kernels", "{tmp}/net.json", "{tmp}/x.npy", "--out", "k.npz", "--budget-gb", "nan"],
        "--budget-gb",
    ),
    (
        "kernels scalar net",
        ["kernels", "{tmp}/scalar.json", "{tmp}/x.npy", "--out", "k.npz"],
        "list or a dict",
    ),
    (
        "kernels get empty",
        ["kernels", "{tmp}/net.json", "{tmp}/x.npy", "--out", "k.npz", "--get", ","],
        "--get",
    ),
    # more commands' stores, values and outputs
    (
        "export unwritable",
        ["runs", "export", "toy", "--out", "/proc/x.csv", "--store", "{store}"],
        "/proc/x.csv",
    ),
    ("set empty", ["run", "toy", "--set", "points=", "--store", "{store}"], "points"),
    ("set overflow", ["run", "toy", "--set", "slope=1e999", "--store", "{store}"], "slope"),
    ("lab store dir", ["lab", "--store", "{tmp}"], "directory"),
    ("runs list dir", ["runs", "list", "--store", "{tmp}"], "directory"),
    ("report no store", ["report", "toy", "--store", "{tmp}/none.duckdb"], "no store"),
    ("store is a csv", ["runs", "show", "toy", "--store", "{tmp}/good.csv"], "not a DuckDB"),
    ("fit compute neg", ["fit", "scaling", "{tmp}/good.csv", "--compute", "-5"], "compute"),
    (
        "plan budget nan",
        ["plan", "docs.examples.plan_mlp:small", "--budget", "nan", "--store", "{store}"],
        "budget",
    ),
    # the command line itself
    ("no command", ["frobnicate"], "frobnicate"),
]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corpus")
    store = tmp / "store" / "s.duckdb"
    mp = pytest.MonkeyPatch()
    mp.setenv("LEARNMECH_STUDIES", "toy=tests.lab.toy_study:Toy")
    run_study("toy", store=store, report=False)
    (tmp / "garbage.duckdb").write_bytes(b"\x00\xffnot a database" * 40)
    (tmp / "empty.csv").write_text("")
    (tmp / "text.csv").write_text("N,D,loss\n1e6,1e9,abc\n")
    (tmp / "negative.csv").write_text("N,D,loss\n1e6,1e9,-2\n")
    (tmp / "ragged.csv").write_text("N,D,loss\n1e6,1e9\n")
    (tmp / "noloss.csv").write_text("N,D,acc\n1e6,1e9,0.5\n")
    (tmp / "few.csv").write_text("N,D,loss\n1e6,1e9,2.5\n2e6,1e9,2.4\n")
    rows = [
        f"{n:g},{d:g},{2 + 100 / n**0.3 + 100 / d**0.3:.6f}"
        for n in (1e6, 1e7, 1e8)
        for d in (1e9, 1e10, 1e11)
    ]
    (tmp / "good.csv").write_text("N,D,loss\n" + "\n".join(rows) + "\n")
    cnn = [
        {"type": "Conv", "out": 4, "kernel_size": [3, 3]},
        {"type": "Activation"},
        {"type": "GlobalAvgPool"},
        {"type": "Dense", "out": 1},
    ]
    (tmp / "net.json").write_text(json.dumps(cnn))
    (tmp / "broken.json").write_text("[{")
    (tmp / "maxpool.json").write_text(json.dumps([{"type": "MaxPool", "window": 2}]))
    (tmp / "negconv.json").write_text(json.dumps([{"type": "Conv", "out": -1, "kernel_size": 3}]))
    rng = np.random.default_rng(0)
    np.save(tmp / "x.npy", rng.standard_normal((4, 1, 5, 5)))
    np.save(tmp / "x6.npy", rng.standard_normal((4, 1, 6, 6)))
    np.save(tmp / "xvec.npy", rng.standard_normal((4, 3)))
    np.save(tmp / "xnan.npy", np.full((4, 1, 5, 5), np.nan))
    np.save(tmp / "xstr.npy", np.array(["a", "b"]))
    np.savez(tmp / "several.npz", a=np.ones(3), b=np.ones(3))
    np.save(tmp / "x1d.npy", np.ones(5))
    np.save(tmp / "x5d.npy", np.ones((2, 1, 2, 2, 2)))
    np.save(tmp / "x0.npy", np.zeros((0, 1, 5, 5)))
    (tmp / "actfirst.json").write_text(json.dumps([{"type": "Activation"}, *cnn]))
    (tmp / "nopool.json").write_text(json.dumps(cnn[:2]))
    (tmp / "scalar.json").write_text("42")
    yield tmp, store
    mp.undo()


@pytest.mark.parametrize(("case", "argv", "match"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(
    case, argv, match, world, capsys, monkeypatch
):
    tmp, store = world
    monkeypatch.setenv("LEARNMECH_STUDIES", "toy=tests.lab.toy_study:Toy")
    monkeypatch.chdir(tmp)
    before = _digest(store)
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    args = [a.format(store=store, tmp=tmp) for a in argv]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, (case, err)
    assert match in err, (case, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert _digest(store) == before
    assert sorted(p for p in tmp.rglob("*") if p.is_file()) == files  # nothing new written
