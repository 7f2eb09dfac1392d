"""Analytic kernels: neural-tangents parity, closed-form values, quadrature, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import integrate, special

from learnmech.theory.activations import ActivationSpec, abrelu, get_activation
from learnmech.theory.kernels import mlp_kernels

NT_REF = Path(__file__).parent / "data" / "nt_reference.npz"


def _nt_cases():
    z = np.load(NT_REF)
    return z, json.loads(str(z["cases"]))


@pytest.mark.parametrize("case", range(11))
def test_matches_neural_tangents(case):
    """Values written by neural-tangents 0.6.5 (benchmarks/neural_tangents_reference.py)."""
    z, cases = _nt_cases()
    cfg = cases[case]
    closed = get_activation(cfg["activation"]).closed_form is not None
    rtol = 1e-10 if closed else 1e-7  # the stated accuracy of the quadrature path
    k11 = mlp_kernels(z["x1"], **cfg)
    k12 = mlp_kernels(z["x1"], z["x2"], **cfg)
    for name, got, ref in (
        ("nngp11", k11.nngp, z[f"case{case}_nngp11"]),
        ("ntk11", k11.ntk, z[f"case{case}_ntk11"]),
        ("nngp12", k12.nngp, z[f"case{case}_nngp12"]),
        ("ntk12", k12.ntk, z[f"case{case}_ntk12"]),
    ):
        # relative to each entry, with a floor at rtol·max|K| for entries that cancel to ~0
        scale = np.maximum(np.abs(ref), 1e-3 * np.abs(ref).max())
        err = np.max(np.abs(got - ref) / scale)
        assert err <= rtol, f"{cfg} {name}: max relative error {err:.2e} > {rtol:.0e}"


def test_relu_ntk_reference_values():
    """One hidden layer, unit-normalised layers: Θ = c·κ0(c) + κ1(c) (REFERENCES.md §2)."""
    for c, expected in ((0.0, 0.318310), (0.5, 0.942331)):
        # x·x/d = 1/2 and w² = 2, so Σ¹ = c on the unit diagonal.
        x = np.array([[1.0, 0.0], [c, math.sqrt(1 - c * c)]])
        k = mlp_kernels(x, depth=1, w_std=math.sqrt(2.0), b_std=None)
        kappa0 = (math.pi - math.acos(c)) / math.pi
        kappa1 = (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi
        assert k.ntk[0, 1] == pytest.approx(c * kappa0 + kappa1, rel=1e-14)
        assert k.ntk[0, 1] == pytest.approx(expected, abs=5e-7)


def _pdf(z):
    """The standard normal density (scalar; scipy.stats' per-call overhead made the
    quadrature references take 20 s)."""
    return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _dblquad_dual(phi, s11, s12, s22):
    """Independent reference: adaptive 2-D quadrature with the Cholesky factor."""
    L = np.linalg.cholesky(np.array([[s11, s12], [s12, s22]]))

    def f(z2, z1):
        return phi(L[0, 0] * z1) * phi(L[1, 0] * z1 + L[1, 1] * z2) * _pdf(z1) * _pdf(z2)

    return integrate.dblquad(f, -9, 9, -9, 9, epsabs=1e-10, epsrel=1e-9)[0]


def _arccos_relu(s11, s12, s22):
    """Cho & Saul 2009 in its original acos form: E[relu(u)relu(v)]."""
    c = s12 / math.sqrt(s11 * s22)
    theta = math.acos(c)
    return math.sqrt(s11 * s22) * (math.sin(theta) + (math.pi - theta) * c) / (2 * math.pi)


@pytest.mark.parametrize(
    ("name", "a", "b"),
    [("relu", 0.0, 1.0), ("abs", -1.0, 1.0), ("leaky_relu(0.3)", 0.3, 1.0), ("identity", 1.0, 1.0)],
)
@pytest.mark.parametrize(
    ("s11", "s12", "s22"), [(1.7, -0.6, 0.9), (2.0, 1.9, 2.0), (0.5, 0.0, 3.0)]
)
def test_abrelu_closed_form_against_arccos_decomposition(name, a, b, s11, s12, s22):
    """φ = b·relu(x) − a·relu(−x) ⇒ E[φφ] = (a²+b²)J(Σ12) − 2ab·J(−Σ12) (independent form)."""
    act = get_activation(name)
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    v, vp = act.dual(t(s12), t(s11), t(s22))
    ref = (a * a + b * b) * _arccos_relu(s11, s12, s22) - 2 * a * b * _arccos_relu(s11, -s12, s22)
    theta = math.acos(s12 / math.sqrt(s11 * s22))
    ref_p = (a * a + b * b) * (math.pi - theta) / (2 * math.pi) + a * b * theta / math.pi
    assert float(v) == pytest.approx(ref, rel=1e-12, abs=1e-14)
    assert float(vp) == pytest.approx(ref_p, rel=1e-12)


@pytest.mark.parametrize(
    ("name", "phi", "phi_prime"),
    [
        ("erf", special.erf, lambda x: 2 / math.sqrt(math.pi) * np.exp(-x * x)),
        ("gelu", lambda x: x * special.ndtr(x), lambda x: special.ndtr(x) + x * _pdf(x)),
        ("tanh", np.tanh, lambda x: 1 - np.tanh(x) ** 2),
        ("softplus", lambda x: np.logaddexp(0, x), lambda x: special.expit(x)),
    ],
)
def test_dual_kernel_against_adaptive_quadrature(name, phi, phi_prime):
    act = get_activation(name)
    s11, s12, s22 = 1.7, -0.6, 0.9
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    v, vp = act.dual(t(s12), t(s11), t(s22), quadrature_degree=96)
    # 1e-6: the accuracy the quadrature path promises (saturating φ converge slowest)
    assert float(v) == pytest.approx(_dblquad_dual(phi, s11, s12, s22), rel=1e-6)
    assert float(vp) == pytest.approx(_dblquad_dual(phi_prime, s11, s12, s22), rel=1e-6)


def test_quadrature_agrees_with_closed_form_for_erf():
    """The same smooth activation through both paths: erf as a plain callable."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 4))
    closed = mlp_kernels(x, depth=3, activation="erf", w_std=1.3, b_std=0.2)
    quad = mlp_kernels(x, depth=3, activation=torch.erf, w_std=1.3, b_std=0.2)
    # the accuracy target for quadrature (1e-6), relative to the kernel's scale
    scale = np.abs(closed.ntk).max()
    np.testing.assert_allclose(quad.nngp, closed.nngp, rtol=1e-6, atol=1e-6 * scale)
    np.testing.assert_allclose(quad.ntk, closed.ntk, rtol=1e-6, atol=1e-6 * scale)


