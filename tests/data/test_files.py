"""Local-file loaders: tiny files written in each format, read back exactly; bad files
give one message naming the file."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from learnmech.data.files import cifar, image_folder, mnist, text_sequences
from learnmech.errors import UserError


def _png(path, arr):  # type: ignore[no-untyped-def]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_image_folder_reads_classes_in_sorted_order(tmp_path):
    rng = np.random.default_rng(0)
    imgs = {c: [rng.integers(0, 256, (4, 5, 3), dtype=np.uint8) for _ in range(2)] for c in "ba"}
    for c, arrs in imgs.items():
        for i, a in enumerate(arrs):
            _png(tmp_path / c / f"{i}.png", a)
    (tmp_path / "a" / "notes.txt").write_text("not an image")  # ignored
    x, y, classes = image_folder(tmp_path)
    assert classes == ["a", "b"] and y.tolist() == [0, 0, 1, 1]
    assert x.shape == (4, 3, 4, 5) and x.dtype == torch.float32
    want = torch.from_numpy(imgs["a"][1]).permute(2, 0, 1).float() / 255
    assert torch.equal(x[1], want)  # PNG is lossless
    g, _, _ = image_folder(tmp_path, size=(2, 2), mode="L")
    assert g.shape == (4, 1, 2, 2)


def test_image_folder_bad_input(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        image_folder(tmp_path / "nope")
    with pytest.raises(UserError, match="no class sub-folders"):
        image_folder(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(UserError, match=r"cannot read image .*x\.png"):
        image_folder(tmp_path)
    (tmp_path / "a" / "x.png").unlink()
    _png(tmp_path / "a" / "1.png", np.zeros((4, 4, 3), np.uint8))
    _png(tmp_path / "a" / "2.png", np.zeros((5, 4, 3), np.uint8))
    with pytest.raises(UserError, match=r"differ in size.*size=\(H, W\)"):
        image_folder(tmp_path)


def _cifar_batch(path, n, seed, key=b"labels"):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), key: list(range(n))}
    with open(path, "wb") as f:
        pickle.dump(d, f)
    return d


def test_cifar10_and_cifar100_python_pickles(tmp_path):
    c10 = tmp_path / "c10"
    c10.mkdir()
    batches = [_cifar_batch(c10 / f"data_batch_{i}", 2, i) for i in range(1, 6)]
    _cifar_batch(c10 / "test_batch", 3, 9)
    x, y = cifar(c10)
    assert x.shape == (10, 3, 32, 32) and y.tolist() == [0, 1] * 5
    first = torch.from_numpy(batches[0][b"data"][0].reshape(3, 32, 32)).float() / 255
    assert torch.equal(x[0], first)  # channel-major rows, as the format stores them
    assert cifar(c10, train=False)[0].shape[0] == 3
    c100 = tmp_path / "c100"
    c100.mkdir()
    rng = np.random.default_rng(1)
    with open(c100 / "train", "wb") as f:
        pickle.dump(
            {
                b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                b"fine_labels": [5, 6, 7, 8],
                b"coarse_labels": [1, 1, 2, 2],
            },
            f,
        )
    assert cifar(c100, labels="coarse")[1].tolist() == [1, 1, 2, 2]
    assert cifar(c100)[1].tolist() == [5, 6, 7, 8]


def test_cifar_bad_input(tmp_path):
    with pytest.raises(UserError, match="neither CIFAR-10"):
        cifar(tmp_path)
    (tmp_path / "data_batch_1").write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"data_batch_1 is not a CIFAR pickle"):
        cifar(tmp_path)
    _cifar_batch(tmp_path / "data_batch_1", 2, 0)
    with pytest.raises(UserError, match=r"missing file .*data_batch_2"):
        cifar(tmp_path)


def _idx(path, arr, gz=False):  # type: ignore[no-untyped-def]
    raw = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


def test_mnist_idx_files_plain_and_gzipped(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    _idx(tmp_path / "train-images-idx3-ubyte", imgs)
    _idx(tmp_path / "train-labels-idx1-ubyte", np.array([7, 0, 3], np.uint8), gz=True)
    x, y = mnist(tmp_path)
    assert x.shape == (3, 1, 28, 28) and y.tolist() == [7, 0, 3]
    assert torch.equal(x[2, 0], torch.from_numpy(imgs[2]).float() / 255)
    with pytest.raises(UserError, match=r"missing file .*t10k-images"):
        mnist(tmp_path, train=False)


def test_mnist_bad_input(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03rest")
    _idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2, np.uint8))
    with pytest.raises(UserError, match="bad magic number"):
        mnist(tmp_path)
    raw = bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 28, 28) + bytes(100)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw)
    with pytest.raises(UserError, match="holds 100 bytes of data, its header says 1568"):
        mnist(tmp_path)
    _idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(UserError, match="do not pair up"):
        mnist(tmp_path)


def test_text_sequences_with_a_callable_and_a_hf_tokenizer(tmp_path):
    (tmp_path / "a.txt").write_text("abcdefg", encoding="utf-8")
    (tmp_path / "b.txt").write_text("hij", encoding="utf-8")
    seqs = text_sequences(
        [tmp_path / "a.txt", tmp_path / "b.txt"], lambda s: [ord(c) for c in s], context=2
    )
    assert seqs.tolist() == [[97, 98, 99], [100, 101, 102], [103, 104, 105]]  # tail 'j' dropped
    over = text_sequences(tmp_path / "a.txt", lambda s: [ord(c) for c in s], context=2, stride=1)
    assert over.shape == (5, 3) and over[1].tolist() == [98, 99, 100]
    tf = pytest.importorskip("transformers")
    vocab = {"[UNK]": 0, "hello": 1, "world": 2}
    tok = tf.PreTrainedTokenizerFast(
        tokenizer_object=_word_level(vocab), unk_token="[UNK]", bos_token="[UNK]"
    )
    (tmp_path / "c.txt").write_text("hello world hello world hello", encoding="utf-8")
    assert text_sequences(tmp_path / "c.txt", tok, context=1).tolist() == [[1, 2], [1, 2]]


def _word_level(vocab):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, models, pre_tokenizers

    t = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    return t


def test_text_sequences_bad_input(tmp_path):
    enc = lambda s: [ord(c) for c in s]  # noqa: E731
    with pytest.raises(UserError, match="no such file"):
        text_sequences(tmp_path / "x.txt", enc, context=4)
    (tmp_path / "x.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(UserError, match="not UTF-8"):
        text_sequences(tmp_path / "x.txt", enc, context=4)
    (tmp_path / "y.txt").write_text("ab", encoding="utf-8")
    with pytest.raises(UserError, match="fewer than one sequence"):
        text_sequences(tmp_path / "y.txt", enc, context=4)
    with pytest.raises(UserError, match="context must be"):
        text_sequences(tmp_path / "y.txt", enc, context=0)
    with pytest.raises(UserError, match="non-negative int ids"):
        text_sequences(tmp_path / "y.txt", lambda s: [-1, 2, 3], context=1)
    with pytest.raises(UserError, match="tokenizer must be"):
        text_sequences(tmp_path / "y.txt", 42, context=1)
