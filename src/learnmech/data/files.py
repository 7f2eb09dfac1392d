"""Your own data from local files, in the formats people keep it in — never downloaded.

* :func:`image_folder` — torchvision's ``ImageFolder`` layout (``root/<class>/<image>``;
  PNG, JPEG, BMP, GIF, WebP through Pillow), without torchvision.
* :func:`cifar` — the CIFAR-10/100 "python version" pickles (``data_batch_1`` …
  ``data_batch_5`` and ``test_batch``; CIFAR-100's ``train``/``test``), as distributed by
  Krizhevsky (2009). Unpickling can run code stored in the file: open only files you trust.
* :func:`mnist` — the IDX files of MNIST and Fashion-MNIST (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, … optionally ``.gz``), LeCun et al. (1998).
* :func:`text_sequences` — text files cut into token sequences with a tokenizer you supply
  (a HuggingFace tokenizer or any ``str -> list[int]``).

Every loader returns tensors ready for training (images as float in [0, 1], N×C×H×W;
labels as int64) and raises one :class:`~learnmech.errors.UserError` naming the file and
what is wrong with it (missing, empty, truncated, not the format).
"""

from __future__ import annotations

import gzip
import pickle
import struct
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learnmech.errors import UserError

__all__ = ["cifar", "image_folder", "mnist", "text_sequences"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def _dir(root: str | Path, what: str) -> Path:
    p = Path(root)
    if not p.exists():
        raise UserError(f"{what}: no such folder {p}")
    if not p.is_dir():
        raise UserError(f"{what}: {p} is not a folder")
    return p


def image_folder(
    root: str | Path, *, size: tuple[int, int] | None = None, mode: str = "RGB"
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images under ``root/<class>/`` → (images N×C×H×W in [0, 1], labels, class names).

    Classes are the sub-folder names in sorted order (as torchvision assigns them).
    ``size=(H, W)`` resizes every image (bilinear); without it all images must share one
    size. ``mode``: Pillow mode, ``"RGB"`` (3 channels) or ``"L"`` (grey, 1 channel).
    """
    from PIL import Image, UnidentifiedImageError

    base = _dir(root, "image_folder")
    classes = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise UserError(f"image_folder: {base} has no class sub-folders (root/<class>/<image>)")
    images, labels = [], []
    for k, c in enumerate(classes):
        files = sorted(
            f for f in (base / c).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()
        )
        for f in files:
            try:
                with Image.open(f) as im:
                    im = im.convert(mode)
                    if size is not None:
                        im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                    a = np.asarray(im, dtype=np.uint8)
            except (UnidentifiedImageError, OSError) as err:
                raise UserError(f"image_folder: cannot read image {f}: {err}") from None
            images.append(a if a.ndim == 3 else a[:, :, None])
            labels.append(k)
    if not images:
        raise UserError(f"image_folder: no images ({', '.join(IMAGE_SUFFIXES)}) under {base}")
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise UserError(
            f"image_folder: images differ in size ({sorted(shapes)[:3]}, …); pass size=(H, W)"
        )
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    return x, torch.tensor(labels, dtype=torch.int64), classes


def _unpickle(f: Path) -> dict[Any, Any]:
    if not f.is_file():
        raise UserError(f"cifar: missing file {f}")
    try:
        with f.open("rb") as fh:
            d = pickle.load(fh, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise UserError(f"cifar: {f} is not a CIFAR pickle ({err})") from None
    if not isinstance(d, dict):
        raise UserError(f"cifar: {f} holds a {type(d).__name__}, not a CIFAR batch")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}


def cifar(
    root: str | Path, *, train: bool = True, labels: str = "fine"
) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 or CIFAR-100 from the python-version folder ``root`` (the one holding
    ``data_batch_1`` … or ``train``/``test``) → (N×3×32×32 in [0, 1], labels).
    ``labels``: CIFAR-100's ``"fine"`` (100 classes) or ``"coarse"`` (20)."""
    base = _dir(root, "cifar")
    if (base / "data_batch_1").exists() or (base / "test_batch").exists():
        names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        key = "labels"
    elif (base / "train").exists() or (base / "test").exists():
        names = ["train" if train else "test"]
        if labels not in ("fine", "coarse"):
            raise UserError(f"cifar: labels must be 'fine' or 'coarse', got {labels!r}")
        key = f"{labels}_labels"
    else:
        raise UserError(
            f"cifar: {base} holds neither CIFAR-10 (data_batch_1 …, test_batch) nor "
            "CIFAR-100 (train, test) python-version files"
        )
    xs, ys = [], []
    for n in names:
        d = _unpickle(base / n)
        if "data" not in d or key not in d:
            raise UserError(f"cifar: {base / n} has no 'data' and '{key}' entries")
        data = np.asarray(d["data"], dtype=np.uint8)
        y = np.asarray(d[key], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != y.size:
            raise UserError(
                f"cifar: {base / n}: data of shape {data.shape} with {y.size} labels; "
                "expected N×3072 (3×32×32) and N labels"
            )
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(y)
    x = torch.from_numpy(np.concatenate(xs)).float() / 255
    return x, torch.from_numpy(np.concatenate(ys))


def _idx(f: Path) -> np.ndarray:
    """One IDX file (optionally gzipped): magic 0x0000 0x08 ndim, then big-endian dims."""
    if not f.is_file():
        gz = f.with_name(f.name + ".gz")
        if not gz.is_file():
            raise UserError(f"mnist: missing file {f} (or {gz.name})")
        f = gz
    raw = gzip.open(f, "rb").read() if f.suffix == ".gz" else f.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"mnist: {f} is not an unsigned-byte IDX file (bad magic number)")
    nd = raw[3]
    if len(raw) < 4 + 4 * nd:
        raise UserError(f"mnist: {f} is truncated (header)")
    dims = struct.unpack(f">{nd}I", raw[4 : 4 + 4 * nd])
    n = int(np.prod(dims))
    body = raw[4 + 4 * nd :]
    if len(body) != n:
        raise UserError(f"mnist: {f} holds {len(body)} bytes of data, its header says {n}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def mnist(root: str | Path, *, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST or Fashion-MNIST from the IDX files in ``root`` → (N×1×28×28 in [0, 1],
    labels)."""
    base = _dir(root, "mnist")
    split = "train" if train else "t10k"
    x = _idx(base / f"{split}-images-idx3-ubyte")
    y = _idx(base / f"{split}-labels-idx1-ubyte")
    if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise UserError(
            f"mnist: {split} images of shape {x.shape} and labels of shape {y.shape} do not "
            "pair up (expected N×H×W and N)"
        )
    return torch.from_numpy(x.copy()).float()[:, None] / 255, torch.from_numpy(y.astype(np.int64))


def text_sequences(
    paths: str | Path | Iterable[str | Path],
    tokenizer: Callable[[str], Sequence[int]] | Any,
    *,
    context: int,
    stride: int | None = None,
) -> torch.Tensor:
    """Text files → token sequences of ``context + 1`` tokens (inputs and next-token
    targets), cut from the concatenated token stream every ``stride`` tokens (default
    ``context + 1``: no overlap; a shorter tail is dropped).

    ``tokenizer``: a HuggingFace tokenizer (its ``encode``; no special tokens added) or any
    callable from a string to token ids. Files are read as UTF-8.
    """
    files = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    if not files:
        raise UserError("text_sequences: no files given")
    if isinstance(context, bool) or not isinstance(context, int) or context < 1:
        raise UserError(f"text_sequences: context must be a positive integer, got {context!r}")
    step = context + 1 if stride is None else stride
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise UserError(f"text_sequences: stride must be a positive integer, got {stride!r}")
    encode = _encoder(tokenizer)
    ids: list[int] = []
    for f in files:
        if not f.is_file():
            raise UserError(f"text_sequences: no such file {f}")
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise UserError(f"text_sequences: {f} is not UTF-8 text ({err.reason})") from None
        toks = list(encode(text))
        if any(not isinstance(t, int | np.integer) or t < 0 for t in toks):
            raise UserError("text_sequences: the tokenizer must return non-negative int ids")
        ids.extend(int(t) for t in toks)
    n = context + 1
    if len(ids) < n:
        raise UserError(
            f"text_sequences: {len(ids)} tokens in {len(files)} file(s), fewer than one "
            f"sequence of context + 1 = {n}"
        )
    stream = torch.tensor(ids, dtype=torch.int64)
    return stream.unfold(0, n, step).contiguous()


def _encoder(tokenizer: Any) -> Callable[[str], Sequence[int]]:
    enc = getattr(tokenizer, "encode", None)
    if callable(enc):

        def hf(text: str) -> Sequence[int]:
            try:
                return enc(text, add_special_tokens=False)  # type: ignore[no-any-return]
            except TypeError:  # a plain tokenizer's encode(text)
                return enc(text)  # type: ignore[no-any-return]

        return hf
    if callable(tokenizer):
        return tokenizer  # type: ignore[no-any-return]
    raise UserError(
        f"text_sequences: tokenizer must be a HuggingFace tokenizer or a callable, got "
        f"{type(tokenizer).__name__}"
    )
