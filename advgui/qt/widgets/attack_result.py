"""The Attack tab's result panel: History, original / adversarial / perturbation, the summary
line, probabilities before and after, the cost curve, which input of a batch is shown, and
the export buttons. It shows a :class:`~advgui.core.sessions.ResultView`; deciding what to
show is the session's."""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

from advgui.core import history
from advgui.core.results import ResultStore
from advgui.core.sessions import ResultView, SourceView
from advgui.qt.widgets import buttons
from advgui.qt.widgets.attack_views import CostCurve, DigitView, PerturbationView, ProbabilityBars
from advgui.qt.widgets.history import HistoryBox


class AttackResultPanel(QWidget):
    """Emits ``inputChosen(k)`` (0-based) when the user picks another input of the batch."""

    inputChosen = Signal(int)

    def __init__(self, store: ResultStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.history = HistoryBox(history.ATTACK_KIND, store)
        layout.addWidget(self.history)
        views = QHBoxLayout()
        self.original_view = DigitView("Original")
        self.adversarial_view = DigitView("Adversarial")
        self.delta_view = PerturbationView()
        for v in (self.original_view, self.adversarial_view, self.delta_view):
            views.addWidget(v)
        layout.addLayout(views)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.summary)
        plots = QHBoxLayout()
        self.bars = ProbabilityBars()
        self.cost = CostCurve()
        plots.addWidget(self.bars, 1)
        plots.addWidget(self.cost, 1)
        layout.addLayout(plots, 1)
        row = QHBoxLayout()
        row.addWidget(QLabel("Show result"))
        self.result_spin = QSpinBox()
        self.result_spin.setRange(1, 1)
        self.result_spin.valueChanged.connect(lambda v: self.inputChosen.emit(v - 1))
        row.addWidget(self.result_spin)
        self.result_count = QLabel("of 0")
        row.addWidget(self.result_count)
        row.addStretch(1)
        self.export_button = QPushButton("Export image...")
        self.export_batch_button = QPushButton("Export batch...")
        buttons.bind(self.export_button, buttons.EXPORT, "Export this image as verified PNG")
        buttons.bind(self.export_batch_button, buttons.EXPORT_ALL, "Export every image")
        row.addWidget(self.export_button)
        row.addWidget(self.export_batch_button)
        layout.addLayout(row)

    def set_count(self, n: int) -> None:
        """A new result of ``n`` inputs: the first one is about to be shown."""
        self.result_spin.blockSignals(True)
        self.result_spin.setRange(1, max(1, n))
        self.result_spin.setValue(1)
        self.result_spin.blockSignals(False)
        self.result_count.setText(f"of {n}")

    def current(self) -> int:
        return self.result_spin.value() - 1

    def show_view(self, view: ResultView) -> None:
        self.original_view.set_image(view.original, view.original_caption)
        self.adversarial_view.set_image(view.adversarial, view.adversarial_caption)
        self.delta_view.set_delta(view.delta, view.delta_caption)
        self.bars.set_probs(view.probs_before, view.probs_after)
        self.cost.set_axis(view.curve_axis, view.curve_x_label)
        self.cost.set_curve(view.curve, x=view.curve_x)
        self.summary.setText(view.summary)

    def show_source(self, view: SourceView | None) -> None:
        """A new input and no result for it: only what belongs to it (the model's "before"
        prediction); the previous result's image, change, bars and numbers go."""
        if view is None:
            self.original_view.set_image(None, "no image")
        else:
            self.original_view.set_image(view.original, view.original_caption)
        self.adversarial_view.set_image(None, "not attacked yet")
        self.delta_view.set_delta(None)
        self.bars.set_probs(None if view is None else view.probs_before, None)
        self.cost.set_curve(None)
        self.cost.set_axis(None)
        self.summary.setText("" if view is None else view.summary)
        self.set_count(0)

    def show_running(
        self,
        message: str = "running...",
        before: np.ndarray | None = None,
        cost_axis: tuple[str, str] | None = None,
        x_label: str = "step",
    ) -> None:
        """A new run: nothing of the previous result stays (its summary neither); the cost
        plot shows only if this attack records a cost, named as it is."""
        self.cost.set_curve(None)
        self.cost.set_axis(cost_axis, x_label)
        self.adversarial_view.set_image(None, "running...")
        self.delta_view.set_delta(None)
        self.bars.set_probs(before, None)
        self.summary.setText(f'<span style="color:#7a7a7a">{message}</span>')

    def show_live(
        self,
        curve: Any,
        image: np.ndarray | None,
        delta: np.ndarray | None,
        x: np.ndarray | None = None,
    ) -> None:
        """A partial result while the attack runs: its cost so far (at ``x``: a black-box
        attack's queries), its image now."""
        if curve is not None:
            self.cost.set_curve(curve, x=x)
        if image is not None:
            self.adversarial_view.set_image(image, "optimising...")
            self.delta_view.set_delta(delta)
