"""Result views of the Attack tab: digits, the perturbation in a diverging colormap with its
scale, the 10-class probability bars before and after, and the live cost curve."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontMetrics, QImage, QPixmap
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from advgui.core.data import MNIST, DatasetSpec
from advgui.qt.widgets.attack_gallery import to_qimage
from advgui.qt.widgets.plot_grid import show_grid

VIEW = 140  # 5x enlargement of 28x28


def _pixmap(img: QImage, side: int = VIEW) -> QPixmap:
    return QPixmap.fromImage(img).scaled(side, side, mode=Qt.TransformationMode.FastTransformation)


class DigitView(QWidget):
    """A 28x28 image enlarged without smoothing, with a title and a caption."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel(f"<b>{title}</b>")
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture = QLabel()
        self.picture.setFixedSize(VIEW, VIEW)
        self.picture.setStyleSheet("background: #202020; border: 1px solid #777;")
        self.caption = QLabel("")
        self.caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.caption.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.title)
        layout.addWidget(self.picture, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.caption)
        layout.addStretch(1)
        self.image: np.ndarray | None = None

    def set_image(self, image: np.ndarray | None, caption: str = "") -> None:
        self.image = None if image is None else np.asarray(image, np.float32).reshape(28, 28)
        if self.image is None:
            self.picture.clear()
        else:
            self.picture.setPixmap(_pixmap(to_qimage(self.image)))
        self.caption.setText(caption)


