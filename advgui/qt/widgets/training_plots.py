"""Live loss and accuracy curves (training and validation) against epochs, with pyqtgraph."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QHBoxLayout, QWidget

from advgui.qt.widgets.plot_grid import show_grid

TRAIN_PEN = pg.mkPen("#1f77b4", width=2)
VAL_PEN = pg.mkPen("#d62728", width=2)


class _Series:
    """A growing (x, y) series; arrays are rebuilt only when drawn."""

    def __init__(self) -> None:
        self.x: list[float] = []
        self.y: list[float] = []

    def add(self, x: float, y: float) -> bool:
        if not (math.isfinite(x) and math.isfinite(y)):
            return False
        self.x.append(x)
        self.y.append(y)
        return True

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.x, dtype=float), np.asarray(self.y, dtype=float)


class TrainingPlots(QWidget):
    """Two plots side by side: loss and accuracy, each with a training and validation curve.

    Fed from ``Progress.info`` (plain floats): training points at every update, validation
    points when ``val_count`` grows.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # Antialiased lines made each live repaint long enough to stall the event loop past
        # 50 ms while training (benchmarks/bench_gui_responsiveness.py); these are thin lines.
        pg.setConfigOptions(antialias=False)
        self.loss_plot = pg.PlotWidget(background="w", title="Loss")
        self.acc_plot = pg.PlotWidget(background="w", title="Accuracy")
        for plot, label in ((self.loss_plot, "cross-entropy"), (self.acc_plot, "accuracy")):
            plot.setLabel("bottom", "epoch")
            plot.setLabel("left", label)
            show_grid(plot)
            for side in ("bottom", "left"):  # "epoch (x0.001)" early in a run reads wrong
                plot.getAxis(side).enableAutoSIPrefix(False)
            # A fixed width: tick labels changing width (0.5 -> 0.25) would re-lay out the
            # whole plot on a live update (measured: the largest GUI stalls while training).
            plot.getAxis("left").setWidth(56)
            plot.addLegend(offset=(-10, 10) if plot is self.loss_plot else (-10, -30))
            plot.setMinimumSize(220, 160)
        self.acc_plot.setYRange(0, 1.0)
        self.series = {name: _Series() for name in ("loss", "val_loss", "accuracy", "val_accuracy")}
        self.curves = {
            "loss": self.loss_plot.plot(pen=TRAIN_PEN, name="training"),
            "val_loss": self.loss_plot.plot(
                pen=VAL_PEN, name="validation", symbol="o", symbolSize=6, symbolBrush="#d62728"
            ),
            "accuracy": self.acc_plot.plot(pen=TRAIN_PEN, name="training"),
            "val_accuracy": self.acc_plot.plot(
                pen=VAL_PEN, name="validation", symbol="o", symbolSize=6, symbolBrush="#d62728"
            ),
        }
        self._val_count = 0.0
        self._loss_top = 0.0
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.loss_plot)
        lay.addWidget(self.acc_plot)

    def clear(self, epochs: float | None = None) -> None:
        """Empty the curves; with ``epochs``, fix the x axis to the whole run up front.

        A fixed x range (and a loss range that only ever grows) keeps the axes' tick layout
        unchanged between live updates, so a repaint redraws the curves, not the axes
        (re-laying out the axes was the largest GUI-thread cost while training).
        """
        for s in self.series.values():
            s.x.clear()
            s.y.clear()
        self._val_count = 0.0
        self._loss_top = 0.0
        for plot in (self.loss_plot, self.acc_plot):
            if epochs:
                plot.setXRange(0.0, float(epochs), padding=0.02)
            else:
                plot.enableAutoRange(axis="x")
        if epochs:
            self.loss_plot.disableAutoRange(axis="y")
        else:
            self.loss_plot.enableAutoRange(axis="y")
        self._redraw(list(self.series))

    def add_update(self, info: dict[str, float]) -> None:
        """Add the points carried by one progress update and redraw what changed."""
        x = float(info.get("epoch_progress", math.nan))
        changed = [
            key
            for key in ("loss", "accuracy")
            if key in info and self.series[key].add(x, float(info[key]))
        ]
        count = float(info.get("val_count", 0.0))
        if count > self._val_count:
            self._val_count = count
            changed += [
                key
                for key in ("val_loss", "val_accuracy")
                if key in info and self.series[key].add(x, float(info[key]))
            ]
        self._redraw(changed)
        if changed:
            self._fit_accuracy_range()
            self._fit_loss_range()

    def set_history(self, history: dict[str, list[float]]) -> None:
        """Show a finished model's per-epoch history (for a model loaded from a file)."""
        self.clear()
        epochs = history.get("epoch", [])
        for key in self.series:
            for x, y in zip(epochs, history.get(key, []), strict=False):
                self.series[key].add(float(x), float(y))
        self._redraw(list(self.series))
        self._fit_accuracy_range()

    def point_count(self, key: str) -> int:
        return len(self.series[key].x)

    def _redraw(self, keys: list[str]) -> None:
        for key in keys:
            self.curves[key].setData(*self.series[key].arrays())

    def _fit_loss_range(self) -> None:
        """Grow the loss axis in steps of a quarter when a point falls outside it, never
        shrink it (only when the x axis is fixed; otherwise pyqtgraph auto-ranges)."""
        if self.loss_plot.getViewBox().autoRangeEnabled()[1]:
            return
        ys = [y for key in ("loss", "val_loss") for y in self.series[key].y if math.isfinite(y)]
        if ys and max(ys) > self._loss_top:
            self._loss_top = 1.25 * max(ys)
            self.loss_plot.setYRange(0.0, self._loss_top, padding=0)

    def _fit_accuracy_range(self) -> None:
        ys = self.series["accuracy"].y + self.series["val_accuracy"].y
        if ys:
            low = max(0.0, min(min(ys), 0.9) - 0.02)
            self.acc_plot.setYRange(low, 1.0, padding=0)
