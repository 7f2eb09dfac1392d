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

#: rough one-thread seconds of the longest tests: study quick scales (by parameter) and
#: the Ray group (one work unit). `make test` hands tests to its workers in collection
#: order, one at a time, so the longest go first (longest-processing-time-first): a long
#: test collected last would run alone at the end while the other worker idles. Only the
#: order changes; the figures need not be exact.
LONGEST = {
    "[proxy-plan]": 244,
    "[lr-transfer]": 204,
    "[edge-of-stability]": 168,
    "[quanta]": 115,
    "[learning-curves]": 85,
    "[scaling-laws]": 76,
    "[universality]": 71,
    "[mean-field]": 69,
    "[critical-batch-size]": 61,
    "[grokking]": 60,
    "[wide-nets]": 56,
}


def _cost(item: pytest.Item) -> float:
    name = item.nodeid
    if item.get_closest_marker("xdist_group"):
        return 95.0  # the Ray tests, one work unit on one worker
    if "::test_v2_quick_scale_findings_and_controls[" not in name:
        return 0.0
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
