"""Defended training: adversarial training (FGSM, fast FGSM, PGD, TRADES) and distillation.

Adversarial training needs the attack *inside* the training step: every batch is attacked with
the current weights before the update. The inner attacks here are therefore compiled into the
same ``tf.function`` as the update (a ``tf.while_loop`` over the steps), not the batch attacks
of :mod:`advgui.core.attacks`, which report per-image results to the user and would cost a
Python round trip per step.

- ``fgsm-at`` (Goodfellow et al. 2015): loss ``(CE(x) + CE(x + eps sign g)) / 2``.
- ``fast-at`` (Wong et al. 2020): one FGSM step of 1.25 eps from a uniform random start.
  It can overfit catastrophically (FGSM accuracy high, PGD accuracy collapsing to 0), so each
  epoch a PGD check on a held-out batch decides which weights are kept: the best seen.
- ``pgd-at`` (Madry et al. 2018): PGD with random start, ``steps`` steps of ``step``.
- ``trades`` (Zhang et al. 2019): ``CE(x) + beta KL(p(x) || p(x'))``, x' maximising the KL.
- ``distill`` (Papernot et al. 2016): see :func:`distill`.

Every epoch reports clean and PGD accuracy on the held-out images (the last ``holdout`` training
images, never trained on), for the live plots.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from advgui.core import models
from advgui.core.data import dataset_meta
from advgui.core.errors import ParameterError
from advgui.core.models import Classifier
from advgui.core.params import check_number
from advgui.core.progress import CancelToken, Progress, ProgressCallback, Throttle, check
from advgui.core.tfimport import keras, tf

DEFENSES = ("fgsm-at", "fast-at", "pgd-at", "trades", "distill")
#: Strided CNNs (Wong et al. 2020's MNIST net and a wider one): 5-10x cheaper per step than the
#: pooled ``cnn`` on a CPU, which is what makes adversarial training affordable here.
DEFENSE_ARCHS: dict[str, tuple[int, int, int]] = {
    "cnn-s2": (16, 32, 100),
    "cnn-s2-wide": (32, 64, 256),
}
ARCHS = (*DEFENSE_ARCHS, *models.ARCHITECTURES)
#: 6 epochs of PGD-AT on cnn-s2-wide: 99.2% clean, 92% under PGD-50 x 10 at eps 0.3, ~9 min here
#: (benchmarks/bench_defenses.py); the single-step methods are cheap enough for 10.
DEFAULT_EPOCHS = {"pgd-at": 6, "trades": 6}


@dataclass
class DefenseConfig:
    """Everything that defines one defended training run (stored in the model's metadata)."""

    method: str = "fast-at"
    eps: float = 0.3
    epochs: int = 10
    batch_size: int = 100
    lr: float = 5e-3  # peak of the one-cycle schedule (Adam)
    arch: str = "cnn-s2-wide"
    model_options: dict[str, Any] = field(default_factory=dict)
    n_train: int | None = None  # None: every training image but the held-out ones
    holdout: int = 1000
    steps: int = 10  # inner PGD/TRADES steps
    step_size: float | None = None  # None: 2.5 eps / steps (Madry)
    fast_step: float = 1.25  # fast-at step, in units of eps (Wong)
    beta: float = 6.0  # TRADES
    eps_ramp: float = (
        0.3  # fraction of training over which eps grows from 0 (avoids early collapse)
    )
    temperature: float = 100.0  # distillation
    check_steps: int = 20  # PGD steps of the per-epoch held-out check
    check_n: int = 500
    seed: int = 0

    def validate(self) -> DefenseConfig:
        if self.method not in DEFENSES:
            raise ParameterError(
                f"unknown defense {self.method!r}; choose one of {', '.join(DEFENSES)}",
                field="method",
            )
        check_number("eps", self.eps, lo=0.0, hi=1.0)
        check_number("epochs", self.epochs, lo=1, hi=1000, integer=True)
        check_number("batch_size", self.batch_size, lo=1, hi=10000, integer=True)
        check_number("lr", self.lr, lo=1e-7, hi=1.0)
        check_number("holdout", self.holdout, lo=10, hi=20000, integer=True)
        check_number("steps", self.steps, lo=1, hi=1000, integer=True)
        check_number("fast_step", self.fast_step, lo=0.01, hi=10.0)
        check_number("beta", self.beta, lo=0.0, hi=1000.0)
        check_number("eps_ramp", self.eps_ramp, lo=0.0, hi=1.0)
        check_number("temperature", self.temperature, lo=1.0, hi=1000.0)
        check_number("check_steps", self.check_steps, lo=1, hi=1000, integer=True)
        check_number("check_n", self.check_n, lo=1, hi=20000, integer=True)
        if self.step_size is not None:
            check_number("step_size", self.step_size, lo=1e-6, hi=1.0)
        if self.n_train is not None:
            check_number("n_train", self.n_train, lo=self.batch_size, hi=60000, integer=True)
        if self.arch not in ARCHS:
            raise ParameterError(
                f"unknown architecture {self.arch!r}; choose one of {ARCHS}",
                field="arch",
            )
        return self

    @classmethod
    def for_method(cls, method: str, **overrides: Any) -> DefenseConfig:
        """A config with the method's default epochs (PGD-AT and TRADES cost ~6x per epoch)."""
        overrides.setdefault("epochs", DEFAULT_EPOCHS.get(method, 10))
        return cls(method=method, **overrides)

    @property
    def pgd_step(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps


@dataclass
class DefenseResult:
    """A defended classifier and how it got there (per-epoch held-out figures)."""

    classifier: Classifier
    history: list[dict[str, float]]
    seconds: float
    config: dict[str, Any]
    best_epoch: int


# --------------------------------------------------------------------------- in-graph attacks


def _ce(z: Any, y: Any) -> Any:
    return tf().nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z)


def _kl(p_logits: Any, q_logits: Any) -> Any:
    """KL(softmax(p) || softmax(q)) per example."""
    t = tf()
    p_log = t.nn.log_softmax(p_logits)
    return t.reduce_sum(t.exp(p_log) * (p_log - t.nn.log_softmax(q_logits)), axis=-1)


def _input_grad(f: Any, x: Any, loss: Any) -> Any:
    t = tf()
    with t.GradientTape() as tape:
        tape.watch(x)
        value = t.reduce_sum(loss(f(x)))
    return tape.gradient(value, x)


def _project(x_adv: Any, x: Any, eps: Any) -> Any:
    t = tf()
    return t.clip_by_value(t.clip_by_value(x_adv, x - eps, x + eps), 0.0, 1.0)


def pgd_graph(f: Any, x: Any, y: Any, eps: Any, step: Any, steps: int, *, start: str = "uniform"):
    """L-inf PGD on cross-entropy of ``f``'s logits, for use inside a ``tf.function``.

    ``start`` is ``uniform`` (Madry), ``none`` (BIM/FGSM) or ``trades`` (N(0, 0.001), maximising
    the KL to the clean prediction instead of the cross-entropy).
    """
    t = tf()
    if start == "uniform":
        x_adv = _project(x + t.random.uniform(t.shape(x), -1.0, 1.0) * eps, x, eps)
    elif start == "trades":
        x_adv = _project(x + 0.001 * t.random.normal(t.shape(x)), x, eps)
    else:
        x_adv = x
    if start == "trades":
        p_nat = t.stop_gradient(f(x))

        def loss(z: Any) -> Any:
            return _kl(p_nat, z)
    else:

        def loss(z: Any) -> Any:
            return _ce(z, y)

    def body(i: Any, xa: Any) -> tuple[Any, Any]:
        g = _input_grad(f, xa, loss)
        return i + 1, t.stop_gradient(_project(xa + step * t.sign(g), x, eps))

    _, x_adv = t.while_loop(lambda i, _: i < steps, body, (t.constant(0), x_adv))
    return x_adv


# --------------------------------------------------------------------------- training


def _model_fn(model: Any, scale: float = 1.0) -> Any:
    if scale == 1.0:
        return lambda x: model(x, training=False)
    return lambda x: model(x, training=False) / scale


def _make_train_step(cfg: DefenseConfig, model: Any, opt: Any) -> Any:
    t = tf()
    f = _model_fn(model)
    method = cfg.method

    @t.function(reduce_retracing=True, autograph=False)
    def step(x: Any, y: Any, eps: Any, lr: Any) -> Any:
        opt.learning_rate.assign(lr)
        if method == "fgsm-at":
            x_adv = pgd_graph(f, x, y, eps, eps, 1, start="none")
        elif method == "fast-at":
            x_adv = pgd_graph(f, x, y, eps, cfg.fast_step * eps, 1, start="uniform")
        elif method == "pgd-at":
            x_adv = pgd_graph(f, x, y, eps, cfg.pgd_step * eps / max(cfg.eps, 1e-12), cfg.steps)
        else:  # trades
            x_adv = pgd_graph(
                f, x, y, eps, cfg.pgd_step * eps / max(cfg.eps, 1e-12), cfg.steps, start="trades"
            )
        with t.GradientTape() as tape:
            if method == "fgsm-at":
                z = model(t.concat([x, x_adv], 0), training=True)
                loss = t.reduce_mean(_ce(z, t.concat([y, y], 0)))
            elif method == "trades":
                z_nat = model(x, training=True)
                z_adv = model(x_adv, training=True)
                loss = t.reduce_mean(_ce(z_nat, y)) + cfg.beta * t.reduce_mean(_kl(z_nat, z_adv))
            else:
                loss = t.reduce_mean(_ce(model(x_adv, training=True), y))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    return step


def _make_check(model: Any, eps: float, steps: int, scale: float = 1.0) -> Any:
    """Held-out check: (clean correct, PGD correct) counts for a batch."""
    t = tf()
    f = _model_fn(model, scale)
    step = 2.5 * eps / steps

    @t.function(reduce_retracing=True, autograph=False)
    def run(x: Any, y: Any) -> tuple[Any, Any]:
        clean = t.argmax(f(x), axis=1, output_type=t.int64) == y
        if eps > 0:
            x_adv = pgd_graph(f, x, y, t.constant(eps), t.constant(step), steps)
            robust = t.argmax(f(x_adv), axis=1, output_type=t.int64) == y
        else:
            robust = clean
        return t.reduce_sum(t.cast(clean, t.int32)), t.reduce_sum(t.cast(robust, t.int32))

    return run


def held_out_accuracy(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    steps: int,
    *,
    scale: float = 1.0,
    batch_size: int = 500,
) -> tuple[float, float]:
    """Clean and PGD (1 restart) accuracy of a logits model; used for the per-epoch check."""
    run = _make_check(model, float(eps), int(steps), scale)
    return _count(run, x, np.asarray(y, np.int64), batch_size)


def one_cycle(step: int, total: int, peak: float) -> float:
    """Linear up to ``peak`` over the first 40% of steps, then linearly down to 0."""
    up = max(1, int(0.4 * total))
    if step < up:
        return peak * (step + 1) / up
    return peak * max(0.0, (total - step) / max(1, total - up))


def _split(cfg: DefenseConfig, mnist: Any) -> tuple[np.ndarray, ...]:
    x = np.asarray(mnist.x_train, np.float32).reshape(-1, 28, 28, 1)
    y = np.asarray(mnist.y_train, np.int64)
    hx, hy = x[-cfg.holdout :], y[-cfg.holdout :]
    x, y = x[: -cfg.holdout], y[: -cfg.holdout]
    if cfg.n_train is not None:
        x, y = x[: cfg.n_train], y[: cfg.n_train]
    n_check = min(cfg.check_n, len(hx))
    return x, y, hx[:n_check], hy[:n_check]


def build_defense_model(arch: str, *, seed: int = 0, **options: Any) -> Any:
    """An untrained logits model: one of :data:`DEFENSE_ARCHS` or of ``models.ARCHITECTURES``."""
    if arch not in DEFENSE_ARCHS:
        return models.build_model(arch, seed=seed, **options)
    k = keras()
    k.utils.set_random_seed(int(seed))
    c1, c2, dense = DEFENSE_ARCHS[arch]
    layers = k.layers
    inputs = k.Input(shape=(28, 28, 1), name="image")
    x = layers.Conv2D(c1, 4, strides=2, padding="same", activation="relu", name="conv_0")(inputs)
    x = layers.Conv2D(c2, 4, strides=2, padding="same", activation="relu", name="conv_1")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense, activation="relu", name="dense")(x)
    return k.Model(inputs, layers.Dense(10, name="logits")(x), name=arch)


