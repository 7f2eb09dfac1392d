"""Predictions from statistics: kernels, linearized dynamics (NumPy/SciPy/torch math)."""
