"""Certified accuracy against the radius: one line per certified model (core/certify).

Smoothing's radius is L2, IBP's is the L-inf epsilon: the axis says which, and a comparison
holding both draws each against its own norm's label. The curves come from
:func:`advgui.core.certify.curves.certified_curves`, so the figures drawn are the result's own.
"""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from advgui.core.certify.curves import certified_curves, stopped_certifications
from advgui.core.evaluation import PALETTE
from advgui.qt.widgets.plot_grid import show_grid


class CertifiedPlot(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.curves: list[dict[str, Any]] = []
        self.plot = pg.PlotWidget(background="w")
        self.plot.setLabel("left", "certified accuracy")
        self.plot.setLabel("bottom", "radius")
        self.plot.setYRange(0, 1.02)
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)
        show_grid(self.plot)
        self.legend = self.plot.addLegend(labelTextColor="k")
        self.caption = QLabel("Certify with smoothing or IBP to see certified accuracy here.")
        self.caption.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.caption)
        lay.addWidget(self.plot)
        # Only a line until there is something certified: the table keeps the room.
        self.plot.setVisible(False)

    def set_result(self, result: dict[str, Any] | None) -> None:
        self.plot.clear()
        self.legend.clear()
        self.curves = certified_curves(result) if result else []
        norms = sorted({c["norm"] for c in self.curves})
        self.plot.setLabel("bottom", " / ".join(
            {"l2": "L2 radius (smoothing)", "linf": "epsilon, L-inf (IBP)"}[n] for n in norms
        ) or "radius")  # fmt: skip
        for i, c in enumerate(self.curves):
            color = PALETTE[i % len(PALETTE)]
            item = self.plot.plot(
                c["radii"], c["accuracy"], pen=pg.mkPen(color, width=2), symbol="s",
                symbolBrush=color, symbolSize=6,
            )  # fmt: skip
            self.legend.addItem(item, c["label"])
            if c.get("empirical") is not None:  # the attack on the smoothed classifier
                dash = pg.mkPen(color, width=2, style=Qt.PenStyle.DashLine)
                emp = self.plot.plot(c["radii"], c["empirical"], pen=dash)
                self.legend.addItem(emp, f"{c['label']}: SmoothAdv (empirical)")
        self.plot.setVisible(bool(self.curves))
        cut = stopped_certifications(result)
        text = "" if cut else "Certify with smoothing or IBP to see certified accuracy here."
        if self.curves:
            bad = [c["label"] for c in self.curves if not c["consistent"]]
            text = "; ".join(c["caption"] for c in self.curves)
            if bad:
                text += " - BUG: certified above empirical for " + ", ".join(bad)
        if cut:
            text += "; " if text else ""
            text += "certification not finished, no certified figure: " + ", ".join(cut)
        self.caption.setText(text)
