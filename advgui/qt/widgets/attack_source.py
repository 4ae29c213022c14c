"""The Attack tab's left panel: the shared model (chooser and Load), and the image to attack:
a test image from the gallery, a drawing or an imported picture."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from advgui.qt.widgets.attack_canvas import DrawingCanvas
from advgui.qt.widgets.attack_gallery import AttackGallery


class AttackSourcePanel(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Model"))
        self.model_combo = QComboBox()
        self.model_combo.setMinimumContentsLength(8)
        row.addWidget(self.model_combo, 1)
        self.load_button = QPushButton("Load model...")
        row.addWidget(self.load_button)
        layout.addLayout(row)
        self.source_tabs = QTabWidget()
        self.gallery = AttackGallery()
        self.source_tabs.addTab(self.gallery, "Test images")
        draw = QWidget()
        dl = QVBoxLayout(draw)
        self.canvas = DrawingCanvas()
        dl.addWidget(QLabel("Draw a digit, or import a PNG/JPG (centred like MNIST)."))
        dl.addWidget(self.canvas, 0, Qt.AlignmentFlag.AlignHCenter)
        buttons = QHBoxLayout()
        self.import_button = QPushButton("Import image...")
        clear = QPushButton("Clear")
        clear.clicked.connect(self.canvas.clear)
        buttons.addWidget(self.import_button)
        buttons.addWidget(clear)
        dl.addLayout(buttons)
        dl.addStretch(1)
        self.source_tabs.addTab(draw, "Draw / import")
        layout.addWidget(self.source_tabs, 1)

    def show_drawing(self) -> None:
        self.source_tabs.setCurrentIndex(1)
