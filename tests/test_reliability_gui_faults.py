"""The GUI under faults: any job can be stopped at any moment or cut off by closing the window,
and a bug inside a worker shows a dialog, lands in the log file and the app goes on."""

from __future__ import annotations

import logging
import random

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QMessageBox
from reliability_qt import (
    _configure_comparison,
    _no_partial_files,
    _wait,
    attack_tab,
    defense_tab,
    state,
    training_tab,
)

pytestmark = pytest.mark.gui

__all__ = ["attack_tab", "defense_tab", "state", "training_tab"]  # fixtures, used by name


# ---------------------------------------------------------------------------- Stop at any time


def test_stop_training_at_random_moments(training_tab, qtbot):
    from advgui.core.store import ModelStore

    tab = training_tab
    rng = random.Random(0)
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
    for method in ("pgd", "targeted", "deepfool"):
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
