"""Train a defended model from the Defense tab, with live held-out clean and PGD accuracy.

The page shows and drives a :class:`~advgui.core.sessions.defended.DefendedTrainingSession`:
like the Training tab, every model that comes out (a stopped one too: the best so far, marked
stopped) is stored inside the job, before the GUI hears of it, and joins the shared model list.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from advgui.core.data import MNIST, DatasetSpec
from advgui.core.errors import AdvguiError
from advgui.core.progress import Progress
from advgui.core.sessions.defended import METHOD_TIPS, DefendedOutput, DefendedTrainingSession
from advgui.core.store import ModelStore
from advgui.qt.widgets import buttons, progress_bar
from advgui.qt.widgets.training_plots import TrainingPlots
from advgui.qt.workers import ErrorInfo, Job, JobSlot


class DefenseTrainPanel(QWidget):
    """Emits :attr:`trained` with the new Classifier (finished or stopped, already stored);
    :attr:`mnist_getter` supplies the data."""

    trained = Signal(object)  # Classifier
    running = Signal(bool)

    def __init__(
        self,
        mnist_getter: Any,
        parent: QWidget | None = None,
        *,
        store: ModelStore | None = None,
        precision_getter: Any = lambda: "float32",
    ) -> None:
        super().__init__(parent)
        from advgui.core.defenses.adversarial import ARCHS, DEFENSES

        self.mnist_getter = mnist_getter
        self.precision_getter = precision_getter  # the status bar's choice (core/precision.py)
        self.session = DefendedTrainingSession(store or ModelStore())
        self.slot = JobSlot(
            "defense-train",
            self,
            on_progress=self._on_progress,
            on_result=self._on_result,
            on_error=self._on_error,
            on_cancel=self._on_cancel,
            on_finish=self._on_finish,
        )
        self.method_combo = QComboBox()
        for m in DEFENSES:
            self.method_combo.addItem(m)
            self.method_combo.setItemData(self.method_combo.count() - 1, METHOD_TIPS.get(m, ""))
        self.arch_combo = QComboBox()
        self.arch_combo.addItems(list(ARCHS))
        self.arch_combo.setCurrentText("cnn-s2-wide")
        self.eps_spin = QDoubleSpinBox()
        self.eps_spin.setRange(0.0, 1.0)
        self.eps_spin.setSingleStep(0.05)
        self.eps_spin.setValue(MNIST.default_eps)
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 200)
        self.epochs_spin.setValue(10)
        self.n_spin = QSpinBox()
        self.n_spin.setRange(100, 59000)
        self.n_spin.setSingleStep(1000)
        self.n_spin.setValue(59000)
        self.sigma_spin = QDoubleSpinBox()
        self.sigma_spin.setRange(0.05, 2.0)
        self.sigma_spin.setSingleStep(0.25)
        self.sigma_spin.setValue(0.5)
        self.sigma_spin.setToolTip("noise training: the Gaussian noise's standard deviation")
        self.method_combo.currentTextChanged.connect(self._method_changed)
        self.method_combo.setCurrentText(self.session.spec.defense)
        self.train_button = QPushButton("Train defended model")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        # The Training tab's live plots, defended: adversarial loss per batch, held-out clean
        # and PGD accuracy per epoch.
        self.plots = TrainingPlots(defended=True)
        self.robust_curve = self.plots.curves["robust_accuracy"]
        self.plots.setMinimumHeight(240)
        buttons.bind(self.train_button, buttons.RUN, "Train a defended model with these settings")
        buttons.bind(self.stop_button, buttons.STOP, "Stop; the best model so far is kept")

        form = QFormLayout()
        form.addRow("defense", self.method_combo)
        form.addRow("architecture", self.arch_combo)
        form.addRow("epsilon", self.eps_spin)
        form.addRow("noise sigma", self.sigma_spin)
        form.addRow("epochs", self.epochs_spin)
        form.addRow("training images", self.n_spin)
        row = QHBoxLayout()
        row.addWidget(self.train_button)
        row.addWidget(self.stop_button)
        # Like the Training tab: the settings in a column, the live plots full size beside it.
        left = QWidget()
        left.setMaximumWidth(380)
        col = QVBoxLayout(left)
        col.setContentsMargins(0, 0, 0, 0)
        col.addLayout(form)
        col.addLayout(row)
        col.addWidget(self.progress_bar)
        col.addWidget(self.status)
        col.addStretch(1)
        lay = QHBoxLayout(self)
        lay.addWidget(left)
        lay.addWidget(self.plots, 1)
        self.train_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self._method_changed(self.method_combo.currentText())

    @property
    def store(self) -> ModelStore:
        return self.session.store

    @property
    def history(self) -> list:
        """The held-out checks of the run shown (the session's)."""
        return self.session.history

    def _method_changed(self, method: str) -> None:
        form = self.session.form_for(method)
        self.epochs_spin.setValue(form.epochs)
        self.sigma_spin.setEnabled(form.takes_sigma)
        self.eps_spin.setEnabled(form.takes_eps)

    def set_dataset(self, spec: DatasetSpec) -> None:
        """Offer ``spec``'s recipe and L-inf budget as the defaults (what the user set stays)."""
        self.method_combo.setCurrentText(
            self.session.method_after_switch(self.method_combo.currentText(), spec)
        )
        self.eps_spin.setValue(self.session.eps_after_switch(self.eps_spin.value(), spec))
        self.eps_spin.setToolTip(f"default {spec.default_eps:g} on {spec.title}")

    def settings(self) -> dict:
        return {
            "method": self.method_combo.currentText(),
            "arch": self.arch_combo.currentText(),
            "eps": self.eps_spin.value(),
            "epochs": self.epochs_spin.value(),
            "n_train": self.n_spin.value(),
            "sigma": self.sigma_spin.value(),
            "precision": self.precision_getter(),
        }

    def config(self) -> Any:
        return self.session.config(**self.settings())

    def start(self) -> None:
        if self.slot.is_running():
            return
        try:
            run = self.session.prepare(self.mnist_getter(), **self.settings())
        except AdvguiError as err:
            self.status.setText(str(err))
            return
        self.plots.clear()
        progress_bar.started(self.progress_bar)
        self.status.setText(run.message)
        buttons.set_running(self.train_button, self.stop_button, True)
        self.running.emit(True)
        self.slot.start(run.work)

    @property
    def job(self) -> Job | None:
        return self.slot.job

    def stop(self) -> None:
        if self.slot.cancel():
            buttons.disable(self.stop_button)
            self.status.setText("stopping after the current batch; the model so far is kept...")

    def _on_progress(self, update: Progress) -> None:
        if not self.slot.is_stopping():
            self.progress_bar.setValue(int(1000 * update.fraction))
        self.plots.add(update.record)
        line = self.session.progress(update)
        if line is not None:
            self.status.setText(line)

    def _on_result(self, output: DefendedOutput) -> None:
        text, stopped = self.session.outcome(output)
        (progress_bar.stopped if stopped else progress_bar.done)(self.progress_bar)
        self.status.setText(text)
        self.trained.emit(output.result.classifier)

    def _on_error(self, info: ErrorInfo) -> None:
        self.status.setText(f"training failed: {info.message}")
        if not info.user_error:  # a bug: details in a dialog (and the log), the app goes on
            from advgui.qt.dialogs import show_error

            show_error(self, "Defended training failed", info)

    def _on_cancel(self) -> None:  # only before training began: after, Stop keeps the model
        progress_bar.stopped(self.progress_bar)
        self.status.setText("training cancelled before it began; no model was added")

    def _on_finish(self) -> None:
        buttons.set_running(self.train_button, self.stop_button, False)
        self.running.emit(False)

    def shutdown(self) -> None:
        self.slot.cancel()
