"""Live loss and accuracy curves (training, validation, held-out PGD) against epochs.

The training loop emits typed records (:class:`~advgui.core.fit.BatchProgress` per batch update,
:class:`~advgui.core.fit.EpochRecord` per held-out check); which curve each figure feeds is
decided here, not in the core.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QHBoxLayout, QWidget

from advgui.core.fit import BatchProgress, EpochRecord
from advgui.qt.widgets.plot_grid import show_grid

TRAIN_PEN = pg.mkPen("#1f77b4", width=2)
VAL_PEN = pg.mkPen("#d62728", width=2)
ROBUST_PEN = pg.mkPen("#2ca02c", width=2)


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

    Training points come from batch updates (:meth:`add_update`), validation points from
    held-out checks (:meth:`add_record`). With ``defended`` (the Defenses tab) the loss is the
    adversarial examples', the validation curve is the held-out clean accuracy, a third curve
    is the held-out PGD accuracy, and there is no training accuracy curve.
    """

    def __init__(self, parent: QWidget | None = None, *, defended: bool = False) -> None:
        super().__init__(parent)
        self.defended = defended
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
        keys = ["loss", "val_loss", "accuracy", "val_accuracy"]
        held_out = "held-out clean" if defended else "validation"
        self.curves = {
            "loss": self.loss_plot.plot(pen=TRAIN_PEN, name="training"),
            "val_loss": self.loss_plot.plot(  # defended: no held-out loss, no legend entry
                pen=VAL_PEN,
                name=None if defended else "validation",
                symbol="o",
                symbolSize=6,
                symbolBrush="#d62728",
            ),
            "accuracy": self.acc_plot.plot(pen=TRAIN_PEN, name=None if defended else "training"),
            "val_accuracy": self.acc_plot.plot(
                pen=VAL_PEN, name=held_out, symbol="o", symbolSize=6, symbolBrush="#d62728"
            ),
        }
        if defended:
            keys.append("robust_accuracy")
            self.curves["robust_accuracy"] = self.acc_plot.plot(
                pen=ROBUST_PEN, name="held-out PGD", symbol="o", symbolSize=6,
                symbolBrush="#2ca02c",
            )  # fmt: skip
            self.loss_plot.setTitle("Loss (on adversarial examples)")
        self.series = {name: _Series() for name in keys}
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

    def add_update(self, update: BatchProgress) -> None:
        """Add a batch update's training points and redraw what changed."""
        x = update.epoch_progress
        figures = {"loss": update.loss, "accuracy": update.accuracy}
        if self.defended:
            del figures["accuracy"]  # of the adversarial examples: not what this tab shows
        self._add(x, figures)

    def add_record(self, record: EpochRecord) -> None:
        """Add a held-out check's points (clean, and PGD when defended)."""
        if not record.checked:
            return
        figures = {"val_loss": record.clean_loss, "val_accuracy": record.clean_accuracy}
        if self.defended:  # held-out accuracy, clean and under PGD (no held-out loss)
            figures = {"val_accuracy": record.clean_accuracy}
            figures["robust_accuracy"] = record.robust_accuracy
        self._add(record.epoch_progress, figures)

    def add(self, update: Any) -> None:
        """Whatever the training job reported (``Progress.record``): a batch or a check."""
        if isinstance(update, EpochRecord):
            self.add_record(update)
        elif isinstance(update, BatchProgress):
            self.add_update(update)

    def _add(self, x: float, figures: dict[str, float | None]) -> None:
        changed = [
            key
            for key, y in figures.items()
            if y is not None and key in self.series and self.series[key].add(x, float(y))
        ]
        self._redraw(changed)
        if changed:
            self._fit_accuracy_range()
            self._fit_loss_range()

    def set_history(self, history: Any) -> None:
        """Show a finished model's stored history: plain training's dict of lists per epoch,
        or defended training's list of per-epoch records (stages one after another)."""
        self.clear()
        if isinstance(history, list):
            history = _records_as_columns(history)
        if not isinstance(history, dict):
            history = {}
        epochs = history.get("epoch", [])
        for key in self.series:
            for x, y in zip(epochs, history.get(key, []), strict=False):
                if isinstance(x, (int, float)) and isinstance(y, (int, float)):
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
        """Every accuracy curve in view: the held-out PGD curve (0 to 0.85) sits far below
        the clean ones (0.9 and up), so the range is taken over all curves the plot holds."""
        ys = [y for curve in self.acc_plot.getPlotItem().listDataItems()
              for y in (curve.getData()[1] if curve.getData()[1] is not None else [])
              if math.isfinite(y)]  # fmt: skip
        if ys:
            low = max(0.0, min(min(ys), 0.9) - 0.02)
            self.acc_plot.setYRange(low, 1.0, padding=0)


def _records_as_columns(records: list[Any]) -> dict[str, list[Any]]:
    """Defended per-epoch records as columns; a later stage (distillation's student) continues
    the x axis after the earlier one."""
    columns: dict[str, list[Any]] = {k: [] for k in ("epoch", "loss", "val_accuracy")}
    columns["robust_accuracy"] = []
    offset, stage, last = 0.0, None, 0.0
    for r in records[:10000]:
        if not isinstance(r, dict) or not isinstance(r.get("epoch"), (int, float)):
            continue
        if r.get("stage") != stage:
            offset, stage = last, r.get("stage")
        last = offset + float(r["epoch"])
        columns["epoch"].append(last)
        columns["loss"].append(r.get("loss"))
        columns["val_accuracy"].append(r.get("clean_accuracy"))
        columns["robust_accuracy"].append(r.get("robust_accuracy"))
    return columns
