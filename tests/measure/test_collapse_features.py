"""Neural-collapse metrics and feature-learning statistics on constructions with known values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learnmech.errors import UserError
from learnmech.measure.collapse import neural_collapse
from learnmech.measure.features import (
    agop,
    matrix_correlation,
    matrix_correlation_null,
    psd_sqrt,
    subspace_overlap,
)


def _simplex(C: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """C unit vectors in R^d with pairwise cosine −1/(C−1) (a rotated simplex ETF)."""
    E = np.eye(C) - 1 / C
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    Q = np.linalg.qr(rng.standard_normal((d, C)))[0]
    return E @ Q.T


def test_perfect_collapse_scores_zero():
    rng = np.random.default_rng(0)
    C, d = 5, 12
    M = 3.0 * _simplex(C, d, rng)
    labels = np.repeat(np.arange(C), 7)
    H = M[labels] + 2.0  # a global offset changes nothing
    logits = H @ M.T
    nc = neural_collapse(H, labels, weight=M, logits=logits)
    for k in ("nc1", "nc2_equinorm", "nc2_equiangular", "nc2_maxangle", "nc3", "nc4"):
        assert nc[k] == pytest.approx(0.0, abs=1e-10), k
    assert nc["mean_cosine"] == pytest.approx(-1 / (C - 1), abs=1e-12)
    assert nc["train_error"] == 0.0


def test_nc1_closed_form_two_classes_in_one_dimension():
    """Features ±1 + e (e known): Σ_B = 1 (means ±m), Σ_W = mean within-class e²; NC1 =
    Σ_W/Σ_B/C."""
    rng = np.random.default_rng(1)
    e = rng.standard_normal(40) * 0.3
    y = np.r_[np.zeros(20, int), np.ones(20, int)]
    e[:20] -= e[:20].mean()
    e[20:] -= e[20:].mean()
    H = (np.where(y == 0, -1.0, 1.0) + e)[:, None]
    nc = neural_collapse(H, y)
    assert nc["nc1"] == pytest.approx((e**2).mean() / 1.0 / 2, rel=1e-12)


@pytest.mark.parametrize(("C", "d", "counts"), [(3, 5, 10), (10, 200, 30), (4, 2, 25)])
def test_nc1_is_the_trace_of_sigma_w_times_the_pseudo_inverse_of_sigma_b(C, d, counts):
    """NC1 is computed through a C × d pseudo-inverse; it equals Papyan et al.'s
    tr(Σ_W Σ_B⁺)/C with the d × d pseudo-inverse written out (unequal class sizes, d above
    and below C)."""
    rng = np.random.default_rng(C * d)
    y = np.concatenate([np.full(counts + c, c) for c in range(C)])
    H = rng.standard_normal((C, d))[y] * 2 + rng.standard_normal((y.size, d))
    mus = np.stack([H[y == c].mean(0) for c in range(C)])
    M, R = mus - H.mean(0), H - mus[y]
    direct = np.trace((R.T @ R / y.size) @ np.linalg.pinv(M.T @ M / C, hermitian=True)) / C
    assert neural_collapse(H, y)["nc1"] == pytest.approx(direct, rel=1e-10)


def test_collapse_bad_input():
    H = np.zeros((6, 3))
    with pytest.raises(UserError, match="two classes"):
        neural_collapse(H, np.zeros(6, int))
    with pytest.raises(UserError, match="at least two samples"):
        neural_collapse(H, np.array([0, 0, 0, 0, 0, 1]))
    with pytest.raises(UserError, match="disagree"):
        neural_collapse(H, np.zeros(5, int))
    with pytest.raises(UserError, match="weight"):
        neural_collapse(
            np.random.default_rng(0).standard_normal((6, 3)),
            np.array([0, 0, 0, 1, 1, 1]),
            weight=np.zeros((3, 3)),
        )


def test_agop_closed_forms():
    torch.manual_seed(0)
    X = torch.randn(200, 6, dtype=torch.float64)
    A = torch.randn(3, 6, dtype=torch.float64)
    np.testing.assert_allclose(
        agop(lambda x: x @ A.T, X).numpy(), (A.T @ A).numpy(), rtol=1e-12, atol=1e-12
    )
    u = torch.randn(6, dtype=torch.float64)
    # f = (u·x)²: ∇f = 2(u·x)u, AGOP = 4·mean((u·x)²)·uuᵀ
    got = agop(lambda x: (x @ u) ** 2, X, batch_size=64)
    want = 4 * ((X @ u) ** 2).mean() * torch.outer(u, u)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)
    with pytest.raises(UserError, match="NaN"):
        agop(lambda x: x, torch.full((3, 2), math.nan))


def test_matrix_statistics():
    rng = np.random.default_rng(2)
    B = rng.standard_normal((8, 8))
    S = B @ B.T
    assert matrix_correlation(S, 3 * S + 1.0) == pytest.approx(1.0, abs=1e-12)
    assert matrix_correlation(S, 3 * S, centered=False) == pytest.approx(1.0, abs=1e-12)
    R = psd_sqrt(torch.from_numpy(S))
    np.testing.assert_allclose((R @ R).numpy(), S, rtol=1e-10, atol=1e-10)
    U = torch.linalg.qr(torch.randn(8, 2, dtype=torch.float64))[0].T
    M = U.T @ torch.diag(torch.tensor([5.0, 3.0], dtype=torch.float64)) @ U + 0.01 * torch.eye(8)
    assert subspace_overlap(M, U) == pytest.approx(1.0, abs=1e-12)
    # the null of two unrelated random Wishart matrices is centred near its own mean and
    # the aligned pair is far above it
    mu, sd = matrix_correlation_null(S, S, permutations=300, seed=1)
    assert (1.0 - mu) / sd > 3
    with pytest.raises(UserError, match="shape"):
        matrix_correlation(S, S[:3])
    with pytest.raises(UserError, match="constant"):
        matrix_correlation(np.ones((3, 3)), S[:3, :3])


def test_matrix_correlation_of_a_diverged_run_is_a_divergence():
    """Issue #19 (3): NaN weights raised an 'undefined' usage error, stored as an error."""
    from learnmech.measure.features import matrix_correlation

    a = torch.eye(3)
    with pytest.raises(FloatingPointError, match="did training diverge"):
        matrix_correlation(a, a * float("nan"))
