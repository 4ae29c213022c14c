"""Robust accuracy against epsilon: one line per model/defense, the naive figure dashed."""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from advgui.core.evaluation import PALETTE, curves
from advgui.qt.widgets.plot_grid import show_grid

WORST = "worst of the chosen attacks"


class DefensePlot(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result: dict[str, Any] | None = None
        self.attack_combo = QComboBox()
        self.attack_combo.addItem(WORST)
        self.attack_combo.currentIndexChanged.connect(lambda _: self._redraw())
        self.plot = pg.PlotWidget(background="w")
        self.plot.setLabel("bottom", "epsilon (L-inf)")
        self.plot.setLabel("left", "robust accuracy")
        self.plot.setYRange(0, 1.02)
        show_grid(self.plot)
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)
        # Beside the plot, not on it (curves of robust models run along the top, of weak ones
        # along the bottom: no corner is always free); black text on white.
        self.legend = pg.LegendItem(labelTextColor="k", brush=pg.mkBrush(255, 255, 255, 235),
                                    pen=pg.mkPen(120, 120, 120))  # fmt: skip
        self.plot.plotItem.layout.addItem(self.legend, 2, 3)
        self.legend.setParentItem(self.plot.plotItem)
        self.items: list[Any] = []
        top = QHBoxLayout()
        top.addWidget(QLabel("curves for"))
        top.addWidget(self.attack_combo, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.plot)

    def set_result(self, result: dict[str, Any] | None) -> None:
        self.result = result
        attacks = list(result.get("attacks", [])) if result else []
        current = self.attack_combo.currentText()
        self.attack_combo.blockSignals(True)
        self.attack_combo.clear()
        self.attack_combo.addItems([WORST, *attacks])
        idx = self.attack_combo.findText(current)
        self.attack_combo.setCurrentIndex(max(0, idx))
        self.attack_combo.blockSignals(False)
        self._redraw()

    def chosen_attack(self) -> str | None:
        text = self.attack_combo.currentText()
        return None if text == WORST or not text else text

    def _redraw(self) -> None:
        self.plot.clear()
        self.legend.clear()
        self.items = []
        if not self.result:
            return
        for i, c in enumerate(curves(self.result, self.chosen_attack())):
            color = PALETTE[i % len(PALETTE)]
            item = self.plot.plot(
                c["eps"], c["robust"], name=c["label"], pen=pg.mkPen(color, width=2),
                symbol="o", symbolBrush=color, symbolSize=7,
            )  # fmt: skip
            self.items.append(item)
            self.legend.addItem(item, c["label"])
            if c["naive"] is not None:
                naive = self.plot.plot(
                    c["eps"], c["naive"], name=f"{c['label']} (naive)",
                    pen=pg.mkPen(color, width=1, style=Qt.PenStyle.DashLine),
                )  # fmt: skip
                self.legend.addItem(naive, f"{c['label']} (naive)")

    def png_bytes(self) -> bytes:
        """The plot as PNG bytes (pyqtgraph's exporter; works offscreen)."""
        from pyqtgraph.exporters import ImageExporter

        exporter = ImageExporter(self.plot.plotItem)
        exporter.parameters()["width"] = max(600, int(self.plot.width()))
        image = exporter.export(toBytes=True)
        data = QByteArray()
        buf = QBuffer(data)
        buf.open(QIODevice.OpenModeFlag.WriteOnly)
        image.save(buf, "PNG")
        buf.close()
        return bytes(data.data())
