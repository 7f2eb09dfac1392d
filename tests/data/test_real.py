"""Bundled real datasets: shapes, normalisations, determinism, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from learnmech.data.real import digits, image_patches
from learnmech.errors import UserError


def test_digits_normalisations():
    x, y = digits("unit")
    assert x.shape == (1797, 64) and y.shape == (1797,)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-12)
    xs, _ = digits("standard")
    keep = xs.std(0) > 0
    np.testing.assert_allclose(xs.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(xs.std(0)[keep], 1, rtol=1e-12)
    raw, _ = digits("none")
    assert raw.max() == 16.0
    x[0, 0] = 99.0  # a copy: the cache is not modified
    assert digits("unit")[0][0, 0] != 99.0
    with pytest.raises(UserError, match="normalize"):
        digits("zscore")


def test_image_patches_are_deterministic_and_in_range():
    a = image_patches(8, 300, seed=3)
    b = image_patches(8, 300, seed=3)
    assert a.shape == (300, 64)
    np.testing.assert_array_equal(a, b)
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert not np.array_equal(a, image_patches(8, 300, seed=4))
    with pytest.raises(UserError, match="size"):
        image_patches(1)
    with pytest.raises(UserError, match="count"):
        image_patches(8, 0)
