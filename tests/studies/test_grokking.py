"""The grokking study's Fourier read-out and its stacked ensemble."""

from __future__ import annotations

import numpy as np
import pytest

from learnmech.studies.grokking import Grokking, GrokkingConfig, _fourier


def _gromov(p: int, width: int, phase_out: int = 1, seed: int = 0):
    """Gromov's (2023) analytic network: neuron k reads cos(2πσa/p + φᵃ) and
    cos(2πσb/p + φᵇ) and writes cos(2πσq/p + φᵒ), φᵒ = phase_out·(φᵃ + φᵇ)."""
    rng = np.random.default_rng(seed)
    sig = rng.integers(1, p // 2 + 1, width)
    pa, pb = rng.uniform(0, 2 * np.pi, (2, width))
    n = np.arange(p)[:, None]
    a = np.cos(2 * np.pi * sig * n / p + pa)
    b = np.cos(2 * np.pi * sig * n / p + pb)
    out = np.cos(2 * np.pi * sig * n / p + phase_out * (pa + pb)).T
    return np.concatenate([a, b]), out


def _accuracy(w1: np.ndarray, w2: np.ndarray, p: int) -> float:
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    h = (w1[a.ravel()] + w1[p + b.ravel()]) ** 2
    return float(np.mean((h @ w2).argmax(1) == (a.ravel() + b.ravel()) % p))


def test_the_analytic_solution_reads_as_one_frequency_with_matching_phases():
    """On Gromov's construction every neuron has all its power at one frequency, the same
    on both inputs, and cos(φᵒ − φᵃ − φᵇ) = 1; the network it defines adds mod p exactly.
    With the output phase of the wrong sign it does not add, and the phase reads ≈ 0."""
    p, width = 23, 512
    w1, w2 = _gromov(p, width)
    f = _fourier(w1, w2, p)
    np.testing.assert_allclose(f["concentration"], 1.0, atol=1e-12)
    np.testing.assert_allclose(f["same_frequency"], 1.0)
    np.testing.assert_allclose(f["phase_cos"], 1.0, atol=1e-12)
    assert _accuracy(w1, w2, p) == 1.0
    w1, w2 = _gromov(p, width, phase_out=-1)
    assert abs(np.mean(_fourier(w1, w2, p)["phase_cos"])) < 0.15  # 4σ for 512 random phases
    assert _accuracy(w1, w2, p) < 0.2


def test_random_weights_spread_their_power():
    rng = np.random.default_rng(0)
    p = 23
    f = _fourier(rng.standard_normal((2 * p, 256)), rng.standard_normal((256, p)), p)
    assert np.median(f["concentration"]) < 0.5  # the claim's threshold


def test_each_member_of_the_stack_trains_as_if_alone():
    st, cfg = Grokking(), GrokkingConfig(steps=60, eval_every=10, width=16)
    alone = st.measure(cfg, {"wd": 1.0, "init": 1.0}, [1], "cpu")[1]
    both = st.measure(cfg, {"wd": 1.0, "init": 1.0}, [0, 1], "cpu")[1]
    for a, b in zip(alone, both, strict=True):
        np.testing.assert_allclose(b.values, a.values, rtol=1e-10, atol=1e-12)


def test_the_config_refuses_a_composite_modulus():
    with pytest.raises(ValueError, match="prime"):
        GrokkingConfig(p=24)
