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
from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QFileDialog,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from advgui.core import images
from advgui.core.errors import AdvguiError, ParameterError
from advgui.core.progress import Partial, Progress
from advgui.core.results import ResultEntry
from advgui.core.sessions import AttackSession, RunOutput, Source
from advgui.qt.dialogs import show_error
from advgui.qt.state import AppState
from advgui.qt.widgets.attack_compare import AttackCompareWidget
from advgui.qt.widgets.attack_controls import FIELD_NAMES, AttackControls
from advgui.qt.widgets.attack_result import AttackResultPanel
from advgui.qt.widgets.attack_source import AttackSourcePanel
from advgui.qt.workers import ErrorInfo, Job, JobSlot

#: Widgets of the three panels the tab offers by name (``tab.gallery``, ``tab.run_button``...).
PARTS = {
    "source_panel": ("model_combo", "load_button", "source_tabs", "gallery", "canvas",
                     "import_button"),
    "controls": ("method_combo", "goal_combo", "batch_spin", "stall_note", "run_button",
                 "stop_button", "progress", "status", "error_label"),
    "panel": ("history", "original_view", "adversarial_view", "delta_view", "summary", "bars",
              "cost", "result_spin", "result_count", "export_button", "export_batch_button"),
}  # fmt: skip
#: Pictures up to this size decode in the GUI thread (well under 50 ms); bigger ones in a job.
INLINE_DECODE_PIXELS = 1_000_000


def _results_dir() -> Path:
    """Where export dialogs open: the user's results folder (created), else home."""
    from advgui.core import paths

    try:
        paths.results_dir().mkdir(parents=True, exist_ok=True)
    except OSError:
        return Path.home()
    return paths.results_dir()


def _short(clf: Any) -> str:
    acc = clf.meta.get("test_accuracy") if hasattr(clf, "meta") else None
    return clf.name + (f"  ({100 * acc:.1f}%)" if isinstance(acc, (int, float)) else "")


