"""Deterministic datasets."""

from learnmech.data.synthetic import RegressionTask, sphere_regression

__all__ = ["RegressionTask", "sphere_regression"]
