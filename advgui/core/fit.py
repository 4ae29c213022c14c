"""The one training loop: plain, adversarial (FGSM, fast, PGD, TRADES) and distilled training.

A recipe says what one batch's loss is; :func:`fit` does the rest the same way for all of them:
shuffling, the learning-rate schedule, the optimizer, a compiled ``tf.function`` step, held-out
checks (clean and, for defended training, robust accuracy) with best-weights keeping, progress
and Stop.

A custom loop rather than ``model.fit``: it ran about 1.8x faster per epoch on this CPU, and it
lets the GUI stop between any two batches and still get a usable model. XLA is off (5-7x slower
here). ``Plan.precision="mixed"`` trains a clone of the model under this device's mixed dtype
policy (core/precision.py; float16 with Keras's dynamic loss scaling, or bfloat16) and copies
its float32 weights back into the model, which itself stays float32. Progress crossing to
the GUI thread carries plain Python floats, never tensors (the Keras callbacks' pattern),
throttled to a few updates per second: :class:`BatchProgress` for the live curves,
:class:`EpochRecord` for every held-out check. How they become curves is the GUI's business.

Stop is one policy for every recipe: the loop ends between two batches and the model is kept,
with the best checked weights where the holdout keeps the best (fast adversarial training), else
the latest; :attr:`FitResult.cancelled` says so, and the recipes mark the model stopped.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from advgui.core.errors import ParameterError
from advgui.core.progress import CancelToken, Progress, ProgressCallback, Throttle
from advgui.core.tfimport import keras, tf

SCHEDULES = ("onecycle", "cosine", "constant")
OPTIMIZERS = ("adam", "sgd")
#: Smoothing of the live training loss/accuracy (about the last 20 batches).
_EMA = 0.95


# --------------------------------------------------------------------------- schedule, optimizer


@dataclass(frozen=True)
class Schedule:
    """The learning rate over a run: one-cycle, cosine from ``peak``, or constant.

    One-cycle warms up linearly from ``start * peak`` over the first ``warmup`` of the run, then
    anneals to ``end * peak`` at the last step, along a half cosine or a straight line. The
    defaults are plain training's shape (benchmarks/bench_training.py: 99% in one CNN epoch);
    defended training keeps the shape its figures were measured with, :data:`DEFENDED_ONE_CYCLE`.
    """

    kind: str = "onecycle"
    peak: float = 4e-3
    warmup: float = 0.25
    start: float = 1 / 25
    end: float = 1 / 1000
    anneal: str = "cos"

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ParameterError(
                f"schedule must be one of {', '.join(SCHEDULES)}, got {self.kind!r}",
                field="schedule",
            )
        if not (0.0 <= self.warmup < 1.0 and self.anneal in ("cos", "linear")):
            raise ParameterError(f"bad one-cycle shape {self}", field="schedule")

    def __call__(self, step: int, total: int) -> float:
        """The learning rate at ``step`` (0-based) of ``total`` steps."""
        base = self.peak
        if self.kind == "constant" or total <= 1:
            return float(base)
        t = min(max(step / (total - 1), 0.0), 1.0)
        if self.kind == "cosine":
            return float(base * 0.5 * (1 + math.cos(math.pi * t)))
        if t < self.warmup:
            start = base * self.start
            return float(start + (base - start) * t / self.warmup)
        u = (t - self.warmup) / (1 - self.warmup)
        low = base * self.end
        shape = 0.5 * (1 + math.cos(math.pi * u)) if self.anneal == "cos" else 1.0 - u
        return float(low + (base - low) * shape)


#: Defended training's one-cycle: a longer linear warm-up from 0 (40%), then linearly down to 0;
#: the published PGD-AT and fast-AT figures (benchmarks/bench_defenses.py) were measured with it.
DEFENDED_ONE_CYCLE = {"warmup": 0.4, "start": 0.0, "end": 0.0, "anneal": "linear"}


def make_optimizer(name: str, lr: float, variables: list[Any]) -> Any:
    """Adam, or SGD with Nesterov momentum 0.9; built for ``variables`` (the step assigns the
    scheduled learning rate before every update)."""
    k = keras()
    if name == "sgd":
        opt = k.optimizers.SGD(learning_rate=lr, momentum=0.9, nesterov=True)
    elif name == "adam":
        opt = k.optimizers.Adam(learning_rate=lr)
    else:
        raise ParameterError(
            f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}", field="optimizer"
        )
    opt.build(variables)
    return opt


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Evaluation:
    """Figures of a model on a set of images (``robust_accuracy`` only with an attack)."""

    loss: float
    accuracy: float
    predictions: np.ndarray
    robust_accuracy: float | None = None


class Evaluator:
    """Loss, accuracy and predictions over a dataset through one compiled function per model;
    with ``attack`` (an in-graph attack ``(f, x, y) -> x_adv`` on ``f``'s logits) also the
    accuracy under it, in the same graph.

    ``scale`` divides the logits first: a distilled model is checked at its temperature, as an
    adaptive attacker would (the predictions are the same).
    """

    def __init__(
        self,
        logits_model: Any,
        *,
        attack: Callable[[Any, Any, Any], Any] | None = None,
        scale: float = 1.0,
        batch_size: int = 1000,
    ) -> None:
        t = tf()
        self.batch_size = int(batch_size)
        self.robust = attack is not None
        self.scale = float(scale)
        image_spec = t.TensorSpec([None, 28, 28, 1], t.float32)

        def f(x: Any) -> Any:
            z = logits_model(x, training=False)
            return z if scale == 1.0 else z / scale

        if attack is None:

            @t.function(input_signature=[image_spec], reduce_retracing=True)
            def forward(x: Any) -> Any:
                return f(x)

            self._run = lambda x, y: (forward(x), None)
        else:

            @t.function(reduce_retracing=True, autograph=False)
            def checked(x: Any, y: Any) -> tuple[Any, Any]:
                x_adv = attack(f, x, y)
                robust = t.argmax(f(x_adv), axis=1, output_type=t.int64) == y
                return f(x), t.reduce_sum(t.cast(robust, t.int32))

            self._run = checked

    def __call__(
        self, x: np.ndarray, y: np.ndarray, cancel: CancelToken | None = None
    ) -> Evaluation | None:
        """The figures over ``x``; None if ``cancel`` cut the pass short (partial figures are
        not figures)."""
        y = np.asarray(y, np.int64)
        losses, preds, robust = [], [], 0
        for i in range(0, len(x), self.batch_size):
            if cancel is not None and cancel.cancelled:
                return None
            yb = y[i : i + self.batch_size]
            z_t, r_t = self._run(x[i : i + self.batch_size], yb)
            z = z_t.numpy().astype(np.float64)
            zmax = z.max(axis=1, keepdims=True)
            logsum = np.log(np.exp(z - zmax).sum(axis=1)) + zmax[:, 0]
            losses.append(logsum - z[np.arange(len(yb)), yb])
            preds.append(z.argmax(axis=1))
            if r_t is not None:
                robust += int(r_t)
        if not preds:
            return Evaluation(math.nan, math.nan, np.zeros(0, np.int64), None)
        pred = np.concatenate(preds)
        return Evaluation(
            loss=float(np.concatenate(losses).mean()),
            accuracy=float(np.mean(pred == y)),
            predictions=pred,
            robust_accuracy=robust / len(y) if self.robust else None,
        )


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int = 10) -> np.ndarray:
    """Counts (n, n): rows are the actual digit, columns the predicted one."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y_true * n + y_pred, minlength=n * n).reshape(n, n)


# --------------------------------------------------------------------------- recipes


class Recipe(Protocol):
    """What one batch's loss is; traced into the training step by :func:`fit`. A recipe may
    also have ``prepare(model)``, called eagerly before the step is traced."""

    def eps_at(self, step: int, total: int) -> float:
        """The attack budget at ``step`` of ``total`` (a ramp, or 0)."""

    def attack(self, model: Any, x: Any, y: Any, eps: Any) -> Any:
        """The batch's adversarial examples, or None; made before the gradient tape, so the
        update does not differentiate through the attack."""

    def batch_loss(self, model: Any, x: Any, x_adv: Any, y: Any) -> tuple[Any, Any, Any]:
        """(mean loss, the logits accuracy is counted on, their labels), on the tape."""


@dataclass(frozen=True)
class CrossEntropy:
    """Plain training: cross-entropy of the logits. With ``temperature`` T the logits are divided
    by T first (defensive distillation); labels may be classes or soft targets (N, 10)."""

    temperature: float = 1.0

    def eps_at(self, step: int, total: int) -> float:
        """The attack budget at ``step`` (none: plain training attacks nothing)."""
        return 0.0

    def attack(self, model: Any, x: Any, y: Any, eps: Any) -> Any:
        """The batch's adversarial examples, made before the gradient tape (none here)."""
        return None

    def batch_loss(self, model: Any, x: Any, x_adv: Any, y: Any) -> tuple[Any, Any, Any]:
        """(mean loss, the logits accuracy is counted on, their labels), on the tape."""
        t = tf()
        z = model(x, training=True)
        if self.temperature != 1.0:
            z = z / self.temperature
        return t.reduce_mean(cross_entropy(z, y)), z, y


def cross_entropy(z: Any, y: Any) -> Any:
    """Per-example cross-entropy of logits ``z`` against classes or soft targets ``y``."""
    t = tf()
    if y.shape.rank == 2:
        return t.nn.softmax_cross_entropy_with_logits(labels=y, logits=z)
    return t.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class BatchProgress:
    """A batch update for live curves and the ETA: the training loss and accuracy as moving
    averages over about the last 20 batches (an epoch-to-date mean lags far behind the model),
    and the latest held-out figures."""

    epoch: int
    batch: int
    #: Position in epochs over the whole job (the x of a live curve).
    epoch_progress: float
    loss: float
    accuracy: float
    lr: float = math.nan
    images_per_second: float = math.nan
    eta_s: float = math.nan
    val_loss: float = math.nan
    val_accuracy: float = math.nan
    #: Held-out checks so far.
    val_count: int = 0

    def info(self) -> dict[str, float]:
        """The figures as plain floats (``Progress.info``: the command line shows these)."""
        return {f.name: float(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class EpochRecord:
    """One held-out check, at the end of an epoch (``complete``) or between (several checks per
    epoch, or Stop). ``loss`` and ``accuracy`` are the training figures of the epoch so far (on
    what was trained on: adversarial examples for adversarial training)."""

    stage: str
    #: Epochs of this stage done when it was taken (1.0, 2.0; fractional mid-epoch or stopped).
    epoch: float
    #: Position in epochs over the whole job (distillation: teacher, then student).
    epoch_progress: float
    loss: float
    accuracy: float
    #: Held-out clean figures; None without held-out images.
    clean_loss: float | None
    clean_accuracy: float | None
    #: Held-out accuracy under the recipe's attack (PGD); None for plain training.
    robust_accuracy: float | None
    lr: float
    #: Wall time of the epoch so far, and since the stage began.
    seconds: float
    elapsed: float
    images_per_second: float
    complete: bool
    #: False: the held-out figures are the latest check's, not of these weights (plain
    #: training stopped between two checks).
    checked: bool = True


# --------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class Plan:
    """How long and how: epochs, batches, schedule, optimizer, seed of the data order.

    ``drop_last`` leaves out a last partial batch each epoch (adversarial training: one input
    shape, so the attack's graph is traced once)."""

    epochs: int
    batch_size: int
    schedule: Schedule
    optimizer: str = "adam"
    seed: int = 0
    drop_last: bool = False
    #: "float32" or "mixed" (core/precision.py); the trained model stays float32 either way.
    precision: str = "float32"


@dataclass
class Holdout:
    """Held-out images checked during training, and what the checks decide.

    ``per_epoch`` checks an epoch (the last at its end). ``attack`` adds robust accuracy (an
    in-graph attack for :class:`Evaluator`); ``keep_best`` restores, at the end, the weights of
    the best check (robust accuracy, else clean): fast adversarial training can overfit
    catastrophically within an epoch. ``check_when_stopped`` checks the weights Stop leaves,
    so a stopped defended model has real held-out figures (and the best is chosen among them).
    """

    x: np.ndarray
    y: np.ndarray
    per_epoch: int = 1
    attack: Callable[[Any, Any, Any], Any] | None = None
    scale: float = 1.0
    keep_best: bool = False
    check_when_stopped: bool = False
    batch_size: int = 1000


@dataclass(frozen=True)
class Stage:
    """Where a fit sits in its job (distillation fits a teacher, then a student) and how its
    batch updates read: ``name`` alone (plain training's "training", which the Training tab and
    the tests key on), or with ``epochs_in_message`` "name: epoch 3/10". A check always reads
    "name: epoch 3/10: clean 98.1%, PGD 91.0%" (or "validation 98.1%")."""

    name: str = "training"
    index: int = 0
    count: int = 1
    epochs_in_message: bool = False

    @property
    def last(self) -> bool:
        return self.index == self.count - 1


@dataclass
class FitResult:
    """What a fit did; the model passed in was trained in place (and holds the kept weights)."""

    #: One per epoch started: the epochs' closing checks, the last partial when stopped.
    records: list[EpochRecord]
    cancelled: bool
    #: The epoch whose weights the model holds (0: stopped before any batch).
    best_epoch: int
    epochs_completed: float
    steps: int
    #: Seconds of the loop (training and held-out checks, not the test set).
    train_seconds: float
    #: The test set, evaluated when the job ends (after its last stage, or at Stop).
    test: Evaluation | None = None


def fit(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    recipe: Recipe,
    plan: Plan,
    *,
    holdout: Holdout | None = None,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    stage: Stage | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> FitResult:
    """Train the logits model ``model`` in place on ``(x, y)`` with ``recipe``'s batch loss
    (:class:`CrossEntropy`, or defended training's ``AdversarialLoss``).

    ``y`` holds classes, or soft targets (N, 10) for a distillation student. Stop ends the loop
    between two batches (see the module's docstring); a non-finite loss raises
    :class:`ParameterError` naming the learning rate.
    """
    stage = stage or Stage()
    t = tf()
    report = Throttle(progress, 0.25)
    n = len(x)
    bs = min(plan.batch_size, n)
    steps_per_epoch = n // bs if plan.drop_last else math.ceil(n / bs)
    epoch_images = steps_per_epoch * bs if plan.drop_last else n
    total_steps = steps_per_epoch * plan.epochs
    grand_total = total_steps * stage.count
    done_before = total_steps * stage.index
    checks_per_epoch = holdout.per_epoch if holdout is not None and len(holdout.x) else 0
    check_at = {
        round(steps_per_epoch * (j + 1) / checks_per_epoch) for j in range(checks_per_epoch)
    }

    from advgui.core import precision

    dtype_policy = precision.policy(plan.precision)
    target = model  # what the caller holds, float32; ``model`` is what the steps train
    if dtype_policy != "float32":
        model = precision.mixed_clone(target, dtype_policy)
    variables = model.trainable_variables
    optimizer = make_optimizer(plan.optimizer, plan.schedule.peak, variables)
    if dtype_policy == "mixed_float16":  # float16 gradients underflow without it (as model.fit)
        optimizer = keras().optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(variables)
    step_fn = _compile_step(recipe, model, optimizer, variables, y, bs if plan.drop_last else None)
    check = None
    check_cancel = cancel
    if checks_per_epoch:
        check = Evaluator(
            model, attack=holdout.attack, scale=holdout.scale, batch_size=holdout.batch_size
        )
        # A check that decides which weights are kept runs to its end even after Stop.
        check_cancel = None if holdout.check_when_stopped else cancel

    # Batches are gathered with numpy (0.4 MB each) rather than copying the whole set into a
    # tensor: a 170 MB conversion holds the GIL long enough to stall the GUI thread.
    rng = np.random.default_rng(plan.seed + stage.index)
    records: list[EpochRecord] = []
    latest: Evaluation | None = None
    n_checks = 0
    best_score, best_epoch, best_weights = -1.0, 0, None
    step = 0
    cancelled = False
    loop_start = time.perf_counter()
    timed_from: tuple[float, int] | None = None  # (time, images) once the first step is traced
    images_seen = 0
    ema_loss = ema_acc = ema_weight = 0.0
    epochs_done = 0.0
    kept_epoch = 0

    def lr_now() -> float:
        return plan.schedule(max(step - 1, 0), total_steps)

    def images_per_second() -> float:
        now = time.perf_counter()
        if timed_from is not None and images_seen > timed_from[1] and now > timed_from[0]:
            return (images_seen - timed_from[1]) / (now - timed_from[0])
        return math.nan

    def batch_update(epoch: int, batch: int) -> BatchProgress:
        remaining = grand_total - done_before - step
        elapsed = time.perf_counter() - loop_start
        return BatchProgress(
            epoch=epoch,
            batch=batch,
            epoch_progress=stage.index * plan.epochs + step / steps_per_epoch,
            loss=ema_loss / ema_weight if ema_weight else math.nan,
            accuracy=ema_acc / ema_weight if ema_weight else math.nan,
            lr=lr_now(),
            images_per_second=images_per_second(),
            eta_s=elapsed / step * remaining if step else math.nan,
            val_loss=latest.loss if latest is not None else math.nan,
            val_accuracy=latest.accuracy if latest is not None else math.nan,
            val_count=n_checks,
        )

    def message(epoch: int) -> str:
        if stage.epochs_in_message:
            return f"{stage.name}: epoch {epoch}/{plan.epochs}"
        return stage.name

    def emit(update: BatchProgress, *, force: bool = False) -> None:
        report(
            Progress(
                done_before + step, grand_total, message(update.epoch), update.info(), record=update
            ),
            force=force,
        )

    def record(epoch: int, sums: tuple[float, float, int], started: float, *, complete: bool,
               checked: bool) -> EpochRecord:  # fmt: skip
        ep_loss, ep_correct, ep_images = sums
        now = time.perf_counter()
        seconds = now - started
        ev = latest
        return EpochRecord(
            stage=stage.name,
            epoch=float(epoch + ep_images / epoch_images),
            epoch_progress=stage.index * plan.epochs + step / steps_per_epoch,
            loss=ep_loss / ep_images,
            accuracy=ep_correct / ep_images,
            clean_loss=ev.loss if ev is not None else None,
            clean_accuracy=ev.accuracy if ev is not None else None,
            robust_accuracy=ev.robust_accuracy if ev is not None else None,
            lr=lr_now(),
            seconds=seconds,
            elapsed=now - loop_start,
            images_per_second=ep_images / seconds if seconds > 0 else math.nan,
            complete=complete,
            checked=checked,
        )

    def run_check() -> bool:
        nonlocal latest, n_checks
        ev = check(holdout.x, holdout.y, check_cancel)
        if ev is None:  # cut short by Stop
            return False
        latest = ev
        n_checks += 1
        return True

    def keep_if_best(epoch: int) -> None:
        nonlocal best_score, best_epoch, best_weights
        score = latest.robust_accuracy if latest.robust_accuracy is not None else latest.accuracy
        if score >= best_score:
            best_score, best_epoch, best_weights = score, epoch, model.get_weights()

    def publish(rec: EpochRecord, update: BatchProgress) -> None:
        """A check: the batch update (forced, with the new held-out figures), then the record,
        whose ``info`` adds the check's figures to the batch's."""
        emit(update, force=True)
        info = update.info()
        info["seconds"] = rec.elapsed  # the stage's time so far, as the defended history stores
        for name in ("clean_loss", "clean_accuracy", "robust_accuracy"):
            value = getattr(rec, name)
            if value is not None:
                info[name] = float(value)
        if rec.complete:
            info["epoch_end"] = 1.0
        where = "stopped in epoch" if cancelled else "epoch"
        text = f"{stage.name}: {where} {update.epoch}/{plan.epochs}"
        if rec.robust_accuracy is not None:
            text += f": clean {rec.clean_accuracy:.1%}, PGD {rec.robust_accuracy:.1%}"
        elif rec.clean_accuracy is not None:
            text += f": validation {rec.clean_accuracy:.1%}"
        report(Progress(done_before + step, grand_total, text, info, record=rec), force=True)

    for epoch in range(plan.epochs):
        order = rng.permutation(n)
        ep_loss = ep_correct = 0.0
        ep_images = 0
        epoch_start = time.perf_counter()
        checked_here = False
        for b in range(steps_per_epoch):
            if cancel is not None and cancel.cancelled:
                cancelled = True
                break
            lo = b * bs
            idx = order[lo : lo + bs]
            i = epoch * steps_per_epoch + b
            eps = recipe.eps_at(i, total_steps)
            lr = plan.schedule(step, total_steps)
            loss_t, correct_t = step_fn(
                x[idx], y[idx], t.constant(eps, t.float32), t.constant(lr, t.float32)
            )
            count = len(idx)
            loss = float(loss_t)
            if not math.isfinite(loss):
                raise ParameterError(
                    f"training diverged (loss became {loss}) at epoch {epoch + 1}, batch {b + 1}; "
                    "lower the learning rate",
                    field="lr",
                )
            correct = float(correct_t)
            ep_loss += loss * count
            ep_correct += correct
            ep_images += count
            ema_loss = _EMA * ema_loss + (1 - _EMA) * loss
            ema_acc = _EMA * ema_acc + (1 - _EMA) * correct / count
            ema_weight = _EMA * ema_weight + (1 - _EMA)
            images_seen += count
            step += 1
            if timed_from is None:
                timed_from = (time.perf_counter(), images_seen)
            if check is not None and (b + 1) in check_at:
                checked_here = run_check()
                update = batch_update(epoch + 1, b + 1)
                if checked_here:
                    end = b + 1 == steps_per_epoch
                    rec = record(epoch, (ep_loss, ep_correct, ep_images), epoch_start,
                                 complete=end, checked=True)  # fmt: skip
                    if end:
                        records.append(rec)
                        if holdout.keep_best:
                            keep_if_best(epoch + 1)
                    publish(rec, update)
                else:
                    emit(update, force=True)
            else:
                checked_here = False
                emit(batch_update(epoch + 1, b + 1))
        if ep_images:
            epochs_done = epoch + ep_images / epoch_images
            kept_epoch = epoch + 1
            if cancelled or not (check is not None and checked_here):
                # The epoch ended unchecked (Stop, or no held-out images): its record carries
                # the latest check, unless the check decides what is kept.
                fresh = cancelled and check is not None and holdout.check_when_stopped
                if fresh:
                    fresh = run_check()
                rec = record(epoch, (ep_loss, ep_correct, ep_images), epoch_start,
                             complete=not cancelled, checked=fresh or check is None)  # fmt: skip
                records.append(rec)
                if fresh:
                    if holdout.keep_best:
                        keep_if_best(epoch + 1)
                    publish(rec, batch_update(epoch + 1, step - epoch * steps_per_epoch))
        if cancelled:
            break

    if holdout is not None and holdout.keep_best and best_weights is not None:
        model.set_weights(best_weights)
        kept_epoch = best_epoch
    if model is not target:  # the mixed clone's float32 variables into the caller's model
        target.set_weights(model.get_weights())
    train_seconds = time.perf_counter() - loop_start
    result = FitResult(
        records=records,
        cancelled=cancelled,
        best_epoch=kept_epoch,
        epochs_completed=float(epochs_done),
        steps=step,
        train_seconds=train_seconds,
    )
    if test is not None and (cancelled or stage.last):
        if progress is not None:
            info = {"epoch": float(len(records))}
            progress(Progress(done_before + step, grand_total, "testing", info))
        plain_check = check is not None and not check.robust and check.scale == 1.0
        plain_check = plain_check and model is target  # the test set is judged in float32
        result.test = (check if plain_check else Evaluator(target))(*test)
        if progress is not None:
            info = {"test_accuracy": result.test.accuracy, "epoch": float(epochs_done)}
            progress(Progress(grand_total, grand_total, "stopped" if cancelled else "done", info))
    return result


def _compile_step(
    recipe: Recipe, model: Any, optimizer: Any, variables: list, y: np.ndarray, batch: int | None
) -> Any:
    """One training step as a ``tf.function``: the recipe's attack, its loss plus the model's
    own losses (regularisers), the update; returns (loss, correct count). ``batch`` fixes the
    batch size in the graph where every batch is whole."""
    t = tf()
    prepare = getattr(recipe, "prepare", None)
    if prepare is not None:  # eager work a recipe needs before tracing (e.g. a rebuilt model)
        prepare(model)
    image_spec = t.TensorSpec([batch, 28, 28, 1], t.float32)
    label_spec = t.TensorSpec([batch, *y.shape[1:]], t.as_dtype(y.dtype))
    scalar = t.TensorSpec([], t.float32)

    @t.function(input_signature=[image_spec, label_spec, scalar, scalar], autograph=False)
    def train_step(x: Any, y: Any, eps: Any, lr: Any) -> Any:
        optimizer.learning_rate.assign(lr)
        x_adv = recipe.attack(model, x, y, eps)
        with t.GradientTape() as tape:
            loss, logits, labels = recipe.batch_loss(model, x, x_adv, y)
            extra = model.losses
            loss_total = loss + t.add_n(extra) if extra else loss
            # Keras's own step does this: the identity except under a LossScaleOptimizer,
            # whose update divides the scale out again.
            loss_total = optimizer.scale_loss(loss_total)
        grads = tape.gradient(loss_total, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        if labels.shape.rank == 2:
            labels = t.argmax(labels, 1)
        correct = t.reduce_sum(t.cast(t.equal(t.argmax(logits, 1), labels), t.float32))
        return loss, correct

    return train_step
