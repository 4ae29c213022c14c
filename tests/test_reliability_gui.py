"""The GUI under odd input and faults: bad values are marked and explained, bad files are
refused with a message, any job can be stopped at any moment or cut off by closing the window,
and a bug inside a worker shows a dialog, lands in the log file and the app goes on."""

from __future__ import annotations

import logging
import random
import struct
import zlib

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QMessageBox

pytestmark = pytest.mark.gui

MARK = "#b00020"


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


@pytest.fixture
def defense_tab(qtbot, state, trained_cnn):
    from advgui.qt.defense_tab import DefenseTab

    state.add_model(trained_cnn)
    tab = DefenseTab(state)
    qtbot.addWidget(tab)
    tab.resize(1200, 800)
    tab.show()
    yield tab
    tab.shutdown()
    for job in (tab.job, tab.train_panel.job):
        if job is not None:
            job.wait(30000)


def _wait(qtbot, job, timeout=90000):
    """Until the job's thread ended and its ``finished`` handlers ran."""
    from advgui.qt.workers import Job

    assert job is not None
    qtbot.waitUntil(lambda: job.outcome is not None and job not in Job.live, timeout=timeout)


def _type(qtbot, spin, text: str) -> None:
    """Select the field's text, type over it and press Enter, as a user would."""
    spin.setFocus()
    spin.selectAll()
    QTest.keyClicks(spin, text)
    QTest.keyClick(spin, Qt.Key.Key_Return)


GARBAGE = ["nan", "inf", "-inf", "-5", "0", "1e99", "99999999999", "abc", "--1", ""]


# ---------------------------------------------------------------------------- bad values


def test_training_fields_refuse_typed_garbage(training_tab, qtbot):
    from advgui.core import training

    tab = training_tab
    for name in ("epochs", "batch_size", "lr", "n_train", "n_val", "seed"):
        spin = tab.fields[name]
        for text in GARBAGE:
            before = spin.value()
            _type(qtbot, spin, text)
            value = spin.value()
            lo, hi = training.RANGES[name]
            assert np.isfinite(value) and spin.minimum() <= value <= spin.maximum(), (name, text)
            assert lo <= value <= hi or (name == "lr" and value >= spin.minimum())
            if text in ("nan", "inf", "abc", ""):
                assert value == before, (name, text)  # nothing a number could be read from
    # Whatever was typed, the form still makes a valid configuration.
    tab.fields["n_val"].setValue(0)
    tab.fields["n_train"].setValue(1000)
    assert tab.config().n_train == 1000


def test_training_form_marks_and_explains_a_bad_combination(training_tab, qtbot, mnist):
    tab = training_tab
    tab.n_train_spin.setValue(60000)
    tab.n_val_spin.setValue(5000)
    assert tab.start() is None and tab.job is None
    assert "must not exceed" in tab.status_label.text()
    assert MARK in tab.n_train_spin.styleSheet() and MARK in tab.status_label.styleSheet()
    assert tab.n_val_spin.styleSheet() == ""
    # Correcting it clears the mark on the next Start (which is then cancelled at once).
    tab.n_train_spin.setValue(1000)
    tab.n_val_spin.setValue(0)
    tab.epochs_spin.setValue(1)
    job = tab.start()
    assert job is not None and tab.n_train_spin.styleSheet() == ""
    tab.stop()
    _wait(qtbot, job)


def test_training_without_dataset_explains(qtbot):
    from advgui.qt.state import AppState
    from advgui.qt.training_tab import TrainingTab

    tab = TrainingTab(AppState())
    qtbot.addWidget(tab)
    assert tab.start() is None and "MNIST is not loaded" in tab.status_label.text()


def test_attack_fields_refuse_typed_garbage(attack_tab, qtbot):
    tab = attack_tab
    tab.method_combo.setCurrentText("targeted")
    tab.lam_auto.setChecked(False)
    spins = {
        "lam": tab.lam_spin,
        "confidence": tab.conf_spin,
        "steps": tab.steps_spin,
        "step_size": tab.step_spin,
        "seed": tab.seed_spin,
        "batch": tab.batch_spin,
    }
    tab.method_combo.setCurrentText("fgsm")
    spins["eps"] = tab.eps_spin
    for name, spin in spins.items():
        for text in GARBAGE:
            before = spin.value()
            _type(qtbot, spin, text)
            assert np.isfinite(spin.value()), (name, text)
            assert spin.minimum() <= spin.value() <= spin.maximum(), (name, text)
            if text in ("nan", "inf", "abc", ""):
                assert spin.value() == before, (name, text)


