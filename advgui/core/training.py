"""Plain training on MNIST: the deck's MLP or a small CNN, cross-entropy, over :func:`fit.fit`.

This module is the plain recipe (its options, ranges, benchmarked defaults, the stored history
and metadata); the loop itself, with its schedule, progress and Stop, is :mod:`advgui.core.fit`.
Stop keeps the latest weights, tested on the test set like a finished model.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from advgui.core import fit, models
from advgui.core.data import Mnist, dataset_meta
from advgui.core.errors import ParameterError
from advgui.core.fit import OPTIMIZERS, SCHEDULES, confusion_matrix
from advgui.core.params import check_number
from advgui.core.precision import check as check_precision
from advgui.core.progress import CancelToken, Progress, ProgressCallback
from advgui.core.tfimport import keras

N_TRAIN_TOTAL = 60000

#: (low, high) for each numeric option; the GUI's spin boxes and the CLI use the same ranges.
RANGES: dict[str, tuple[float, float]] = {
    "epochs": (1, 200),
    "batch_size": (8, 4096),
    "lr": (1e-6, 1.0),
    "seed": (0, 2**31 - 1),
    "n_train": (100, N_TRAIN_TOTAL),
    "n_val": (0, 10000),
    "evals_per_epoch": (1, 20),
}

#: Sensible defaults per architecture (benchmarked in benchmarks/bench_training.py).
DEFAULTS: dict[str, dict[str, Any]] = {
    "cnn": {"epochs": 2, "batch_size": 128, "lr": 8e-3, "optimizer": "adam"},
    "mlp": {"epochs": 2, "batch_size": 64, "lr": 3e-3, "optimizer": "adam"},
}


@dataclass
class TrainConfig:
    """What to train and how. ``n_val`` validation images are held out from the end of the
    training set (never trained on); ``n_train`` images are taken from the start.
    :meth:`for_arch` gives the benchmarked defaults of an architecture."""

    arch: str = "cnn"
    epochs: int = 2
    batch_size: int = 128
    lr: float = 4e-3
    schedule: str = "onecycle"
    optimizer: str = "adam"
    seed: int = 0
    n_train: int = 55000
    n_val: int = 5000
    #: Validation passes per epoch (more gives a denser validation curve, costs time).
    evals_per_epoch: int = 1
    #: "float32" or "mixed" (core/precision.py): the arithmetic of training; the model stays
    #: float32.
    precision: str = "float32"

    @classmethod
    def for_arch(cls, arch: str, **overrides: Any) -> TrainConfig:
        """The defaults for ``arch`` (see :data:`DEFAULTS`), with ``overrides`` applied."""
        if arch not in DEFAULTS:
            raise ParameterError(
                f"unknown architecture {arch!r}; choose one of {sorted(DEFAULTS)}", field="arch"
            )
        return cls(arch=arch, **{**DEFAULTS[arch], **overrides})

    def validate(self) -> TrainConfig:
        """Return a checked copy with plain Python types; :class:`ParameterError` otherwise."""
        if self.arch not in models.ARCHITECTURES:
            raise ParameterError(
                f"architecture must be one of {', '.join(models.ARCHITECTURES)}, got {self.arch!r}",
                field="arch",
            )
        if self.schedule not in SCHEDULES:
            raise ParameterError(
                f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}",
                field="schedule",
            )
        if self.optimizer not in OPTIMIZERS:
            raise ParameterError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}",
                field="optimizer",
            )
        values = {}
        for name, (lo, hi) in RANGES.items():
            values[name] = check_number(
                name,
                getattr(self, name),
                lo=lo,
                hi=hi,
                integer=name != "lr",
                label=name.replace("_", " "),
            )
        if values["n_train"] + values["n_val"] > N_TRAIN_TOTAL:
            raise ParameterError(
                f"training images ({values['n_train']}) plus validation images "
                f"({values['n_val']}) must not exceed the {N_TRAIN_TOTAL} MNIST training images",
                field="n_train",
            )
        values["precision"] = check_precision(self.precision)
        return dataclasses.replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """The trained classifier, its per-epoch history and what the test set says about it."""

    classifier: models.Classifier
    history: dict[str, list[float]]
    cancelled: bool
    test_accuracy: float
    seconds: float
    #: Predicted classes for the whole MNIST test set (for the prediction grid and confusion).
    test_predictions: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, int))
    config: TrainConfig = field(default_factory=TrainConfig)


def learning_rate(schedule: str, base: float, step: int, total: int) -> float:
    """The learning rate at ``step`` of ``total``: one-cycle (warm up over the first 25 %,
    then cosine down to base/1000), cosine from ``base``, or constant (:class:`fit.Schedule`)."""
    return fit.Schedule(schedule, base)(step, total)


def train(
    config: TrainConfig,
    mnist: Mnist,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    model: Any = None,
) -> TrainResult:
    """Train (or, with ``model``, keep training) a classifier; return it with its history.

    Cancelling stops between two batches and still returns a usable model, with
    ``cancelled=True``, evaluated on the test set like a finished one. ``model`` may be a
    :class:`~advgui.core.models.Classifier` or a Keras model; it is trained in place.
    """
    cfg = config.validate()
    k = keras()
    started = time.perf_counter()
    if progress is not None:
        progress(Progress(0, 1, "preparing"))

    k.utils.set_random_seed(cfg.seed)
    meta: dict[str, Any] = {}
    outputs = {"outputs": "logits", "outputs_how": "the model's outputs"}
    if model is None:
        net = models.build_model(cfg.arch, seed=cfg.seed)
        logits_model = net
    elif isinstance(model, models.Classifier):
        net, logits_model, meta = model.model, model.logits_model, dict(model.meta)
        outputs = {k: meta.get(k, v) for k, v in outputs.items()}
    else:
        models.check_mnist_classifier(model)
        net = model
        info = models.analyse_outputs(model, mnist.x_test[:32])
        logits_model = info.logits_model
        outputs = {"outputs": info.kind, "outputs_how": info.how}

    n_val = cfg.n_val
    holdout = None
    if n_val:
        x_val, y_val = (
            mnist.x_train[N_TRAIN_TOTAL - n_val :],
            mnist.y_train[N_TRAIN_TOTAL - n_val :],
        )
        holdout = fit.Holdout(x_val, y_val, per_epoch=cfg.evals_per_epoch)
    plan = fit.Plan(
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        schedule=fit.Schedule(cfg.schedule, cfg.lr),
        optimizer=cfg.optimizer,
        seed=cfg.seed,
        precision=cfg.precision,
    )
    fitted = fit.fit(
        logits_model,
        mnist.x_train[: cfg.n_train],
        mnist.y_train[: cfg.n_train].astype(np.int64),
        fit.CrossEntropy(),
        plan,
        holdout=holdout,
        test=(mnist.x_test, mnist.y_test),
        progress=progress,
        cancel=cancel,
    )
    history = _history(fitted.records, with_val=bool(n_val))
    test_acc, test_pred = fitted.test.accuracy, fitted.test.predictions
    cancelled = fitted.cancelled
    seconds = time.perf_counter() - started
    stamp = _dt.datetime.now().astimezone()
    epochs_done = history["epoch"][-1] if history["epoch"] else 0.0
    arch = meta.get("architecture", cfg.arch if model is None else "custom")
    meta.update(
        {
            "name": f"{arch}-{100 * test_acc:.2f}%-{stamp:%H%M%S}",
            "architecture": arch,
            "params": cfg.to_dict(),
            "seed": cfg.seed,
            "num_weights": models.count_params(net),
            **dataset_meta(mnist),  # "dataset" and "dataset_sha256"
            "history": history,
            "test_accuracy": float(test_acc),
            # Rows: actual digit, columns: predicted (100 counts; the lab report shows it).
            "confusion_matrix": confusion_matrix(mnist.y_test, test_pred).tolist(),
            "seconds": float(seconds),
            "train_seconds": float(fitted.train_seconds),
            "epochs_completed": float(epochs_done),
            "cancelled": bool(cancelled),
            "trained_at": stamp.isoformat(timespec="seconds"),
            **outputs,
        }
    )
    meta.pop("path", None)
    clf = models.Classifier(model=net, meta=meta, logits_model=logits_model)
    return TrainResult(
        classifier=clf,
        history=history,
        cancelled=cancelled,
        test_accuracy=float(test_acc),
        seconds=float(seconds),
        test_predictions=test_pred,
        config=cfg,
    )


def _history(records: list[fit.EpochRecord], *, with_val: bool) -> dict[str, list[float]]:
    """The stored per-epoch history (a dict of lists; no NaN validation columns without a
    validation set: they are not valid JSON)."""
    history: dict[str, list[float]] = {
        "epoch": [r.epoch for r in records],
        "loss": [r.loss for r in records],
        "accuracy": [r.accuracy for r in records],
    }
    if with_val:
        history["val_loss"] = [r.clean_loss for r in records]
        history["val_accuracy"] = [r.clean_accuracy for r in records]
    history["lr"] = [r.lr for r in records]
    history["seconds"] = [r.seconds for r in records]
    return {k: [math.nan if v is None else float(v) for v in vs] for k, vs in history.items()}
