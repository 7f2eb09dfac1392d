"""The universality studies: config validation, targeted small runs and (slow) full scale."""

from __future__ import annotations

import pytest

from learnmech.errors import ConfigError
from learnmech.studies import get_study


@pytest.mark.parametrize(
    ("study", "overrides", "match"),
    [
        ("universality", {"widths": [32, 64]}, "widths"),
        ("universality", {"init_widths": [2, 64, 128]}, "init_widths"),
        ("universality", {"lr": -1.0}, "lr"),
        ("neural-collapse", {"losses": ["hinge"]}, "losses"),
        ("neural-collapse", {"momentum": 1.0}, "momentum"),
        ("feature-ansatz", {"init_scales": [0.0]}, "init_scales"),
        ("feature-ansatz", {"rank": 3}, "rank"),
        ("data-spectra", {"datasets": ["imagenet"]}, "datasets"),
        ("data-spectra", {"fit_range": [5, 6]}, "fit_range"),
        ("data-spectra", {"curve_ns": [16, 600]}, "curve_ns"),
    ],
)
def test_bad_config_names_the_field(study, overrides, match):
    with pytest.raises(ConfigError, match=match):
        get_study(study).config("quick", overrides)


@pytest.mark.parametrize(
    "study", ["universality", "neural-collapse", "feature-ansatz", "data-spectra"]
)
@pytest.mark.parametrize("scale", ["quick", "full"])
def test_every_scale_validates(study, scale):
    get_study(study).config(scale)
