"""Strict test settings: deterministic torch, float64 by default in numeric tests."""

from __future__ import annotations

import os

import pytest
import torch

torch.use_deterministic_algorithms(True)
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest worker per core, each on one thread (torch's and BLAS's):
    # otherwise the workers' OpenBLAS pools busy-wait against each other
    from learnmech.lab.executors import limit_threads

    limit_threads(1)

try:  # property tests: reproducible (fixed seeds), no per-example deadline on a loaded CI
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "learnmech",
        derandomize=True,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    settings.load_profile("learnmech")
except ImportError:  # hypothesis is a dev extra; only the property tests need it
    pass
os.environ.setdefault("MPLBACKEND", "Agg")

#: rough one-thread seconds of the longest tests (a suite run of 2026-12-01): study quick
#: scales by parameter, a few others by name, and the Ray group (one work unit). `make test`
#: hands tests to its workers in collection order, one at a time, so the longest go first
#: (longest-processing-time-first): a long test collected last would run alone at the end
#: while the other worker idles. Only the order changes; the figures need not be exact.
Q = "::test_v2_quick_scale_findings_and_controls"
LONGEST = {
    Q + "[proxy-plan]": 180,
    Q + "[lr-transfer]": 140,
    Q + "[edge-of-stability]": 125,
    Q + "[quanta]": 90,
    Q + "[learning-curves]": 70,
    Q + "[mean-field]": 62,
    "::test_kills_at_random_moments_lose_nothing_double_nothing_leave_nothing_running": 59,
    Q + "[wide-nets]": 56,
    Q + "[grokking]": 52,
    Q + "[universality]": 50,
    Q + "[scaling-laws]": 50,
    Q + "[critical-batch-size]": 45,
    Q + "[lazy-rich]": 35,
    Q + "[fourier-order]": 31,
    Q + "[saddle-to-saddle]": 29,
    "::test_a_huggingface_gpt2_family_is_planned": 25,
    Q + "[neural-collapse]": 20,
    "::test_scaling_laws_gpt_arm_small_run": 22,
}


def _cost(item: pytest.Item) -> float:
    name = item.nodeid
    if item.get_closest_marker("xdist_group"):
        return 95.0  # the Ray tests, one work unit on one worker
    return next((s for k, s in LONGEST.items() if name.endswith(k)), 0.0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest tests first (stable: the rest keep their order)."""
    items.sort(key=lambda it: -_cost(it))


# Tolerances by dtype (cf. jax's public_test_util): relative error allowed for values that
# are computed the same way in two implementations.
RTOL = {torch.float64: 1e-10, torch.float32: 1e-4}


@pytest.fixture
def f64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch.float64
    torch.set_default_dtype(old)


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "runs" / "test.duckdb"