def _new_model(cfg: DefenseConfig, base: Classifier | None) -> Any:
    k = keras()
    if base is None:
        return build_defense_model(cfg.arch, seed=cfg.seed, **cfg.model_options)
    src = base.logits_model
    model = k.models.clone_model(src)
    model.set_weights(src.get_weights())
    return model


def _fit(
    cfg: DefenseConfig,
    model: Any,
    step_fn: Any,
    x: np.ndarray,
    y: Any,
    check_fn: Any,
    *,
    stage: str,
    stage_index: int,
    stages: int,
    keep_best: bool,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
) -> tuple[list[dict[str, float]], int]:
    """Epoch loop shared by every defense: shuffling, schedule, progress, checks, best weights."""
    throttle = Throttle(progress)
    rng = np.random.default_rng(cfg.seed + stage_index)
    bs = cfg.batch_size
    per_epoch = len(x) // bs
    total = per_epoch * cfg.epochs
    grand_total = total * stages
    history: list[dict[str, float]] = []
    best_score, best_epoch, best_weights = -1.0, 0, None
    ramp = int(cfg.eps_ramp * total)
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        order = rng.permutation(len(x))
        losses = []
        for b in range(per_epoch):
            check(cancel)
            i = epoch * per_epoch + b
            idx = np.sort(order[b * bs : (b + 1) * bs])
            eps = cfg.eps * min(1.0, (i + 1) / ramp) if ramp else cfg.eps
            lr = one_cycle(i, total, cfg.lr)
            loss = float(step_fn(x[idx], y[idx], np.float32(eps), np.float32(lr)))
            losses.append(loss)
            throttle(
                Progress(
                    total * stage_index + i + 1,
                    grand_total,
                    f"{stage}: epoch {epoch + 1}/{cfg.epochs}",
                    {
                        "epoch": epoch + 1,
                        "loss": loss,
                        "epoch_progress": stage_index * cfg.epochs + epoch + (b + 1) / per_epoch,
                    },
                )
            )
        check(cancel)
        clean, robust = check_fn()
        record = {
            "epoch": epoch + 1,
            "stage": stage,
            "loss": float(np.mean(losses)) if losses else math.nan,
            "clean_accuracy": clean,
            "robust_accuracy": robust,
            "seconds": time.perf_counter() - t0,
        }
        history.append(record)
        if keep_best and robust >= best_score:
            best_score, best_epoch, best_weights = robust, epoch + 1, model.get_weights()
        if progress is not None:
            progress(
                Progress(
                    total * stage_index + (epoch + 1) * per_epoch,
                    grand_total,
                    f"{stage}: epoch {epoch + 1}/{cfg.epochs}: clean {clean:.1%}, PGD {robust:.1%}",
                    {
                        **record,
                        "epoch_end": True,
                        # The keys the Training tab's live plots read (TrainingPlots).
                        "epoch_progress": float(stage_index * cfg.epochs + epoch + 1),
                        "val_count": float(stage_index * cfg.epochs + epoch + 1),
                        "val_accuracy": clean,
                    },
                )
            )
    if keep_best and best_weights is not None:
        model.set_weights(best_weights)
        return history, best_epoch
    return history, cfg.epochs


