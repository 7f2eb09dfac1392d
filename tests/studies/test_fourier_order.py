"""The fourier-order study's stacked ensemble and config checks."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from learnmech.studies.fourier_order import FourierOrder, FourierOrderConfig


def test_each_member_of_the_stack_trains_as_if_alone():
    st, cfg = FourierOrder(), FourierOrderConfig(steps=60, eval_every=10, width=8)
    alone = st.measure(cfg, {"init": 0.01}, [1], "cpu")[1]
    both = st.measure(cfg, {"init": 0.01}, [0, 1], "cpu")[1]
    for a, b in zip(alone, both, strict=True):
        assert a.observable == b.observable
        np.testing.assert_allclose(b.values, a.values, rtol=1e-10, atol=1e-14, equal_nan=True)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"p": 21}, "prime"),
        ({"magnitudes": [1.0, 0.5]}, "one value per frequency"),
        ({"frequencies": [5, 1, 12, 2]}, r"at most \(p − 1\)/2 = 11"),
        ({"magnitudes": [1.0, 1.0, 0.5, 0.2]}, "must not repeat"),
        ({"init_scales": [-0.1]}, "init_scales"),
    ],
)
def test_config_rejects_what_has_no_order_to_predict(kw, match):
    with pytest.raises(ValidationError, match=match):
        FourierOrderConfig(**kw)
