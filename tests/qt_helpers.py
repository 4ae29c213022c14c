"""Helpers shared by the GUI tests (their fixtures are in conftest.py)."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QMessageBox

MARK = "#b00020"  # the colour of a marked field


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


def _no_partial_files(folder) -> None:
    if folder.exists():
        hidden = [p.name for p in folder.rglob(".*")]
        assert not hidden, f"partial or temporary files left: {hidden}"


def check_only(listw, names) -> None:
    """Tick exactly the items of a checklist whose text is in ``names``."""
    for i in range(listw.count()):
        it = listw.item(i)
        on = it.text() in names
        it.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)


def _configure_comparison(tab, n=300):
    check_only(tab.setup.transform_list, {"none"})
    check_only(tab.setup.attack_list, {"pgd"})
    tab.setup.eps_edit.setText("0, 0.1, 0.2, 0.3")
    tab.setup.n_spin.setValue(n)


def _dialog(widget) -> QMessageBox:
    boxes = [b for b in widget.findChildren(QMessageBox) if b.isVisible()]
    assert len(boxes) == 1, boxes
    return boxes[0]


def _check_bug_report(widget, log_file, text: str) -> None:
    """The one error dialog shows the bug with its traceback and the log file holds it."""
    box = _dialog(widget)
    assert text in box.text()
    assert "Traceback" in box.detailedText() and text in box.detailedText()
    assert str(log_file) in box.informativeText()
    for h in logging.getLogger().handlers:
        h.flush()
    logged = log_file.read_text(encoding="utf-8")
    assert "job failed" in logged and text in logged and "Traceback" in logged
    box.close()
