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
