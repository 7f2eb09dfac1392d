"""Empirical laws: scaling-law families, fits with honest uncertainty, extrapolation scores."""

from learnmech.laws.batch import BatchTradeoff, fit_batch_tradeoff
from learnmech.laws.families import LAWS, Law, get_law
from learnmech.laws.fit import ScalingData, ScalingFit, extrapolation_score, fit_law

__all__ = [
    "LAWS",
    "BatchTradeoff",
    "Law",
    "ScalingData",
    "ScalingFit",
    "extrapolation_score",
    "fit_batch_tradeoff",
    "fit_law",
    "get_law",
]
