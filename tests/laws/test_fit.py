"""Scaling-law fits: exact recovery, the batched optimizer, Chinchilla against scipy."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from learnmech.errors import UserError
from learnmech.laws import extrapolation_score, fit_law, get_law
from learnmech.laws.optim import batched_lbfgs
from learnmech.laws.reference import approach3_objective, approach3_scipy

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "chinchilla_svg_extracted.csv"


def _chinchilla_grid_data(noise: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    N = np.repeat(np.geomspace(1e7, 1e10, 8), 6)
    D = N * np.tile(np.geomspace(2, 200, 6), 8)
    E, A, B, a, b = 1.7, 400.0, 900.0, 0.33, 0.29
    L = E + A / N**a + B / D**b
    return N, D, L * np.exp(noise * rng.standard_normal(L.size)), (E, A, B, a, b)


def test_batched_lbfgs_minimizes_each_row_independently(f64):
    """2-D Rosenbrock (one minimum, at (1, 1)) from 16 starts, plus per-row quadratics
    with condition numbers up to 1e6: every row reaches its own minimizer."""
    rng = np.random.default_rng(0)
    starts = rng.uniform(-2, 2, (16, 2))

    def rosen(t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return 100 * (t[:, 1] - t[:, 0] ** 2) ** 2 + (1 - t[:, 0]) ** 2

    res = batched_lbfgs(rosen, torch.from_numpy(starts), gtol=1e-10, max_iter=5000)
    np.testing.assert_allclose(res.x.numpy(), 1.0, atol=1e-7)
    assert bool(res.converged.all())
    # row i: ½ Σ_j c_ij (x_j − m_ij)², a different problem per row
    C = torch.from_numpy(10.0 ** rng.uniform(0, 6, (8, 5)))
    M = torch.from_numpy(rng.standard_normal((8, 5)))

    def quad(t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return 0.5 * (C[rows] * (t - M[rows]) ** 2).sum(1)

    res = batched_lbfgs(quad, torch.zeros(8, 5, dtype=torch.float64), gtol=1e-9)
    np.testing.assert_allclose(res.x.numpy(), M.numpy(), atol=1e-8)


def test_chinchilla_exact_data_is_recovered():
    N, D, L, truth = _chinchilla_grid_data()
    f = fit_law("chinchilla", L, N=N, D=D, starts=get_law("chinchilla").starts()[::9])
    p = f.params
    np.testing.assert_allclose([p["E"], p["A"], p["B"], p["alpha"], p["beta"]], truth, rtol=1e-5)
    assert f.objective < 1e-12


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_screen_then_polish_finds_the_scipy_loop_optimum(seed):
    """Noisy Chinchilla-shaped data (3% log noise, so the valley is flat and the minimum is
    not the truth): the float32 screen + float64 polish must reach an objective no worse
    than a plain scipy L-BFGS-B loop over the same 450 starts at tight tolerances, and the
    same parameters. Both stop on rounding-level progress (objective differences ~1e-15
    relative), which the flat valley turns into parameter differences of order
    √1e-15 ≈ 3e-8 per unit of inverse curvature: 1e-6 in log space allows for that."""
    N, D, L, _ = _chinchilla_grid_data(noise=0.03, seed=seed)
    grid = get_law("chinchilla").starts()[::10]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        f = fit_law("chinchilla", L, N=N, D=D, starts=grid)
    best, fun, _, _ = approach3_scipy(N, D, L, grid)
    assert f.objective <= fun * (1 + 1e-9)
    np.testing.assert_allclose(f.theta, best, atol=1e-6, rtol=0)


def test_analytic_objective_equals_reference_objective():
    from learnmech.laws.fit import ScalingData, _objective

    N, D, L, _ = _chinchilla_grid_data(noise=0.02)
    law = get_law("chinchilla")
    _, vg = _objective(law, ScalingData.from_arrays(law, L, N=N, D=D), 1e-3, None)
    starts = law.starts()[::97]
    f, g = vg(torch.from_numpy(starts), torch.arange(len(starts)))
    for i, s in enumerate(starts):
        fr, gr = approach3_objective(s, np.log(N), np.log(D), np.log(L))
        np.testing.assert_allclose(float(f[i]), fr, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(g[i].numpy(), gr, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    ("law", "truth", "inputs"),
    [
        ("saturating", {"E": 0.8, "A": 30.0, "alpha": 0.4}, "x"),
        ("kaplan", {"N_c": 8.8e13, "D_c": 5.4e13, "alpha_N": 0.076, "alpha_D": 0.095}, "ND"),
    ],
)
def test_other_families_recover_exact_data(law, truth, inputs):
    lw = get_law(law)
    if inputs == "x":
        x = np.geomspace(1e3, 1e8, 30)
        L = truth["E"] + truth["A"] * x ** -truth["alpha"]
        f = fit_law(lw, L, x=x)
        np.testing.assert_allclose(f.predict(x=x), L, rtol=1e-6)
    else:
        N = np.repeat(np.geomspace(1e6, 1e10, 6), 5)
        D = np.tile(np.geomspace(1e8, 1e11, 5), 6)
        L = (
            (truth["N_c"] / N) ** (truth["alpha_N"] / truth["alpha_D"]) + truth["D_c"] / D
        ) ** truth["alpha_D"]
        f = fit_law(lw, L, N=N, D=D, starts=lw.starts()[::7])
        np.testing.assert_allclose(f.predict(N=N, D=D), L, rtol=1e-6)
    for k, v in truth.items():
        assert f.params[k] == pytest.approx(v, rel=1e-3), k


def test_bnsl_fits_a_broken_power_law():
    x = np.geomspace(10, 1e7, 40)
    # one break at x = 1e4: slope 0.1 before, 0.1 + 0.4 after (Caballero et al. eq. 1)
    L = 0.05 + 2.0 * x**-0.1 * (1 + (x / 1e4) ** (1 / 0.5)) ** (-0.4 * 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        f = fit_law("bnsl", L, x=x)
    np.testing.assert_allclose(f.predict(x=x), L, rtol=2e-3)


def test_compute_optimal_matches_brute_force():
    N, D, L, _ = _chinchilla_grid_data()
    f = fit_law("chinchilla", L, N=N, D=D, starts=get_law("chinchilla").starts()[::9])
    C = 1e22
    opt = f.compute_optimal([C])
    grid_n = np.geomspace(1e8, 1e12, 200_001)
    losses = f.predict(N=grid_n, D=C / (6 * grid_n))
    n_best = grid_n[np.argmin(losses)]
    assert opt["N_opt"][0] == pytest.approx(n_best, rel=1e-4)
    assert opt["D_opt"][0] * opt["N_opt"][0] * 6 == pytest.approx(C, rel=1e-12)


def test_bootstrap_intervals_cover_truth_and_cluster_option():
    N, D, L, truth = _chinchilla_grid_data(noise=0.01, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # E and α trade off mildly here
        f = fit_law("chinchilla", L, N=N, D=D, bootstrap=100, seed=1)
    se = f.stderr()
    # with 1% noise the parameters are estimated well: truth within 4 bootstrap SE
    for name, value in zip(("E", "A", "B", "alpha", "beta"), truth, strict=True):
        assert abs(f.params[name] - value) <= 4 * se[name], name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        g = fit_law("chinchilla", L, N=N, D=D, bootstrap=50, cluster="N", seed=1)
    assert g.boot_weights is not None
    # a clustered resample takes all rows of a model size together
    for w in g.boot_weights:
        for n in np.unique(N):
            assert len(set(w[N == n])) == 1


def test_extrapolation_score_on_exact_and_noisy_data():
    N, D, L, _ = _chinchilla_grid_data()
    grid = get_law("chinchilla").starts()[::9]
    s = extrapolation_score("chinchilla", L, N=N, D=D, holdout=2, starts=grid)
    assert s["test_points"] == 12 and s["max_abs_rel_error"] < 1e-5
    with pytest.raises(UserError, match="holdout"):
        extrapolation_score("chinchilla", L, N=N, D=D, holdout=8)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"N": [1.0, 2.0], "D": [1.0, 2.0], "loss": [2.0, 2.0]}, "too few points"),
        ({"N": [1.0, -2.0, 3, 4, 5, 6], "D": [1.0] * 6}, "positive"),
        ({"N": [1.0, np.nan, 3, 4, 5, 6], "D": [1.0] * 6}, "positive and finite"),
        ({"N": [1.0] * 5, "D": [1.0] * 6}, "5 values"),
        ({"N": [1.0] * 6}, "needs input 'D'"),
    ],
)
def test_bad_input(kwargs, match):
    loss = kwargs.pop("loss", [2.0] * 6)
    with pytest.raises(UserError, match=match):
        fit_law("chinchilla", loss, **kwargs)


def test_unidentifiable_fit_warns():
    """Data that never approach saturation cannot separate E from A and α: a warning."""
    rng = np.random.default_rng(0)
    x = np.geomspace(1e3, 1e4, 12)
    L = (2.0 + 50 * x**-0.3) * np.exp(0.01 * rng.standard_normal(12))
    with pytest.warns(UserWarning, match="E is poorly determined"):
        fit_law("saturating", L, x=x, bootstrap=60)


def test_unknown_law():
    with pytest.raises(UserError, match="unknown law"):
        get_law("chinchila")


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not available")
@pytest.mark.parametrize(
    ("stride", "reps"),
    [(9, 10), pytest.param(1, 40, marks=pytest.mark.slow)],
    ids=["every-9th-start", "all-4500-starts"],
)
def test_chinchilla_reanalysis_agrees_with_scipy_reference_to_3_digits(stride, reps):
    """Besiroglu et al. 2024 preprocessing: D = C/(6N), drop the 5 highest losses; then
    Approach 3 (Huber δ = 1e-3, 4,500 starts; the default suite takes every 9th, 500).
    The reference is a plain loop of scipy L-BFGS-B (tight tolerances) over the same
    starts; bootstrap standard errors are compared on the same resamples, each refit by
    scipy from the same starts."""
    from learnmech.laws.io import read_scaling_csv

    law = get_law("chinchilla")
    d = read_scaling_csv(DATA, law, drop_highest=5)
    assert d["loss"].size == 240
    N, D, L = d["N"], d["D"], d["loss"]
    grid = law.starts()[::stride]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        f = fit_law(law, L, N=N, D=D, starts=grid, bootstrap=reps, seed=0)
    best, fun, _, _ = approach3_scipy(N, D, L, grid)
    ours = np.array(list(f.params.values()))
    ref = np.array(list(law.natural(best).values()))
    np.testing.assert_allclose(ours, ref, rtol=5e-4)  # 3 significant digits (and more)
    assert f.objective <= fun * (1 + 1e-9)
    # bootstrap: same resamples, scipy refits from the same starts
    assert f.boot_weights is not None
    ref_boot = []
    for w in f.boot_weights:
        b, _, _, _ = approach3_scipy(N, D, L, f.minima, weights=w)
        ref_boot.append(list(law.natural(b).values()))
    ref_se = np.std(np.array(ref_boot), axis=0, ddof=1)
    np.testing.assert_allclose(np.array(list(f.stderr().values())), ref_se, rtol=5e-4)
    assert math.isfinite(f.params["E"])


def test_many_points_screen_on_a_subsample_and_polish_on_all(monkeypatch):
    """Above SCREEN_ROWS points the 4,500-start screen runs on a random subsample (issue
    #19, item 2: 1e6 rows used to need 13 GB); the polish sees every point, so the fit is
    the full-data optimum: the same as screening on everything, to the polish tolerance."""
    import learnmech.laws.fit as lf

    rng = np.random.default_rng(3)
    n = 3000
    N, D = 10 ** rng.uniform(6, 9, n), 10 ** rng.uniform(8, 11, n)
    L = (1.69 + 406.4 / N**0.34 + 410.7 / D**0.28) * np.exp(rng.normal(0, 0.02, n))
    sub = fit_law("chinchilla", L, N=N, D=D, warn=False)
    monkeypatch.setattr(lf, "SCREEN_ROWS", 10**9)
    full = fit_law("chinchilla", L, N=N, D=D, warn=False)
    assert sub.objective <= full.objective * (1 + 1e-9)
    np.testing.assert_allclose(sub.theta, full.theta, rtol=1e-5, atol=1e-6)


def test_a_bootstrap_too_big_for_memory_is_refused_up_front():
    rng = np.random.default_rng(0)
    n = 2000
    N, D = 10 ** rng.uniform(6, 9, n), 10 ** rng.uniform(8, 11, n)
    L = 1.69 + 406.4 / N**0.34 + 410.7 / D**0.28
    with pytest.raises(UserError, match="use at most 67108 replicates"):
        fit_law("chinchilla", L, N=N, D=D, bootstrap=10**6, warn=False)


@pytest.mark.parametrize("groups", [3, 4, 5])
def test_few_clusters_share_matches_its_closed_form(groups):
    """The share of cluster-bootstrap replicates that draw fewer than 3 distinct clusters
    is [G + C(G, 2)(2^G − 2)]/G^G (G clusters drawn G times); at a fixed seed the noted
    share lies within 4 binomial SE of it."""
    from learnmech.laws.fit import _cluster_weights, _few_clusters

    labels = np.repeat(np.arange(groups), 5).astype(float)
    reps = 4000
    W = _cluster_weights(labels, reps, np.random.default_rng(0))
    p = (groups + math.comb(groups, 2) * (2**groups - 2)) / groups**groups
    (note,) = _few_clusters(labels, W, "N")
    share = float(note.split(": ")[1].split("%")[0]) / 100
    assert abs(share - p) <= 4 * math.sqrt(p * (1 - p) / reps) + 0.005  # + the % rounding
    assert f"only {groups} values of N" in note


def test_a_cluster_bootstrap_over_few_widths_says_so_and_over_many_does_not():
    N, D, L, _ = _chinchilla_grid_data(noise=0.01, seed=3)
    grid = get_law("chinchilla").starts()[::9]
    few = np.isin(N, np.unique(N)[:4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        f4 = fit_law(
            "chinchilla", L[few], N=N[few], D=D[few], bootstrap=50, cluster="N", starts=grid, seed=1
        )
        f8 = fit_law("chinchilla", L, N=N, D=D, bootstrap=50, cluster="N", starts=grid, seed=1)
    assert any("cluster bootstrap over only 4 values of N" in w for w in f4.warnings)
    assert not any("cluster bootstrap" in w for w in f8.warnings)  # 8 widths: ~0.04%


def test_stratified_weights_keep_every_stratum_and_move_units_whole():
    """Runs (units) resampled within each model size (stratum): every replicate keeps
    each stratum's number of runs, and all points of a run share its count."""
    from learnmech.laws.fit import _cluster_weights

    sizes = np.repeat([1e6, 1e7, 1e8, 1e9], 12)  # 4 sizes × 3 runs × 4 checkpoints
    runs = np.repeat(np.arange(12), 4)
    W = _cluster_weights(runs, 500, np.random.default_rng(0), sizes)
    for n in np.unique(sizes):
        per_run = W[:, sizes == n][:, ::4]  # one column per run of this size
        np.testing.assert_array_equal(per_run.sum(1), 3)  # 3 runs drawn in every replicate
    for r in np.unique(runs):
        cols = W[:, runs == r]
        assert (cols == cols[:, :1]).all()
    # every run of a stratum is drawn 0–3 times, with the multinomial mean 1
    assert abs(W[:, ::4].mean() - 1) < 4 * math.sqrt(2 / 3 / (500 * 12))


def test_a_run_bootstrap_within_sizes_keeps_every_size():
    N, D, L, _ = _chinchilla_grid_data(noise=0.01, seed=3)
    grid = get_law("chinchilla").starts()[::9]
    runs = np.arange(N.size) // 3  # pairs of checkpoints standing in for runs, 2 per size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        f = fit_law(
            "chinchilla", L, N=N, D=D, bootstrap=40, groups=runs, strata="N", starts=grid, seed=1
        )
    assert f.boot_weights is not None and f.boot.shape == (40, 5)
    for w in f.boot_weights:
        assert set(N[w > 0]) == set(N)  # no replicate loses a model size
    assert not any("cluster bootstrap" in w for w in f.warnings)
    assert f.as_dict()["bootstrap"]["strata"] == "N"
    lo, hi = f.predict_interval(N=[N.max()], D=[D.max()])
    assert lo[0] <= f.predict(N=[N.max()], D=[D.max()])[0] <= hi[0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cluster": "N", "groups": np.zeros(48)}, "not both"),
        ({"groups": np.zeros(47)}, "one label per point"),
        ({"groups": np.full(48, np.nan)}, "finite"),
        ({"strata": "Q"}, "strata must name"),
        ({"groups": np.arange(48) % 2, "strata": "N"}, "spans several values of N"),
        ({"cluster": "N", "strata": "N"}, "redraw the data unchanged"),
    ],
)
def test_bad_resampling_units(kwargs, match):
    N, D, L, _ = _chinchilla_grid_data()
    with pytest.raises(UserError, match=match):
        fit_law("chinchilla", L, N=N, D=D, bootstrap=2, **kwargs)
