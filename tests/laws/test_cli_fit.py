"""`learnmech fit scaling`: JSON output, figure, and one-line errors with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from learnmech.cli import main


def _write(path, header, rows):
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(map(str, r)) for r in rows))
    return path


def _saturating_csv(tmp_path, n=16):
    x = np.geomspace(1e3, 1e9, n)
    L = 0.5 + 20 * x**-0.25
    return _write(tmp_path / "runs.csv", ["steps", "val_loss"], list(zip(x, L, strict=True)))


def test_fit_scaling_json_and_plot(tmp_path, capsys):
    csv = _saturating_csv(tmp_path)
    png = tmp_path / "figures" / "new" / "fit.png"  # a folder that does not exist yet
    code = main(
        [
            "fit",
            "scaling",
            str(csv),
            "--law",
            "saturating",
            "--holdout",
            "3",
            "--bootstrap",
            "20",
            "--plot",
            str(png),
            "--json",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["columns"] == {"loss": "val_loss", "x": "steps"}
    assert out["params"]["alpha"] == pytest.approx(0.25, rel=1e-4)
    assert out["extrapolation"]["max_abs_rel_error"] < 1e-4
    assert out["bootstrap"]["replicates"] == 20
    assert png.stat().st_size > 10_000


def test_fit_scaling_chinchilla_from_compute_column(tmp_path, capsys):
    N = np.repeat(np.geomspace(1e7, 1e10, 6), 5)
    D = N * np.tile(np.geomspace(2, 200, 5), 6)
    L = 1.7 + 400 / N**0.33 + 900 / D**0.29
    csv = _write(
        tmp_path / "c.csv", ["params", "flops", "loss"], list(zip(N, 6 * N * D, L, strict=True))
    )
    assert main(["fit", "scaling", str(csv), "--compute", "1e21", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["columns"] == {"loss": "loss", "N": "params", "C": "flops"}
    assert out["params"]["E"] == pytest.approx(1.7, rel=1e-4)
    assert len(out["compute_optimal"]["N_opt"]) == 1


@pytest.mark.parametrize(
    ("content", "args", "match"),
    [
        (None, [], "no such file"),
        ("", [], "empty file"),
        ("steps,loss\n", ["--law", "saturating"], "no data rows"),
        ("steps,val\n1,2\n", ["--law", "saturating"], "cannot find the loss column"),
        ("steps,loss\n1,2\n2,nan\n", ["--law", "saturating"], "not finite"),
        ("steps,loss\n1,2\n-2,1\n", ["--law", "saturating"], "not positive"),
        ("steps,loss\n1,2\n2,abc\n", ["--law", "saturating"], "not a number"),
        # fullwidth digits pass float() but are a typo (issue #19, item 11)
        ("steps,loss\n1,2\n2,\uff11\uff12\n", ["--law", "saturating"], "not a number"),
        ("steps,loss\n1,2\n2,1,5\n", ["--law", "saturating"], "fields"),
        ("steps,loss\n1,2\n2,1.5\n", ["--law", "saturating"], "too few points"),
        ("N,loss\n1,2\n", [], "tokens column D or a compute column C"),
        ("steps,loss\n1,2\n", ["--law", "chinchila"], "unknown law"),
        ("steps,loss\n1,2\n", ["--law", "saturating", "--x-col", "nope"], "no column 'nope'"),
        ("steps,loss\n1,2\n", ["--law", "saturating", "--plot", "a.pdf"], "PNG"),
        ("steps,loss\n1,2\n", ["--law", "saturating", "--bootstrap", "-1"], "bootstrap"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, capsys, content, args, match):
    path = tmp_path / "data.csv"
    if content is not None:
        path.write_text(content)
    assert main(["fit", "scaling", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path, capsys):
    """Issue #19 (11): Excel's BOM made the first column '\ufeffN', an invisible mismatch."""
    rows = "\n".join(
        f"{n},{d},{2 + 50 / n**0.5 + 80 / d**0.3}" for n in (1e3, 1e4, 1e5) for d in (1e6, 1e7, 1e8)
    )
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + f"N,D,loss\n{rows}\n".encode())
    assert main(["fit", "scaling", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["columns"]["N"] == "N"


def test_fit_scaling_strata_keeps_every_size(tmp_path, capsys):
    """--strata N: rows resampled within each model size, so no replicate loses one; the
    text output says so; strata and cluster on the same input is one line and exit 2."""
    rng = np.random.default_rng(0)
    N = np.repeat(np.geomspace(1e7, 1e10, 4), 6)
    D = N * np.tile(np.geomspace(2, 200, 6), 4)
    L = (1.7 + 400 / N**0.33 + 900 / D**0.29) * np.exp(0.01 * rng.standard_normal(N.size))
    csv = _write(tmp_path / "s.csv", ["N", "D", "loss"], list(zip(N, D, L, strict=True)))
    base = ["fit", "scaling", str(csv), "--bootstrap", "20"]
    assert main([*base, "--strata", "N", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bootstrap"]["strata"] == "N" and out["bootstrap"]["cluster"] is None
    assert not any("cluster bootstrap" in w for w in out["warnings"])
    assert main([*base, "--strata", "N"]) == 0
    assert "within each N" in capsys.readouterr().out
    assert main([*base, "--strata", "N", "--cluster", "N"]) == 2
    err = capsys.readouterr().err
    assert "redraw the data unchanged" in err and len(err.strip().splitlines()) == 1
    assert main([*base, "--cluster", "N", "--json"]) == 0  # 4 sizes: the fit says so
    out = json.loads(capsys.readouterr().out)
    assert any("cluster bootstrap over only 4 values of N" in w for w in out["warnings"])


def test_fit_scaling_groups_resamples_runs_within_sizes(tmp_path, capsys):
    """--groups RUN --strata N: each run's checkpoints move together, sizes stay; a
    missing column, an empty label or a run across two sizes is one line and exit 2."""
    rng = np.random.default_rng(1)
    N = np.repeat(np.geomspace(1e7, 1e10, 4), 6)
    D = N * np.tile(np.geomspace(2, 200, 3), 8)
    run = np.repeat([f"r{i}" for i in range(8)], 3)  # 2 runs of 3 checkpoints per size
    L = (1.7 + 400 / N**0.33 + 900 / D**0.29) * np.exp(0.01 * rng.standard_normal(N.size))
    rows = list(zip(run, N, D, L, strict=True))
    csv = _write(tmp_path / "g.csv", ["run", "N", "D", "loss"], rows)
    base = ["fit", "scaling", str(csv), "--bootstrap", "10"]
    assert main([*base, "--groups", "run", "--strata", "N", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["columns"]["groups"] == "run"
    assert out["bootstrap"]["cluster"] == "groups" and out["bootstrap"]["strata"] == "N"
    for args, match in (
        (["--groups", "seed"], "no column 'seed'"),
        (["--groups", "run", "--strata", "N", "--cluster", "N"], "not both"),
    ):
        assert main([*base, *args]) == 2
        err = capsys.readouterr().err
        assert match in err and len(err.strip().splitlines()) == 1, err
    bad = [(r if i != 4 else "", *rest) for i, (r, *rest) in enumerate(rows)]
    _write(tmp_path / "e.csv", ["run", "N", "D", "loss"], bad)
    assert main(["fit", "scaling", str(tmp_path / "e.csv"), "--groups", "run"]) == 2
    assert "line 6: an empty group label" in capsys.readouterr().err
    across = [("same", *rest) for _, *rest in rows]
    _write(tmp_path / "a.csv", ["run", "N", "D", "loss"], across)
    args = ["fit", "scaling", str(tmp_path / "a.csv"), "--bootstrap", "5"]
    assert main([*args, "--groups", "run", "--strata", "N"]) == 2
    assert "spans several values of N" in capsys.readouterr().err
