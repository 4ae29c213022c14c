"""Tabs that fit a small or scaled screen (1280x800, or 1920x1080 at 2x scaling: 960x540).

A tab's columns sit side by side in a :class:`ReflowSplitter`; the tab lives in a
:class:`ReflowArea` (a scroll area). When the area is narrower than the columns need side by
side, the splitter stacks them instead, so the tab scrolls one way (down) rather than both, and
no column is squeezed until its text clips.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QFrame, QScrollArea, QSplitter, QWidget

#: Room for the tab's own margins and a vertical scroll bar beside the columns.
MARGIN = 32


class ReflowSplitter(QSplitter):
    """A horizontal splitter whose parts stack vertically when they do not fit side by side."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(Qt.Orientation.Horizontal, parent)
        # A part dragged (or reflowed) to nothing would vanish with its controls.
        self.setChildrenCollapsible(False)
        self._sizes: list[int] | None = None

    def side_by_side_width(self) -> int:
        """The width the parts need next to each other (their minimum widths and handles)."""
        parts = [self.widget(i) for i in range(self.count())]
        shown = [w for w in parts if w is not None and not w.isHidden()]
        need = sum(max(w.minimumSizeHint().width(), w.minimumWidth()) for w in shown)
        return need + self.handleWidth() * max(0, len(shown) - 1)

    def reflow(self, width: int) -> bool:
        """Side by side if ``width`` holds the parts, else stacked; True if it changed."""
        fits = width >= self.side_by_side_width()
        want = Qt.Orientation.Horizontal if fits else Qt.Orientation.Vertical
        if want == self.orientation():
            return False
        parts = [self.widget(i) for i in range(self.count())]
        if want == Qt.Orientation.Vertical:
            sizes = self.sizes()  # the user's split, restored when there is room again
            self._sizes = sizes if sizes and min(sizes) > 0 else None
        self.setOrientation(want)
        if want == Qt.Orientation.Horizontal and self._sizes:
            self.setSizes(self._sizes)
        elif want == Qt.Orientation.Horizontal:
            self.setSizes([w.sizeHint().width() for w in parts])
        else:  # stacked: each part at its natural height
            self.setSizes([max(w.sizeHint().height(), w.minimumSizeHint().height())
                           for w in parts])  # fmt: skip
        return True

    @property
    def stacked(self) -> bool:
        return self.orientation() == Qt.Orientation.Vertical


class ReflowArea(QScrollArea):
    """A tab in a scroll area that reflows the tab's :class:`ReflowSplitter` s to its width."""

    def __init__(self, tab: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setWidget(tab)

    def reflow(self) -> None:
        tab = self.widget()
        if tab is None:
            return
        width = self.width() - MARGIN
        # Outer splitters first: stacking one changes the width its inner ones get.
        for splitter in tab.findChildren(ReflowSplitter):
            splitter.reflow(width)

    def resizeEvent(self, event: QResizeEvent) -> None:
        self.reflow()
        super().resizeEvent(event)

    def showEvent(self, event) -> None:
        self.reflow()
        super().showEvent(event)
