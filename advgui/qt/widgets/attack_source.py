"""The Attack tab's left panel: the shared model (chooser and Load) and the image to attack (a
test image from the gallery, a drawing, an imported picture).

It says what was chosen through signals (``sourceChosen``) and what went wrong through
``said`` (the tab shows it); loading a model and decoding a big picture run in job slots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from advgui.core import images
from advgui.core.errors import AdvguiError
from advgui.qt.dialogs import show_error
from advgui.qt.state import AppState
from advgui.qt.widgets.attack_canvas import DrawingCanvas
from advgui.qt.widgets.attack_gallery import AttackGallery
from advgui.qt.workers import ErrorInfo, Job, JobSlot

#: Pictures up to this size decode in the GUI thread (well under 50 ms); bigger ones in a job.
INLINE_DECODE_PIXELS = 1_000_000


def model_label(clf: Any) -> str:
    acc = clf.meta.get("test_accuracy") if hasattr(clf, "meta") else None
    return clf.name + (f"  ({100 * acc:.1f}%)" if isinstance(acc, (int, float)) else "")


class AttackSourcePanel(QWidget):
    """``sourceChosen(x, label, index)``: an image to attack (label -1 and index None for a
    drawing or a picture); ``said(text, error)``: a line for the tab's status or error line."""

    sourceChosen = Signal(object, int, object)
    said = Signal(str, bool)

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.load_slot = JobSlot(
            "attack-load-model",
            self,
            on_result=self._model_loaded,
            on_error=lambda info: self._error("Cannot load model", info),
        )
        self.import_slot = JobSlot(
            "attack-import-image",
            self,
            on_result=self._use_imported,
            on_error=self._import_error,
            on_finish=lambda: self.said.emit("", False),
        )
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
        self.draw_note = QLabel()
        dl.addWidget(self.draw_note)
        dl.addWidget(self.canvas, 0, Qt.AlignmentFlag.AlignHCenter)
        buttons = QHBoxLayout()
        self.import_button = QPushButton("Import image...")
        clear = QPushButton("Clear")
        buttons.addWidget(self.import_button)
        buttons.addWidget(clear)
        dl.addLayout(buttons)
        dl.addStretch(1)
        self.source_tabs.addTab(draw, "Draw / import")
        layout.addWidget(self.source_tabs, 1)

        clear.clicked.connect(self.canvas.clear)
        self.canvas.drawn.connect(self.use_canvas)
        self.import_button.clicked.connect(self.choose_image_file)
        self.gallery.imageSelected.connect(self._on_test_image)
        self.model_combo.currentIndexChanged.connect(self._on_model_chosen)
        self.load_button.clicked.connect(self.choose_model_file)
        state.datasetSwitched.connect(self._on_switched)
        self._on_switched(state.spec)
        state.modelsChanged.connect(self.refresh_models)
        state.currentModelChanged.connect(self.refresh_models)
        self.refresh_models()

    def _on_switched(self, spec: Any) -> None:
        self.draw_note.setText(
            "Draw a digit, or import a PNG/JPG (centred like MNIST)."
            if spec.image_style == "digit"
            else f"Draw, or import a PNG/JPG: fitted whole into 28x28 like {spec.title} "
            "(no digit-style centring)."
        )
        self.draw_note.setWordWrap(True)

    def _error(self, title: str, info: ErrorInfo) -> None:
        self.said.emit(title, False)
        self.said.emit(info.message, True)
        if not info.user_error:
            show_error(self, title, info)

    def _import_error(self, info: ErrorInfo) -> None:
        if info.user_error:
            self.said.emit(info.message, True)
        else:
            self._error("Cannot import image", info)

    # ------------------------------------------------------------------ model

    def refresh_models(self, *_: Any) -> None:
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for clf in self.state.models:
            self.model_combo.addItem(model_label(clf))
        current = self.state.current_model
        if current is not None and current in self.state.models:
            self.model_combo.setCurrentIndex(self.state.models.index(current))
        self.model_combo.blockSignals(False)
        if not self.state.models:  # short: the combo is narrow (it was clipped mid-word)
            self.model_combo.addItem("no model yet")
        self.model_combo.setToolTip(
            "" if self.state.models else "Train one in the Training tab, or Load model..."
        )

    def _on_model_chosen(self, i: int) -> None:
        if 0 <= i < len(self.state.models):
            self.state.set_current_model(self.state.models[i])

    def choose_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load a Keras model", str(Path.home()), "Keras models (*.keras)"
        )
        if path:
            self.load_model_file(path)

    def load_model_file(self, path: str | Path) -> Job:
        """Load a model in the background and make it the shared current model."""
        from advgui.core import models

        self.said.emit(f"Loading {Path(path).name}...", False)
        return self.load_slot.start(lambda progress, cancel: models.load_model(path))

    def _model_loaded(self, clf: Any) -> None:
        self.state.add_model(clf)
        self.said.emit("Model loaded.", False)

    # ------------------------------------------------------------------ image

    def _on_test_image(self, i: int) -> None:
        mnist = self.state.mnist
        if mnist is not None:
            self.sourceChosen.emit(mnist.x_test[i], int(mnist.y_test[i]), i)

    def use_canvas(self) -> None:
        try:
            self.sourceChosen.emit(self.canvas.digit(), -1, None)
        except AdvguiError as err:
            self.said.emit(str(err), True)

    def choose_image_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import a digit", str(Path.home()), "Images (*.png *.jpg *.jpeg);;All files (*)"
        )
        if path:
            self.import_image(path)

    def import_image(self, path: str | Path) -> bool:
        """Import a picture as the source (and onto the canvas); False, with a message, if not.

        The header is checked here (format allow-list, size limit); a small picture is decoded
        at once, a big one in a background job, so a large photo never freezes the window.
        """
        try:
            width, height = images.image_size(path)
            style = self.state.spec.image_style
            digit = (
                images.load_image(path, style=style)
                if width * height <= INLINE_DECODE_PIXELS
                else None
            )
        except AdvguiError as err:
            self.said.emit(str(err), True)
            return False
        if digit is not None:
            self._use_imported(digit)
            return True
        self.said.emit(f"Reading {Path(path).name} ({width}x{height})...", False)
        self.import_slot.start(lambda progress, cancel: images.load_image(path, style=style))
        return True

    def _use_imported(self, digit: np.ndarray) -> None:
        self.canvas.set_digit(digit)
        self.source_tabs.setCurrentIndex(1)
        self.sourceChosen.emit(digit, -1, None)

    def shutdown(self) -> None:
        self.load_slot.cancel()
        self.import_slot.cancel()
