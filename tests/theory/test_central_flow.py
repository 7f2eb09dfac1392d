"""The central flow (Cohen, Damian et al. 2025; theory.central_flow) against closed forms.

The closed-form case is the two-parameter loss L(x, z) = ½ z x² + ½ c (z − z*)². Its
Hessian at x = 0 is diag(z, c), so the sharpness is z (for z > c) along the x axis, and
∇S = (0, 1) there. Gradient flow drives z to z* and x to 0; with 2/η < z* GD reaches the
edge when z = 2/η and the central flow then holds z = 2/η with oscillation variance
σ² = −2⟨∇S, ∇L⟩/‖∇S‖² = 2c(z* − 2/η) and time-averaged loss
L̄ = ½c(z* − 2/η)² + ½σ²·2/η (eq. 3 of the module). Before the edge, z(t) solves
dz/dt = −ηc(z − z*) (x decays from the start, faster than z moves).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy.signal import find_peaks
from torch import nn

from learnmech.errors import UserError
from learnmech.measure.hessian import LossHessian, lanczos
from learnmech.measure.model_io import forward
from learnmech.theory.central_flow import (
    OVERSHOOT,
    _Derivatives,
    _sharpness_gradients,
    _sharpness_matrix,
    central_flow,
    solve_lcp,
    solve_sdcp,
    wrong_third_derivatives,
)

C, ZSTAR, ETA = 0.01, 30.0, 0.1  # edge at 2/η = 20
BATCH = (torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))


class Toy(nn.Module):
    def __init__(self, x0: float, z0: float) -> None:
        super().__init__()
        self.x = nn.Parameter(torch.tensor(x0, dtype=torch.float64))
        self.z = nn.Parameter(torch.tensor(z0, dtype=torch.float64))

    def forward(self, _: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.x, self.z])


def toy_loss(o: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    return 0.5 * o[1] * o[0] ** 2 + 0.5 * C * (o[1] - ZSTAR) ** 2


SIGMA2 = 2 * C * (ZSTAR - 2 / ETA)  # 0.2
LBAR = 0.5 * C * (ZSTAR - 2 / ETA) ** 2 + 0.5 * SIGMA2 * 2 / ETA  # 2.5


# With derivatives="differences" the Ritz value carries the forward difference's bias, at
# most h₁‖∇³L‖ with h₁ = √u(1 + ‖w‖) ≤ 1.49e-8·21 and ‖∇³L[q, q, ·]‖ = ‖(2q_xq_z, q_x²)‖ ≤ √2
# for unit q; the LCP turns an error δ in S into δ/B in σ², B = ½·dt·η·‖∇S‖² = 0.025. So
# σ² is within FD_SIGMA2 of the closed form, and L̄ = L + ½σ²S within ½·20·FD_SIGMA2.
FD_SIGMA2 = math.sqrt(np.finfo(np.float64).eps) * 21 * math.sqrt(2) / 0.025  # 1.8e-5
EXACT = {"autograd": 1e-6, "differences": FD_SIGMA2}


@pytest.mark.parametrize("derivatives", ["autograd", "differences"])
def test_central_flow_of_the_toy_matches_its_closed_form(derivatives: str) -> None:
    # Lanczos to 1e-9: the Rayleigh quotient is then exact to ~(1e-9·20)²/gap
    f = central_flow(
        Toy(0.1, 19.0), toy_loss, BATCH, ETA, 1000, record_every=5, keep_params=True, tol=1e-9,
        derivatives=derivatives,
    )  # fmt: skip
    assert f.params is not None
    z, t = f.params[:, 1], f.steps
    t_edge = math.log((ZSTAR - 19.0) / (ZSTAR - 2 / ETA)) / (ETA * C)  # 95.3 steps
    before = t < t_edge - 5
    # Euler's error on e^{−ηct} at h = ½ is ~hη²c²t/2 relative (< 1e-6 here); the x² term
    # adds ∫ηx²/2 dt ≤ 5e-4 in z: bound 1e-3
    np.testing.assert_allclose(z[before], ZSTAR - 11.0 * np.exp(-ETA * C * t[before]), atol=1e-3)
    after = t > t_edge + 5
    np.testing.assert_allclose(z[after], 2 / ETA, atol=1e-6)
    np.testing.assert_allclose(f.sharpness[after], 2 / ETA, atol=1e-6)
    if derivatives == "autograd":
        np.testing.assert_allclose(f.sigma2[after, 0], SIGMA2, rtol=1e-6)
        np.testing.assert_allclose(f.mean_loss[after], LBAR, rtol=1e-6)
    else:
        np.testing.assert_allclose(f.sigma2[after, 0], SIGMA2, atol=FD_SIGMA2)
        np.testing.assert_allclose(f.mean_loss[after], LBAR, atol=10 * FD_SIGMA2)
    assert (f.sigma2[before] == 0).all()
    np.testing.assert_allclose(f.mean_loss[before], f.loss[before])


def test_gd_on_the_toy_averages_to_the_central_flow_over_whole_cycles() -> None:
    """GD does not settle on the 2-cycle here: (x², z) circle the central flow's point like
    a Lotka–Volterra pair (x grows by |1 − ηz| per step, z falls with x²/2), and the
    averages over whole cycles equal the centre (Damian, Nichani & Lee 2023, §4). The
    central flow is the O(η) description; the bound 5% allows the discrete-time
    corrections (on this toy they are ~2%)."""
    x, z = 0.1, 19.0
    xs, ls = [], []
    for _ in range(12000):
        xs.append(x * x)
        ls.append(0.5 * z * x * x + 0.5 * C * (z - ZSTAR) ** 2)
        x, z = x - ETA * z * x, z - ETA * (0.5 * x * x + C * (z - ZSTAR))
    peaks, _ = find_peaks(np.array(xs), height=1e-3, distance=50)
    assert len(peaks) >= 4
    a, b = peaks[1], peaks[-1]
    assert np.mean(xs[a:b]) == pytest.approx(SIGMA2, rel=0.05)
    assert np.mean(ls[a:b]) == pytest.approx(LBAR, rel=0.05)


def test_gradient_flow_does_not_stop_at_the_edge() -> None:
    f = central_flow(Toy(0.1, 19.0), toy_loss, BATCH, ETA, 1000, kind="gradient", keep_params=True)
    assert f.params is not None
    # z(t) = z* − 11e^{−ηct}: past 2/η = 20 by t ≈ 95, 26.0 at t = 1000
    assert f.params[-1, 1] == pytest.approx(ZSTAR - 11.0 * math.exp(-ETA * C * 1000), abs=1e-3)
    assert f.sharpness[-1] > 2 / ETA * 1.25
    np.testing.assert_array_equal(f.mean_loss, f.loss)
    assert (f.sigma2 == 0).all()


def _mlp() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = torch.randn(40, 2, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 2)).double()
    return m, (x, y)


def mse(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((z - t) ** 2).sum(1).mean()


def _probe(seed: int):  # type: ignore[no-untyped-def]
    """The test MLP with two random directions U and a random step direction e."""
    m, b = _mlp()
    params = list(m.parameters())
    d = sum(p.numel() for p in params)
    g = torch.Generator().manual_seed(seed)
    U = torch.randn(d, 2, generator=g, dtype=torch.float64)
    e = torch.randn(d, generator=g, dtype=torch.float64)
    w0 = torch.nn.utils.parameters_to_vector(params).detach().clone()
    return m, b, params, U, e, w0


def _central_difference(f, params, w0, e, eps: float = 1e-5):  # type: ignore[no-untyped-def]
    """(f(w0 + eps·e) − f(w0 − eps·e)) / 2eps, with the parameters restored to w0."""
    out = []
    for sign in (1, -1):
        torch.nn.utils.vector_to_parameters(w0 + sign * eps * e, params)
        out.append(f())
    torch.nn.utils.vector_to_parameters(w0, params)
    return (out[0] - out[1]) / (2 * eps)


def test_sharpness_gradient_matches_finite_differences() -> None:
    """∇_w(uᵀ∇²L(w)u) at fixed u against a central difference of uᵀH u along a random
    direction (step 1e-5: truncation ~1e-10, round-off ~1e-16/1e-5; bound 1e-6 relative)."""
    m, b, params, U, e, w0 = _probe(1)
    S, G = _sharpness_gradients(m, params, mse, b, U)
    fd = _central_difference(lambda: _sharpness_gradients(m, params, mse, b, U)[0], params, w0, e)
    np.testing.assert_allclose((G @ e).numpy(), fd.numpy(), rtol=1e-6)
    H = torch.autograd.functional.hessian(
        lambda w: mse(torch.func.functional_call(m, _unflat(m, w), (b[0],)), b[1]), w0
    )
    np.testing.assert_allclose(S.numpy(), torch.einsum("di,de,ei->i", U, H, U).numpy(), rtol=1e-10)


def _unflat(m: nn.Module, w: torch.Tensor) -> dict[str, torch.Tensor]:
    out, i = {}, 0
    for n, p in m.named_parameters():
        out[n] = w[i : i + p.numel()].view_as(p)
        i += p.numel()
    return out


def test_below_the_edge_the_central_flow_is_the_gradient_flow() -> None:
    m, b = _mlp()
    cf = central_flow(m, mse, b, 0.05, 200, keep_params=True)
    gf = central_flow(m, mse, b, 0.05, 200, kind="gradient", keep_params=True)
    assert cf.sharpness.max() < 2 / 0.05
    assert (cf.sigma2 == 0).all()
    assert cf.params is not None and gf.params is not None
    np.testing.assert_allclose(cf.params, gf.params, rtol=0, atol=1e-12)
    # the caller's model is left as it was; the flow starts from it
    with torch.no_grad():
        assert cf.loss[0] == pytest.approx(float(mse(m(b[0]), b[1])), rel=1e-12)
    w = torch.nn.utils.parameters_to_vector(m.parameters()).detach().numpy()
    np.testing.assert_array_equal(cf.params[0], w)


def test_the_flow_differentiates_a_hardsigmoid_net_three_times() -> None:
    # PyTorch's hardsigmoid has no second derivative; the flow computes nn.Hardsigmoid as
    # relu6(x + 3)/6, the same function: the flow of the net written that way is the same
    class Written(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.relu6(x + 3) / 6

    _, b = _mlp()
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 16), nn.Hardsigmoid(), nn.Linear(16, 2)).double()
    w = nn.Sequential(m[0], Written(), m[2])
    kw = {"k": "auto", "keep_params": True}
    got = central_flow(model=m, loss_fn=mse, batch=b, lr=0.8, steps=40, **kw)
    ref = central_flow(w, mse, b, 0.8, 40, **kw)
    assert (got.sigma2 > 0).any()  # the flow reached the edge: third derivatives used
    assert got.params is not None and ref.params is not None
    np.testing.assert_array_equal(got.params, ref.params)
    np.testing.assert_array_equal(got.sharpness, ref.sharpness)
    assert "forward" not in vars(m[1])


def test_lcp_solutions_are_complementary() -> None:
    rng = np.random.default_rng(0)
    for k in (1, 2, 3, 5):
        for _ in range(20):
            M = rng.standard_normal((k, k + 2))
            B = M @ M.T
            a = rng.standard_normal(k)
            x = solve_lcp(a, B)
            y = a + B @ x
            assert (x >= 0).all() and (y >= -1e-9).all()
            assert abs(x @ y) < 1e-9
    np.testing.assert_array_equal(solve_lcp(np.array([1.0, 0.5]), np.eye(2)), [0.0, 0.0])
    np.testing.assert_allclose(solve_lcp(np.array([-2.0]), np.array([[4.0]])), [0.5])


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"lr": -0.1}, "lr must be"),
        ({"lr": float("nan")}, "lr must be"),
        ({"dt": 2.0}, "dt must be at most"),
        ({"steps": 0}, "steps must be"),
        ({"kind": "sgd"}, "kind must be"),
        ({"k": 1.5}, "k must be"),
        ({"derivatives": "forward"}, "derivatives must be"),
    ],
)
def test_bad_arguments_are_one_clear_error(kw: dict, match: str) -> None:
    args = {"lr": ETA, "steps": 10} | kw
    lr, steps = args.pop("lr"), args.pop("steps")
    with pytest.raises(UserError, match=match):
        central_flow(Toy(0.1, 19.0), toy_loss, BATCH, lr, steps, **args)
    with pytest.raises(UserError, match=r"nn\.Module"):
        central_flow("model", toy_loss, BATCH, ETA, 10)  # type: ignore[arg-type]


def _gpt2() -> tuple[nn.Module, tuple, Callable]:
    tf = pytest.importorskip("transformers")
    cfg = tf.GPT2Config(
        vocab_size=16, n_positions=8, n_embd=8, n_layer=1, n_head=2,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
        attn_implementation="eager",
    )  # fmt: skip
    torch.manual_seed(0)
    model = tf.GPT2LMHeadModel(cfg).double().eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 16, (4, 8), generator=g)

    def ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.reshape(-1, 16), labels.reshape(-1))

    return model, ({"input_ids": ids}, ids), ce


def test_layer_norm_third_derivatives_come_from_differences() -> None:
    """PyTorch's third derivatives through ``layer_norm`` are silently wrong
    (pytorch/pytorch#175754: its saved statistics carry no autograd history): on this
    GPT-2, triple backpropagation puts ⟨∇S, e⟩ at −5.08 where the truth is +59.16. The
    flow refuses ``derivatives="autograd"`` there and its differences are right: ⟨∇S, e⟩
    against a central difference of S(w) = uᵀH(w)u along e (Hessian-vector products are
    right through layer_norm; step 1e-5, truncation and round-off ~1e-9 relative). Bound:
    the flow shrinks its second-difference step until the same pair's first difference
    reproduces uᵀHu to u^{1/4} = 1.2e-4 relative; the second difference's truncation is of
    that order (the next term of the same Taylor series), so 4·u^{1/4}."""
    model, batch, ce = _gpt2()
    assert wrong_third_derivatives(model) is not None
    params = [p for p in model.parameters() if p.requires_grad]
    w0 = torch.nn.utils.parameters_to_vector(params).detach().clone()
    with torch.enable_grad():
        loss = ce(forward(model, batch[0]), batch[1])
        g0 = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, params)])
    d = _Derivatives(model, params, ce, batch, "auto")
    assert d.how == "differences"
    d.at(w0, g0)
    r = lanczos(LossHessian(model, ce, batch).matvec, w0.numel(), 1, tol=1e-10)
    M, D = d.block(r.eigenvectors, r.eigenvalues, diagonal=True)
    u = r.eigenvectors[:, 0]
    e = torch.randn(w0.numel(), generator=torch.Generator().manual_seed(1), dtype=w0.dtype)
    e /= e.norm()

    def S_at(w: torch.Tensor) -> float:
        torch.nn.utils.vector_to_parameters(w, params)
        return float(u @ LossHessian(model, ce, batch).matvec(u))

    truth = (S_at(w0 + 1e-5 * e) - S_at(w0 - 1e-5 * e)) / 2e-5
    torch.nn.utils.vector_to_parameters(w0, params)
    assert float(D[0, 0] @ e) == pytest.approx(truth, rel=4 * 2.0**-13)
    assert M[0, 0] == pytest.approx(S_at(w0), rel=1e-9)
    torch.nn.utils.vector_to_parameters(w0, params)
    with pytest.raises(UserError, match=r"silently wrong.*LayerNorm"):
        central_flow(model, ce, batch, 1e-3, 1, derivatives="autograd")


def test_a_huggingface_model_from_a_config_runs_through_the_flow() -> None:
    """A random-weight GPT-2 from a config (dict batch, ``ModelOutput``): started at 95% of
    the edge, the flow descends its cross-entropy and never lets the sharpness pass 2/η (to
    the first-order carry between refreshes, 2%), and no fresh reading finds a direction
    past the edge. (Before the flow took LayerNorm's third derivatives from differences,
    its wrong ∇S drove a second eigenvalue to 1.42·2/η here.)"""
    model, batch, ce = _gpt2()
    s0 = central_flow(model, ce, batch, 1e-3, 1).sharpness[0]
    lr = 1.9 / s0  # start at 95% of the edge
    for k in (1, "auto"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            cf = central_flow(model, ce, batch, lr, 60, record_every=10, k=k)
        assert cf.loss[-1] < cf.loss[0] and cf.overshoot <= OVERSHOOT
        assert cf.sharpness.max() <= (2 / lr) * 1.02
        edge = cf.sigma2.sum(1) > 0
        assert edge.any()  # it reaches the edge, where L̄ carries the oscillation term
        assert (cf.mean_loss[edge] > cf.loss[edge]).all()


class Toy2(nn.Module):
    """Two independent copies of the toy, the second with a larger z*: both reach the edge,
    the second later, so two directions must be held at 2/η at once."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.1, 19.0, 0.1, 19.5], dtype=torch.float64))

    def forward(self, _: torch.Tensor) -> torch.Tensor:
        return self.w


ZSTAR2 = (ZSTAR, 40.0)


def toy2_loss(o: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    return sum(
        0.5 * o[2 * i + 1] * o[2 * i] ** 2 + 0.5 * C * (o[2 * i + 1] - ZSTAR2[i]) ** 2
        for i in range(2)
    )


@pytest.mark.parametrize("derivatives", ["autograd", "differences"])
def test_auto_k_holds_every_direction_that_reaches_the_edge(derivatives: str) -> None:
    """With k = 1 the flow holds one copy at a time (it switches between them as each
    overshoots), so its oscillation variance and time-averaged loss miss the closed form;
    with k = "auto" it tracks a second direction once the next Ritz value reaches 2/η, and
    both copies sit at their closed forms: z_i = 2/η, σ_i² = 2c(z_i* − 2/η) (the
    eigenvalues of the full matrix X), L̄ = Σ_i ½c(z_i* − 2/η)² + σ_i²/η."""
    one = central_flow(Toy2(), toy2_loss, BATCH, ETA, 1500, keep_params=True, tol=1e-9)
    assert one.params is not None and one.sigma2.shape[1] == 1
    lbar1 = sum(0.5 * C * (z - 2 / ETA) ** 2 + 2 * C * (z - 2 / ETA) / ETA for z in ZSTAR2)
    assert abs(one.mean_loss[-1] / lbar1 - 1) > 0.1
    auto = central_flow(
        Toy2(), toy2_loss, BATCH, ETA, 1500, k="auto", keep_params=True, tol=1e-9,
        derivatives=derivatives,
    )  # fmt: skip
    assert auto.params is not None and auto.sigma2.shape[1] == 2
    np.testing.assert_allclose(auto.params[-1, [1, 3]], 2 / ETA, atol=1e-6)
    # the two copies do not couple: X is not unique, and the flow reports the smallest
    # solution (no correlation between the copies), in whatever basis Lanczos returns
    expect = sorted(2 * C * (z - 2 / ETA) for z in ZSTAR2)
    lbar = sum(0.5 * C * (z - 2 / ETA) ** 2 + 2 * C * (z - 2 / ETA) / ETA for z in ZSTAR2)
    if derivatives == "autograd":
        np.testing.assert_allclose(sorted(auto.sigma2[-1]), expect, rtol=1e-6)
        assert auto.mean_loss[-1] == pytest.approx(lbar, rel=1e-6)
    else:  # the toy's bound, per held direction
        np.testing.assert_allclose(sorted(auto.sigma2[-1]), expect, atol=2 * FD_SIGMA2)
        assert auto.mean_loss[-1] == pytest.approx(lbar, abs=20 * FD_SIGMA2)
    with pytest.raises(UserError, match="k must be"):
        central_flow(Toy2(), toy2_loss, BATCH, ETA, 10, k="many")  # type: ignore[arg-type]


def test_a_direction_past_the_edge_outside_the_held_ones_is_warned() -> None:
    """Toy2's second copy reaches the edge first (t ≈ 25), the first at t ≈ 95. With k = 1
    and a refresh every 300 steps the first copy is untracked until the refresh at t = 300,
    where z₁ = 30 − 11e^{−0.3} = 21.85 = 1.09·2/η > OVERSHOOT: one warning. With the
    default refresh (every 4 steps) the switch comes at an overshoot of ~0.4%: none."""
    with pytest.warns(RuntimeWarning, match=r"1\.09·2/η: a direction outside the 1 held"):
        central_flow(Toy2(), toy2_loss, BATCH, ETA, 400, refresh=600, tol=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        central_flow(Toy2(), toy2_loss, BATCH, ETA, 400, tol=1e-9)


def test_sdcp_solutions_are_complementary_and_reduce_to_the_lcp() -> None:
    """X ⪰ 0, Y = Q + B[X] ⪰ 0, ⟨X, Y⟩ = 0 on random problems (to 1e-9 of their scale);
    with a separable K (no coupling between directions) X is diagonal and equals the LCP
    solution, and k = 1 is the scalar LCP."""
    rng = np.random.default_rng(2)
    for k in (2, 3, 4):
        for _ in range(5):
            F = rng.standard_normal((k * k, 3 * k * k))
            K = F @ F.T
            Q = rng.standard_normal((k, k))
            Q = Q + Q.T
            X = solve_sdcp(Q, K)
            Y = Q + (K @ X.reshape(-1)).reshape(k, k)
            assert np.linalg.eigvalsh(X).min() >= -1e-9
            assert np.linalg.eigvalsh(0.5 * (Y + Y.T)).min() >= -1e-9 * np.abs(Q).max()
            assert abs(float(np.sum(X * Y))) <= 1e-9 * np.abs(Q).max()
    a = np.array([-1.0, 0.5, -0.2])
    Bd = np.array([2.0, 1.0, 0.5])
    K = np.zeros((9, 9))
    for i in range(3):
        K[4 * i, 4 * i] = Bd[i]  # only the diagonal entries X_ii couple, each to itself
    X = solve_sdcp(np.diag(a), K)
    np.testing.assert_allclose(np.diag(X), solve_lcp(a, np.diag(Bd)), atol=1e-10)
    assert np.abs(X - np.diag(np.diag(X))).max() <= 1e-10
    assert solve_sdcp(np.array([[-1.0]]), np.array([[4.0]]))[0, 0] == pytest.approx(0.25)
    for Q, K, match in (
        (np.zeros((2, 3)), np.eye(4), "square"),
        (np.eye(2), np.eye(3), "K must have shape"),
        (np.array([[np.nan]]), np.eye(1), "finite"),
    ):
        with pytest.raises(UserError, match=match):
            solve_sdcp(Q, K)


def test_the_sharpness_matrix_carries_the_diagonal_gradients() -> None:
    """M = UᵀHU and D[i, j] = ∇(u_iᵀHu_j): its diagonal is ``_sharpness_gradients``' S and
    ∇S, and an off-diagonal entry matches a central difference."""
    m, b, params, U, e, w0 = _probe(4)
    M, D = _sharpness_matrix(m, params, mse, b, U)
    S, G = _sharpness_gradients(m, params, mse, b, U)
    np.testing.assert_allclose(np.diag(M), S.numpy(), rtol=1e-12)
    np.testing.assert_allclose(D[[0, 1], [0, 1]].numpy(), G.numpy(), rtol=1e-10, atol=1e-14)
    fd = _central_difference(
        lambda: torch.tensor(_sharpness_matrix(m, params, mse, b, U)[0][0, 1]), params, w0, e
    )
    assert float(D[0, 1] @ e) == pytest.approx(float(fd), rel=1e-6)
