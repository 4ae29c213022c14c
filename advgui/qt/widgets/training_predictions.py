"""The deck's prediction grid: test digits captioned "prediction/actual", correct ones and a
page of wrong ones (the interesting part), painted in one widget rather than hundreds of labels.

On a dataset with named classes the captions use its short names ("Pull/Coat"), the full names
in each image's tooltip.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QHelpEvent, QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from advgui.core.data import MNIST, DatasetSpec

OK_COLOR = QColor("#1b7f2a")
BAD_COLOR = QColor("#c62828")


def to_qimage(image: np.ndarray) -> QImage:
    """A (28, 28[, 1]) float image in [0, 1] as an 8-bit grayscale QImage owning its pixels."""
    pixels = np.ascontiguousarray(
        (np.clip(np.asarray(image, dtype=np.float32).reshape(28, 28), 0, 1) * 255).astype(np.uint8)
    )
    return QImage(pixels.data, 28, 28, 28, QImage.Format.Format_Grayscale8).copy()


class DigitGrid(QWidget):
    """Digits in a grid, each with a colored caption underneath.

    Digits are drawn up to ``scale`` times their size, smaller when the widget is narrower:
    the minimum width is that of 1x digits, so showing predictions never widens the window
    (at a fixed 2x the grid's 620 px pushed a 1200 px window to 1368 px when training ended).
    """

    def __init__(self, columns: int = 10, rows: int = 2, scale: int = 2, parent=None) -> None:
        super().__init__(parent)
        self.columns = columns
        self.rows = rows
        self.max_cell = 28 * scale
        self.caption_h = 16
        self.images: list[QImage] = []
        self.captions: list[str] = []
        self.tips: list[str] = []
        self.ok: list[bool] = []
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)

    def set_items(
        self,
        images: np.ndarray,
        captions: list[str],
        ok: list[bool],
        tips: list[str] | None = None,
    ) -> None:
        self.images = [to_qimage(img) for img in images]
        self.captions = list(captions)
        self.tips = list(tips) if tips is not None else list(captions)
        self.ok = list(ok)
        self.update()

    def item_at(self, pos: QPoint) -> int | None:
        w, h = self.cell + 6, self.cell + self.caption_h + 4
        c, r = pos.x() // w, pos.y() // h
        i = r * self.columns + c
        return i if 0 <= c < self.columns and 0 <= i < len(self.images) else None

    def event(self, ev) -> bool:  # tooltips: the full class names of a cramped caption
        if ev.type() == ev.Type.ToolTip:
            assert isinstance(ev, QHelpEvent)
            i = self.item_at(ev.pos())
            if i is not None and i < len(self.tips):
                QToolTip.showText(ev.globalPos(), self.tips[i])
                return True
        return super().event(ev)

    @property
    def cell(self) -> int:
        """The side of a drawn digit at the current width, from 28 px to ``max_cell``."""
        return max(28, min(self.max_cell, self.width() // self.columns - 6))

    def sizeHint(self) -> QSize:
        return QSize(
            self.columns * (self.max_cell + 6), self.rows * (self.max_cell + self.caption_h + 4)
        )

    def minimumSizeHint(self) -> QSize:
        return QSize(self.columns * (28 + 6), self.sizeHint().height())

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.9))
        painter.setFont(font)
        cell = self.cell
        w = cell + 6
        h = cell + self.caption_h + 4
        for i, img in enumerate(self.images[: self.columns * self.rows]):
            r, c = divmod(i, self.columns)
            x, y = c * w + 3, r * h + 2
            painter.drawImage(QRect(x, y, cell, cell), img)
            color = OK_COLOR if self.ok[i] else BAD_COLOR
            painter.setPen(color)
            painter.drawRect(QRect(x - 1, y - 1, cell + 1, cell + 1))
            painter.drawText(
                QRect(x - 3, y + cell, w, self.caption_h),
                Qt.AlignmentFlag.AlignCenter,
                self.captions[i],
            )
        painter.end()


class PredictionGrid(QWidget):
    """Correct test digits and pages of wrong ones, captioned "prediction/actual".

    Its parts stay visible when empty: the layout, and so the plots above it, keep their
    size when predictions arrive (a re-layout at the end of training stalled the GUI).
    """

    EMPTY = "No predictions yet: train or select a model."

    def __init__(self, columns: int = 10, rows: int = 2, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.per_page = columns * rows
        self.correct_grid = DigitGrid(columns, rows)
        self.wrong_grid = DigitGrid(columns, rows)
        self.correct_label = QLabel(self.EMPTY)
        self.wrong_label = QLabel("Wrong (prediction/actual)")
        self.prev_button = QPushButton("<")
        self.next_button = QPushButton(">")
        for b in (self.prev_button, self.next_button):
            b.setFixedWidth(32)
        self.prev_button.clicked.connect(lambda: self.show_page(self.page - 1))
        self.next_button.clicked.connect(lambda: self.show_page(self.page + 1))
        self.page = 0
        self.x: np.ndarray | None = None
        self.y: np.ndarray | None = None
        self.pred: np.ndarray | None = None
        self.wrong_idx = np.zeros(0, dtype=np.int64)
        self.spec: DatasetSpec = MNIST

        head = QHBoxLayout()
        head.addWidget(self.wrong_label, 1)
        head.addWidget(self.prev_button)
        head.addWidget(self.next_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.correct_label)
        lay.addWidget(self.correct_grid)
        lay.addLayout(head)
        lay.addWidget(self.wrong_grid)
        lay.addStretch(1)
        self.clear()

    def clear(self) -> None:
        self.x = self.y = self.pred = None
        self.wrong_idx = np.zeros(0, dtype=np.int64)
        for grid in (self.correct_grid, self.wrong_grid):
            grid.set_items(np.zeros((0, 28, 28)), [], [])
        self.correct_label.setText(self.EMPTY)
        self.wrong_label.setText("Wrong (prediction/actual)")
        self.prev_button.setEnabled(False)
        self.next_button.setEnabled(False)

    def set_predictions(self, x: np.ndarray, y: np.ndarray, pred: np.ndarray) -> None:
        """Show the first correct digits and the first page of wrong ones."""
        self.x, self.y, self.pred = x, np.asarray(y), np.asarray(pred)
        ok = self.pred == self.y
        correct_idx = np.flatnonzero(ok)[: self.per_page]
        self.wrong_idx = np.flatnonzero(~ok)
        self.correct_grid.set_items(
            x[correct_idx],
            [self._caption(i) for i in correct_idx],
            [True] * len(correct_idx),
            [self._tip(i) for i in correct_idx],
        )
        self.correct_label.setText(f"Correct: {int(ok.sum())} of {len(ok)} (prediction/actual)")
        self.show_page(0)

    def pages(self) -> int:
        return max(1, -(-len(self.wrong_idx) // self.per_page))

    def show_page(self, page: int) -> None:
        if self.x is None:
            return
        self.page = min(max(page, 0), self.pages() - 1)
        idx = self.wrong_idx[self.page * self.per_page : (self.page + 1) * self.per_page]
        self.wrong_grid.set_items(
            self.x[idx], [self._caption(i) for i in idx], [False] * len(idx),
            [self._tip(i) for i in idx],
        )  # fmt: skip
        self.wrong_label.setText(
            f"Wrong: {len(self.wrong_idx)} (prediction/actual), page {self.page + 1} of "
            f"{self.pages()}"
        )
        self.prev_button.setEnabled(self.page > 0)
        self.next_button.setEnabled(self.page < self.pages() - 1)

    def set_classes(self, spec: DatasetSpec) -> None:
        """Name the classes as ``spec`` does (digits for MNIST); what is shown is redrawn."""
        self.spec = spec
        if self.x is not None:
            self.set_predictions(self.x, self.y, self.pred)

    def _caption(self, i: int) -> str:
        assert self.pred is not None and self.y is not None
        return f"{self.spec.short(self.pred[i])}/{self.spec.short(self.y[i])}"

    def _tip(self, i: int) -> str:
        assert self.pred is not None and self.y is not None
        pred, actual = self.spec.label(int(self.pred[i])), self.spec.label(int(self.y[i]))
        return f"predicted {pred}, actual {actual}"
