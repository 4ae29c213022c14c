"""Training tab: choose a network and its options, train it in a worker, watch it learn.

What the tab holds and decides (the run, its progress lines, which model is shown and why,
cached predictions, stored models) lives in :class:`~advgui.core.sessions.TrainingSession`;
this file wires widgets to it and shows it. Every job runs in a
:class:`~advgui.qt.workers.JobSlot` (its slots run in the GUI thread); the training job stores
the model before returning, so nothing is lost if the window closes. TensorFlow is never
imported in the GUI thread: predictions for a selected model are computed in a job too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from advgui.core import training, workspace
from advgui.core.errors import ParameterError
from advgui.core.progress import Progress
from advgui.core.sessions.training import (  # re-exported: older code imports them from here
    ARCH_LABELS,
    FORM,
    GUI_EVALS_PER_EPOCH,
    TrainingSession,
    TrainOutput,
    format_eta,
    showing_text,
)
from advgui.core.store import ModelStore
from advgui.qt.reflow import ReflowSplitter
from advgui.qt.state import AppState
from advgui.qt.widgets import buttons, progress_bar
from advgui.qt.widgets.model_list import ModelList
from advgui.qt.widgets.training_confusion import ConfusionMatrixView
from advgui.qt.widgets.training_plots import TrainingPlots
from advgui.qt.widgets.training_predictions import PredictionGrid
from advgui.qt.workers import ErrorInfo, Job, JobSlot

__all__ = ["ARCH_LABELS", "GUI_EVALS_PER_EPOCH", "TrainingTab", "format_eta", "showing_text"]


class TrainingTab(QWidget):
    def __init__(
        self, state: AppState, parent: QWidget | None = None, *, store: ModelStore | None = None
    ) -> None:
        super().__init__(parent)
        self.state = state
        self.session = TrainingSession(store)
        self.session.mnist = state.mnist
        self.store = self.session.store
        self.train_slot = JobSlot(
            "train",
            self,
            on_progress=self._on_progress,
            on_result=self._on_trained,
            on_error=self._on_error,
            on_cancel=self._on_cancelled,
            on_finish=lambda: self._set_running(False),
        )
        self.eval_slot = JobSlot("predict-test", self, on_error=self._say_error)
        self.store_slot = JobSlot(
            "load-store",
            self,
            on_error=self._say_error,
            on_finish=lambda: self.state.set_pending([]),  # listed "loading" until here
        )

        self._build_form()
        self.plots = TrainingPlots()
        self.grid = PredictionGrid()
        self.confusion = ConfusionMatrixView()
        self.model_list = ModelList(state, store=self.store)

        left = QVBoxLayout()
        left.addWidget(self.form_box)
        run_row = QHBoxLayout()
        run_row.addWidget(self.start_button)
        run_row.addWidget(self.stop_button)
        left.addLayout(run_row)
        for label in (self.progress_bar, self.phase_label, self.speed_label, self.metrics_label,
                      self.status_label):  # fmt: skip
            left.addWidget(label)
        left.addWidget(_boxed("Models (shared by all tabs)", self.model_list), 1)
        left_panel = QWidget()
        left_panel.setLayout(left)
        left_panel.setFixedWidth(370)  # steady while the labels below change

        # One rule, visible: the plots, grid and matrix show the run just done or the model
        # selected in the list, and this line says which (the form is the next run's).
        self.showing_label = QLabel("No model yet: train one or load one.")
        self.showing_label.setWordWrap(True)
        self.showing_label.setStyleSheet("font-weight: bold; padding: 2px;")
        plots_box = QWidget()
        plots_lay = QVBoxLayout(plots_box)
        plots_lay.setContentsMargins(0, 0, 0, 0)
        plots_lay.addWidget(self.showing_label)
        plots_lay.addWidget(self.plots, 1)
        h, v = Qt.Orientation.Horizontal, Qt.Orientation.Vertical
        results = _split(h, (_boxed("Predictions on test images", self.grid), 3),
                         (_boxed("Confusion matrix (test set)", self.confusion), 2))  # fmt: skip
        right = _split(v, (plots_box, 1), (results, 1))
        self.main_splitter = _split(ReflowSplitter(), (left_panel, 0), (right, 1))
        QHBoxLayout(self).addWidget(self.main_splitter)  # stacks on a small screen

        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.arch_combo.currentIndexChanged.connect(lambda _: self.apply_defaults())
        state.currentModelChanged.connect(self._on_current_model)
        state.datasetChanged.connect(self._on_dataset)
        state.datasetSwitched.connect(self._on_switched)
        self.apply_defaults()
        self._set_running(False)
        # Stored models join the list once the event loop runs (the window shows first).
        QTimer.singleShot(0, self.load_store)

    # ------------------------------------------------------------------ form

    def _build_form(self) -> None:
        r, defaults = training.RANGES, training.TrainConfig()
        self.arch_combo = QComboBox()
        for arch, label in ARCH_LABELS.items():
            self.arch_combo.addItem(label, arch)
        self.lr_spin = QDoubleSpinBox()
        self.lr_spin.setDecimals(5)
        self.lr_spin.setRange(1e-5, r["lr"][1])
        self.lr_spin.setSingleStep(5e-4)
        self.schedule_combo, self.optimizer_combo = QComboBox(), QComboBox()
        self.schedule_combo.addItems(list(training.SCHEDULES))
        self.optimizer_combo.addItems(list(training.OPTIMIZERS))
        self.epochs_spin, self.batch_spin = _int_spin(*r["epochs"]), _int_spin(*r["batch_size"])
        self.seed_spin = _int_spin(*r["seed"], value=defaults.seed)
        self.n_train_spin = _int_spin(*r["n_train"], step=1000, value=defaults.n_train)
        self.n_val_spin = _int_spin(*r["n_val"], step=500, value=defaults.n_val)
        widgets = (self.arch_combo, self.epochs_spin, self.batch_spin, self.lr_spin,
                   self.schedule_combo, self.optimizer_combo, self.seed_spin, self.n_train_spin,
                   self.n_val_spin)  # fmt: skip
        self.fields: dict[str, QWidget] = dict(zip(FORM, widgets, strict=True))
        self.form_box = QGroupBox("Next run: network and training")
        form = QFormLayout(self.form_box)
        for name, widget in self.fields.items():
            label, tip = FORM[name]
            widget.setToolTip(tip)
            form.addRow(label, widget)

        self.start_button = QPushButton("Start training")
        self.stop_button = QPushButton("Stop")
        buttons.bind(self.start_button, buttons.RUN, "Train a network with these settings")
        buttons.bind(
            self.stop_button, buttons.STOP, "Stop between two batches; the model so far is kept"
        )
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.phase_label = QLabel("Ready.")
        self.speed_label = QLabel("")
        self.metrics_label = QLabel("")
        self.status_label = QLabel("")
        for label in (self.phase_label, self.speed_label, self.metrics_label, self.status_label):
            label.setWordWrap(True)

    def apply_defaults(self) -> None:
        """Fill epochs, batch size, learning rate and optimizer with the architecture's
        benchmarked defaults."""
        cfg = self.session.defaults(self.arch_combo.currentData())
        self.epochs_spin.setValue(cfg.epochs)
        self.batch_spin.setValue(cfg.batch_size)
        self.lr_spin.setValue(cfg.lr)
        self.optimizer_combo.setCurrentText(cfg.optimizer)

    def form_values(self) -> dict[str, Any]:
        """The form's values by field name, as typed (not validated)."""
        return {
            name: w.currentData() if name == "arch" else
            w.currentText() if isinstance(w, QComboBox) else w.value()
            for name, w in self.fields.items()
        }  # fmt: skip

    def config(self) -> training.TrainConfig:
        """The form as a validated config (:class:`ParameterError` names the bad field)."""
        return self.session.config(**self.form_values(), precision=self.state.precision)

    def say(self, text: str, *, error: bool = False) -> None:
        self.status_label.setStyleSheet("color: #b00020;" if error else "")
        self.status_label.setText(text)

    def _say_error(self, info: ErrorInfo) -> None:
        self.say(info.message, error=True)

    def _mark_field(self, name: str | None) -> None:
        for field, widget in self.fields.items():
            widget.setStyleSheet("border: 1px solid #b00020;" if field == name else "")
        if name in self.fields:
            self.fields[name].setFocus()

    # ------------------------------------------------------------------ training

    job = property(lambda self: self.train_slot.job)
    eval_job = property(lambda self: self.eval_slot.job)
    store_job = property(lambda self: self.store_slot.job)

    def is_training(self) -> bool:
        return self.train_slot.is_running()

    def _set_running(self, running: bool) -> None:
        buttons.set_running(self.start_button, self.stop_button, running)
        self.form_box.setEnabled(not running)

    @Slot()
    def start(self) -> Job | None:
        """Validate the form and start training in the background."""
        if self.is_training():
            return None
        self._mark_field(None)
        try:
            run = self.session.prepare(**self.form_values())
        except ParameterError as err:
            self.say(str(err), error=True)
            self._mark_field(err.field)
            return None
        self.plots.clear(epochs=run.config.epochs)
        self.showing_label.setText(run.showing)
        self._set_running(True)
        progress_bar.started(self.progress_bar)
        self.phase_label.setText("Preparing (TensorFlow, data)...")
        self.speed_label.setText("")
        self.metrics_label.setText("")
        self.say(run.message)
        return self.train_slot.start(run.work)

    @Slot()
    def stop(self) -> None:
        if self.train_slot.cancel():
            buttons.disable(self.stop_button)
            self.phase_label.setText(self.session.stop())
            self.speed_label.setText("")  # no ETA for a run that is ending

    @Slot(object)
    def _on_progress(self, update: Progress) -> None:
        self.plots.add(update.record)  # a batch update or a validation check (or neither)
        view = self.session.progress(update)
        if view.bar is not None:  # testing after Stop must not fill the bar
            self.progress_bar.setValue(view.bar)
        for label, text in ((self.phase_label, view.phase), (self.speed_label, view.speed),
                            (self.metrics_label, view.metrics)):  # fmt: skip
            if text is not None:
                label.setText(text)

    @Slot(object)
    def _on_trained(self, output: TrainOutput) -> None:
        view = self.session.finish(output)
        self.state.add_model(view.model)
        self.showing_label.setText(view.showing)
        self._show_predictions(view.predictions)
        self.phase_label.setText(view.phase)
        self.speed_label.setText("")  # an ETA is for a run still going
        (progress_bar.stopped if view.stopped else progress_bar.done)(self.progress_bar)
        self.say(view.status, error=view.error)

    @Slot(object)
    def _on_error(self, info: ErrorInfo) -> None:
        self.phase_label.setText("Training failed.")
        self.say(info.message, error=True)
        self._mark_field(self.session.failed(info.message, info.user_error))
        if not info.user_error:
            from advgui.qt.dialogs import show_error

            show_error(self, "Training failed", info)

    @Slot()
    def _on_cancelled(self) -> None:
        self.session.abandon()
        progress_bar.stopped(self.progress_bar)
        self.speed_label.setText("")
        self.say("Training cancelled before it began.")

    # ------------------------------------------------------------------ results

    def _on_dataset(self, mnist: Any) -> None:
        self.session.mnist = mnist
        self._on_current_model(self.state.current_model)

    def _on_switched(self, _spec: Any) -> None:
        """Another dataset (see MainWindow.switch_dataset): nothing of the other's images."""
        self.session.mnist = self.state.mnist
        self.grid.clear()
        self.confusion.set_matrix(None)

    @Slot(object)
    def _on_current_model(self, clf: Any) -> None:
        """Show the selected model's history, predictions and confusion matrix."""
        view = self.session.select(clf)
        if view is None:  # a run in progress keeps the plots
            return
        self.showing_label.setText(view.showing)
        if clf is None:
            self.grid.clear()
            self.confusion.set_matrix(None)
            return
        if view.history is not None:
            self.plots.set_history(view.history)
        if self.session.mnist is None:
            return
        problem = workspace.model_problem(clf, self.state.spec)
        if problem is not None:  # no predictions of it on the other dataset's images
            self.grid.clear()
            self.confusion.set_matrix(None)
            self.showing_label.setText(problem)
            return
        if view.predictions is not None:
            self._show_predictions(view.predictions)
            return

        def done(pred: np.ndarray) -> None:
            if self.session.predicted(clf, pred, self.state.current_model):
                self._show_predictions(pred)

        # A prediction still running is dropped.
        self.eval_slot.start(self.session.predict_work(clf), on_result=done)

    def _show_predictions(self, pred: np.ndarray) -> None:
        view = self.session.prediction_view(pred)
        if view is not None:
            self.grid.set_predictions(view.x, view.labels, view.predictions)
            self.confusion.set_matrix(view.confusion)

    # ------------------------------------------------------------------ store

    @Slot()
    def load_store(self) -> Job | None:
        """Put every model of the store into the shared list (in the background)."""
        if self.store_slot.is_running():
            return None
        entries = self.store.entries()
        if not entries:  # nothing stored: no job, no TensorFlow
            return None
        self.state.set_pending(entries)  # listed at once, marked loading, until usable
        warnings: list[str] = []

        def done(loaded: list[Any]) -> None:
            fresh, note, error = self.session.stored_loaded(loaded, self.state.models, warnings)
            for clf in fresh:
                self.state.add_model(clf, make_current=False)
            if self.state.current_model is None and fresh:
                self.state.set_current_model(fresh[-1])
            if note is not None:
                self.say(note, error=error)

        return self.store_slot.start(self.session.load_store_work(warnings), on_result=done)

    # ------------------------------------------------------------------ shutdown

    def shutdown(self) -> None:
        """Cancel this tab's jobs and join their threads (the stopped model is still stored)."""
        slots = (self.train_slot, self.eval_slot, self.store_slot)
        for slot in slots:
            slot.cancel()
        self.model_list.shutdown()
        for slot in slots:
            slot.join(60000)


def _int_spin(lo: float, hi: float, *, step: int = 1, value: int | None = None) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(int(lo), int(min(hi, 2**31 - 1)))
    spin.setGroupSeparatorShown(True)
    spin.setSingleStep(step)
    if value is not None:
        spin.setValue(value)
    return spin


def _boxed(title: str, widget: QWidget) -> QGroupBox:
    box = QGroupBox(title)
    QVBoxLayout(box).addWidget(widget)
    return box


def _split(orientation: Qt.Orientation | QSplitter, *parts: tuple[QWidget, int]) -> QSplitter:
    """A splitter (or the one given) of ``(widget, stretch)`` parts."""
    splitter = orientation if isinstance(orientation, QSplitter) else QSplitter(orientation)
    for i, (widget, stretch) in enumerate(parts):
        splitter.addWidget(widget)
        splitter.setStretchFactor(i, stretch)
    return splitter