class AttackTab(QWidget):
    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.session = AttackSession()
        self.results_store = self.session.store
        self._slots()
        self.source_panel = AttackSourcePanel()
        self.controls = AttackControls()
        self.panel = AttackResultPanel(self.session.store)
        for owner, names in PARTS.items():
            for name in names:
                setattr(self, name, getattr(getattr(self, owner), name))
        self.compare = AttackCompareWidget(state)
        self.results_tabs = QTabWidget()
        self.results_tabs.addTab(self.panel, "Result")
        self.results_tabs.addTab(self.compare, "Compare attacks")
        splitter = QSplitter(Qt.Orientation.Horizontal)
        for i, (widget, stretch) in enumerate(
            ((self.source_panel, 3), (self.controls, 2), (self.results_tabs, 5))
        ):
            splitter.addWidget(widget)
            splitter.setStretchFactor(i, stretch)
        splitter.setSizes([300, 340, 560])
        QVBoxLayout(self).addWidget(splitter)

        self.model_combo.currentIndexChanged.connect(self._on_model_chosen)
        self.load_button.clicked.connect(self.choose_model_file)
        self.gallery.imageSelected.connect(self.select_test_image)
        self.canvas.drawn.connect(self.use_canvas)
        self.import_button.clicked.connect(self.choose_image_file)
        self.run_button.clicked.connect(self.run_attack)
        self.stop_button.clicked.connect(self.stop)
        self.panel.inputChosen.connect(self.show_result)
        self.export_button.clicked.connect(self.choose_export_file)
        self.export_batch_button.clicked.connect(self.choose_export_folder)
        self.results_tabs.currentChanged.connect(self._sync_compare)
        self.batch_spin.valueChanged.connect(self._sync_compare)
        state.datasetChanged.connect(self._on_dataset)
        state.modelsChanged.connect(self._refresh_models)
        state.currentModelChanged.connect(self._refresh_models)
        if state.mnist is not None:
            self._on_dataset(state.mnist)
        self._refresh_models()
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
        self.import_slot = JobSlot(
            "attack-import-image",
            self,
            on_result=self._use_imported,
            on_error=self._on_import_error,
            on_finish=lambda: self.status.setText(""),
        )
        self.load_slot = JobSlot(
            "attack-load-model",
            self,
            on_result=self._model_loaded,
            on_error=lambda info: err("Cannot load model", info),
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
        return self.import_slot.job

    @import_job.setter
    def import_job(self, job: Job | None) -> None:
        self.import_slot.job = job

    # ------------------------------------------------------------------ models and data

    @Slot(object)
    def _on_dataset(self, mnist: Any) -> None:
        self.session.mnist = mnist
        self.gallery.set_data(mnist.x_test, mnist.y_test)
        if self.session.source is None:
            self.gallery.select_index(0)

    @Slot()
    def _refresh_models(self, *_: Any) -> None:
        self.session.model = self.state.current_model
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for clf in self.state.models:
            self.model_combo.addItem(_short(clf))
        current = self.state.current_model
        if current is not None and current in self.state.models:
            self.model_combo.setCurrentIndex(self.state.models.index(current))
        self.model_combo.blockSignals(False)
        if not self.state.models:
            self.model_combo.addItem("no model: train one or Load model...")
        self._update_buttons()
        self._sync_compare()

    def _on_model_chosen(self, i: int) -> None:
        if 0 <= i < len(self.state.models):
            self.state.set_current_model(self.state.models[i])

    def choose_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load a Keras model", str(Path.home()), "Keras models (*.keras)"
        )
        if path:
            self.load_model_file(path)

    def load_model_file(self, path: str | Path) -> Job:
        """Load a model in the background and make it the shared current model."""
        from advgui.core import models

        self.status.setText(f"Loading {Path(path).name}...")
        return self.load_slot.start(lambda progress, cancel: models.load_model(path))

    def _model_loaded(self, clf: Any) -> None:
        self.state.add_model(clf)
        self.status.setText("Model loaded.")

    # ------------------------------------------------------------------ source image

    @Slot(int)
    def select_test_image(self, i: int) -> None:
        if self.session.mnist is not None:
            self._show_source(self.session.choose_test_image(i))

    def use_canvas(self) -> None:
        try:
            self._show_source(self.session.set_source(self.canvas.digit()))
        except AdvguiError as err:
            self.error_label.setText(str(err))

    def choose_image_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import a digit", str(Path.home()), "Images (*.png *.jpg *.jpeg);;All files (*)"
        )
        if path:
            self.import_image(path)

    def import_image(self, path: str | Path) -> bool:
        """Import a picture as the source (and onto the canvas); False, with a message, if not.

        The header is checked here (format allow-list, size limit); a small picture is decoded
        at once, a big one in a background job, so a large photo never freezes the window.
        """
        try:
            width, height = images.image_size(path)
            digit = images.load_image(path) if width * height <= INLINE_DECODE_PIXELS else None
        except AdvguiError as err:
            self.error_label.setText(str(err))
            return False
        if digit is not None:
            self._use_imported(digit)
            return True
        self.status.setText(f"Reading {Path(path).name} ({width}x{height})...")
        self.import_slot.start(lambda progress, cancel: images.load_image(path))
        return True

    def _on_import_error(self, info: ErrorInfo) -> None:
        if info.user_error:
            self.error_label.setText(info.message)
        else:
            self._show_error("Cannot import image", info)

    def _use_imported(self, digit: np.ndarray) -> None:
        self.canvas.set_digit(digit)
        self.source_panel.show_drawing()
        self._show_source(self.session.set_source(digit))

    def _show_source(self, source: Source) -> None:
        self.error_label.setText("")
        self.original_view.set_image(source.x, source.caption)
        self.batch_spin.setEnabled(source.index is not None)
        self._update_buttons()
        self._sync_compare()

    def _batch(self) -> tuple[np.ndarray, np.ndarray, list[int] | None]:
        return self.session.batch(self.batch_spin.value(), self.gallery.visible_indices())

    def _sync_compare(self, *_: Any) -> None:
        """Give the comparison the current model and images (the single-attack batch), while
        it is on screen; a change of inputs stops a comparison still running on old ones."""
        if self.results_tabs.currentWidget() is not self.compare:
            return
        clf = self.state.current_model
        if clf is None or self.session.source is None:
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
                c.method(), c.params(), c.goal(), n=c.batch_spin.value(), order=order
            )
        except ParameterError as err:
            self.controls.mark(err.field, str(err))
            return None
        self.panel.show_running()
        self.progress.setValue(0)
        self.status.setText(run.message)
        job = self.attack_slot.start(run.work)
        self._update_buttons()
        return job

    def stop(self) -> None:
        if self.attack_slot.cancel():
            self.status.setText("Stopping...")

    def _on_progress(self, update: Progress) -> None:
        self.progress.setValue(int(1000 * update.fraction))
        cost = update.info.get("cost")
        self.status.setText(update.message + ("" if cost is None else f"  cost {cost:.4g}"))

    def _on_partial(self, partial: Partial) -> None:
        live = self.session.live_delta(partial)
        self.panel.show_live(partial.curve, *(live or (None, None)))

    def _on_result(self, output: RunOutput) -> None:
        text = self.session.finish(output)
        self._display()
        if output.entry is not None:
            self.history.add(output.entry)
        self.status.setText(text)

    def _on_cancelled(self) -> None:
        self.session.abandon()
        self.status.setText("Stopped: nothing was changed.")
        self.adversarial_view.set_image(None, "stopped")

    def _failed(self, title: str, info: ErrorInfo) -> None:
        self.session.abandon()
        self._show_error(title, info)

    def _display(self) -> None:
        self.progress.setValue(1000)
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
        suggested = str(_results_dir() / self.session.export_name(self.panel.current()))
        path, _ = QFileDialog.getSaveFileName(
            self, "Export adversarial image", suggested, "PNG (*.png)"
        )
        if path:
            self.export_image(path)

    def choose_export_folder(self) -> None:
        if self.session.shown is None:
            return
        folder = QFileDialog.getExistingDirectory(
            self, "Export the batch into", str(_results_dir())
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
        ready = self.state.current_model is not None and self.session.source is not None
        self.controls.set_running(self.attack_slot.is_running(), ready)
        can_export = self.session.can_export() and not self.export_slot.is_running()
        self.export_button.setEnabled(can_export)
        self.export_batch_button.setEnabled(can_export)

    def shutdown(self) -> None:
        """Cancel this tab's jobs (the window joins all threads afterwards)."""
        for slot in (self.attack_slot, self.export_slot, self.import_slot, self.load_slot):
            slot.cancel()
        self.compare.shutdown()
