"""Deterministic datasets, and loaders for your own data in local files."""

from learnmech.data.algorithmic import (
    modular_arithmetic,
    multitask_sparse_parity,
    planted_singular_task,
)
from learnmech.data.files import cifar, image_folder, mnist, text_sequences
from learnmech.data.synthetic import RegressionTask, sphere_regression

__all__ = [
    "RegressionTask",
    "cifar",
    "image_folder",
    "mnist",
    "modular_arithmetic",
    "multitask_sparse_parity",
    "planted_singular_task",
    "sphere_regression",
    "text_sequences",
]
