"""Training tab: choose a network and its options, train it in a worker, watch it learn.

The training job runs :func:`advgui.core.training.train` in a QThread (through
:class:`~advgui.qt.workers.Job`, so every slot here runs in the GUI thread) and stores the model
in the model store before returning, so nothing is lost if the window closes. TensorFlow is
never imported in the GUI thread: predictions for a selected model are computed in a job too.
"""

from __future__ import annotations

import math
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
from advgui.core.errors import AdvguiError, ParameterError
from advgui.core.progress import Progress
from advgui.core.store import ModelStore
from advgui.qt.state import AppState
from advgui.qt.widgets import buttons, progress_bar
from advgui.qt.widgets.model_list import ModelList
from advgui.qt.widgets.training_confusion import ConfusionMatrixView
from advgui.qt.widgets.training_plots import TrainingPlots
from advgui.qt.widgets.training_predictions import PredictionGrid
from advgui.qt.workers import ErrorInfo, Job, JobSlot

ARCH_LABELS = {
    "cnn": "CNN: 2 conv 5x5 + dense",
    "mlp": "MLP: 784-256-128-10 (deck)",
}
#: Validation passes per epoch in the GUI: a denser validation curve than the core default.
GUI_EVALS_PER_EPOCH = 2


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


class TrainingTab(QWidget):
    def __init__(
        self, state: AppState, parent: QWidget | None = None, *, store: ModelStore | None = None
    ) -> None:
        super().__init__(parent)
        self.state = state
        self.store = store or ModelStore()
        self.train_slot = JobSlot(
            "train",
            self,
            on_progress=self._on_progress,
            on_result=self._on_trained,
            on_error=self._on_error,
            on_cancel=self._on_cancelled,
            on_finish=self._on_finished,
        )
        self.eval_slot = JobSlot("predict-test", self, on_error=self._say_error)
        self.store_slot = JobSlot(
            "load-store",
            self,
            on_error=self._say_error,
            on_finish=lambda: self.state.set_pending([]),  # listed "loading" until here
        )
        self._stopping = False
        #: id(classifier) -> (classifier, test-set predictions), filled by training or a job.
        self._predictions: dict[int, tuple[Any, np.ndarray]] = {}
        self._plotted: Any = None  # the model whose curves the plots show (live ones kept)
        self._last_run: Any = None  # the model this tab's last training run made

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
        left.addWidget(self.progress_bar)
        left.addWidget(self.phase_label)
        left.addWidget(self.speed_label)
        left.addWidget(self.metrics_label)
        left.addWidget(self.status_label)
        models_box = QGroupBox("Models (shared by all tabs)")
        QVBoxLayout(models_box).addWidget(self.model_list)
        left.addWidget(models_box, 1)
        left_panel = QWidget()
        left_panel.setLayout(left)
        left_panel.setFixedWidth(370)  # steady while the labels below change

        results = QSplitter(Qt.Orientation.Horizontal)
        pred_box = QGroupBox("Predictions on test images")
        QVBoxLayout(pred_box).addWidget(self.grid)
        conf_box = QGroupBox("Confusion matrix (test set)")
        QVBoxLayout(conf_box).addWidget(self.confusion)
        results.addWidget(pred_box)
        results.addWidget(conf_box)
        results.setStretchFactor(0, 3)
        results.setStretchFactor(1, 2)
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
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(plots_box)
        right.addWidget(results)
        right.setStretchFactor(0, 1)
        right.setStretchFactor(1, 1)

        outer = QSplitter(Qt.Orientation.Horizontal)
        outer.addWidget(left_panel)
        outer.addWidget(right)
        outer.setStretchFactor(1, 1)
        lay = QHBoxLayout(self)
        lay.addWidget(outer)

        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.arch_combo.currentIndexChanged.connect(lambda _: self.apply_defaults())
        state.currentModelChanged.connect(self._on_current_model)
        state.datasetChanged.connect(lambda _m: self._on_current_model(state.current_model))
        self.apply_defaults()
        self._set_running(False)
        # Stored models join the list once the event loop runs (the window shows first).
        QTimer.singleShot(0, self.load_store)

    # ------------------------------------------------------------------ form

    def _build_form(self) -> None:
        r = training.RANGES
        self.arch_combo = QComboBox()
        for arch, label in ARCH_LABELS.items():
            self.arch_combo.addItem(label, arch)
        self.epochs_spin = _int_spin(*r["epochs"])
        self.batch_spin = _int_spin(*r["batch_size"])
        self.lr_spin = QDoubleSpinBox()
        self.lr_spin.setDecimals(5)
        self.lr_spin.setRange(1e-5, r["lr"][1])
        self.lr_spin.setSingleStep(5e-4)
        self.schedule_combo = QComboBox()
        self.schedule_combo.addItems(list(training.SCHEDULES))
        self.optimizer_combo = QComboBox()
        self.optimizer_combo.addItems(list(training.OPTIMIZERS))
        self.seed_spin = _int_spin(*r["seed"])
        self.n_train_spin = _int_spin(*r["n_train"])
        self.n_train_spin.setSingleStep(1000)
        self.n_val_spin = _int_spin(*r["n_val"])
        self.n_val_spin.setSingleStep(500)
        defaults = training.TrainConfig()
        self.seed_spin.setValue(defaults.seed)
        self.n_train_spin.setValue(defaults.n_train)
        self.n_val_spin.setValue(defaults.n_val)
        self.fields: dict[str, QWidget] = {
            "arch": self.arch_combo,
            "epochs": self.epochs_spin,
            "batch_size": self.batch_spin,
            "lr": self.lr_spin,
            "schedule": self.schedule_combo,
            "optimizer": self.optimizer_combo,
            "seed": self.seed_spin,
            "n_train": self.n_train_spin,
            "n_val": self.n_val_spin,
        }
        tips = {
            "epochs": "passes over the training images",
            "lr": "peak learning rate (one-cycle warms up to it, then anneals)",
            "schedule": "onecycle: warm-up then cosine decay; cosine: decay only; constant",
            "n_train": "training images, taken from the 60,000 MNIST training images",
            "n_val": "validation images held out from the end of the training set",
            "seed": "same seed, same data order and initial weights: same result",
        }
        self.form_box = QGroupBox("Next run: network and training")
        form = QFormLayout(self.form_box)
        labels = {
            "arch": "Architecture",
            "epochs": "Epochs",
            "batch_size": "Batch size",
            "lr": "Learning rate",
            "schedule": "Schedule",
            "optimizer": "Optimizer",
            "seed": "Seed",
            "n_train": "Training images",
            "n_val": "Validation images",
        }
        for name, widget in self.fields.items():
            widget.setToolTip(tips.get(name, ""))
            form.addRow(labels[name], widget)

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
        cfg = training.TrainConfig.for_arch(self.arch_combo.currentData())
        self.epochs_spin.setValue(cfg.epochs)
        self.batch_spin.setValue(cfg.batch_size)
        self.lr_spin.setValue(cfg.lr)
        self.optimizer_combo.setCurrentText(cfg.optimizer)

    def config(self) -> training.TrainConfig:
        """The form as a validated config (:class:`ParameterError` names the bad field)."""
        return training.TrainConfig(
            arch=self.arch_combo.currentData(),
            epochs=self.epochs_spin.value(),
            batch_size=self.batch_spin.value(),
            lr=self.lr_spin.value(),
            schedule=self.schedule_combo.currentText(),
            optimizer=self.optimizer_combo.currentText(),
            seed=self.seed_spin.value(),
            n_train=self.n_train_spin.value(),
            n_val=self.n_val_spin.value(),
            evals_per_epoch=GUI_EVALS_PER_EPOCH,
        ).validate()

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
        if self.state.mnist is None:
            self.say(
                "MNIST is not loaded yet (see the status bar, or File > Import dataset)", error=True
            )
            return None
        try:
            cfg = self.config()
        except ParameterError as err:
            self.say(str(err), error=True)
            self._mark_field(err.field)
            return None
        mnist = self.state.mnist
        store = self.store

        def work(progress: Any, cancel: Any) -> tuple[training.TrainResult, str | None]:
            result = training.train(cfg, mnist, progress=progress, cancel=cancel)
            try:  # stored the moment training ends, before the GUI even hears of it
                store.add(result.classifier)
            except AdvguiError as err:
                return result, str(err)
            return result, None

        self.plots.clear(epochs=cfg.epochs)
        self.showing_label.setText(f"Showing the run in progress: {cfg.arch.upper()}")
        self._plotted = None
        self._stopping = False
        self._set_running(True)
        progress_bar.started(self.progress_bar)
        self.phase_label.setText("Preparing (TensorFlow, data)...")
        self.speed_label.setText("")
        self.metrics_label.setText("")
        self.say(
            f"Training {cfg.arch.upper()} on {cfg.n_train:,} images for {cfg.epochs} epoch(s)."
        )
        return self.train_slot.start(work)

    @Slot()
    def stop(self) -> None:
        if self.train_slot.cancel():
            self._stopping = True
            buttons.disable(self.stop_button)
            self.phase_label.setText("Stopping: testing and keeping the model so far...")
            self.speed_label.setText("")  # no ETA for a run that is ending

    @Slot(object)
    def _on_progress(self, update: Progress) -> None:
        info = update.info
        if not self._stopping:  # testing after Stop must not fill the bar
            self.progress_bar.setValue(int(1000 * update.fraction))
        self.plots.add(update.record)  # a batch update or a validation check (or neither)
        if update.message != "training":
            if update.message == "testing":
                self.phase_label.setText("Testing on the 10,000 test images...")
            return
        if self._stopping:
            return
        epochs = self.epochs_spin.value()
        self.phase_label.setText(
            f"Epoch {int(info['epoch'])}/{epochs}, batch {int(info['batch'])}, "
            f"step {int(update.done)}/{int(update.total)}"
        )
        ips = info.get("images_per_second", math.nan)
        speed = f"{ips:,.0f} images/s" if math.isfinite(ips) else "-- images/s"
        self.speed_label.setText(f"{speed}, ETA {format_eta(info.get('eta_s', math.nan))}")
        parts = [f"loss {info['loss']:.4f}", f"accuracy {100 * info['accuracy']:.2f}%"]
        if math.isfinite(info.get("val_accuracy", math.nan)):
            parts.append(f"validation {100 * info['val_accuracy']:.2f}%")
        self.metrics_label.setText(", ".join(parts))

    @Slot(object)
    def _on_trained(self, payload: tuple[training.TrainResult, str | None]) -> None:
        result, store_error = payload
        clf = result.classifier
        self._predictions[id(clf)] = (clf, result.test_predictions)
        self._plotted = clf
        self._last_run = clf
        self.state.add_model(clf)
        self.showing_label.setText(showing_text(clf, just_trained=True))
        self._show_predictions(result.test_predictions)
        verb = "Stopped" if result.cancelled else "Done"
        self.phase_label.setText(
            f"{verb} ({clf.name}, the last run): test accuracy {100 * result.test_accuracy:.2f}% "
            f"after {clf.meta['epochs_completed']:.2f} epochs ({result.seconds:.1f} s)"
        )
        self.speed_label.setText("")  # an ETA is for a run still going
        if result.cancelled:
            progress_bar.stopped(self.progress_bar)
        else:
            progress_bar.done(self.progress_bar)
        if store_error:
            self.say(f"Not kept in the model store: {store_error}; use Save as.", error=True)
        else:
            self.say(f"Kept in the model store as {clf.meta.get('path')}")

    @Slot(object)
    def _on_error(self, info: ErrorInfo) -> None:
        self.phase_label.setText("Training failed.")
        self.say(info.message, error=True)
        field = None
        if info.user_error and "learning rate" in info.message:
            field = "lr"
        self._mark_field(field)
        if not info.user_error:
            from advgui.qt.dialogs import show_error

            show_error(self, "Training failed", info)

    @Slot()
    def _on_cancelled(self) -> None:
        progress_bar.stopped(self.progress_bar)
        self.speed_label.setText("")
        self.say("Training cancelled before it began.")

    @Slot()
    def _on_finished(self) -> None:
        self._stopping = False
        self._set_running(False)

    # ------------------------------------------------------------------ results

    @Slot(object)
    def _on_current_model(self, clf: Any) -> None:
        """Show the selected model's history, predictions and confusion matrix."""
        if clf is None:
            self.grid.clear()
            self.confusion.set_matrix(None)
            self.showing_label.setText("No model selected.")
            return
        if self.is_training():
            return
        self.showing_label.setText(showing_text(clf, just_trained=clf is self._last_run))
        if clf is not self._plotted:
            self.plots.set_history(clf.meta.get("history") or {})
            self._plotted = clf
        mnist = self.state.mnist
        problem = workspace.model_problem(clf, self.state.spec)
        if mnist is None or problem is not None:  # no predictions on the other dataset
            if problem is not None:
                self.grid.clear()
                self.confusion.set_matrix(None)
                self.showing_label.setText(problem)
            return
        cached = self._predictions.get(id(clf))
        if cached is not None and cached[0] is clf:
            self._show_predictions(cached[1])
            return

        def work(progress: Any, cancel: Any) -> np.ndarray:
            return clf.predict(mnist.x_test)

        def done(pred: np.ndarray) -> None:
            self._predictions[id(clf)] = (clf, pred)
            if self.state.current_model is clf and not self.is_training():
                self._show_predictions(pred)

        self.eval_slot.start(work, on_result=done)  # a prediction still running is dropped

    def _show_predictions(self, pred: np.ndarray) -> None:
        mnist = self.state.mnist
        if mnist is None or len(pred) != len(mnist.y_test):
            return
        self.grid.set_predictions(mnist.x_test, mnist.y_test, pred)
        self.confusion.set_matrix(training.confusion_matrix(mnist.y_test, pred))

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
        store = self.store
        warnings: list[str] = []

        def work(progress: Any, cancel: Any) -> list[Any]:
            return store.load_all(progress=progress, cancel=cancel, warnings=warnings)

        def done(loaded: list[Any]) -> None:
            known = {c.meta.get("path") for c in self.state.models}
            fresh = [c for c in loaded if c.meta.get("path") not in known]
            for clf in fresh:
                self.state.add_model(clf, make_current=False)
            if self.state.current_model is None and fresh:
                self.state.set_current_model(fresh[-1])
            note = f"{len(fresh)} stored model(s) loaded."
            if warnings:
                self.say(note + " " + " ".join(warnings), error=True)
            elif fresh:
                self.say(note)

        return self.store_slot.start(work, on_result=done)

    # ------------------------------------------------------------------ shutdown

    def shutdown(self) -> None:
        """Cancel this tab's jobs and join their threads (the stopped model is still stored)."""
        slots = (self.train_slot, self.eval_slot, self.store_slot)
        for slot in slots:
            slot.cancel()
        self.model_list.shutdown()
        for slot in slots:
            slot.join(60000)


def showing_text(clf: Any, *, just_trained: bool) -> str:
    """Which model the curves, grid and matrix show, and what it is."""
    meta = clf.meta
    facts = [str(meta.get("architecture") or "").upper() or "model"]
    done = meta.get("epochs_completed")
    if isinstance(done, (int, float)):
        facts.append(f"{done:g} epoch(s)")
    acc = meta.get("test_accuracy")
    if isinstance(acc, (int, float)):
        facts.append(f"test {100 * acc:.2f}%")
    if meta.get("cancelled"):
        facts.append("stopped")
    which = "the run just done" if just_trained else "the model selected in the list"
    return f"Showing {which}: {clf.name} ({', '.join(facts)})"


def _int_spin(lo: float, hi: float) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(int(lo), int(min(hi, 2**31 - 1)))
    spin.setGroupSeparatorShown(True)
    return spin