def diverging_rgb(delta: np.ndarray, scale: float) -> np.ndarray:
    """Blue (negative) - white (zero) - red (positive), saturating at +-``scale``; (H, W, 3)."""
    v = np.clip(np.asarray(delta, np.float32) / max(scale, 1e-12), -1.0, 1.0)
    pos, neg = np.clip(v, 0, 1), np.clip(-v, 0, 1)
    r = 1.0 - neg * 0.8
    g = 1.0 - np.maximum(pos, neg) * 0.8
    b = 1.0 - pos * 0.8
    return np.round(np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


def _rgb_qimage(rgb: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(rgb)
    h, w, _ = rgb.shape
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class PerturbationView(DigitView):
    """x_adv - x, amplified to the largest change, with a colour bar naming that scale."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Perturbation", parent)
        self.bar = QLabel()
        self.bar.setFixedSize(VIEW, 12)
        ramp = np.linspace(-1, 1, VIEW, dtype=np.float32)[None, :].repeat(12, axis=0)
        self.bar.setPixmap(QPixmap.fromImage(_rgb_qimage(diverging_rgb(ramp, 1.0))))
        self.scale_label = QLabel("")
        self.scale_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = self.layout()
        layout.insertWidget(2, self.bar, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.insertWidget(3, self.scale_label)
        self.scale = 0.0

    def set_delta(self, delta: np.ndarray | None, caption: str = "") -> None:
        if delta is None:
            self.picture.clear()
            self.scale_label.setText("")
            self.caption.setText(caption)
            self.image = None
            return
        self.image = np.asarray(delta, np.float32).reshape(28, 28)
        self.scale = float(np.abs(self.image).max())
        rgb = diverging_rgb(self.image, self.scale or 1.0)
        self.picture.setPixmap(_pixmap(_rgb_qimage(rgb)))
        amp = 1.0 / self.scale if self.scale > 0 else 1.0
        self.scale_label.setText(
            f"-{self.scale:.3f}   0   +{self.scale:.3f}" if self.scale > 0 else "no change"
        )
        # What the amplification means, where the user can find it: not a bare "(x2.8)".
        self.scale_label.setToolTip(
            f"colours span the largest change, {self.scale:.3f}: the change is shown "
            f"{amp:.1f} times stronger than it is"
            if self.scale > 0
            else ""
        )
        self.caption.setText(caption)


class ProbabilityBars(pg.PlotWidget):
    """The 10 class probabilities before (grey) and after (red) the attack.

    Upright bars under digits for MNIST; for named classes (Fashion-MNIST) the bars lie down,
    so each name has a row of its own and none is dropped for lack of room.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground("w")
        self.setMinimumHeight(150)
        self.setYRange(0, 1.0, padding=0.02)
        self.setXRange(-0.6, 9.6, padding=0)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        # Class probabilities; the key sits in the title (a legend box would hide a bar).
        self.setTitle(
            '<span style="color:#7a7a7a">&#9632; before</span> '
            '<span style="color:#d62728">&#9632; after</span>',
            color="k",
            size="9pt",
        )
        x = np.arange(10)
        self.before_item = pg.BarGraphItem(
            x=x - 0.2, height=np.zeros(10), width=0.38, brush="#9a9a9a", name="before"
        )
        self.after_item = pg.BarGraphItem(
            x=x + 0.2, height=np.zeros(10), width=0.38, brush="#d62728", name="after"
        )
        self.addItem(self.before_item)
        self.addItem(self.after_item)
        self.before = np.zeros(10)
        self.after = np.zeros(10)
        self.spec: DatasetSpec = MNIST
        self.set_classes(MNIST)

    @property
    def horizontal(self) -> bool:
        return not self.spec.digits

    def tick_labels(self) -> list[str]:
        """The class labels on the class axis, in class order."""
        return [self.spec.class_name(d) for d in range(10)]

    def set_classes(self, spec: DatasetSpec) -> None:
        """Name the classes as ``spec`` does: digits under upright bars, names beside lying
        ones (class 0 on top)."""
        self.spec = spec
        ticks = [[(d, name) for d, name in enumerate(self.tick_labels())]]
        bottom, left = self.getAxis("bottom"), self.getAxis("left")
        if self.horizontal:
            self.setXRange(0, 1.0, padding=0.02)
            self.setYRange(-0.6, 9.6, padding=0)
            self.getViewBox().invertY(True)
            left.setTicks(ticks)
            font = QFont(self.font())
            font.setPointSizeF(7.5)  # ten names in the bars' 150 px, none dropped
            left.setStyle(tickFont=font, tickTextOffset=3)
            left.setWidth(QFontMetrics(font).horizontalAdvance("T-shirt/top") + 14)
            bottom.setTicks(None)
        else:
            self.getViewBox().invertY(False)
            self.setYRange(0, 1.0, padding=0.02)
            self.setXRange(-0.6, 9.6, padding=0)
            bottom.setTicks(ticks)
            left.setTicks(None)
            left.setWidth(None)
        self._draw()

    def set_probs(self, before: np.ndarray | None, after: np.ndarray | None) -> None:
        self.before = np.zeros(10) if before is None else np.asarray(before, float)
        self.after = np.zeros(10) if after is None else np.asarray(after, float)
        self._draw()

    def _draw(self) -> None:
        k = np.arange(10)
        for item, values, shift in ((self.before_item, self.before, -0.2),
                                    (self.after_item, self.after, 0.2)):  # fmt: skip
            if self.horizontal:
                item.setOpts(x=None, y0=None, x0=0, y=k + shift, width=values, height=0.38)
            else:
                item.setOpts(x0=None, y=None, y0=0, x=k + shift, height=values, width=0.38)


class CostCurve(pg.PlotWidget):
    """The attack's cost per step, drawn live while it runs, its axes named by the attack
    (PGD's loss to maximise, the deck's cost to minimise...); hidden for an attack that
    records no cost (FGSM, C&W), so no earlier run's axes stay on screen."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground("w")
        self.setMinimumHeight(150)
        self.setLabel("bottom", "step")
        self.getAxis("left").enableAutoSIPrefix(False)
        show_grid(self)
        self.curve = self.plot(pen=pg.mkPen("#1f77b4", width=2))
        self.values = np.zeros(0)
        self.axis: tuple[str, str] | None = None
        self.set_axis(None)

    def set_axis(self, axis: tuple[str, str] | None, x_label: str = "step") -> None:
        """Name what is plotted (title, y axis) against what (steps, or a black-box attack's
        queries); None hides the plot."""
        self.axis = axis
        self.setVisible(axis is not None)
        if axis is not None:
            title = f"{axis[0]} per step" if x_label == "step" else f"{axis[0]}, by {x_label}"
            self.setTitle(title, color="k", size="9pt")
            self.setLabel("left", axis[1])
            self.setLabel("bottom", x_label)

    def set_curve(
        self,
        values: np.ndarray | None,
        axis: tuple[str, str] | None = None,
        x: np.ndarray | None = None,
    ) -> None:
        """Plot ``values`` (at ``x``, else at steps 1, 2, ...); with ``axis``, also say what
        they are (and show the plot)."""
        if axis is not None:
            self.set_axis(axis)
        self.values = np.zeros(0) if values is None else np.asarray(values, float).ravel()
        if len(self.values):
            xs = np.arange(1, len(self.values) + 1) if x is None else np.asarray(x, float).ravel()
            self.curve.setData(xs, self.values)
        else:
            self.curve.setData([], [])
        self.enableAutoRange()
