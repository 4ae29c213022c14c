"""A gallery of the 10,000 test images with their labels: filter by class, jump to an index.
Labels are digits for MNIST, class names for a dataset that names its classes.

Thumbnails are made on demand by the model (only the visible ones), so showing the gallery
costs nothing up front.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from advgui.core.data import MNIST, DatasetSpec

THUMB = 56
_Index = QModelIndex | QPersistentModelIndex


def to_qimage(image: np.ndarray) -> QImage:
    """A 28x28 float image in [0, 1] as an 8-bit grayscale QImage (owning its pixels)."""
    arr = np.ascontiguousarray(
        np.round(np.clip(np.asarray(image, np.float32).reshape(28, 28), 0, 1) * 255).astype(
            np.uint8
        )
    )
    return QImage(arr.data, 28, 28, 28, QImage.Format.Format_Grayscale8).copy()


class GalleryModel(QAbstractListModel):
    """Test images as list items; ``rows`` maps a row to a test-set index."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.images: np.ndarray | None = None
        self.labels: np.ndarray | None = None
        self.rows = np.zeros(0, np.int64)
        self._cache: dict[int, QPixmap] = {}
        self.spec: DatasetSpec = MNIST

    def set_classes(self, spec: DatasetSpec) -> None:
        self.beginResetModel()
        self.spec = spec
        self.endResetModel()

    def clear(self) -> None:
        self.beginResetModel()
        self.images = self.labels = None
        self.rows = np.zeros(0, np.int64)
        self._cache.clear()
        self.endResetModel()

    def set_data(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.beginResetModel()
        self.images, self.labels = images, labels
        self.rows = np.arange(len(labels))
        self._cache.clear()
        self.endResetModel()

    def set_filter(self, digit: int | None) -> None:
        if self.labels is None:
            return
        self.beginResetModel()
        all_rows = np.arange(len(self.labels))
        self.rows = all_rows if digit is None else np.flatnonzero(self.labels == digit)
        self.endResetModel()

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 (Qt signature)
        return 0 if parent.isValid() else len(self.rows)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or self.images is None or self.labels is None:
            return None
        i = int(self.rows[index.row()])
        if role == Qt.ItemDataRole.DisplayRole:
            label = int(self.labels[i])
            return (
                f"#{i}: {self.spec.short(label)}"  # a thumbnail's width: the full name in the tip
            )
        if role == Qt.ItemDataRole.DecorationRole:
            pix = self._cache.get(i)
            if pix is None:
                pix = QPixmap.fromImage(to_qimage(self.images[i])).scaled(
                    THUMB, THUMB, mode=Qt.TransformationMode.FastTransformation
                )
                if len(self._cache) > 2000:
                    self._cache.clear()
                self._cache[i] = pix
            return pix
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"test image {i}, label {self.spec.label(int(self.labels[i]))}"
        if role == Qt.ItemDataRole.UserRole:
            return i
        return None


class AttackGallery(QWidget):
    """The gallery with its filter and jump-to-index controls."""

    #: The test-set index of the chosen image.
    imageSelected = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = GalleryModel(self)
        self.view = QListView()
        self.view.setViewMode(QListView.ViewMode.IconMode)
        self.view.setIconSize(QSize(THUMB, THUMB))
        self.view.setGridSize(QSize(THUMB + 18, THUMB + 22))
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        self.view.setUniformItemSizes(True)
        self.view.setMovement(QListView.Movement.Static)
        self.view.setModel(self.model)
        self.view.selectionModel().currentChanged.connect(self._on_current)

        self.filter = QComboBox()
        self.filter.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self._fill_filter(MNIST)
        self.filter.currentIndexChanged.connect(self._on_filter)
        self.jump = QSpinBox()
        self.jump.setRange(0, 9999)
        self.jump.setToolTip("test image index (0-9999)")
        go = QPushButton("Go")
        go.setFixedWidth(40)
        go.clicked.connect(lambda: self.select_index(self.jump.value()))
        self.jump.editingFinished.connect(lambda: self.select_index(self.jump.value()))
        self.count = QLabel("no dataset")

        top = QHBoxLayout()
        top.addWidget(self.filter)
        top.addWidget(QLabel("index"))
        top.addWidget(self.jump)
        top.addWidget(go)
        top.addStretch(1)
        top.addWidget(self.count)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.view, 1)
        self.setEnabled(False)

    def _fill_filter(self, spec: DatasetSpec) -> None:
        self.filter.addItem("all digits" if spec.digits else "any class", None)
        for d in range(spec.num_classes):
            self.filter.addItem(f"only {d}s" if spec.digits else f"only {spec.label(d)}", d)

    def set_classes(self, spec: DatasetSpec) -> None:
        """Label images and the filter as ``spec`` names its classes (the filter kept)."""
        if spec is self.model.spec:
            return
        chosen = self.filter.currentData()
        self.filter.blockSignals(True)
        self.filter.clear()
        self._fill_filter(spec)
        self.filter.setCurrentIndex(0 if chosen is None else max(0, self.filter.findData(chosen)))
        self.filter.blockSignals(False)
        self.model.set_classes(spec)

    def clear(self) -> None:
        """No dataset (another one is loading): nothing to choose from."""
        self.model.clear()
        self.count.setText("no dataset")
        self.setEnabled(False)

    def set_data(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.model.set_data(images, labels)
        self.jump.setRange(0, len(labels) - 1)
        self.setEnabled(True)
        self._on_filter()

    def _on_filter(self) -> None:
        self.model.set_filter(self.filter.currentData())
        self.count.setText(f"{len(self.model.rows)} images")

    def visible_indices(self) -> np.ndarray:
        """Test-set indices in the order shown (after the filter)."""
        return self.model.rows

    def select_index(self, i: int) -> None:
        """Select test image ``i``, clearing a filter that hides it."""
        if self.model.labels is None or not 0 <= i < len(self.model.labels):
            return
        rows = np.flatnonzero(self.model.rows == i)
        if not len(rows):
            self.filter.setCurrentIndex(0)
            rows = np.flatnonzero(self.model.rows == i)
        index = self.model.index(int(rows[0]))
        again = self.view.currentIndex() == index
        self.view.setCurrentIndex(index)
        self.view.scrollTo(index)
        if again:  # choosing the current image again (after drawing) still selects it
            self.imageSelected.emit(i)

    def current_index(self) -> int | None:
        index = self.view.currentIndex()
        return int(self.model.rows[index.row()]) if index.isValid() else None

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            i = int(self.model.rows[current.row()])
            self.jump.blockSignals(True)
            self.jump.setValue(i)
            self.jump.blockSignals(False)
            self.imageSelected.emit(i)
