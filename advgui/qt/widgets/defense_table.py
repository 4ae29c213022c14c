"""A sortable table of the comparison: one row per model, transformation, attack and epsilon."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from advgui.core.evaluation import MASKING_GAP, rows

COLUMNS = (
    ("model", "model"),
    ("transform", "transform"),
    ("attack", "attack"),
    ("eps", "epsilon"),
    ("clean_accuracy", "clean"),
    ("robust_accuracy", "robust"),
    ("naive", "naive"),
    ("adaptive", "adaptive"),
    ("certified", "certified"),
)


#: What the certified column says of a certification without a figure.
CERTIFY_STATES = {
    "running": "certification running",
    "stopped": "certification stopped before it finished: no certified figure",
    "failed": "certification failed: no certified figure",
}


class _Num(QTableWidgetItem):
    """Sorts by value, shows a percentage (or a plain number for epsilon)."""

    def __init__(self, value: float | None, *, percent: bool = True) -> None:
        text = "" if value is None else (f"{100 * value:.1f}%" if percent else f"{value:g}")
        super().__init__(text)
        self.value = -1.0 if value is None else float(value)
        self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        if isinstance(other, _Num):
            return self.value < other.value
        return super().__lt__(other)


class DefenseTable(QTableWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels([title for _, title in COLUMNS])
        self.setSortingEnabled(True)
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.horizontalHeader().setStretchLastSection(True)
        self.verticalHeader().setVisible(False)

    def set_result(self, result: dict[str, Any] | None) -> None:
        self.setSortingEnabled(False)
        self.setRowCount(0)
        data = rows(result) if result else []
        self.setRowCount(len(data))
        masked = QBrush(QColor(255, 235, 200))
        for r, row in enumerate(data):
            gap = row["adaptive"] is not None and row["naive"] - row["adaptive"] > MASKING_GAP
            for c, (key, _) in enumerate(COLUMNS):
                value = row.get(key)
                if key in ("model", "transform", "attack"):
                    item = QTableWidgetItem(str(value))
                elif key == "certified" and row.get("flags") in CERTIFY_STATES:
                    item = _Num(None)  # no figure: running, stopped or failed, said in words
                    item.setText(str(row["flags"]))
                    item.setToolTip(CERTIFY_STATES[row["flags"]])
                else:
                    item = _Num(value, percent=key != "eps")
                if key == "certified" and row.get("flags") == "certified-above-empirical":
                    item.setBackground(QBrush(QColor(255, 190, 190)))
                    item.setToolTip("certified above an attack's figure: a bug")
                if gap and key in ("naive", "adaptive"):
                    item.setBackground(masked)
                    item.setToolTip("naive and adaptive attacks disagree: gradient masking")
                self.setItem(r, c, item)
        self.setSortingEnabled(True)
        self.resizeColumnsToContents()
