"""Empirical laws: scaling-law families, fits with honest uncertainty, extrapolation scores."""

from learnmech.laws.families import LAWS, Law, get_law
from learnmech.laws.fit import ScalingData, ScalingFit, extrapolation_score, fit_law

__all__ = [
    "LAWS",
    "Law",
    "ScalingData",
    "ScalingFit",
    "extrapolation_score",
    "fit_law",
    "get_law",
]