def _optimizer(cfg: DefenseConfig, model: Any) -> Any:
    opt = keras().optimizers.Adam(learning_rate=cfg.lr)
    opt.build(model.trainable_variables)
    return opt


def train_defended(
    config: DefenseConfig,
    mnist: Any,
    *,
    base: Classifier | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> DefenseResult:
    """Train a defended classifier (``config.method``); ``base`` warm-starts from its weights.

    Only the training split is used: the last ``holdout`` images are the held-out check set.
    """
    cfg = config.validate()
    if cfg.method == "distill":
        return distill(cfg, mnist, progress=progress, cancel=cancel)
    keras().utils.set_random_seed(cfg.seed)
    t0 = time.perf_counter()
    x, y, hx, hy = _split(cfg, mnist)
    model = _new_model(cfg, base)
    opt = _optimizer(cfg, model)
    step_fn = _make_train_step(cfg, model, opt)
    check_fn = _make_check(model, cfg.eps, cfg.check_steps)

    def held_out() -> tuple[float, float]:
        return _count(check_fn, hx, hy)

    history, best = _fit(
        cfg,
        model,
        step_fn,
        x,
        y,
        held_out,
        stage=cfg.method,
        stage_index=0,
        stages=1,
        keep_best=cfg.method == "fast-at",
        progress=progress,
        cancel=cancel,
    )
    meta = _meta(cfg, base, history, best, mnist)
    return DefenseResult(
        Classifier(model, meta), history, time.perf_counter() - t0, asdict(cfg), best
    )


def _count(run: Any, hx: np.ndarray, hy: np.ndarray, batch_size: int = 500) -> tuple[float, float]:
    clean = robust = 0
    for i in range(0, len(hx), batch_size):
        c, r = run(hx[i : i + batch_size], hy[i : i + batch_size])
        clean += int(c)
        robust += int(r)
    return clean / len(hx), robust / len(hx)


def _meta(cfg: DefenseConfig, base: Classifier | None, history: list, best: int, mnist: Any):
    name = (
        f"{cfg.method}-eps{cfg.eps:g}"
        if cfg.method != "distill"
        else (f"distill-T{cfg.temperature:g}")
    )
    meta: dict[str, Any] = {
        "name": name,
        "architecture": cfg.arch,
        "defense": cfg.method,
        "defense_config": asdict(cfg),
        "history": history,
        "best_epoch": best,
        **dataset_meta(mnist),  # "dataset" and "dataset_sha256"
    }
    if cfg.method == "distill":
        meta["temperature"] = cfg.temperature
    if base is not None:
        meta["base_model"] = base.name
    return meta


# --------------------------------------------------------------------------- distillation


def distill(
    config: DefenseConfig,
    mnist: Any,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> DefenseResult:
    """Defensive distillation: teacher at temperature T, student on its soft labels at T.

    The student is deployed at T = 1: its logits are T times larger than a normal network's, so
    its softmax saturates and an attacker differentiating probabilities sees zero gradients.
    The metadata keeps T, so an adaptive attack can divide the logits by it (Carlini & Wagner
    2016) and the held-out check does exactly that.
    """
    cfg = config.validate()
    t = tf()
    keras().utils.set_random_seed(cfg.seed)
    t0 = time.perf_counter()
    x, y, hx, hy = _split(cfg, mnist)
    temp = float(cfg.temperature)

    def make_step(model: Any, opt: Any, soft: bool) -> Any:
        @t.function(reduce_retracing=True, autograph=False)
        def step(xb: Any, target: Any, eps: Any, lr: Any) -> Any:
            opt.learning_rate.assign(lr)
            with t.GradientTape() as tape:
                z = model(xb, training=True) / temp
                if soft:
                    loss = t.reduce_mean(
                        t.nn.softmax_cross_entropy_with_logits(labels=target, logits=z)
                    )
                else:
                    loss = t.reduce_mean(_ce(z, target))
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return loss

        return step

    history: list[dict[str, float]] = []
    teacher = build_defense_model(cfg.arch, seed=cfg.seed, **cfg.model_options)
    t_check = _make_check(teacher, cfg.eps, cfg.check_steps, scale=temp)
    h, _ = _fit(
        cfg,
        teacher,
        make_step(teacher, _optimizer(cfg, teacher), False),
        x,
        y,
        lambda: _count(t_check, hx, hy),
        stage="distill teacher",
        stage_index=0,
        stages=2,
        keep_best=False,
        progress=progress,
        cancel=cancel,
    )
    history += h
    check(cancel)
    soft = np.concatenate(
        [
            np.asarray(t.nn.softmax(teacher(x[i : i + 1000], training=False) / temp))
            for i in range(0, len(x), 1000)
        ]
    ).astype(np.float32)
    student = build_defense_model(cfg.arch, seed=cfg.seed + 1, **cfg.model_options)
    s_check = _make_check(student, cfg.eps, cfg.check_steps, scale=temp)
    h, best = _fit(
        cfg,
        student,
        make_step(student, _optimizer(cfg, student), True),
        x,
        soft,
        lambda: _count(s_check, hx, hy),
        stage="distill student",
        stage_index=1,
        stages=2,
        keep_best=False,
        progress=progress,
        cancel=cancel,
    )
    history += h
    meta = _meta(cfg, None, history, best, mnist)
    return DefenseResult(
        Classifier(student, meta), history, time.perf_counter() - t0, asdict(cfg), best
    )
