"""Defense tab: compare models and defenses under the same attacks, train defended models.

What the tab holds and decides (the pending comparison, partial and shown results, notes,
history, exports) lives in :class:`~advgui.core.sessions.DefenseSession`; this file wires
widgets to it and shows it. The comparison runs as one job in a
:class:`~advgui.qt.workers.JobSlot` (progress, Stop); partial results fill the curves and the
table as each attack finishes. Where naive and adaptive attacks disagree, the notes say why
(gradient masking), next to the numbers.
"""

from __future__ import annotations

import dataclasses
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
from advgui.core.progress import Partial, Progress
from advgui.core.results import ResultEntry
from advgui.core.sessions.defense import NO_DATA, ComparisonOutput, DefenseSession
from advgui.qt.dialogs import show_error
from advgui.qt.reflow import ReflowSplitter
from advgui.qt.state import AppState
from advgui.qt.widgets import buttons, progress_bar
from advgui.qt.widgets.certified_plot import CertifiedPlot
from advgui.qt.widgets.defense_plot import DefensePlot
from advgui.qt.widgets.defense_setup import DefenseSetup
from advgui.qt.widgets.defense_table import DefenseTable
from advgui.qt.widgets.defense_train import DefenseTrainPanel
from advgui.qt.widgets.history import HistoryBox
from advgui.qt.widgets.leaderboard_view import LeaderboardPanel
from advgui.qt.workers import ErrorInfo, Job, JobSlot


