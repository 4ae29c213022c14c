"""Train a defended model from the Defense tab, with live held-out clean and PGD accuracy.

Like the Training tab, every model that comes out (a stopped one too: the best so far, marked
stopped) is stored in the model store inside the job, before the GUI hears of it, and joins the
shared model list.
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
from advgui.core.fit import EpochRecord
from advgui.core.progress import Progress
from advgui.core.store import ModelStore
from advgui.qt.widgets import buttons, progress_bar
from advgui.qt.widgets.training_plots import TrainingPlots
from advgui.qt.workers import ErrorInfo, Job, JobSlot

METHOD_TIPS = {
    "fast-at": "FGSM from a random start, step 1.25 eps (Wong 2020); best epoch kept by PGD check",
    "pgd-at": "PGD adversarial training (Madry 2018): strongest, slowest",
    "trades": "TRADES (Zhang 2019): clean loss + beta * KL to the adversarial prediction",
    "fgsm-at": "FGSM adversarial training (Goodfellow 2015): half clean, half FGSM",
    "distill": "defensive distillation (Papernot 2016): looks robust, is not",
    "noise": "Gaussian-noise training (Cohen 2019): a base classifier for randomized smoothing",
    "ibp": "interval bound propagation (Gowal 2019): trains a model IBP can verify at eps",
}


class DefenseTrainPanel(QWidget):
    """Emits :attr:`trained` with the new Classifier (finished or stopped, already stored);
    :attr:`mnist_getter` supplies the data."""

    trained = Signal(object)  # Classifier
    running = Signal(bool)

    def __init__(
        self, mnist_getter: Any, parent: QWidget | None = None, *, store: ModelStore | None = None
    ) -> None:
        super().__init__(parent)
        from advgui.core.defenses.adversarial import ARCHS, DEFENSES

        self.mnist_getter = mnist_getter
        self.store = store or ModelStore()
        self.slot = JobSlot(
            "defense-train",
            self,
            on_progress=self._on_progress,
            on_result=self._on_result,
            on_error=self._on_error,
            on_cancel=self._on_cancel,
            on_finish=self._on_finish,
        )
        #: The held-out checks of the run shown (one per epoch; a last one after Stop).
        self.history: list[EpochRecord] = []
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
        self._eps_default = MNIST.default_eps
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
        self.method_combo.setCurrentText("fast-at")
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

    def _method_changed(self, method: str) -> None:
        from advgui.core.defenses.adversarial import DEFAULT_EPOCHS

        self.epochs_spin.setValue(DEFAULT_EPOCHS.get(method, 10))
        self.sigma_spin.setEnabled(method == "noise")
        self.eps_spin.setEnabled(method != "noise")

    def set_dataset(self, spec: DatasetSpec) -> None:
        """Offer ``spec``'s L-inf budget as the default (an epsilon the user set stays)."""
        if abs(self.eps_spin.value() - self._eps_default) < 1e-9:
            self.eps_spin.setValue(spec.default_eps)
        self._eps_default = spec.default_eps
        self.eps_spin.setToolTip(f"default {spec.default_eps:g} on {spec.title}")

    def config(self) -> Any:
        from advgui.core.defenses import DefenseConfig

        return DefenseConfig.for_method(
            self.method_combo.currentText(),
            arch=self.arch_combo.currentText(),
            eps=self.eps_spin.value(),
            epochs=self.epochs_spin.value(),
            n_train=self.n_spin.value(),
            sigma=self.sigma_spin.value(),
        ).validate()

    def start(self) -> None:
        from advgui.core.defenses import train_defended

        if self.slot.is_running():
            return
        mnist = self.mnist_getter()
        if mnist is None:
            self.status.setText("MNIST is not loaded yet (File > Import dataset...)")
            return
        try:
            cfg = self.config()
        except AdvguiError as err:
            self.status.setText(str(err))
            return
        self.history = []
        self.plots.clear()
        progress_bar.started(self.progress_bar)
        budget = f"sigma {cfg.sigma:g}" if cfg.method == "noise" else f"eps {cfg.eps:g}"
        self.status.setText(f"training {cfg.method} at {budget}...")
        store = self.store

        def work(progress: Any, cancel: Any) -> tuple[Any, str | None]:
            result = train_defended(cfg, mnist, progress=progress, cancel=cancel)
            try:  # stored the moment training ends, before the GUI even hears of it
                store.add(result.classifier)
            except AdvguiError as err:
                return result, str(err)
            return result, None

        buttons.set_running(self.train_button, self.stop_button, True)
        self.running.emit(True)
        self.slot.start(work)

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
        if isinstance(update.record, EpochRecord):
            self.history.append(update.record)
            self.status.setText(update.message)

    def _on_result(self, payload: tuple[Any, str | None]) -> None:
        result, store_error = payload
        clf = result.classifier
        kept = result.kept_record()
        figures = ""
        if kept:
            robust = kept.get("robust_accuracy")  # None: noise training is checked clean only
            pgd = f", PGD {robust:.1%}" if robust is not None else ""
            figures = (
                f": held-out clean {kept['clean_accuracy']:.1%}{pgd} "
                f"(epoch {result.best_epoch} kept)"
            )
        text = f"{clf.name}{figures}, test {result.test_accuracy:.1%}, {result.seconds:.0f} s"
        if result.cancelled:
            done = clf.meta.get("epochs_completed", 0.0)
            text = f"Stopped after {done:.2f} epochs; the model so far is kept. {text}"
            added = "added to the models, marked stopped"
            progress_bar.stopped(self.progress_bar)
        else:
            added = "added to the models"
            progress_bar.done(self.progress_bar)
        if store_error:
            self.status.setText(
                f"{text}; {added}; not kept in the model store: {store_error} (use Save as)"
            )
        else:
            self.status.setText(f"{text}; {added} and kept in the model store")
        self.trained.emit(clf)

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
