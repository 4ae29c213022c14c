"""Defense tab (filled by its own issue; until then it says so plainly)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from advgui.qt.state import AppState


class DefenseTab(QWidget):
    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        label = QLabel("Defense: not yet implemented in this version.")
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.addWidget(label)

    def shutdown(self) -> None:
        """Cancel this tab's jobs (the window joins all threads afterwards)."""
