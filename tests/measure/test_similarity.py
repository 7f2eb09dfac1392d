"""Representation similarity: estimator identities, invariances, planted problems, chance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from learnmech.errors import UserError
from learnmech.measure.similarity import (
    Activations,
    StreamingLinearCKA,
    cknna,
    layer_similarity,
    linear_cka,
    mutual_knn,
    procrustes_distance,
    rbf_cka,
    similarity,
    svcca,
)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _rotation(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _hsic_u_direct(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al. 2012 eq. 5 term by term (no shortcuts), for small n."""
    n = K.shape[0]
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0)
    np.fill_diagonal(Lt, 0)
    one = np.ones(n)
    t1 = np.trace(Kt @ Lt)
    t2 = (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
    t3 = 2 * (one @ Kt @ Lt @ one) / (n - 2)
    return (t1 + t2 - t3) / (n * (n - 3))


def _cka_direct(K: np.ndarray, L: np.ndarray) -> float:
    """Biased CKA with the explicit centring matrix H (the textbook formula)."""
    n = K.shape[0]
    H = np.eye(n) - 1 / n
    a, b, c = np.trace(K @ H @ L @ H), np.trace(K @ H @ K @ H), np.trace(L @ H @ L @ H)
    return a / math.sqrt(b * c)


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_feature_space_equals_gram_space_equals_textbook(debiased):
    rng = _rng(1)
    X = rng.standard_normal((40, 7)) + 3.0
    Y = X @ rng.standard_normal((7, 5)) + 0.5 * rng.standard_normal((40, 5))
    f = linear_cka(X, Y, debiased=debiased, space="feature")
    g = linear_cka(X, Y, debiased=debiased, space="gram")
    assert f == pytest.approx(g, rel=1e-12, abs=1e-14)
    K, L = X @ X.T, Y @ Y.T
    if debiased:
        ref = _hsic_u_direct(K, L) / math.sqrt(_hsic_u_direct(K, K) * _hsic_u_direct(L, L))
    else:
        ref = _cka_direct(K, L)
    assert f == pytest.approx(ref, rel=1e-11)


@pytest.mark.parametrize("debiased", [False, True])
def test_streaming_linear_cka_is_the_full_data_value(debiased):
    rng = _rng(2)
    X = rng.standard_normal((203, 6)) * np.arange(1, 7) + 5.0
    Y = np.tanh(X @ rng.standard_normal((6, 9))) + 0.3 * rng.standard_normal((203, 9)) - 2.0
    s = StreamingLinearCKA()
    for a, b in [(0, 1), (1, 50), (50, 51), (51, 140), (140, 203)]:  # uneven, incl. size 1
        s.update(X[a:b], Y[a:b])
    assert s.n == 203
    assert s.value(debiased) == pytest.approx(linear_cka(X, Y, debiased=debiased), rel=1e-10)


def test_invariances_each_metric_claims_and_those_it_must_not_have():
    rng = _rng(3)
    n, d = 120, 6
    X = rng.standard_normal((n, d)) @ np.diag([3, 2, 1.5, 1, 0.7, 0.5])
    Y = np.tanh(X @ rng.standard_normal((d, 8)))
    Q = _rotation(8, rng)
    rot = Y @ Q
    iso = 3.7 * Y
    shift = Y + 2.0
    aniso = Y * np.array([10, 1, 1, 1, 1, 1, 1, 0.1])
    perm_cols = Y[:, rng.permutation(8)]
    base = {
        "lin": linear_cka(X, Y),
        "lin_d": linear_cka(X, Y, debiased=True),
        "rbf": rbf_cka(X, Y),
        "knn": mutual_knn(X, Y, k=5),
        "pro": procrustes_distance(X, Y),
    }

    def all_metrics(Z: np.ndarray) -> dict[str, float]:
        return {
            "lin": linear_cka(X, Z),
            "lin_d": linear_cka(X, Z, debiased=True),
            "rbf": rbf_cka(X, Z),
            "knn": mutual_knn(X, Z, k=5),
            "pro": procrustes_distance(X, Z),
        }

    # claimed: CKA (linear, RBF) and Procrustes under rotation, isotropic scale and
    # translation; mutual kNN (cosine) under rotation and isotropic scale; all under
    # feature permutation
    for Z, keys in [
        (rot, base),
        (iso, base),
        (perm_cols, base),
        (shift, ("lin", "lin_d", "rbf", "pro")),
    ]:
        got = all_metrics(Z)
        for k in keys:
            assert got[k] == pytest.approx(base[k], rel=1e-9, abs=1e-12), k
    # not claimed: anisotropic scaling changes every metric; translation changes cosine kNN
    got = all_metrics(aniso)
    for k in base:
        assert abs(got[k] - base[k]) > 1e-3, k
    assert mutual_knn(X, Y + 5.0, k=5) != pytest.approx(base["knn"], abs=1e-3)
    # joint sample permutation changes nothing
    p = rng.permutation(n)
    assert linear_cka(X[p], Y[p]) == pytest.approx(base["lin"], rel=1e-12)
    assert mutual_knn(X[p], Y[p], k=5) == pytest.approx(base["knn"], abs=1e-12)
    # SVCCA keeping all directions is invariant to any invertible linear map
    A = rng.standard_normal((8, 8)) + 3 * np.eye(8)
    assert svcca(X, Y @ A, keep=8) == pytest.approx(svcca(X, Y, keep=8), rel=1e-9)


def test_identical_and_rotated_copies_score_perfectly():
    rng = _rng(4)
    X = rng.standard_normal((80, 10))
    R = X @ _rotation(10, rng) * 2.0 + 1.0
    assert linear_cka(X, R) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(X, R, debiased=True) == pytest.approx(1.0, abs=1e-12)
    assert rbf_cka(X, R) == pytest.approx(1.0, abs=1e-12)
    assert procrustes_distance(X, R) == pytest.approx(0.0, abs=1e-12)
    assert svcca(X, R, keep=10) == pytest.approx(1.0, abs=1e-12)
    assert mutual_knn(X, X @ _rotation(10, rng), k=5) == 1.0
    assert cknna(X, X @ _rotation(10, rng), k=5) == pytest.approx(1.0, abs=1e-12)


def test_cknna_matches_a_direct_transcription():
    rng = _rng(5)
    X = rng.standard_normal((30, 4))
    Y = X @ rng.standard_normal((4, 6)) + 0.8 * rng.standard_normal((30, 6))
    k = 6

    def direct(A: np.ndarray, B: np.ndarray) -> float:
        A = A / np.linalg.norm(A, axis=1, keepdims=True)
        B = B / np.linalg.norm(B, axis=1, keepdims=True)
        K, L = A @ A.T, B @ B.T

        def sim(K: np.ndarray, L: np.ndarray) -> float:
            n = K.shape[0]
            mask = np.zeros((n, n))
            for i in range(n):
                nk = [j for j in np.argsort(-K[i]) if j != i][:k]
                nl = [j for j in np.argsort(-L[i]) if j != i][:k]
                for j in set(nk) & set(nl):
                    mask[i, j] = 1.0
            return _hsic_u_direct(mask * K, mask * L)

        return sim(K, L) / math.sqrt(sim(K, K) * sim(L, L))

    assert cknna(X, Y, k=k) == pytest.approx(direct(X, Y), rel=1e-10)


def test_planted_shared_subspace_of_known_dimension():
    """X = [Z, Nx], Y = [Z, Ny]: s shared unit-variance coordinates among dx and dy. The
    population linear CKA is s/√(dx·dy); the debiased estimator is unbiased for it (mean of
    30 draws within 3 SE), the biased one is not (it sits well above at n = 60)."""
    s, dx, dy, n = 3, 12, 20, 60
    truth = s / math.sqrt(dx * dy)
    deb, bia = [], []
    for seed in range(30):
        rng = _rng(100 + seed)
        Z = rng.standard_normal((n, s))
        X = np.hstack([Z, rng.standard_normal((n, dx - s))])
        Y = np.hstack([Z, rng.standard_normal((n, dy - s))])
        deb.append(linear_cka(X, Y, debiased=True))
        bia.append(linear_cka(X, Y))
    deb_a, bia_a = np.array(deb), np.array(bia)
    se = deb_a.std(ddof=1) / math.sqrt(deb_a.size)
    assert abs(deb_a.mean() - truth) <= 3 * se
    assert bia_a.mean() - truth > 10 * bia_a.std(ddof=1) / math.sqrt(bia_a.size)
    # SVCCA with every direction kept: s canonical correlations near 1 among min(dx, dy)
    rng = _rng(7)
    Z = rng.standard_normal((4000, s))
    X = np.hstack([Z, rng.standard_normal((4000, dx - s))])
    Y = np.hstack([Z, rng.standard_normal((4000, dy - s))])
    # the unshared correlations are sample noise of size ~√(d/n); their sum is ≤ dx·0.1
    assert svcca(X, Y, keep=dx) == pytest.approx(s / dx, abs=0.1 * (dx - s) / dx)


def test_chance_levels_biased_cka_is_far_from_zero_at_small_n():
    """Independent random representations (REFERENCES §5): biased CKA ≈ 0.5–0.7 at small n,
    and its permutation null says so; debiased CKA is ≈ 0; mutual-kNN's null mean is
    k/(n − 1)."""
    rng = _rng(8)
    X, Y = rng.standard_normal((40, 200)), rng.standard_normal((40, 200))
    sc = similarity(X, Y, "linear_cka", permutations=200)
    assert sc.value > 0.4
    assert sc.p_value > 0.01
    assert abs(sc.value - sc.chance) < 4 * sc.chance_sd
    assert "biased HSIC" in sc.estimator and "float64" in sc.estimator
    deb = similarity(X, Y, "linear_cka_debiased", permutations=200)
    assert abs(deb.value) < 4 * deb.chance_sd
    kn = similarity(X, Y, "mutual_knn", permutations=300, k=5)
    se = kn.chance_sd / math.sqrt(300)
    assert abs(kn.chance - 5 / 39) <= 3 * se
    # a planted aligned pair is far above its chance level: p = 1/(1 + R)
    Z = X @ _rotation(200, rng)[:, :50]
    al = similarity(X, Z + 0.1 * rng.standard_normal(Z.shape), "linear_cka", permutations=99)
    assert al.p_value == pytest.approx(0.01)
    assert al.above_chance > 10


def test_bootstrap_interval_brackets_the_value():
    rng = _rng(9)
    X = rng.standard_normal((150, 5))
    Y = X @ rng.standard_normal((5, 5)) + rng.standard_normal((150, 5))
    for metric in ("linear_cka", "mutual_knn", "procrustes", "svcca"):
        sc = similarity(X, Y, metric, bootstrap=200, seed=1)
        lo, hi = sc.interval
        assert lo < hi
        # percentile intervals need not contain the point estimate, but here the
        # estimators are smooth and n is moderate: the value lies within the interval
        # widened by its own width
        assert lo - (hi - lo) <= sc.value <= hi + (hi - lo), metric
    with pytest.raises(UserError, match="cknna"):
        similarity(X, Y, "cknna", bootstrap=10)


def test_misaligned_samples_are_refused_and_align_fixes_them():
    rng = _rng(10)
    inputs = rng.standard_normal((30, 4))
    fa = inputs @ rng.standard_normal((4, 6))
    fb = np.tanh(inputs)
    a = Activations.from_inputs(fa, inputs)
    p = rng.permutation(30)
    b = Activations.from_inputs(fb[p], inputs[p])
    with pytest.raises(UserError, match="different order"):
        linear_cka(a, b)
    with pytest.raises(UserError, match="different order"):
        similarity(a, b)
    assert linear_cka(a, b.align(a)) == pytest.approx(linear_cka(fa, fb), rel=1e-12)
    c = Activations.from_inputs(fb, inputs + 1.0)
    with pytest.raises(UserError, match="different samples"):
        mutual_knn(a, c)
    with pytest.raises(UserError, match="unique"):
        Activations(fa, np.zeros(30))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda X: linear_cka(X, X[:-1]), "same samples"),
        (lambda X: linear_cka(np.full_like(X, np.nan), X), "NaN"),
        (lambda X: linear_cka(X[:0], X[:0]), "empty"),
        (lambda X: linear_cka(X, "abc"), "numeric"),
        (lambda X: mutual_knn(X, X, k=len(X)), "smaller than"),
        (lambda X: mutual_knn(X, X, k=0), "positive integer"),
        (lambda X: similarity(X, X, "nope"), "unknown metric"),
        (lambda X: similarity(X, X, permutations=-1), "non-negative"),
        (lambda X: svcca(X, X, keep=1.5), "keep"),
        (lambda X: linear_cka(X, X, space="both"), "space"),
        (lambda X: linear_cka(X[:3], X[:3], debiased=True), "at least 4"),
    ],
)
def test_bad_input_names_the_problem(call, match):
    X = _rng(11).standard_normal((20, 3))
    with pytest.raises(UserError, match=match):
        call(X)


