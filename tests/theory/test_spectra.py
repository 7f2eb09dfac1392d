"""Kernel spectra: exact on the boolean cube, Funk–Hecke on the sphere, Gram estimates."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from learnmech.errors import UserError
from learnmech.theory import spectra as sp


@pytest.mark.parametrize("kernel", ["exp", "ntk", "nngp"])
def test_cube_spectrum_equals_the_full_gram_eigenvalues(kernel):
    d = 8
    X = np.array(list(itertools.product([-1.0, 1.0], repeat=d)))
    if kernel == "exp":
        k = np.exp
        G = np.exp(X @ X.T / d)
    else:  # the MLP kernel of unit-norm inputs x/√d depends on ⟨x, x'⟩/d only
        k = sp.dot_product_kernel(kernel, dim=d, depth=2, b_std=0.1)
        G = sp.gram_matrix(X / math.sqrt(d), kernel, depth=2, b_std=0.1)
    eig, mult = sp.cube_spectrum(k, d)
    assert mult.sum() == 2**d
    expected = np.sort(np.linalg.eigvalsh(G))[::-1] / 2**d
    np.testing.assert_allclose(sp.expand_degrees(eig, mult).eigenvalues, expected, atol=1e-14)


@pytest.mark.parametrize("dim", [2, 3, 5, 10])
def test_sphere_spectrum_of_polynomial_kernels(dim):
    # ⟨x, x'⟩ = Σ x_i x'_i: degree 1 only, eigenvalue 1/d with multiplicity d
    eig, mult = sp.sphere_spectrum(lambda t: t, dim, 3)
    np.testing.assert_allclose(eig, [0, 1 / dim, 0, 0], atol=1e-12)  # 2000-term sums
    assert mult[1] == dim
    # Mercer at t = 1: Σ_ℓ N(d, ℓ) λ_ℓ = k(1). For e^t, λ_ℓ < 1/ℓ! so the tail past ℓ = 18
    # is < 1e-15; each λ_ℓ is a sum of 2000 quadrature terms of size ≤ e (rounding ≤
    # 2000·eps·e), amplified by its multiplicity.
    eig, mult = sp.sphere_spectrum(np.exp, dim, 18)
    rounding = 2000 * np.finfo(float).eps * math.e * mult.sum()
    assert abs(np.sum(eig * mult) - math.e) <= rounding + 1e-15


def test_sphere_multiplicities_count_harmonics():
    # dim(harmonics of degree ℓ on S²) = 2ℓ + 1; in general homogeneous polynomials of
    # degree ℓ = harmonics of degree ℓ ⊕ |x|²·(all polynomials of degree ℓ − 2):
    # N(d, ℓ) = C(ℓ + d − 1, d − 1) − C(ℓ + d − 3, d − 1)
    assert [sp.sphere_multiplicity(3, ell) for ell in range(4)] == [1, 3, 5, 7]
    for d in (4, 7):
        assert sp.sphere_multiplicity(d, 1) == d
        for ell in range(2, 7):
            expected = math.comb(ell + d - 1, d - 1) - math.comb(ell + d - 3, d - 1)
            assert sp.sphere_multiplicity(d, ell) == expected


def test_sphere_spectrum_of_the_ntk_on_the_circle_matches_equispaced_gram():
    """On S¹ the Gram of N equispaced points is circulant: its eigenvalues/N are the Fourier
    coefficients of k(cos θ) plus aliases λ_{ℓ+qN}, which for the ReLU NTK (λ_ℓ ~ ℓ⁻²) are
    ~N⁻² of λ_0; quadrature error ~1e-9. Tolerance 1e-6 relative to λ_0."""
    k = sp.dot_product_kernel("ntk", dim=2, depth=2, b_std=0.0)
    eig, _ = sp.sphere_spectrum(k, 2, 6)
    N = 4096
    theta = 2 * np.pi * np.arange(N) / N
    row = k(np.cos(theta))
    fourier = np.real(np.fft.fft(row)) / N  # eigenvalue of Gram/N for frequency ℓ
    np.testing.assert_allclose(fourier[:7], eig, atol=1e-6 * eig[0])


def test_spectrum_from_gram_reconstructs_kernel_and_target():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = np.sin(X[:, 0]) + 0.1 * rng.standard_normal(60)
    K = sp.gram_matrix(X, "rbf", bandwidth=1.5)
    s = sp.spectrum_from_gram(K, y)
    assert np.all(np.diff(s.eigenvalues) <= 0)
    np.testing.assert_allclose(np.sum(s.target_coeffs**2), np.mean(y**2), rtol=1e-12)
    np.testing.assert_allclose(np.sum(s.eigenvalues), np.trace(K) / 60, rtol=1e-12)


def test_gram_kernels_and_errors():
    x = np.eye(3)
    np.testing.assert_allclose(sp.gram_matrix(x, "linear"), np.eye(3))
    np.testing.assert_allclose(np.diag(sp.gram_matrix(x, "rbf")), 1.0)
    with pytest.raises(UserError, match="unknown kernel"):
        sp.gram_matrix(x, "poly")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="positive semi-definite"):
        sp.spectrum_from_gram(-np.eye(3))
    with pytest.raises(UserError, match="square"):
        sp.spectrum_from_gram(np.ones((2, 3)))
    with pytest.raises(UserError, match="rows"):
        sp.spectrum_from_gram(np.eye(3), np.ones(4))


def test_power_law_spectrum_normalised():
    s = sp.power_law_spectrum(1000, 1.5, 1.2)
    np.testing.assert_allclose(np.sum(s.target_coeffs**2), 1.0)
    assert s.eigenvalues[0] == 1.0 and s.eigenvalues[-1] == pytest.approx(1000**-1.5)
