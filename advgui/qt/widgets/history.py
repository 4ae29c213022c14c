"""A "History" row: the stored results of one kind (newest first) and an Open button.

Listing reads only each entry's small ``result.json``; a damaged entry is left out and the
``warned`` signal says which (the tab shows it, the main window puts it in the status bar).
The owner connects the signals, then calls :meth:`refresh` (so no warning goes unheard);
``warning`` keeps the last one for whoever connects later.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QWidget

from advgui.core.results import ResultEntry, ResultStore


class HistoryBox(QWidget):
    opened = Signal(object)  # ResultEntry the user asked to reopen
    warned = Signal(str)

    def __init__(
        self, kind: str, store: ResultStore | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.kind = kind
        self.store = store or ResultStore()
        self.entries: list[ResultEntry] = []
        self.warning = ""
        self.combo = QComboBox()
        self.combo.setMinimumContentsLength(16)
        self.combo.setToolTip("results kept from this and earlier sessions")
        self.open_button = QPushButton("Open")
        self.open_button.clicked.connect(self.open_current)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(QLabel("History"))
        lay.addWidget(self.combo, 1)
        lay.addWidget(self.open_button)
        self.combo.addItem("(not read yet)")
        self.combo.setEnabled(False)
        self.open_button.setEnabled(False)

    def refresh(self) -> list[str]:
        """Re-read the store; returns (and signals) warnings about damaged entries."""
        warnings: list[str] = []
        self.entries = list(reversed(self.store.entries(self.kind, warnings)))
        self.combo.clear()
        for e in self.entries:
            when = e.created.replace("T", " ")[:16]
            self.combo.addItem(f"{when}  {e.name}")
        if not self.entries:
            self.combo.addItem("(nothing stored yet)")
        self.combo.setEnabled(bool(self.entries))
        self.open_button.setEnabled(bool(self.entries))
        self.warning = ""
        if warnings:
            self.warning = f"{len(warnings)} damaged stored result(s) skipped: {warnings[0]}" + (
                " ..." if len(warnings) > 1 else ""
            )
            self.warned.emit(self.warning)
        return warnings

    def add(self, entry: ResultEntry) -> None:
        """A result just stored: put it on top without re-reading the store."""
        if not self.entries:
            self.combo.clear()
        self.entries.insert(0, entry)
        self.combo.insertItem(0, f"{entry.created.replace('T', ' ')[:16]}  {entry.name}")
        self.combo.setCurrentIndex(0)
        self.combo.setEnabled(True)
        self.open_button.setEnabled(True)

    def open_current(self, *_: Any) -> None:
        i = self.combo.currentIndex()
        if 0 <= i < len(self.entries):
            self.opened.emit(self.entries[i])
