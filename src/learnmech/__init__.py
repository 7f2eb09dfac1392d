"""learnmech: learning mechanics as software.

Predict training dynamics from coarse statistics, measure the same observables in real
PyTorch runs, and score the prediction.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
