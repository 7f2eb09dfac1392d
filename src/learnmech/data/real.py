"""Real datasets that ship inside installed packages (nothing is downloaded).

* :func:`digits` — scikit-learn's 1,797 8×8 handwritten digits (UCI optdigits test set,
  Alpaydin & Kaynak 1998), bundled with scikit-learn.
* :func:`image_patches` — square patches of the two photographs bundled with
  scikit-learn (``china.jpg``, ``flower.jpg``), in grey scale.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from learnmech.errors import UserError

__all__ = ["digits", "digits_images_regression", "digits_subset", "image_patches"]


def _sklearn_datasets():  # type: ignore[no-untyped-def]
    try:
        from sklearn import datasets
    except ImportError as err:  # pragma: no cover - scikit-learn is a dependency
        raise UserError("this dataset needs scikit-learn (pip install scikit-learn)") from err
    return datasets


@functools.lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    d = _sklearn_datasets().load_digits()
    return d.data.astype(np.float64), d.target.astype(np.int64)


def digits(normalize: str = "unit") -> tuple[np.ndarray, np.ndarray]:
    """(x, labels): x is (1797, 64) float64; ``normalize="unit"`` scales each image to unit
    norm (inputs on the sphere, as the kernel theory assumes), ``"standard"`` standardises
    each pixel over the dataset (constant pixels stay 0), ``"none"`` keeps raw 0–16."""
    x, y = _digits_raw()
    x = x.copy()
    if normalize == "unit":
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    elif normalize == "standard":
        sd = x.std(0)
        x = (x - x.mean(0)) / np.where(sd > 0, sd, 1.0)
    elif normalize != "none":
        raise UserError(f"normalize must be 'unit', 'standard' or 'none', got {normalize!r}")
    return x, y.copy()


def digits_subset(n: int, seed: int = 0, normalize: str = "standard") -> tuple[Any, Any]:
    """``n`` digits images drawn without replacement by a seeded permutation, as torch
    tensors: (float32 inputs (n, 64), int64 labels (n,)). The studies' shared training set."""
    import torch

    x, lab = digits(normalize)
    idx = np.random.default_rng(seed).permutation(len(x))[:n]
    return torch.from_numpy(x[idx]).float(), torch.from_numpy(lab[idx])


def digits_images_regression(
    n_train: int, n_test: int, *, seed: int = 0, teacher_width: int = 8
) -> Any:
    """A regression task on digits as (n, 1, 8, 8) images, for convolutional networks.

    Train inputs are ``n_train`` digits drawn by a seeded permutation; test inputs lie on
    the great circle through two further digits (Gram–Schmidt), parameterised by
    ``test_angle``, so predictions can be drawn against one angle. Every image has mean
    square pixel 1 (‖x‖² = 64, the kernel conventions' normalisation). Targets come from a
    random convolutional teacher (a 3×3 tanh convolution with ``teacher_width`` channels,
    global average pooling, a linear readout), scaled to unit variance over the train set.
    Returns a :class:`learnmech.data.synthetic.RegressionTask`.
    """
    import math

    import torch

    from learnmech.data.synthetic import RegressionTask

    for name, v in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    x, _ = digits("unit")
    if n_train + 2 > len(x):
        raise ValueError(f"n_train must be at most {len(x) - 2}, got {n_train}")
    idx = np.random.default_rng(seed).permutation(len(x))
    xtr = x[idx[:n_train]] * 8.0
    a, b = x[idx[n_train]], x[idx[n_train + 1]]
    b = b - (a @ b) * a
    b /= np.linalg.norm(b)
    angle = np.linspace(0, 2 * math.pi, n_test + 1)[:-1]
    xte = (np.cos(angle)[:, None] * a + np.sin(angle)[:, None] * b) * 8.0
    g = torch.Generator().manual_seed(int(seed) + 7)
    w1 = torch.randn(teacher_width, 1, 3, 3, generator=g, dtype=torch.float64) / 3.0
    w2 = torch.randn(teacher_width, generator=g, dtype=torch.float64) / math.sqrt(teacher_width)

    def teacher(inp: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(2.0 * torch.nn.functional.conv2d(inp, w1, padding=1))
        return h.mean(dim=(2, 3)) @ w2

    t_tr = torch.from_numpy(xtr).reshape(-1, 1, 8, 8)
    t_te = torch.from_numpy(xte).reshape(-1, 1, 8, 8)
    y, yt = teacher(t_tr), teacher(t_te)
    scale = y.std()
    return RegressionTask(
        t_tr, (y / scale)[:, None], t_te, (yt / scale)[:, None], torch.from_numpy(angle)
    )


def image_patches(size: int = 8, count: int = 5000, seed: int = 0) -> np.ndarray:
    """(count, size²) grey-scale patches drawn uniformly from scikit-learn's two bundled
    photographs (pixel values in [0, 1])."""
    if isinstance(size, bool) or not isinstance(size, int) or not 2 <= size <= 64:
        raise UserError(f"size must be an integer in [2, 64], got {size!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise UserError(f"count must be a positive integer, got {count!r}")
    imgs = _sklearn_datasets().load_sample_images().images
    grey = [im.astype(np.float64).mean(2) / 255.0 for im in imgs]
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(grey), count)
    out = np.empty((count, size * size))
    for i, g in enumerate(which):
        im = grey[g]
        r = rng.integers(0, im.shape[0] - size + 1)
        c = rng.integers(0, im.shape[1] - size + 1)
        out[i] = im[r : r + size, c : c + size].reshape(-1)
    return out
