"""Grid lines for pyqtgraph plots that cost nothing on a live repaint."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtWidgets import QGraphicsItem

#: Text, axes and legends of every plot (all are on white): pyqtgraph's default grey (150, 150,
#: 150) reads at 3:1 against white, below the 4.5:1 that small text needs; this one at 16:1.
FOREGROUND = "#202020"
pg.setConfigOptions(foreground=FOREGROUND)


def show_grid(plot: pg.PlotWidget | pg.PlotItem, *, alpha: float = 0.3) -> None:
    """Show the x and y grid, and keep each axis (which draws its grid) as a cached pixmap.

    pyqtgraph draws the grid as part of the axes, replaying the axis picture, translucent
    lines across the whole view, on every repaint: 4 ms per axis, 17 ms for the two training
    plots on each live update, the largest GUI stall while training
    (``benchmarks/bench_gui_responsiveness.py``). A device-coordinate cache blits it instead
    (2 ms, the same pixels); pyqtgraph invalidates it whenever the ticks or the size change.
    """
    item = plot.getPlotItem() if isinstance(plot, pg.PlotWidget) else plot
    item.showGrid(x=True, y=True, alpha=alpha)
    for side in ("left", "bottom", "right", "top"):
        axis = item.getAxis(side)
        axis.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
