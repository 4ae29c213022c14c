"""Attack tab: choose an image (test set, import, drawing), an attack and its parameters, run it
in the background with a live view, compare before and after, export verified PNGs.

What the tab holds and decides (model, image, batch, pending run, result, history) lives in
:class:`~advgui.core.sessions.AttackSession`; this file wires widgets to it and shows it. The
panels are widgets of their own (source, the attack's spec-built form with Run and Stop,
result); the jobs run in :class:`~advgui.qt.workers.JobSlot` objects, one per kind of work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Slot
from PySide6.QtWidgets import (
    QFileDialog,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from advgui.core.errors import AdvguiError, ParameterError
from advgui.core.progress import Partial, Progress
from advgui.core.results import ResultEntry
from advgui.core.sessions import AttackSession, RunOutput, results_folder
from advgui.qt.dialogs import show_error
from advgui.qt.reflow import ReflowSplitter
from advgui.qt.state import AppState
from advgui.qt.widgets import progress_bar
from advgui.qt.widgets.attack_compare import AttackCompareWidget
from advgui.qt.widgets.attack_controls import FIELD_NAMES, AttackControls
from advgui.qt.widgets.attack_result import AttackResultPanel
from advgui.qt.widgets.attack_source import AttackSourcePanel
from advgui.qt.widgets.param_form import MARK_STYLE
from advgui.qt.workers import ErrorInfo, Job, JobSlot

#: Widgets and calls of the three panels the tab offers by name (``tab.gallery``...).
PARTS = {
    "source_panel": ("model_combo", "load_button", "source_tabs", "gallery", "canvas",
                     "import_button", "import_image", "load_model_file", "use_canvas"),
    "controls": ("method_combo", "goal_combo", "batch_spin", "stall_note", "run_button",
                 "stop_button", "progress", "status", "error_label"),
    "panel": ("history", "original_view", "adversarial_view", "delta_view", "summary", "bars",
              "cost", "result_spin", "result_count", "export_button", "export_batch_button"),
}  # fmt: skip


class AttackTab(QWidget):
    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.session = AttackSession()
        self.results_store = self.session.store
        self._slots()
        self.source_panel = AttackSourcePanel(state)
        self.controls = AttackControls()
        self.panel = AttackResultPanel(self.session.store)
        for owner, names in PARTS.items():
            for name in names:
                setattr(self, name, getattr(getattr(self, owner), name))
        self.compare = AttackCompareWidget(state)
        self.results_tabs = QTabWidget()
        self.results_tabs.addTab(self.panel, "Result")
        self.results_tabs.addTab(self.compare, "Compare attacks")
        splitter = self.main_splitter = ReflowSplitter()  # stacks on a small screen
        for i, (widget, stretch) in enumerate(
            ((self.source_panel, 3), (self.controls, 2), (self.results_tabs, 5))
        ):
            splitter.addWidget(widget)
            splitter.setStretchFactor(i, stretch)
        splitter.setSizes([300, 340, 560])
        QVBoxLayout(self).addWidget(splitter)

        self.source_panel.sourceChosen.connect(self._on_source)
        self.source_panel.said.connect(self._say)
        self.run_button.clicked.connect(self.run_attack)
        self.stop_button.clicked.connect(self.stop)
        self.panel.inputChosen.connect(self.show_result)
        self.export_button.clicked.connect(self.choose_export_file)
        self.export_batch_button.clicked.connect(self.choose_export_folder)
        self.results_tabs.currentChanged.connect(self._sync_compare)
        self.batch_spin.valueChanged.connect(self._sync_compare)
        state.datasetChanged.connect(self._on_dataset)
        state.datasetSwitched.connect(self._on_switched)
        self._on_switched(state.spec)
        state.modelsChanged.connect(self._on_models)
        state.currentModelChanged.connect(self._on_models)
        if state.mnist is not None:
            self._on_dataset(state.mnist)
        self._on_models()
        self.history.opened.connect(self.reopen)
        self.history.warned.connect(self.status.setText)
        self.history.refresh()

    def __getattr__(self, name: str) -> Any:
        if name in FIELD_NAMES:  # tab.eps_spin...: the chosen attack's field of that name
            return self.controls.field(name)
        raise AttributeError(name)

    def _slots(self) -> None:
        """One job slot per kind of work, each with its one outcome path."""
        err = self._show_error
        self.attack_slot = JobSlot(
            "attack",
            self,
            on_progress=self._on_progress,
            on_partial=self._on_partial,
            on_result=self._on_result,
            on_error=lambda info: self._failed("Attack failed", info),
            on_cancel=self._on_cancelled,
            on_finish=self._update_buttons,
        )
        self.export_slot = JobSlot(
            "attack-export",
            self,
            on_error=lambda info: err("Export failed", info),
            on_finish=self._update_buttons,
        )

    # ------------------------------------------------------------------ session views

    source_x = property(lambda self: getattr(self.session.source, "x", None))
    source_label = property(lambda self: getattr(self.session.source, "label", -1))
    source_index = property(lambda self: getattr(self.session.source, "index", None))
    result = property(lambda self: getattr(self.session.shown, "result", None))
    result_indices = property(lambda self: getattr(self.session.shown, "indices", None))
    result_model = property(lambda self: getattr(self.session.shown, "model", None))
    last_export = property(lambda self: self.session.last_export)
    job = property(lambda self: self.attack_slot.job)
    export_job = property(lambda self: self.export_slot.job)

    @property
    def import_job(self) -> Job | None:
        return self.source_panel.import_slot.job

    @import_job.setter
    def import_job(self, job: Job | None) -> None:
        self.source_panel.import_slot.job = job

    # ------------------------------------------------------------------ model and image

    @Slot(object)
    def _on_switched(self, spec: Any) -> None:
        """Another dataset: its class names everywhere, none of the other's image or result."""
        had = self.session.source is not None or self.session.shown is not None
        self.session.use_dataset(spec, self.state.mnist)
        self.gallery.set_classes(spec)
        self.controls.set_classes(spec)
        self.bars.set_classes(spec)
        self.compare.set_classes(spec)
        if self.state.mnist is None:
            self.gallery.clear()
        if had:
            self._show_source()

    @Slot(object)
    def _on_dataset(self, mnist: Any) -> None:
        self.session.use_dataset(self.state.spec, mnist)
        self.gallery.set_data(mnist.x_test, mnist.y_test)
        if self.session.source is None:
            self.gallery.select_index(0)

    def _on_models(self, *_: Any) -> None:
        changed = self.session.model is not self.state.current_model
        self.session.model = self.state.current_model
        self._mark_model()
        if changed and self.session.shown is None and not self.attack_slot.is_running():
            self._show_source()
        self._update_buttons()
        self._sync_compare()

    def _mark_model(self) -> str | None:
        """Outline the model chooser while its model belongs to the other dataset, with why
        (the project's marked field); the mark goes with the model. The problem, or None."""
        problem = self.session.model_problem()
        was_marked = bool(self.model_combo.styleSheet())
        self.model_combo.setStyleSheet(MARK_STYLE if problem else "")
        if problem:
            self.model_combo.setToolTip(problem)
        elif was_marked:
            self.source_panel.refresh_models()  # its own tooltip back
        if problem:
            self.error_label.setText(problem)
        elif self.error_label.text().startswith("model ") and "refused" in self.error_label.text():
            self.error_label.setText("")
        return problem

    def _on_source(self, x: np.ndarray, label: int, index: int | None) -> None:
        source = self.session.set_source(x, label, index)
        self.error_label.setText("")
        if self.session.shown is None and not self.attack_slot.is_running():
            self._show_source()
        else:
            self.original_view.set_image(source.x, source.caption)
        self.batch_spin.setEnabled(source.index is not None)
        self._update_buttons()
        self._sync_compare()

    def _show_source(self) -> None:
        """The chosen image with the model's prediction, nothing of an older result."""
        try:
            view = self.session.source_view()
        except AdvguiError as err:  # a model that cannot run on this image
            self.error_label.setText(str(err))
            view = None
        self.panel.show_source(view)
        if not self.attack_slot.is_running():  # the last run's "Done" and bar are not of it
            progress_bar.started(self.progress)
            if self.status.text().startswith(("Done", "Stopped")):  # not a warning
                self.status.setText("Choose an attack, then Run.")
        self._update_buttons()

    def _say(self, text: str, error: bool) -> None:
        (self.error_label if error else self.status).setText(text)

    def _batch(self) -> tuple[np.ndarray, np.ndarray, list[int] | None]:
        return self.session.batch(self.batch_spin.value(), self.gallery.visible_indices())

    def _sync_compare(self, *_: Any) -> None:
        """Give the comparison the current model and images (the single-attack batch), while
        it is on screen; a change of inputs stops a comparison still running on old ones."""
        if self.results_tabs.currentWidget() is not self.compare:
            return
        clf = self.state.current_model
        if clf is None or self.session.source is None or self.session.model_problem():
            return
        x, labels, _ = self._batch()
        same = self.compare.x is not None and np.array_equal(self.compare.x, x)
        if self.compare.clf is clf and same:
            return
        self.compare.set_inputs(clf, x, labels if labels[0] >= 0 else None)

    # ------------------------------------------------------------------ parameters

    @property
    def extra_widgets(self) -> dict[str, QWidget]:
        return self.controls.extra_widgets

    def params(self) -> dict[str, Any]:
        """The parameters the chosen attack takes, read from its form."""
        return self.controls.params()

    # ------------------------------------------------------------------ running

    def run_attack(self) -> Job | None:
        """Validate, then run the attack in a background job; None if it cannot start."""
        if self.attack_slot.is_running():
            return None
        self.error_label.setText("")
        self.controls.mark(None)
        self.session.model = self.state.current_model
        c = self.controls
        order = self.gallery.visible_indices()
        try:
            run = self.session.prepare(
                c.method(), c.params(), c.goal(), n=c.batch_spin.value(), order=order,
                precision=self.state.precision,
            )  # fmt: skip
        except ParameterError as err:
            self.controls.mark(err.field, str(err))
            if err.field == "model":
                self._mark_model()
            return None
        self.panel.show_running(
            run.message, self.session.prediction(), run.cost_axis, run.cost_x_label
        )
        progress_bar.started(self.progress)
        self.status.setText(run.message)
        job = self.attack_slot.start(run.work)
        self._update_buttons()
        return job

    def stop(self) -> None:
        if self.attack_slot.cancel():
            self.status.setText("Stopping...")

    def _on_progress(self, update: Progress) -> None:
        if self.attack_slot.is_stopping():
            return
        self.progress.setValue(int(1000 * update.fraction))
        cost = update.info.get("cost")
        self.status.setText(update.message + ("" if cost is None else f"  cost {cost:.4g}"))

    def _on_partial(self, partial: Partial) -> None:
        live = self.session.live_delta(partial)
        curve, x = partial.curve, None
        if partial.trace:  # a black-box attack: its margin or distance by queries used
            trace = np.asarray(partial.trace, float)
            curve, x = trace[:, 1], trace[:, 0]
        self.panel.show_live(curve, *(live or (None, None)), x=x)

    def _on_result(self, output: RunOutput) -> None:
        text = self.session.finish(output)
        self._display()
        if output.entry is not None:
            self.history.add(output.entry)
        self.status.setText(text)

    def _on_cancelled(self) -> None:
        self.session.abandon()
        if self.session.shown is not None:  # the result from before the run, as it was
            self.show_result(self.panel.current())
        else:
            self._show_source()
            self.adversarial_view.set_image(None, "stopped")
        progress_bar.stopped(self.progress)  # after the views: they reset bar and status
        self.status.setText("Stopped: nothing was changed.")

    def _failed(self, title: str, info: ErrorInfo) -> None:
        self.session.abandon()
        self._show_error(title, info)

    def _display(self) -> None:
        progress_bar.done(self.progress)
        self.panel.set_count(len(self.session.shown.result))
        self.show_result(0)

    def reopen(self, entry: ResultEntry) -> bool:
        """Show a stored run again (History); False, with a message, if it is damaged."""
        if self.attack_slot.is_running():
            self.status.setText("Stop the running attack first.")
            return False
        try:
            text = self.session.reopen(entry, self.state.models)
        except AdvguiError as err:
            self.status.setText(f"Cannot reopen: {err}")
            return False
        self._display()
        self.status.setText(text)
        return True

    def show_result(self, k: int) -> None:
        """Show input ``k`` of the shown result: images, probabilities, cost, numbers."""
        view = self.session.view(k)
        if view is not None:
            self.panel.show_view(view)
            self._update_buttons()

    # ------------------------------------------------------------------ export

    def choose_export_file(self) -> None:
        if self.session.shown is None:
            return
        suggested = str(results_folder() / self.session.export_name(self.panel.current()))
        path, _ = QFileDialog.getSaveFileName(
            self, "Export adversarial image", suggested, "PNG (*.png)"
        )
        if path:
            self.export_image(path)

    def choose_export_folder(self) -> None:
        if self.session.shown is None:
            return
        folder = QFileDialog.getExistingDirectory(
            self, "Export the batch into", str(results_folder())
        )
        if folder:
            self.export_batch(folder)

    def export_image(self, path: str | Path) -> Job | None:
        """Write the shown result as PNG + enlarged PNG + JSON, verified, in the background."""
        k = self.panel.current()
        return self._run_export(lambda: self.session.export_image_work(path, k), str(path))

    def export_batch(self, folder: str | Path) -> Job | None:
        """Write every image of the last run into ``folder`` with a CSV index."""
        return self._run_export(lambda: self.session.export_batch_work(folder), str(folder))

    def _run_export(self, make_work: Any, where: str) -> Job | None:
        if self.session.shown is None:
            return None
        try:
            work = make_work()
        except AdvguiError as err:
            self.error_label.setText(str(err))
            return None
        self.status.setText(f"Exporting to {where}...")

        def done(records: list[dict[str, Any]]) -> None:
            self.status.setText(self.session.exported(records, where))

        job = self.export_slot.start(work, on_result=done)
        self._update_buttons()
        return job

    # ------------------------------------------------------------------ misc

    def _show_error(self, title: str, info: ErrorInfo) -> None:
        self.error_label.setText(info.message)
        self.status.setText(title)
        if not info.user_error:
            show_error(self, title, info)

    def _update_buttons(self, *_: Any) -> None:
        ready = (
            self.state.current_model is not None
            and self.session.source is not None
            and self.session.model_problem() is None
        )
        self.controls.set_running(self.attack_slot.is_running(), ready)
        can_export = self.session.can_export() and not self.export_slot.is_running()
        self.export_button.setEnabled(can_export)
        self.export_batch_button.setEnabled(can_export)

    def shutdown(self) -> None:
        """Cancel this tab's jobs (the window joins all threads afterwards)."""
        self.attack_slot.cancel()
        self.export_slot.cancel()
        self.source_panel.shutdown()
        self.compare.shutdown()
