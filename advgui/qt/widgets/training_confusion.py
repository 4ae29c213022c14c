"""A 10x10 confusion matrix (rows: actual class, columns: predicted), painted with counts;
headed by digits for MNIST, by short class names for a dataset with named classes (full names
in the tooltips)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtGui import QColor, QHelpEvent, QPainter, QPaintEvent
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from advgui.core.data import MNIST, DatasetSpec


class ConfusionMatrixView(QWidget):
    """Correct counts shaded green on the diagonal, confusions shaded red by their share of
    the row, so the worst mix-ups stand out at a glance."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.matrix: np.ndarray | None = None
        self.margin = 34
        self.spec: DatasetSpec = MNIST
        self.setMinimumSize(300, 300)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMouseTracking(True)

    def set_classes(self, spec: DatasetSpec) -> None:
        """Head rows and columns as ``spec`` names its classes; named ones need a wider margin."""
        self.spec = spec
        self.margin = 34 if spec.digits else 52
        self.update()

    def set_matrix(self, matrix: np.ndarray | None) -> None:
        self.matrix = None if matrix is None else np.asarray(matrix, dtype=np.int64)
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(360, 360)

    def _geometry(self) -> tuple[int, int, int]:
        side = min(self.width(), self.height()) - self.margin - 4
        cell = max(8, side // 10)
        return self.margin, self.margin, cell

    def cell_at(self, pos: QPoint) -> tuple[int, int] | None:
        x0, y0, cell = self._geometry()
        c, r = (pos.x() - x0) // cell, (pos.y() - y0) // cell
        return (r, c) if 0 <= r < 10 and 0 <= c < 10 else None

    def event(self, ev) -> bool:  # tooltips: "actual 4, predicted 9: 12 (1.2% of 4s)"
        if ev.type() == ev.Type.ToolTip and self.matrix is not None:
            assert isinstance(ev, QHelpEvent)
            hit = self.cell_at(ev.pos())
            if hit is not None:
                r, c = hit
                row = max(1, int(self.matrix[r].sum()))
                n = int(self.matrix[r, c])
                actual, pred = self.spec.label(r), self.spec.label(c)
                share = f"{100 * n / row:.1f}% of {actual}" + ("s" if self.spec.digits else "")
                text = f"actual {actual}, predicted {pred}: {n} ({share})"
                QToolTip.showText(ev.globalPos(), text)
                return True
        return super().event(ev)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().base())
        x0, y0, cell = self._geometry()
        painter.setPen(self.palette().text().color())
        painter.drawText(QRect(x0, 0, 10 * cell, 16), Qt.AlignmentFlag.AlignCenter, "predicted")
        painter.save()
        painter.translate(10, y0 + 5 * cell)
        painter.rotate(-90)
        painter.drawText(QRect(-40, -8, 80, 16), Qt.AlignmentFlag.AlignCenter, "actual")
        painter.restore()
        head = self.margin - 18  # the row headers' width, right of the "actual" axis title
        for i in range(10):
            name = self.spec.short(i)
            painter.drawText(QRect(x0 + i * cell, 16, cell, 16), Qt.AlignmentFlag.AlignCenter, name)
            painter.drawText(
                QRect(16, y0 + i * cell, head, cell), Qt.AlignmentFlag.AlignCenter, name
            )
        if self.matrix is None:
            painter.drawText(
                QRect(x0, y0, 10 * cell, 10 * cell),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                "confusion matrix\n(after training)",
            )
            painter.end()
            return
        rows = np.maximum(self.matrix.sum(axis=1, keepdims=True), 1)
        share = self.matrix / rows
        font = painter.font()
        font.setPointSizeF(max(6.0, min(9.0, cell / 4.5)))
        painter.setFont(font)
        for r in range(10):
            for c in range(10):
                rect = QRect(x0 + c * cell, y0 + r * cell, cell, cell)
                s = float(share[r, c])
                if r == c:
                    color = QColor.fromRgbF(1 - 0.6 * s, 1 - 0.3 * s, 1 - 0.6 * s)
                else:
                    t = min(1.0, s * 20)  # 5% of a row already reads as deep red
                    color = QColor.fromRgbF(1.0, 1 - 0.7 * t, 1 - 0.7 * t)
                painter.fillRect(rect, color)
                painter.setPen(QColor("#cccccc"))
                painter.drawRect(rect)
                n = int(self.matrix[r, c])
                if n:
                    painter.setPen(QColor("#000000"))
                    painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, str(n))
        painter.end()