def _mlp(seed: int, width: int = 16) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(5, width),
        nn.ReLU(),
        nn.Dropout(0.0),
        nn.Linear(width, width),
        nn.Tanh(),
        nn.Linear(width, 3),
    ).double()


def test_layer_similarity_matches_pairwise_cka_and_removes_its_hooks():
    a, b = _mlp(0), _mlp(1, width=24)
    x = torch.randn(90, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    res = layer_similarity(a, b, x, batch_size=32)
    assert res.layers_a == ["0", "1", "3", "4", "5"]  # Dropout skipped
    assert res.matrix.shape == (5, 5)
    feats = {}
    with torch.no_grad():
        h = x
        for i, m in enumerate(b):
            h = m(h)
            feats[str(i)] = h
        h = x
        fa = {}
        for i, m in enumerate(a):
            h = m(h)
            fa[str(i)] = h
    for i, la in enumerate(res.layers_a):
        for j, lb in enumerate(res.layers_b):
            assert res.matrix[i, j] == pytest.approx(linear_cka(fa[la], feats[lb]), rel=1e-10)
    self_sim = layer_similarity(a, a, x, metric="linear_cka_debiased")
    np.testing.assert_allclose(np.diag(self_sim.matrix), 1.0, atol=1e-12)
    assert all(not m._forward_hooks for m in a.modules())
    assert all(not m._forward_hooks for m in b.modules())

    class Boom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(5, 4).double()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.lin(x)
            raise RuntimeError("boom")

    boom = Boom()
    with pytest.raises(RuntimeError, match="boom"):
        layer_similarity(boom, a, x)
    assert not boom.lin._forward_hooks
    with pytest.raises(UserError, match="no module named"):
        layer_similarity(a, b, x, layers_a=["nope"])