def test_symmetric_equals_explicit_and_blocking_invariant():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((37, 5))
    a = mlp_kernels(x, depth=4, w_std=1.2, b_std=0.3)
    b = mlp_kernels(x, x.copy(), depth=4, w_std=1.2, b_std=0.3, block_elements=50)
    c = mlp_kernels(x, depth=4, w_std=1.2, b_std=0.3, block_elements=64)
    np.testing.assert_allclose(a.ntk, b.ntk, rtol=1e-12)
    np.testing.assert_allclose(a.ntk, c.ntk, rtol=1e-13)
    # a genuinely rectangular call agrees off the diagonal to rounding; on pairs of equal
    # rows the angle picks up ~√ε from x·x rounding (as in neural-tangents).
    r = mlp_kernels(x, x[:10].copy(), depth=4, w_std=1.2, b_std=0.3)
    off = ~np.eye(37, 10, dtype=bool)
    np.testing.assert_allclose(r.ntk[off], a.ntk[:, :10][off], rtol=1e-12)
    np.testing.assert_allclose(np.diag(r.ntk), np.diag(a.ntk)[:10], rtol=1e-7)
    np.testing.assert_allclose(a.nngp, a.nngp.T, rtol=0, atol=0)
    assert np.all(np.linalg.eigvalsh(a.ntk) > -1e-10 * np.abs(a.ntk).max())


