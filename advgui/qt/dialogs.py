"""Error reporting in the GUI: a dialog with the message, and the traceback under Details."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

from advgui.core import paths
from advgui.qt.workers import ErrorInfo


def show_error(parent: QWidget | None, title: str, info: ErrorInfo | str) -> QMessageBox:
    """Show a non-blocking error box; bugs say where the log is and carry the traceback."""
    if isinstance(info, str):
        info = ErrorInfo(info, "", True)
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning if info.user_error else QMessageBox.Icon.Critical)
    box.setWindowTitle(title)
    box.setText(info.message)
    if not info.user_error:
        box.setInformativeText(
            f"This is a bug in advgui; the app goes on. Details were logged to "
            f"{paths.log_dir() / 'advgui.log'}."
        )
        box.setDetailedText(info.details)
    box.setModal(False)
    box.show()
    return box
