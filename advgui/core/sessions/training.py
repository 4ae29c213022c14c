"""The Training tab's session: the next run's form, the run in progress (its progress lines and
Stop), the model it made, which model the plots, grid and matrix show (and the line saying
so), the cached test-set predictions and the loading of stored models.

Every text the tab prints is decided here, so a test reads it without a window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from advgui.core import training
from advgui.core.errors import AdvguiError, ParameterError
from advgui.core.progress import CancelToken, Progress, ProgressCallback
from advgui.core.store import ModelStore

ARCH_LABELS = {
    "cnn": "CNN: 2 conv 5x5 + dense",
    "mlp": "MLP: 784-256-128-10 (deck)",
}
#: Validation passes per epoch in the GUI: a denser validation curve than the core default.
GUI_EVALS_PER_EPOCH = 2
#: The form, in order: field -> (label, tooltip). Ranges come from ``training.RANGES``.
FORM: dict[str, tuple[str, str]] = {
    "arch": ("Architecture", ""),
    "epochs": ("Epochs", "passes over the training images"),
    "batch_size": ("Batch size", ""),
    "lr": ("Learning rate", "peak learning rate (one-cycle warms up to it, then anneals)"),
    "schedule": ("Schedule", "onecycle: warm-up then cosine decay; cosine: decay only; constant"),
    "optimizer": ("Optimizer", ""),
    "seed": ("Seed", "same seed, same data order and initial weights: same result"),
    "n_train": ("Training images", "training images, taken from the 60,000 MNIST training images"),
    "n_val": ("Validation images", "validation images held out from the end of the training set"),
}
NO_DATA = "MNIST is not loaded yet (see the status bar, or File > Import dataset)"


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


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


@dataclass(frozen=True)
class TrainOutput:
    """What the background work returns: the training result and why it is not stored."""

    result: training.TrainResult
    store_error: str | None


@dataclass
class PendingTraining:
    """A validated run waiting for (or in) its job."""

    config: training.TrainConfig
    mnist: Any
    store: ModelStore

    @property
    def message(self) -> str:
        c = self.config
        return f"Training {c.arch.upper()} on {c.n_train:,} images for {c.epochs} epoch(s)."

    @property
    def showing(self) -> str:
        return f"Showing the run in progress: {self.config.arch.upper()}"

    def work(self, progress: ProgressCallback, cancel: CancelToken) -> TrainOutput:
        """Train, and store the model the moment training ends (before the GUI hears of it)."""
        result = training.train(self.config, self.mnist, progress=progress, cancel=cancel)
        try:
            self.store.add(result.classifier)
        except AdvguiError as err:
            return TrainOutput(result, str(err))
        return TrainOutput(result, None)


@dataclass(frozen=True)
class ProgressView:
    """The labels for one progress update; None: leave that one as it is."""

    bar: int | None  # 0..1000
    phase: str | None = None
    speed: str | None = None
    metrics: str | None = None


@dataclass(frozen=True)
class TrainedView:
    """What a finished (or stopped) run shows."""

    model: Any
    phase: str
    status: str
    error: bool
    stopped: bool
    showing: str
    predictions: np.ndarray


@dataclass(frozen=True)
class ModelView:
    """What choosing a model shows: the line saying which, the history to plot (None: the
    plots already show it) and its test predictions (None: to compute, see
    :meth:`TrainingSession.predict_work`)."""

    showing: str
    history: dict[str, list[float]] | None
    predictions: np.ndarray | None


@dataclass(frozen=True)
class PredictionView:
    """The prediction grid's images and the confusion matrix of one model's predictions."""

    x: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    confusion: np.ndarray


class TrainingSession:
    """The Training tab's state and decisions (see the module docstring)."""

    def __init__(self, store: ModelStore | None = None) -> None:
        self.store = store or ModelStore()
        self.mnist: Any = None
        self.pending: PendingTraining | None = None
        self.stopping = False
        #: The model this session's last run made, and the one whose curves are plotted.
        self.last_run: Any = None
        self.plotted: Any = None
        #: id(classifier) -> (classifier, test-set predictions), filled by training or a job.
        self._predictions: dict[int, tuple[Any, np.ndarray]] = {}

    # ------------------------------------------------------------------ running

    @staticmethod
    def defaults(arch: str) -> training.TrainConfig:
        """The architecture's benchmarked defaults (epochs, batch size, lr, optimizer)."""
        return training.TrainConfig.for_arch(arch)

    @staticmethod
    def config(**fields: Any) -> training.TrainConfig:
        """The form's values as a validated config (ParameterError names the bad field)."""
        return training.TrainConfig(**fields, evals_per_epoch=GUI_EVALS_PER_EPOCH).validate()

    def prepare(self, **fields: Any) -> PendingTraining:
        """Validate the form and keep the run as pending; ParameterError says why not."""
        if self.mnist is None:
            raise ParameterError(NO_DATA)
        self.pending = PendingTraining(self.config(**fields), self.mnist, self.store)
        self.stopping = False
        self.plotted = None  # the plots now show the live run
        return self.pending

    def stop(self) -> str:
        """Stop was pressed: the phase line until the stopped model comes back."""
        self.stopping = True
        return "Stopping: testing and keeping the model so far..."

    def progress(self, update: Progress) -> ProgressView:
        """The bar and the labels for one update (after Stop the bar and ETA stay put)."""
        bar = None if self.stopping else int(1000 * update.fraction)
        if update.message != "training":
            phase = "Testing on the 10,000 test images..." if update.message == "testing" else None
            return ProgressView(bar, phase)
        if self.stopping or self.pending is None:
            return ProgressView(bar)
        info = update.info
        phase = (
            f"Epoch {int(info['epoch'])}/{self.pending.config.epochs}, batch "
            f"{int(info['batch'])}, step {int(update.done)}/{int(update.total)}"
        )
        ips = info.get("images_per_second", math.nan)
        speed = f"{ips:,.0f} images/s" if math.isfinite(ips) else "-- images/s"
        parts = [f"loss {info['loss']:.4f}", f"accuracy {100 * info['accuracy']:.2f}%"]
        if math.isfinite(info.get("val_accuracy", math.nan)):
            parts.append(f"validation {100 * info['val_accuracy']:.2f}%")
        return ProgressView(
            bar, phase, f"{speed}, ETA {format_eta(info.get('eta_s', math.nan))}", ", ".join(parts)
        )

    def finish(self, output: TrainOutput) -> TrainedView:
        """The run came back (finished or stopped, stored or not): it is shown from now on."""
        result, clf = output.result, output.result.classifier
        self.pending, self.stopping = None, False
        self._predictions[id(clf)] = (clf, result.test_predictions)
        self.plotted = self.last_run = clf
        verb = "Stopped" if result.cancelled else "Done"
        phase = (
            f"{verb} ({clf.name}, the last run): test accuracy {100 * result.test_accuracy:.2f}% "
            f"after {clf.meta['epochs_completed']:.2f} epochs ({result.seconds:.1f} s)"
        )
        if output.store_error:
            status = f"Not kept in the model store: {output.store_error}; use Save as."
        else:
            status = f"Kept in the model store as {clf.meta.get('path')}"
        showing = showing_text(clf, just_trained=True)
        return TrainedView(clf, phase, status, bool(output.store_error), result.cancelled,
                           showing, result.test_predictions)  # fmt: skip

    def failed(self, message: str, user_error: bool) -> str | None:
        """The run failed: nothing is pending; the form field to mark, if one is to blame."""
        self.abandon()
        return "lr" if user_error and "learning rate" in message else None

    def abandon(self) -> None:
        """The run ended without a model (failed, or cancelled before it began)."""
        self.pending, self.stopping = None, False

    # ------------------------------------------------------------------ showing

    def select(self, clf: Any) -> ModelView | None:
        """What choosing ``clf`` shows; None while a run is in progress (it keeps the plots)."""
        if clf is None:
            return ModelView("No model selected.", None, None)
        if self.pending is not None:
            return None
        history = None
        if clf is not self.plotted:
            history = clf.meta.get("history") or {}
            self.plotted = clf
        return ModelView(
            showing_text(clf, just_trained=clf is self.last_run), history, self.predictions(clf)
        )

    def predictions(self, clf: Any) -> np.ndarray | None:
        """``clf``'s cached test-set predictions, None until computed."""
        cached = self._predictions.get(id(clf))
        return cached[1] if cached is not None and cached[0] is clf else None

    def predict_work(self, clf: Any) -> Any:
        """Work computing ``clf``'s test-set predictions; hand its result to :meth:`predicted`."""
        x = self.mnist.x_test
        return lambda progress, cancel: clf.predict(x)

    def predicted(self, clf: Any, pred: np.ndarray, current: Any) -> bool:
        """Keep ``clf``'s predictions; True if they are to be shown (it is still the chosen
        model and no run started meanwhile)."""
        self._predictions[id(clf)] = (clf, pred)
        return current is clf and self.pending is None

    def prediction_view(self, pred: np.ndarray) -> PredictionView | None:
        """The grid and matrix for ``pred``; None if it is not for this test set."""
        mnist = self.mnist
        if mnist is None or len(pred) != len(mnist.y_test):
            return None
        cm = training.confusion_matrix(mnist.y_test, pred)
        return PredictionView(mnist.x_test, mnist.y_test, pred, cm)

    # ------------------------------------------------------------------ store

    def load_store_work(self, warnings: list[str]) -> Any:
        """Work loading every stored model (damaged ones named in ``warnings``)."""
        store = self.store
        return lambda progress, cancel: store.load_all(
            progress=progress, cancel=cancel, warnings=warnings
        )

    @staticmethod
    def stored_loaded(
        loaded: Sequence[Any], known: Sequence[Any], warnings: Sequence[str]
    ) -> tuple[list[Any], str | None, bool]:
        """(models not listed yet, the status line or None, whether it is an error)."""
        paths = {c.meta.get("path") for c in known}
        fresh = [c for c in loaded if c.meta.get("path") not in paths]
        note = f"{len(fresh)} stored model(s) loaded."
        if warnings:
            return fresh, note + " " + " ".join(warnings), True
        return fresh, note if fresh else None, False
