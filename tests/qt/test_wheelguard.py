"""The window as a student meets it: the wheel scrolls panels instead of changing settings,
and closing while something runs asks first and says that it is stopping."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QComboBox, QScrollArea, QSpinBox, QVBoxLayout, QWidget

pytest.importorskip("pytestqt")


def _wheel(widget: QWidget, steps: int = -1) -> None:
    pos = QPointF(widget.rect().center())
    event = QWheelEvent(
        pos, widget.mapToGlobal(pos), QPoint(0, 0), QPoint(0, 120 * steps),
        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase,
        False,
    )  # fmt: skip
    QApplication.sendEvent(widget, event)


@pytest.mark.gui
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