class DefenseTab(QWidget):
    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.session = DefenseSession()
        self.session.mnist = state.mnist
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
        self.train_panel = DefenseTrainPanel(
            lambda: self.state.mnist, precision_getter=lambda: self.state.precision
        )

        settings = QWidget()
        settings_lay = QVBoxLayout(settings)
        settings_lay.addWidget(self.setup)
        settings_lay.addStretch(1)
        settings_scroll = QScrollArea()
        settings_scroll.setWidgetResizable(True)
        settings_scroll.setWidget(settings)
        # The settings scroll; Run, Stop, the progress and the status stay in place below
        # them, whatever the window's height (they were below the fold at 1280x800).
        left = QWidget()
        left_lay = QVBoxLayout(left)
        left_lay.setContentsMargins(0, 0, 0, 0)
        left_lay.addWidget(settings_scroll, 1)
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.stop_button)
        left_lay.addLayout(run_row)
        left_lay.addWidget(self.progress_bar)
        left_lay.addWidget(self.status)
        left.setMinimumWidth(360)

        self.plot = DefensePlot()
        self.table = DefenseTable()
        self.certified_plot = CertifiedPlot()
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
        right.addWidget(self.certified_plot)
        right.addWidget(self.notes)
        right_box = QWidget()
        right_lay = QVBoxLayout(right_box)
        right_lay.setContentsMargins(0, 0, 0, 0)
        self.results_store = self.session.store
        self.history = HistoryBox(history.COMPARISON_KIND, self.results_store)
        right_lay.addWidget(self.history)
        right_lay.addWidget(right)
        right_lay.addLayout(exports)

        split = self.main_splitter = ReflowSplitter()  # stacks on a small screen
        split.addWidget(left)
        split.addWidget(right_box)
        split.setStretchFactor(1, 1)
        # Defended training has a page of its own, its live plots full size (they were
        # squeezed into the left column, below the fold).
        self.pages = QTabWidget()
        self.pages.addTab(split, "Compare defenses")
        self.pages.addTab(self.train_panel, "Train a defended model")
        self.leaderboard = LeaderboardPanel(lambda: self.state.mnist)
        self.pages.addTab(self.leaderboard, "Leaderboard")
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
        self.state.datasetChanged.connect(lambda mnist: setattr(self.session, "mnist", mnist))
        self._on_models()
        self.history.opened.connect(self.reopen)
        self.history.warned.connect(self.status.setText)
        self.history.refresh()

    # ------------------------------------------------------------------ running

    @property
    def job(self) -> Job | None:
        return self.slot.job

    @property
    def result(self) -> dict[str, Any] | None:
        """The last complete comparison (what the exports write)."""
        return self.session.result

    def _on_models(self) -> None:
        self.setup.set_models(self.state.models)

    def start(self) -> None:
        """Validate the choices and start the comparison in the background."""
        if self.slot.is_running():
            return
        if self.session.mnist is None:
            self.status.setText(NO_DATA)
            return
        try:
            models = self.session.chosen_models(self.setup.selected_models())
            config = dataclasses.replace(self.setup.eval_config(), precision=self.state.precision)
            run = self.session.prepare(models, config.validate(), self.setup.transforms())
        except AdvguiError as err:
            self.status.setText(str(err))
            self._mark_field(getattr(err, "field", None))
            return
        self._mark_field(None)
        self._render()
        buttons.set_running(self.run_button, self.stop_button, True)
        progress_bar.started(self.progress_bar)
        self.status.setText(run.message)
        self.slot.start(run.work)

    def stop(self) -> None:
        if self.slot.cancel():
            self.status.setText("stopping after the current step...")

    def _mark_field(self, field: str | None) -> None:
        """Outline the field a bad value came from (the status line says why)."""
        widgets = {
            "eps": self.setup.eps_edit,
            "transform": self.setup.custom_transform,
            "models": self.setup.model_list,
            "sigma": self.setup.sigma_spin,
            "radii": self.setup.radii_edit,
            "certify": self.setup.certify_combo,
        }
        for name, widget in widgets.items():
            widget.setStyleSheet("border: 2px solid #b00020;" if name == field else "")

    def _on_progress(self, update: Progress) -> None:
        if self.slot.is_stopping():
            return
        self.progress_bar.setValue(int(1000 * update.fraction))
        self.status.setText(update.message)

    def _on_partial(self, partial: Partial) -> None:
        if self.session.partial(partial):
            self._render()

    def _shown_complete(self, text: str) -> None:
        """A complete comparison is in the session: show it, allow its exports."""
        self._render()
        progress_bar.done(self.progress_bar)
        self.status.setText(text)
        for b in (self.export_csv_button, self.export_json_button, self.export_png_button):
            b.setEnabled(True)

    def _on_evaluated(self, output: ComparisonOutput) -> None:
        self._shown_complete(self.session.finish(output))
        if output.entry is not None:
            self.history.add(output.entry)

    def reopen(self, entry: ResultEntry) -> bool:
        """Show a stored comparison again (History); False, with a message, if damaged."""
        try:
            text = self.session.reopen(entry)
            self._shown_complete(text)
        except AdvguiError as err:
            if self.session.shown is None:
                self._render()
            self.status.setText(str(err))
            return False
        except (KeyError, TypeError, ValueError) as err:  # the views found it malformed
            self.session.clear()
            self._render()
            self.status.setText(f"cannot reopen {entry.path.name}: {err}")
            return False
        return True

    def _on_error(self, info: ErrorInfo) -> None:
        if self.session.abandon():
            self._render()
        self.status.setText(f"comparison failed: {info.message}")
        if not info.user_error:  # a bug: details in a dialog (and the log), the app goes on
            show_error(self, "Comparison failed", info)

    def _on_cancel(self) -> None:
        cut = self.session.abandon(stopped=True)
        if cut:
            self._render()
        progress_bar.stopped(self.progress_bar)
        self.status.setText(self.session.stopped_text(cut))

    def _on_finish(self) -> None:
        buttons.set_running(self.run_button, self.stop_button, False)

    def _render(self) -> None:
        """Show the session's shown comparison (or nothing) in the plot, table and notes."""
        shown = self.session.shown
        self.plot.set_result(shown)
        self.table.set_result(shown)
        self.certified_plot.set_result(shown)
        self.notes.setPlainText(self.session.notes(shown))

    # ------------------------------------------------------------------ export

    def export_csv(self, path: str) -> None:
        self.session.export("csv", path)

    def export_json(self, path: str) -> None:
        self.session.export("json", path)

    def export_png(self, path: str) -> None:
        # The same stand-alone figure as the CLI's --plot (title, units, N, date, 2x).
        self.session.export("png", path, self.plot.chosen_attack())

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
        text = self.session.show(self.session.read(path))
        try:
            self._shown_complete(text)
        except (KeyError, TypeError, ValueError) as err:  # the views found it malformed
            self.session.clear()
            self._render()
            raise AdvguiError(f"{path}: not an advgui comparison ({err})") from err

    def shutdown(self) -> None:
        """Cancel this tab's jobs (the window joins all threads afterwards)."""
        self.slot.cancel()
        self.train_panel.shutdown()