def test_attack_needs_a_goal_marks_the_field(attack_tab, qtbot):
    tab = attack_tab
    tab.gallery.select_index(0)
    tab.method_combo.setCurrentText("targeted")
    tab.goal_combo.setCurrentIndex(0)  # "none": the deck's targeted attack needs a digit
    assert tab.run_attack() is None and tab.job is None
    assert "target digit" in tab.error_label.text()
    assert MARK in tab.goal_combo.styleSheet()
    tab.goal_combo.setCurrentIndex(tab.goal_combo.findData(3))
    tab.method_combo.setCurrentText("fgsm")
    tab.eps_spin.setValue(0.1)
    job = tab.run_attack()
    assert job is not None and MARK not in tab.goal_combo.styleSheet()
    assert tab.error_label.text() == ""
    _wait(qtbot, job)
    assert job.outcome == "returned"


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def _bad_images(folder):
    from PIL import Image

    good = folder / "good.png"
    Image.new("L", (40, 40), 0).save(good)
    files = {
        "garbage.png": b"\x00\x01garbage" * 20,
        "truncated.png": good.read_bytes()[:40],
        "text.jpg": b"hello, not a picture\n",
        "bomb.png": b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(b"\0" * 100))
        + _chunk(b"IEND", b""),
    }
    for name, blob in files.items():
        (folder / name).write_bytes(blob)
    return [folder / n for n in files] + [good, folder / "missing.png"]  # good.png is blank


def test_attack_tab_refuses_bad_image_files(attack_tab, tmp_path):
    tab = attack_tab
    tab.gallery.select_index(5)
    before = tab.source_x.copy()
    for path in _bad_images(tmp_path):
        assert tab.import_image(path) is False
        assert path.name in tab.error_label.text()
        np.testing.assert_array_equal(tab.source_x, before)  # the chosen image is kept
    assert tab.findChildren(QMessageBox) == []  # user errors: a message, not a crash dialog


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory):
    from advgui.core.tfimport import keras

    k = keras()
    d = tmp_path_factory.mktemp("bad_models")
    inp = k.Input((28, 28, 1))
    x = k.layers.Lambda(lambda t: t * 2.0)(k.layers.Flatten()(inp))
    k.Model(inp, k.layers.Dense(10)(x)).save(d / "lambda.keras")
    inp = k.Input((32, 32, 3))
    k.Model(inp, k.layers.Dense(10)(k.layers.Flatten()(inp))).save(d / "shape.keras")
    import zipfile

    with zipfile.ZipFile(d / "garbage.keras", "w") as zf:  # a zip, but not a model inside
        zf.writestr("config.json", "{not json")
        zf.writestr("model.weights.h5", b"\x00" * 64)
    (d / "text.keras").write_text("not a model")
    return {
        d / "lambda.keras": "Lambda",
        d / "shape.keras": "input shape",
        d / "garbage.keras": "cannot load",
        d / "text.keras": "not a Keras 3",
    }


def test_bad_model_files_in_attack_tab_and_model_list(attack_tab, training_tab, qtbot, bad_models):
    n_models = len(attack_tab.state.models)
    for path, why in bad_models.items():
        job = attack_tab.load_model_file(path)
        _wait(qtbot, job)
        assert job.outcome == "errored"
        assert why.lower() in attack_tab.error_label.text().lower(), attack_tab.error_label.text()
    assert len(attack_tab.state.models) == n_models
    model_list = training_tab.model_list
    for path, why in bad_models.items():
        job = model_list.load(path)
        _wait(qtbot, job)
        assert job.outcome == "errored"
        assert why.lower() in model_list.status.text().lower()
        assert MARK in model_list.status.styleSheet()
    assert attack_tab.findChildren(QMessageBox) == []
    assert model_list.findChildren(QMessageBox) == []


# ---------------------------------------------------------------------------- Stop at any time


def _no_partial_files(folder) -> None:
    if folder.exists():
        hidden = [p.name for p in folder.rglob(".*")]
        assert not hidden, f"partial or temporary files left: {hidden}"


