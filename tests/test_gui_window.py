"""The window as a student meets it: the wheel scrolls panels instead of changing settings,
and closing while something runs asks first and says that it is stopping."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QComboBox, QScrollArea, QSpinBox, QVBoxLayout, QWidget

pytestmark = pytest.mark.gui


def _wheel(widget: QWidget, steps: int = -1) -> None:
    pos = QPointF(widget.rect().center())
    event = QWheelEvent(
        pos, widget.mapToGlobal(pos), QPoint(0, 0), QPoint(0, 120 * steps),
        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase,
        False,
    )  # fmt: skip
    QApplication.sendEvent(widget, event)


def test_wheel_scrolls_the_panel_and_changes_only_a_focused_field(qtbot):
    from advgui.qt import wheelguard

    wheelguard.install()
    panel = QWidget()
    layout = QVBoxLayout(panel)
    combo, spin = QComboBox(), QSpinBox()
    combo.addItems(["cnn-s2-wide", "cnn", "mlp"])
    spin.setRange(0, 100)
    spin.setValue(50)
    layout.addWidget(combo)
    layout.addWidget(spin)
    layout.addSpacing(3000)  # a panel taller than its window: it scrolls
    area = QScrollArea()
    area.setWidget(panel)
    area.resize(300, 200)
    qtbot.addWidget(area)
    area.show()
    qtbot.waitExposed(area)
    bar = area.verticalScrollBar()
    assert bar.maximum() > 0 and bar.value() == 0
    for field in (combo, spin):
        _wheel(field)
    assert combo.currentText() == "cnn-s2-wide" and spin.value() == 50  # nothing changed
    assert bar.value() > 0  # the panel scrolled instead
    spin.setFocus()
    qtbot.waitUntil(spin.hasFocus)
    _wheel(spin, steps=1)
    assert spin.value() == 51  # a focused field takes the wheel as usual


def test_closing_mid_training_asks_and_says_it_is_stopping(qtbot, mnist_path, monkeypatch):
    from advgui.qt.main_window import MainWindow
    from advgui.qt.workers import Job

    win = MainWindow(data_path=str(mnist_path), preload_tf=False, confirm_close=True)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.state.mnist is not None, timeout=20000)
    tab = win.training_tab
    tab.arch_combo.setCurrentIndex(tab.arch_combo.findData("mlp"))
    tab.epochs_spin.setValue(20)
    tab.n_train_spin.setValue(20000)
    job = tab.start()
    qtbot.waitUntil(job.is_running, timeout=10000)
    asked = []
    monkeypatch.setattr(win, "ask_to_quit", lambda running: asked.append(running) or False)
    win.close()
    assert asked == [["a training"]] and win.isVisible() and job.is_running()  # kept running
    messages = []
    monkeypatch.setattr(win, "ask_to_quit", lambda running: True)
    win.statusBar().messageChanged.connect(messages.append)
    win.close()
    assert not job.is_running() and not any(j.is_running() for j in Job.live)
    assert "Stopping a training..." in messages


def test_stored_models_are_listed_at_once_marked_loading(qtbot, mnist, trained_cnn):
    from advgui.core.models import Classifier
    from advgui.core.store import ModelStore
    from advgui.qt.state import AppState
    from advgui.qt.training_tab import TrainingTab

    store = ModelStore()
    for name in ("first", "second"):
        store.add(Classifier(trained_cnn.model, {**trained_cnn.meta, "name": name}))
    state = AppState()
    state.set_dataset(mnist)
    tab = TrainingTab(state)
    qtbot.addWidget(tab)
    job = tab.load_store()
    rows = tab.model_list.list
    texts = [rows.item(i).text() for i in range(rows.count())]
    assert len(texts) == 2 and all("[loading...]" in t for t in texts)  # before TF is ready
    assert {t.split()[0] for t in texts} == {"first", "second"}
    assert all(rows.item(i).flags() == Qt.ItemFlag.NoItemFlags for i in range(2))
    qtbot.waitUntil(lambda: not job.is_running(), timeout=60000)
    qtbot.waitUntil(lambda: len(state.models) == 2 and not state.pending, timeout=10000)
    texts = [rows.item(i).text() for i in range(rows.count())]
    assert len(texts) == 2 and not any("loading" in t for t in texts)
    tab.shutdown()  # the current model's prediction grid job, too


def test_the_device_is_in_the_status_bar_and_about(qtbot, mnist_path, monkeypatch):
    from advgui.core import tuning
    from advgui.qt import main_window
    from advgui.qt.main_window import MainWindow

    win = MainWindow(data_path=str(mnist_path), preload_tf=False)
    qtbot.addWidget(win)
    win._preload_tf()  # as the app does at start: TensorFlow loads, then the device shows
    qtbot.waitUntil(lambda: win.device_label.text().startswith("Device: "), timeout=120000)
    assert win.device_label.text() == f"Device: {tuning.device_name()}"
    shown = []
    monkeypatch.setattr(main_window.QMessageBox, "about", lambda *a: shown.append(a[2]))
    win.show_about()
    assert f"Device: {tuning.device_name()}" in shown[0]
    qtbot.waitUntil(lambda: win.state.mnist is not None, timeout=20000)
