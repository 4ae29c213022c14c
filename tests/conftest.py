"""Shared fixtures: the real MNIST (via $ADVGUI_DATA), an isolated user folder, thread checks."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def mnist_dir() -> Path:
    """The real MNIST folder: $ADVGUI_DATA (set by .ci/run), else ../shared/data/mnist."""
    env = os.environ.get("ADVGUI_DATA")
    return Path(env) if env else SHARED


@pytest.fixture(scope="session")
def mnist_path() -> Path:
    path = mnist_dir()
    if not (path / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"real MNIST not found at {path}; set ADVGUI_DATA")
    return path


@pytest.fixture(scope="session")
def mnist(mnist_path):
    from advgui.core.data import load_mnist

    return load_mnist(mnist_path)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Each test gets its own cache/model store/log folder."""
    monkeypatch.setenv("ADVGUI_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(autouse=True)
def no_dangling_threads(request):
    """Fail any test that leaves a QThread (advgui Job) or worker thread running.

    A QThread garbage-collected while running aborts the whole pytest process, so this also
    joins what it finds before failing.
    """
    before = {t.ident for t in threading.enumerate()}
    yield
    try:
        from advgui.qt.workers import Job
    except ImportError:  # Qt not importable: nothing to check
        return
    dangling = [job for job in list(Job.live) if job.is_running()]
    for job in dangling:
        job.cancel()
        job.wait(30000)
    Job.live.clear()
    from advgui.qt import gcguard

    gcguard.reset()  # joined above: collection goes back to automatic
    assert not dangling, f"test left running jobs: {[j.name for j in dangling]}"
    leftover = [
        t
        for t in threading.enumerate()
        if t.ident not in before and t.is_alive() and not t.daemon and t.name != "MainThread"
    ]
    assert not leftover, f"test left threads running: {[t.name for t in leftover]}"


@pytest.fixture(scope="session")
def default_cnn(mnist):
    """The CNN the app trains by default (2 epochs on 55,000 images, about 99.2%): for the
    claims the issues make of a fully trained network. About 10 s, so only where needed."""
    from advgui.core import training

    clf = training.train(training.TrainConfig.for_arch("cnn"), mnist).classifier
    clf.meta["name"] = "default-cnn"
    return clf


@pytest.fixture(scope="session")
def trained_cnn(mnist, tmp_path_factory):
    """A small CNN trained briefly on real MNIST (about 98% test accuracy), shared by tests.

    Tests must not modify it; copy with ``keras.models.clone_model`` to train further.
    """
    from advgui.core import training

    cfg = training.TrainConfig(arch="cnn", epochs=1, n_train=20000, n_val=0, batch_size=64)
    clf = training.train(cfg, mnist).classifier
    clf.meta["name"] = "test-cnn"
    return clf