@pytest.mark.parametrize("seed", [0, 1])
def test_stop_training_at_random_moments(training_tab, qtbot, seed):
    from advgui.core.store import ModelStore

    tab = training_tab
    rng = random.Random(seed)
    tab.arch_combo.setCurrentIndex(tab.arch_combo.findData("mlp"))
    tab.epochs_spin.setValue(2)
    tab.n_train_spin.setValue(4000)
    tab.n_val_spin.setValue(500)
    tab.batch_spin.setValue(32)
    kept = 0
    for _ in range(3):
        job = tab.start()
        assert job is not None and not tab.start_button.isEnabled()
        qtbot.wait(rng.randint(0, 2500))
        tab.stop()
        _wait(qtbot, job)
        assert job.outcome in ("returned", "cancelled")
        kept += job.outcome == "returned"
        assert tab.start_button.isEnabled() and tab.form_box.isEnabled()
        _no_partial_files(tab.store.root)
    warnings: list[str] = []
    entries = ModelStore().entries(warnings)
    assert not warnings and len(entries) == kept
    # Still usable: a run that is left alone finishes.
    tab.epochs_spin.setValue(1)
    tab.n_train_spin.setValue(1000)
    job = tab.start()
    _wait(qtbot, job)
    assert job.outcome == "returned" and "Done" in tab.phase_label.text()


def test_stop_attacks_at_random_moments(attack_tab, qtbot):
    tab = attack_tab
    rng = random.Random(3)
    tab.gallery.select_index(0)
    for method in ("pgd", "targeted", "deepfool", "pgd"):
        tab.method_combo.setCurrentText(method)
        if method == "targeted":
            tab.lam_auto.setChecked(False)
        tab.goal_combo.setCurrentIndex(tab.goal_combo.findData(2) if method == "targeted" else 0)
        tab.steps_spin.setValue(3000)
        tab.batch_spin.setValue(20)
        job = tab.run_attack()
        assert job is not None, tab.error_label.text()
        qtbot.wait(rng.randint(0, 1500))
        tab.stop()
        _wait(qtbot, job)
        assert job.outcome in ("returned", "cancelled"), tab.error_label.text()
        assert tab.run_button.isEnabled() and not tab.stop_button.isEnabled()
    tab.method_combo.setCurrentText("fgsm")
    tab.batch_spin.setValue(1)
    job = tab.run_attack()
    _wait(qtbot, job)
    assert job.outcome == "returned" and tab.result is not None and tab.result.method == "fgsm"


def _configure_comparison(tab, n=300):
    for lst, names in ((tab.setup.transform_list, {"none"}), (tab.setup.attack_list, {"pgd"})):
        for i in range(lst.count()):
            it = lst.item(i)
            on = it.text() in names
            it.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
    tab.setup.eps_edit.setText("0, 0.1, 0.2, 0.3")
    tab.setup.n_spin.setValue(n)


def test_stop_comparison_at_random_moments(defense_tab, qtbot):
    tab = defense_tab
    rng = random.Random(5)
    _configure_comparison(tab)
    for _ in range(2):
        tab.start()
        job = tab.job
        assert job is not None and job.is_running(), tab.status.text()
        qtbot.wait(rng.randint(0, 2000))
        tab.stop()
        _wait(qtbot, job)
        assert job.outcome in ("returned", "cancelled"), tab.status.text()
        assert tab.run_button.isEnabled() and not tab.stop_button.isEnabled()


# ---------------------------------------------------------------------------- close mid-job


