"""Defense tab: compare models and defenses under the same attacks, train defended models.

The comparison runs as one background job (progress, Stop); partial results fill the curves
and the table as each attack finishes. Where naive and adaptive attacks disagree, the notes
say why (gradient masking), next to the numbers.
"""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from advgui.core import history
from advgui.core.errors import AdvguiError
from advgui.core.fileio import atomic_write_bytes
from advgui.core.progress import Partial, Progress
from advgui.core.results import ResultEntry, ResultStore
from advgui.qt.dialogs import show_error
from advgui.qt.state import AppState
from advgui.qt.widgets import buttons, progress_bar
from advgui.qt.widgets.defense_plot import DefensePlot
from advgui.qt.widgets.defense_setup import DefenseSetup
from advgui.qt.widgets.defense_table import DefenseTable
from advgui.qt.widgets.defense_train import DefenseTrainPanel
from advgui.qt.widgets.history import HistoryBox
from advgui.qt.workers import ErrorInfo, Job, JobSlot


class DefenseTab(QWidget):
    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.slot = JobSlot(
            "defense-eval",
            self,
            on_progress=self._on_progress,
            on_partial=self._on_partial,
            on_result=self._on_evaluated,
            on_error=self._on_error,
            on_cancel=self._on_cancel,
            on_finish=self._on_finish,
        )
        self.result: dict[str, Any] | None = None
        self._partial: list[dict[str, Any]] = []
        self._meta: dict[str, Any] = {}

        self.setup = DefenseSetup()
        self.run_button = QPushButton("Run comparison")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        buttons.bind(self.run_button, buttons.RUN, "Compare the chosen models under attack")
        buttons.bind(self.stop_button, buttons.STOP, "Stop; what finished stays shown")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.status = QLabel("Choose models, transformations and attacks, then Run.")
        self.status.setWordWrap(True)
        self.train_panel = DefenseTrainPanel(lambda: self.state.mnist)

        left = QWidget()
        left_lay = QVBoxLayout(left)
        left_lay.addWidget(self.setup)
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.stop_button)
        left_lay.addLayout(run_row)
        left_lay.addWidget(self.progress_bar)
        left_lay.addWidget(self.status)
        left_lay.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(left)
        scroll.setMinimumWidth(360)

        self.plot = DefensePlot()
        self.table = DefenseTable()
        self.notes = QTextBrowser()
        self.notes.setPlaceholderText(
            "Where naive and adaptive attacks disagree, the reason appears here."
        )
        self.notes.setMaximumHeight(130)
        self.export_csv_button = QPushButton("Export CSV...")
        self.export_json_button = QPushButton("Export JSON...")
        self.export_png_button = QPushButton("Export plot PNG...")
        self.open_button = QPushButton("Open JSON...")
        self.open_button.setToolTip("reopen a comparison exported as JSON")
        buttons.bind(self.export_csv_button, buttons.EXPORT, "Export the table as CSV")
        buttons.bind(self.export_json_button, buttons.EXPORT_ALL, "Export everything as JSON")
        buttons.bind(self.export_png_button, "Ctrl+Shift+P", "Export the plot as PNG")
        exports = QHBoxLayout()
        exports.addWidget(self.open_button)
        for b in (self.export_csv_button, self.export_json_button, self.export_png_button):
            b.setEnabled(False)
            exports.addWidget(b)
        exports.addStretch(1)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.plot)
        right.addWidget(self.table)
        right.addWidget(self.notes)
        right_box = QWidget()
        right_lay = QVBoxLayout(right_box)
        right_lay.setContentsMargins(0, 0, 0, 0)
        #: Every finished comparison is kept here and listed again on the next start.
        self.results_store = ResultStore()
        self.history = HistoryBox(history.COMPARISON_KIND, self.results_store)
        right_lay.addWidget(self.history)
        right_lay.addWidget(right)
        right_lay.addLayout(exports)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(scroll)
        split.addWidget(right_box)
        split.setStretchFactor(1, 1)
        # Defended training has a page of its own, its live plots full size (they were
        # squeezed into the left column, below the fold).
        self.pages = QTabWidget()
        self.pages.addTab(split, "Compare defenses")
        self.pages.addTab(self.train_panel, "Train a defended model")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.pages)

        self.run_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.export_csv_button.clicked.connect(lambda: self._export_dialog("csv"))
        self.export_json_button.clicked.connect(lambda: self._export_dialog("json"))
        self.export_png_button.clicked.connect(lambda: self._export_dialog("png"))
        self.open_button.clicked.connect(self._open_dialog)
        self.train_panel.trained.connect(lambda clf: self.state.add_model(clf, make_current=False))
        self.state.modelsChanged.connect(self._on_models)
        self._on_models()
        self.history.opened.connect(self.reopen)
        self.history.warned.connect(self.status.setText)
        self.history.refresh()

    # ------------------------------------------------------------------ running

    @property
    def job(self) -> Job | None:
        return self.slot.job

    def _on_models(self) -> None:
        self.setup.set_models(self.state.models)

    def start(self) -> None:
        """Validate the choices and start the comparison in the background."""
        from advgui.core.evaluation import evaluate

        if self.slot.is_running():
            return
        if self.state.mnist is None:
            self.status.setText("MNIST is not loaded yet (File > Import dataset...)")
            return
        try:
            models = self.setup.selected_models()
            if not models:
                raise AdvguiError("choose at least one model (train one or load a file)")
            cfg = self.setup.eval_config()
            transforms = self.setup.transforms()
        except AdvguiError as err:
            self.status.setText(str(err))
            self._mark_field(getattr(err, "field", None))
            return
        self._mark_field(None)
        mnist = self.state.mnist
        self._partial = []
        self._meta = {"eps": list(cfg.eps), "attacks": list(cfg.attacks), "n": cfg.n}
        self._show(None)

        store = self.results_store

        def work(progress: Any, cancel: Any) -> tuple[dict[str, Any], Any, str | None]:
            result = evaluate(models, mnist, cfg, transforms=transforms, progress=progress,
                              cancel=cancel)  # fmt: skip
            try:  # kept the moment it finishes, before the GUI even hears of it
                return result, history.save_comparison(store, result), None
            except AdvguiError as err:
                return result, None, str(err)

        buttons.set_running(self.run_button, self.stop_button, True)
        progress_bar.started(self.progress_bar)
        self.status.setText(f"comparing {len(models)} model(s) x {len(transforms)} input(s)...")
        self.slot.start(work)

    def stop(self) -> None:
        if self.slot.cancel():
            self.status.setText("stopping after the current step...")

    def _mark_field(self, field: str | None) -> None:
        """Outline the field a bad value came from (the status line says why)."""
        widgets = {"eps": self.setup.eps_edit, "transform": self.setup.custom_transform,
                   "models": self.setup.model_list}  # fmt: skip
        for name, widget in widgets.items():
            widget.setStyleSheet("border: 2px solid #b00020;" if name == field else "")

    def _on_progress(self, update: Progress) -> None:
        if self.slot.is_stopping():
            return
        self.progress_bar.setValue(int(1000 * update.fraction))
        self.status.setText(update.message)

    def _on_partial(self, partial: Partial) -> None:
        entry = partial.entry
        if entry is not None:
            self._partial = [p for p in self._partial if p["label"] != entry["label"]]
            self._partial.append(entry)
            self._show({**self._meta, "results": list(self._partial)})

    def _on_result(self, result: dict[str, Any]) -> None:
        self._show(result)
        self.result = result
        progress_bar.done(self.progress_bar)
        self.status.setText(f"done in {result['seconds']:.0f} s on {result['n']} test images")
        for b in (self.export_csv_button, self.export_json_button, self.export_png_button):
            b.setEnabled(True)

    def _on_evaluated(self, payload: tuple[dict[str, Any], Any, str | None]) -> None:
        result, entry, store_error = payload
        self._on_result(result)
        if entry is not None:
            self.history.add(entry)
        if store_error:
            self.status.setText(f"{self.status.text()}; not kept in the history: {store_error}")

    def reopen(self, entry: ResultEntry) -> bool:
        """Show a stored comparison again (History); False, with a message, if damaged."""
        if self.slot.is_running():
            self.status.setText("stop the running comparison first")
            return False
        try:
            result = history.load_comparison(entry)
            result.setdefault("seconds", 0.0)
            result.setdefault("n", 0)
            self._on_result(result)
        except (AdvguiError, KeyError, TypeError, ValueError) as err:
            self.result = None
            self._show(None)
            self.status.setText(f"cannot reopen {entry.path.name}: {err}")
            return False
        self.status.setText(f"reopened {entry.name} ({entry.created.replace('T', ' ')[:16]})")
        return True

    def _on_error(self, info: ErrorInfo) -> None:
        self.status.setText(f"comparison failed: {info.message}")
        if not info.user_error:  # a bug: details in a dialog (and the log), the app goes on
            show_error(self, "Comparison failed", info)

    def _on_cancel(self) -> None:
        progress_bar.stopped(self.progress_bar)
        self.status.setText("stopped: the curves and table show what finished before Stop")

    def _on_finish(self) -> None:
        buttons.set_running(self.run_button, self.stop_button, False)

    def _show(self, result: dict[str, Any] | None) -> None:
        self.plot.set_result(result)
        self.table.set_result(result)
        notes = [n for e in (result or {}).get("results", []) for n in e.get("notes", [])]
        for e in (result or {}).get("results", []):
            det = e.get("detector")
            if det:
                notes.append(
                    f"{e['label']}: squeezing detector at {det['fpr_setting']:.0%} false "
                    f"positives (measured {det['fpr_measured']:.1%}); detection rates of "
                    "successful adversarial images: "
                    + "; ".join(
                        f"{a}: "
                        + ", ".join(
                            f"eps {eps:g} {r:.0%}"
                            for eps, r in zip(v["eps"], v["rate"], strict=True)
                            if r is not None
                        )
                        for a, v in det["detection_rate"].items()
                    )
                    + " (attacks not adapted to the detector)"
                )
        self.notes.setPlainText("\n\n".join(notes))

    # ------------------------------------------------------------------ export

    def export_csv(self, path: str) -> None:
        from advgui.core.evaluation import save_csv

        save_csv(self._require(), path)

    def export_json(self, path: str) -> None:
        from advgui.core.evaluation import save_json

        save_json(self._require(), path)

    def export_png(self, path: str) -> None:
        self._require()
        from advgui.core.evaluation import render_png

        # The same stand-alone figure as the CLI's --plot (title, units, N, date, 2x).
        atomic_write_bytes(path, render_png(self.plot.result, self.plot.chosen_attack(), scale=2))

    def _require(self) -> dict[str, Any]:
        if self.result is None:
            raise AdvguiError("run a comparison first")
        return self.result

    def _export_dialog(self, kind: str) -> None:
        filters = {"csv": "CSV (*.csv)", "json": "JSON (*.json)", "png": "PNG image (*.png)"}
        path, _ = QFileDialog.getSaveFileName(self, f"Export {kind.upper()}",
                                              f"defenses.{kind}", filters[kind])  # fmt: skip
        if not path:
            return
        try:
            {"csv": self.export_csv, "json": self.export_json, "png": self.export_png}[kind](path)
        except AdvguiError as err:
            self.status.setText(f"export failed: {err}")
            return
        self.status.setText(f"saved {path}")

    def _open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open comparison", "", "JSON (*.json)")
        if not path:
            return
        try:
            self.load_result(path)
        except AdvguiError as err:
            self.status.setText(str(err))

    def load_result(self, path: str) -> None:
        """Reopen an exported JSON comparison."""
        try:
            with open(path, encoding="utf-8") as fh:
                result = json.load(fh)
            if not isinstance(result, dict) or not isinstance(result.get("results"), list):
                raise ValueError("not an advgui comparison")
            result.setdefault("seconds", 0.0)
            result.setdefault("n", 0)
        except (OSError, ValueError) as err:
            raise AdvguiError(f"{path}: cannot read comparison ({err})") from err
        try:
            self._on_result(result)
        except (KeyError, TypeError, ValueError) as err:
            self.result = None
            self._show(None)
            raise AdvguiError(f"{path}: not an advgui comparison ({err})") from err

    def shutdown(self) -> None:
        """Cancel this tab's jobs (the window joins all threads afterwards)."""
        self.slot.cancel()
        self.train_panel.shutdown()
