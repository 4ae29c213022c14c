"""A canvas to draw a digit with the mouse: white ink on black, like MNIST.

The drawing is kept at 280x280 with a round brush, then reduced to 28x28 with the same
MNIST-style centring as an imported picture (:func:`advgui.core.images.prepare_digit`).
"""

from __future__ import annotations

import itertools

import numpy as np
from PySide6.QtCore import QPoint, QPointF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from advgui.core.errors import ImageFileError
from advgui.core.images import prepare_digit

SIDE = 280
BRUSH = 22


class DrawingCanvas(QWidget):
    """Draw with the left button; ``drawn`` fires when a stroke ends."""

    drawn = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFixedSize(SIDE, SIDE)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setToolTip("Draw a digit with the mouse (white on black, like MNIST)")
        self._image = QImage(SIDE, SIDE, QImage.Format.Format_Grayscale8)
        self._last: QPointF | None = None
        self.clear()

    def clear(self) -> None:
        self._image.fill(QColor(0, 0, 0))
        self.update()

    def is_blank(self) -> bool:
        return not self.pixels().any()

    def pixels(self) -> np.ndarray:
        """The drawing as (280, 280) float32 in [0, 1]."""
        ptr = self._image.constBits()
        arr = np.frombuffer(ptr, np.uint8).reshape(SIDE, self._image.bytesPerLine())[:, :SIDE]
        return arr.astype(np.float32) / 255.0

    def digit(self) -> np.ndarray:
        """The drawing as an MNIST-style (28, 28, 1) digit; ImageFileError if blank."""
        if self.is_blank():
            raise ImageFileError("the canvas is empty: draw a digit first")
        return prepare_digit(self.pixels())

    def set_digit(self, image: np.ndarray) -> None:
        """Show a 28x28 digit (an imported one) enlarged, so it can be drawn over."""
        arr = np.round(np.clip(np.asarray(image).reshape(28, 28), 0, 1) * 255).astype(np.uint8)
        big = np.ascontiguousarray(np.kron(arr, np.ones((10, 10), np.uint8)))
        self._image = QImage(big.data, SIDE, SIDE, SIDE, QImage.Format.Format_Grayscale8).copy()
        self.update()

    def stroke(self, points: list[QPoint | QPointF]) -> None:
        """Draw a polyline (what the mouse does; also used by tests)."""
        painter = QPainter(self._image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pen = QPen(QColor(255, 255, 255), BRUSH)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        painter.setPen(pen)
        pts = [QPointF(p) for p in points]
        if len(pts) == 1:
            painter.drawPoint(pts[0])
        for a, b in itertools.pairwise(pts):
            painter.drawLine(a, b)
        painter.end()
        self.update()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._last = event.position()
            self.stroke([self._last])

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._last is not None:
            pos = event.position()
            self.stroke([self._last, pos])
            self._last = pos

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._last is not None and event.button() == Qt.MouseButton.LeftButton:
            self._last = None
            self.drawn.emit()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.drawImage(0, 0, self._image)
        painter.setPen(QColor(90, 90, 90))
        painter.drawRect(0, 0, SIDE - 1, SIDE - 1)
        painter.end()