@pytest.mark.parametrize("kind", ["data", "training", "attack", "comparison"])
def test_close_window_during_a_job(kind, qtbot, mnist_path, trained_cnn):
    from advgui.core.store import ModelStore
    from advgui.qt.main_window import MainWindow
    from advgui.qt.workers import Job

    win = MainWindow(data_path=str(mnist_path), preload_tf=False)
    qtbot.addWidget(win)
    win.show()
    if kind == "data":
        qtbot.waitUntil(lambda: win.data_job is not None and win.data_job.is_running())
        job = win.data_job
    else:
        qtbot.waitUntil(lambda: win.state.mnist is not None, timeout=60000)
        if kind == "training":
            tab = win.training_tab
            tab.arch_combo.setCurrentIndex(tab.arch_combo.findData("mlp"))
            tab.epochs_spin.setValue(3)
            job = tab.start()
            # Close once it is really training: the model so far must then be kept.
            with qtbot.waitSignal(
                job.progress, timeout=60000, check_params_cb=lambda u: u.message == "training"
            ):
                pass
        elif kind == "attack":
            win.state.add_model(trained_cnn)
            tab = win.attack_tab
            tab.gallery.select_index(1)
            tab.method_combo.setCurrentText("pgd")
            tab.steps_spin.setValue(5000)
            tab.batch_spin.setValue(50)
            job = tab.run_attack()
            qtbot.wait(300)
        else:
            win.state.add_model(trained_cnn)
            tab = win.defense_tab
            _configure_comparison(tab, n=1000)
            tab.start()
            job = tab.job
            qtbot.wait(300)
    assert job.is_running()
    win.close()  # joins every job before returning
    assert not job.is_running() and not [j for j in Job.live if j.is_running()]
    if kind == "training":
        entries = ModelStore().entries(warnings := [])
        assert not warnings and len(entries) == 1  # stopped, tested and stored
        _no_partial_files(ModelStore().root)


# ---------------------------------------------------------------------------- bugs in workers


@pytest.fixture
def log_file(isolated_home):
    from advgui.core import paths
    from advgui.qt.app import setup_logging

    setup_logging()
    path = paths.log_dir() / "advgui.log"
    yield path
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_advgui_log", False)]:
        root.removeHandler(h)
        h.close()


def _dialog(widget) -> QMessageBox:
    boxes = [b for b in widget.findChildren(QMessageBox) if b.isVisible()]
    assert len(boxes) == 1, boxes
    return boxes[0]


def _check_bug_report(widget, log_file, text: str) -> None:
    box = _dialog(widget)
    assert text in box.text()
    assert "Traceback" in box.detailedText() and text in box.detailedText()
    assert str(log_file) in box.informativeText()
    for h in logging.getLogger().handlers:
        h.flush()
    logged = log_file.read_text(encoding="utf-8")
    assert "job failed" in logged and text in logged and "Traceback" in logged
    box.close()


def test_bug_in_training_worker(training_tab, qtbot, monkeypatch, log_file):
    from advgui.core import training

    tab = training_tab
    real = training.train

    def broken(*args, **kwargs):
        raise RuntimeError("injected training failure")

    monkeypatch.setattr(training, "train", broken)
    job = tab.start()
    _wait(qtbot, job)
    assert job.outcome == "errored"
    _check_bug_report(tab, log_file, "injected training failure")
    assert "Training failed" in tab.phase_label.text() and tab.start_button.isEnabled()
    # The app goes on: the next run works.
    monkeypatch.setattr(training, "train", real)
    tab.arch_combo.setCurrentIndex(tab.arch_combo.findData("mlp"))
    tab.epochs_spin.setValue(1)
    tab.n_train_spin.setValue(1000)
    tab.n_val_spin.setValue(0)
    job = tab.start()
    _wait(qtbot, job)
    assert job.outcome == "returned"


def test_bug_in_attack_worker(attack_tab, qtbot, monkeypatch, log_file):
    from advgui.core.attacks.fgsm import FGSM

    tab = attack_tab
    tab.gallery.select_index(2)
    tab.method_combo.setCurrentText("fgsm")

    def broken(self, *args, **kwargs):
        raise ZeroDivisionError("injected attack failure")

    monkeypatch.setattr(FGSM, "run", broken)
    job = tab.run_attack()
    _wait(qtbot, job)
    assert job.outcome == "errored"
    _check_bug_report(tab, log_file, "injected attack failure")
    monkeypatch.undo()
    job = tab.run_attack()
    _wait(qtbot, job)
    assert job.outcome == "returned"


def test_bug_in_comparison_worker(defense_tab, qtbot, monkeypatch, log_file):
    from advgui.core import evaluation

    tab = defense_tab
    _configure_comparison(tab, n=50)

    def broken(*args, **kwargs):
        raise KeyError("injected comparison failure")

    monkeypatch.setattr(evaluation, "evaluate", broken)
    tab.start()
    _wait(qtbot, tab.job)
    assert tab.job.outcome == "errored"
    _check_bug_report(tab, log_file, "injected comparison failure")
    assert tab.run_button.isEnabled()
    monkeypatch.undo()
    tab.start()
    _wait(qtbot, tab.job)
    assert tab.job.outcome == "returned", tab.status.text()