def test_float32_and_torch_inputs():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, 3))
    ref = mlp_kernels(x, depth=3)
    t = mlp_kernels(torch.tensor(x, dtype=torch.float32), depth=3)
    assert isinstance(t.ntk, torch.Tensor) and t.ntk.dtype == torch.float32
    np.testing.assert_allclose(t.ntk.numpy(), ref.ntk, rtol=1e-4, atol=1e-5)


def test_depth_zero_is_linear_kernel():
    x = np.array([[1.0, 2.0], [3.0, -1.0]])
    k = mlp_kernels(x, depth=0, w_std=2.0, b_std=0.5)
    np.testing.assert_allclose(k.nngp, 4.0 * x @ x.T / 2 + 0.25, rtol=1e-15)
    np.testing.assert_allclose(k.ntk, k.nngp, rtol=1e-15)


def test_get_subset():
    x = np.eye(3)
    k = mlp_kernels(x, depth=2, get=("ntk",))
    assert k.nngp is None and k.ntk.shape == (3, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(x1=np.array([[np.nan, 1.0]]), depth=1), "NaN"),
        (dict(x1=np.ones(3), depth=1), "shape"),
        (dict(x1=np.ones((0, 3)), depth=1), "empty"),
        (dict(x1=np.ones((2, 3)), depth=-1), "depth"),
        (dict(x1=np.ones((2, 3)), depth=1, w_std=-1.0), "w_std"),
        (dict(x1=np.ones((2, 3)), depth=1, activation="swishy"), "unknown activation"),
        (dict(x1=np.ones((2, 3)), depth=1, parameterization="standard"), "width"),
        (dict(x1=np.ones((2, 3)), x2=np.ones((2, 4)), depth=1), "features"),
    ],
)
def test_bad_input(kwargs, match):
    x1 = kwargs.pop("x1")
    x2 = kwargs.pop("x2", None)
    with pytest.raises((ValueError, TypeError), match=match):
        mlp_kernels(x1, x2, **kwargs)


def test_bad_type():
    with pytest.raises(TypeError, match="numpy array or torch tensor"):
        mlp_kernels("abc", depth=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="activation"):
        get_activation(3)  # type: ignore[arg-type]
    assert isinstance(get_activation("relu"), ActivationSpec)


@pytest.mark.parametrize(
    "act",
    [get_activation(n) for n in ("relu", "identity", "abs", "leaky_relu(0.2)")]
    + [abrelu(0.3, 2.0), abrelu(-0.5, 0.5)],
    ids=lambda a: a.name,
)
def test_abrelu_values_and_autograd_gradient_match_the_derivative_everywhere(act, f64):
    # φ(x) = a·min(x, 0) + b·max(x, 0), and autograd's gradient is the spec's derivative
    # (a at 0) — the sum of two clamps it was had a + b at 0: 2 for the identity
    a, b = act.ab
    x = torch.tensor([-3.0, -1e-300, -0.0, 0.0, 1e-300, 0.5, 7.0], requires_grad=True)
    y = act.fn(x)
    assert torch.equal(y, a * torch.clamp(x, max=0.0) + b * torch.clamp(x, min=0.0))
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(g, act.derivative(x.detach()))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "0.1"])
def test_abrelu_refuses_slopes_that_are_not_finite_numbers(bad):
    with pytest.raises(ValueError, match="finite numbers"):
        abrelu(bad, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite numbers"):
        abrelu(0.0, bad)  # type: ignore[arg-type]
    if isinstance(bad, float):
        with pytest.raises(ValueError, match="finite numbers"):
            get_activation(f"leaky_relu({bad})")
