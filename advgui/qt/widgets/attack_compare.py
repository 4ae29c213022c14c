"""Attack comparison: several attacks on the same image(s), one sortable table, images side by
side.

Self-contained so that the Attack tab can embed it::

    compare = AttackCompareWidget(state)
    compare.set_inputs(clf, x, labels)          # one or more images, optional goal digit
    compare.run()                               # or the user presses Run

All attacks run one after another in one background :class:`~advgui.qt.workers.Job` with
progress and Stop; each finished attack fills its row at once (a stopped run keeps the rows it
has). ``resultsReady`` carries ``{method: AttackResult}`` when a run ends.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QColor, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from advgui.core.attacks.base import ATTACKS, Attack, AttackResult, make_attack
from advgui.core.data import MNIST, DatasetSpec
from advgui.core.errors import ParameterError
from advgui.core.progress import Partial, Progress
from advgui.qt.state import AppState
from advgui.qt.widgets import buttons, progress_bar
from advgui.qt.workers import ErrorInfo, Job, JobSlot

#: Display order of the attacks everyone knows; any other registered attack follows by name.
ORDER = ("fgsm", "bim", "pgd", "mifgsm", "cw", "deepfool", "jsma")
#: Checked when the widget opens.
DEFAULT_CHECKED = ("pgd", "cw", "deepfool", "jsma")
COLUMNS = ("Attack", "Success %", "Goal conf.", "L0", "L2", "Linf", "Time (s)")
THUMB = 112


def default_params(cls: type[Attack]) -> str:
    """The parameter text a row starts with: the attack's basic parameters at their spec
    defaults (advanced ones and "the attack chooses" are left out). They run in seconds on a
    few images, so no separate quick settings are kept."""
    parts = []
    for p in cls.spec:
        if p.advanced or p.default is None:
            continue
        value = p.default
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, float):
            text = f"{value:g}"
        else:
            text = str(value)
        parts.append(f"{p.name}={text}")
    return ", ".join(parts)


def method_order(names: list[str]) -> list[str]:
    known = [n for n in ORDER if n in names]
    return known + sorted(n for n in names if n not in ORDER)


def parse_params(text: str) -> dict[str, Any]:
    """``"eps=0.3, steps=40, norm=l2"`` -> dict; numbers and true/false are converted."""
    params: dict[str, Any] = {}
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key.isidentifier() or not value:
            raise ParameterError(f"cannot read {part!r}: write name=value", field="params")
        params[key] = _convert(value)
    return params


def _convert(value: str) -> Any:
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def to_pixmap(image: np.ndarray, side: int = THUMB) -> QPixmap:
    pixels = np.ascontiguousarray((np.clip(image.reshape(28, 28), 0, 1) * 255).astype(np.uint8))
    qimg = QImage(pixels.data, 28, 28, 28, QImage.Format.Format_Grayscale8).copy()
    return QPixmap.fromImage(qimg).scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio)


class _NumberItem(QTableWidgetItem):
    """A table cell that sorts by its number (NaN last), shown with ``fmt``."""

    def __init__(self, value: float, fmt: str = "{:.3f}") -> None:
        text = "–" if not math.isfinite(value) else fmt.format(value)
        super().__init__(text)
        self.value = value if math.isfinite(value) else math.inf
        self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        if isinstance(other, _NumberItem):
            return self.value < other.value
        return super().__lt__(other)


def row_figures(result: AttackResult) -> dict[str, float]:
    """What one table row shows: success rate, mean goal confidence, median norms of the
    successful examples (all examples when none succeeded), seconds."""
    n = len(result)
    if result.goals is not None:
        conf = result.probs_after[np.arange(n), result.goals]
    else:
        conf = result.probs_after.max(axis=1)
    ok = result.success if result.success.any() else np.ones(n, dtype=bool)
    return {
        "success": 100.0 * float(result.success.mean()),
        "goal_confidence": float(conf.mean()),
        "l0": float(np.median(result.l0[ok])),
        "l2": float(np.median(result.l2[ok])),
        "linf": float(np.median(result.linf[ok])),
        "seconds": float(result.seconds),
    }


class AttackCompareWidget(QWidget):
    """Run several attacks on the same inputs and compare them (see module docstring)."""

    resultsReady = Signal(object)  # dict[str, AttackResult]
    runningChanged = Signal(bool)

    def __init__(self, state: AppState | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.clf: Any = None
        self.x: np.ndarray | None = None
        self.labels: np.ndarray | None = None
        self.results: dict[str, AttackResult] = {}
        self.slot = JobSlot(
            "attack-compare",
            self,
            on_progress=self._on_progress,
            on_partial=self._on_partial,
            on_result=self._on_returned,
            on_error=self._on_error,
            on_cancel=self._on_cancelled,
            on_finish=self._on_finished,
        )
        self._build()
        self._update_buttons()

    def set_classes(self, spec: DatasetSpec) -> None:
        """Name the target classes as ``spec`` does (digits for MNIST)."""
        if hasattr(self, "goal"):
            word = "digit" if spec.digits else "class"
            for d in range(spec.num_classes):
                self.goal.setItemText(d + 1, f"target {word} {spec.label(d)}")

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        self.methods = QTableWidget(0, 2)
        self.methods.setHorizontalHeaderLabels(["Attack", "Parameters (name=value, ...)"])
        self.methods.verticalHeader().setVisible(False)
        self.methods.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self._fill_methods()

        self.goal = QComboBox()
        self.goal.addItem("untargeted", None)
        for d in range(10):
            self.goal.addItem(f"target digit {d}", d)
        self.set_classes(MNIST)
        self.run_button = QPushButton("Run comparison")
        self.run_button.clicked.connect(self.run)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        # Not Run's keys: the Attack tab's own Run and Stop are on screen beside this view.
        buttons.bind(self.run_button, "Ctrl+Shift+Return", "Run every chosen attack")
        buttons.bind(self.stop_button, "Ctrl+Shift+.", "Stop; finished attacks stay")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel("Choose attacks, then Run.")
        self.status.setWordWrap(True)
        controls = QHBoxLayout()
        controls.addWidget(self.goal)
        controls.addWidget(self.run_button)
        controls.addWidget(self.stop_button)
        controls.addWidget(self.progress, 1)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        # Rows stay in run order until the user clicks a column header.
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)

        self.image_index = QSpinBox()
        self.image_index.setPrefix("image ")
        self.image_index.setMinimum(0)
        self.image_index.valueChanged.connect(self._show_images)
        self.strip = QWidget()
        self.strip_layout = QHBoxLayout(self.strip)
        self.strip_layout.setAlignment(Qt.AlignmentFlag.AlignLeft)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.strip)
        scroll.setMinimumHeight(THUMB + 70)
        images = QWidget()
        images_layout = QVBoxLayout(images)
        images_layout.setContentsMargins(0, 0, 0, 0)
        images_layout.addWidget(self.image_index, 0, Qt.AlignmentFlag.AlignLeft)
        images_layout.addWidget(scroll)

        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.methods)
        split.addWidget(self.table)
        split.addWidget(images)
        layout = QVBoxLayout(self)
        layout.addWidget(split, 1)
        layout.addLayout(controls)
        layout.addWidget(self.status)

    def _fill_methods(self) -> None:
        import advgui.core.attacks  # noqa: F401  (registers every attack)

        names = method_order(list(ATTACKS))
        self.methods.setRowCount(len(names))
        for row, name in enumerate(names):
            cls = ATTACKS[name]
            item = QTableWidgetItem(name)
            item.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
            checked = name in DEFAULT_CHECKED
            item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
            item.setToolTip(cls.describe())
            self.methods.setItem(row, 0, item)
            text = QTableWidgetItem(default_params(cls))
            text.setToolTip(
                "\n".join(f"{p.name}: {p.help or p.title} ({p.describe()})" for p in cls.spec)
            )
            self.methods.setItem(row, 1, text)

    # ------------------------------------------------------------------ API

    def set_inputs(
        self,
        clf: Any,
        x: np.ndarray,
        labels: np.ndarray | None = None,
        goal: int | None = None,
    ) -> None:
        """The model and the images (N, 28, 28, 1) in [0, 1] to attack; clears old results
        and stops a comparison still running on the previous inputs."""
        x = np.asarray(x, dtype=np.float32).reshape(-1, 28, 28, 1)
        if len(x) == 0:
            raise ParameterError("no images to attack", field="images")
        self.slot.drop()  # a run on the old inputs: stopped, and nothing it sends is shown
        self.clf = clf
        self.x = x
        self.labels = None if labels is None else np.broadcast_to(labels, (len(x),)).copy()
        if goal is not None:
            self.set_goal(goal)
        self.image_index.setMaximum(len(x) - 1)
        self.image_index.setVisible(len(x) > 1)
        self.clear_results()
        self.status.setText(f"{len(x)} image(s) ready.")
        self._update_buttons()

    def set_goal(self, goal: int | None) -> None:
        self.goal.setCurrentIndex(0 if goal is None else int(goal) + 1)

    def method_names(self) -> list[str]:
        return [self.methods.item(r, 0).text() for r in range(self.methods.rowCount())]

    def set_methods(self, names: list[str], params: dict[str, str] | None = None) -> None:
        """Check exactly ``names``; ``params`` replaces the parameter text of some of them."""
        unknown = set(names) - set(self.method_names())
        if unknown:
            raise ParameterError(f"unknown attack(s): {sorted(unknown)}", field="methods")
        for row, name in enumerate(self.method_names()):
            state = Qt.CheckState.Checked if name in names else Qt.CheckState.Unchecked
            self.methods.item(row, 0).setCheckState(state)
            if params and name in params:
                self.methods.item(row, 1).setText(params[name])

    def chosen(self) -> list[tuple[str, dict[str, Any]]]:
        """The checked attacks with their parsed parameters (ParameterError names the row)."""
        out = []
        for row in range(self.methods.rowCount()):
            item = self.methods.item(row, 0)
            if item.checkState() != Qt.CheckState.Checked:
                continue
            try:
                params = parse_params(self.methods.item(row, 1).text())
            except ParameterError as err:
                raise ParameterError(f"{item.text()}: {err}", field=item.text()) from None
            out.append((item.text(), params))
        return out

    @property
    def job(self) -> Job | None:
        return self.slot.job

    def is_running(self) -> bool:
        return self.slot.is_running()

    def clear_results(self) -> None:
        self.results = {}
        self.table.setRowCount(0)
        self._show_images()

    # ------------------------------------------------------------------ running

    @Slot()
    def run(self) -> Job | None:
        """Validate, then start the comparison job; returns it (None if nothing started)."""
        if self.is_running():
            return None
        if self.clf is None or self.x is None:
            self._fail("No model or images yet: train or load a model and choose images.")
            return None
        goal = self.goal.currentData()
        try:
            attacks = []
            for name, params in self.chosen():
                attack = make_attack(name, **params)
                if goal is not None and not attack.supports_targeted:
                    raise ParameterError(f"{name} cannot aim at a target digit", field=name)
                if goal is None and not attack.supports_untargeted:
                    raise ParameterError(f"{name} needs a target digit", field=name)
                attacks.append(attack)
        except (ParameterError, TypeError) as err:
            self._fail(f"Cannot start: {err}")
            return None
        if not attacks:
            self._fail("Check at least one attack.")
            return None
        clf, x, labels = self.clf, self.x, self.labels
        goals = None if goal is None else np.full(len(x), goal, dtype=np.int64)

        def work(progress: Any, cancel: Any) -> dict[str, AttackResult]:
            from advgui.core.attacks.batch import run_batch

            done: dict[str, AttackResult] = {}
            for i, attack in enumerate(attacks):

                def sub(update: Progress, i: int = i, name: str = attack.name) -> None:
                    progress(Progress(i + update.fraction, len(attacks), f"{name}: "
                                      f"{update.message}"))  # fmt: skip

                res = run_batch(attack, clf, x, labels, goals=goals, progress=sub, cancel=cancel)
                done[attack.name] = res
                progress(Progress(i + 1, len(attacks), f"{attack.name} done",
                                  partial=Partial(result=res)))  # fmt: skip
            return done

        self.clear_results()
        progress_bar.started(self.progress)
        self.status.setText(f"Running {', '.join(a.name for a in attacks)}...")
        job = self.slot.start(work)
        self._update_buttons()
        self.runningChanged.emit(True)
        return job

    @Slot()
    def stop(self) -> None:
        if self.slot.cancel():
            self.status.setText("Stopping after the current step...")

    def shutdown(self) -> None:
        """Cancel and join the running job (the window calls this on close)."""
        self.slot.join()

    def _on_progress(self, update: Progress) -> None:
        if self.slot.is_stopping():
            return
        self.progress.setValue(int(1000 * update.fraction))
        self.status.setText(update.message)

    def _on_partial(self, partial: Partial) -> None:
        if isinstance(partial.result, AttackResult):
            self._add_result(partial.result)

    def _on_returned(self, results: dict[str, AttackResult]) -> None:
        for res in results.values():
            if res.method not in self.results:
                self._add_result(res)
        progress_bar.done(self.progress)
        self.status.setText(f"Done: {len(self.results)} attack(s) compared.")

    def _on_error(self, info: ErrorInfo) -> None:
        self._fail(f"Attack failed: {info.message}")

    def _on_cancelled(self) -> None:
        progress_bar.stopped(self.progress)
        self.status.setText(f"Stopped; {len(self.results)} attack(s) finished before Stop.")

    def _on_finished(self) -> None:
        self._update_buttons()
        self.runningChanged.emit(False)
        self.resultsReady.emit(dict(self.results))

    def _fail(self, message: str) -> None:
        self.status.setText(message)

    def _update_buttons(self) -> None:
        running = self.is_running()
        buttons.set_running(self.run_button, self.stop_button, running, self.x is not None)
        self.methods.setEnabled(not running)
        self.goal.setEnabled(not running)

    # ------------------------------------------------------------------ showing

    def _add_result(self, result: AttackResult) -> None:
        self.results[result.method] = result
        fig = row_figures(result)
        self.table.setSortingEnabled(False)
        row = self.table.rowCount()
        self.table.insertRow(row)
        self.table.setItem(row, 0, QTableWidgetItem(result.method))
        cells = [
            _NumberItem(fig["success"], "{:.1f}"),
            _NumberItem(fig["goal_confidence"], "{:.3f}"),
            _NumberItem(fig["l0"], "{:.0f}"),
            _NumberItem(fig["l2"], "{:.3f}"),
            _NumberItem(fig["linf"], "{:.3f}"),
            _NumberItem(fig["seconds"], "{:.2f}"),
        ]
        for col, item in enumerate(cells, start=1):
            self.table.setItem(row, col, item)
        self.table.setSortingEnabled(True)
        self._show_images()

    def table_rows(self) -> list[dict[str, str]]:
        """The table as shown (in its current sort order), for tests and export."""
        return [
            {COLUMNS[c]: self.table.item(r, c).text() for c in range(len(COLUMNS))}
            for r in range(self.table.rowCount())
        ]

    @Slot()
    def _show_images(self) -> None:
        while self.strip_layout.count():
            widget = self.strip_layout.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        if self.x is None:
            return
        i = min(self.image_index.value(), len(self.x) - 1)
        label = "" if self.labels is None else f" (label {int(self.labels[i])})"
        self.strip_layout.addWidget(self._thumb(self.x[i], f"original{label}", None))
        for name, res in self.results.items():
            pred = int(res.pred_after[i])
            conf = float(res.probs_after[i, pred])
            text = f"{name}: {pred} ({conf:.2f})\nL2 {res.l2[i]:.2f}, L0 {int(res.l0[i])}"
            self.strip_layout.addWidget(self._thumb(res.x_adv[i], text, bool(res.success[i])))

    def _thumb(self, image: np.ndarray, text: str, success: bool | None) -> QWidget:
        # Made inside the strip: a parentless box shown is a window of its own for a moment,
        # which took the focus (and the active window) away from where the user left it.
        box = QWidget(self.strip_layout.parentWidget())
        layout = QVBoxLayout(box)
        pic = QLabel()
        pic.setPixmap(to_pixmap(image))
        if success is not None:
            color = QColor("#2e7d32" if success else "#c62828").name()
            pic.setStyleSheet(f"border: 3px solid {color};")
            pic.setToolTip("attack succeeded" if success else "attack failed")
        caption = QLabel(text)
        caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(pic, 0, Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(caption)
        box.setObjectName("thumb")
        box.show()  # a child added to a visible widget is hidden until shown
        return box
