"""Defended training: adversarial training (FGSM, fast FGSM, PGD, TRADES), distillation, and
training for certification (Gaussian noise, IBP).

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
- ``noise`` and ``ibp``: training for certification (:mod:`advgui.core.defenses.certified`):
  Gaussian noise of ``sigma`` for randomized smoothing, interval bound propagation at eps.

Each method is a recipe (:class:`AdversarialLoss`; distillation is :class:`fit.CrossEntropy` at
T) for the one training loop, :func:`advgui.core.fit.fit`: every epoch it checks clean and PGD
accuracy on the held-out images (the last ``holdout`` training images, never trained on), and
Stop keeps the model so far, marked ``cancelled``, as plain training does.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from advgui.core import fit, models
from advgui.core.data import dataset_meta
from advgui.core.errors import ParameterError
from advgui.core.models import Classifier
from advgui.core.params import check_number
from advgui.core.precision import check as check_precision
from advgui.core.progress import CancelToken, ProgressCallback
from advgui.core.tfimport import keras, tf

DEFENSES = ("fgsm-at", "fast-at", "pgd-at", "trades", "distill", "noise", "ibp")
#: Recipes trained for certification (core/defenses/certified.py): Gaussian noise for
#: randomized smoothing, interval bound propagation for IBP-verified accuracy.
CERTIFIED_DEFENSES = ("noise", "ibp")
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
#: IBP needs a longer eps ramp than adversarial training (Gowal et al.: kappa and eps over
#: a sixth of a long run; over half of a short one here).
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {"ibp": {"eps_ramp": 0.5}}


@dataclass
class DefenseConfig:
    """Everything that defines one defended training run (stored in the model's metadata)."""

    method: str = "fast-at"
    eps: float = 0.3
    epochs: int = 10
    batch_size: int = 100
    lr: float = 5e-3  # peak of the one-cycle schedule (Adam; fit.DEFENDED_ONE_CYCLE)
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
    sigma: float = 0.5  # noise: the Gaussian noise's standard deviation (randomized smoothing)
    # ibp: fraction of training at eps 0 before the ramp. Gowal et al. warm up for 2,000 of
    # 60,000 steps; a short run here collapsed to a constant output with 5% (6,000 images,
    # 2 epochs: 11% clean) and learnt with 20% (89% clean, 42% verified at 0.1).
    warmup: float = 0.2
    check_steps: int = 20  # PGD steps of the per-epoch held-out check
    check_n: int = 500
    seed: int = 0
    #: "float32" or "mixed" (core/precision.py); the saved model is float32 either way.
    precision: str = "float32"

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
        check_number("sigma", self.sigma, lo=0.01, hi=10.0)
        check_number("warmup", self.warmup, lo=0.0, hi=0.9)
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
        self.precision = check_precision(self.precision)
        if self.precision != "float32" and self.method == "ibp":
            raise ParameterError(
                "ibp trains in float32 only: its bounds must be sound, not rounded",
                field="precision",
            )
        return self

    @classmethod
    def for_method(cls, method: str, **overrides: Any) -> DefenseConfig:
        """A config with the method's default epochs (PGD-AT and TRADES cost ~6x per epoch)."""
        overrides.setdefault("epochs", DEFAULT_EPOCHS.get(method, 10))
        for name, value in METHOD_DEFAULTS.get(method, {}).items():
            overrides.setdefault(name, value)
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
    #: The epoch whose weights the classifier holds (of the student, for distillation).
    best_epoch: int
    #: Stopped: the classifier is the model so far (fast-AT: its best checked epoch).
    cancelled: bool = False
    test_accuracy: float | None = None

    def kept_record(self) -> dict[str, Any]:
        """The held-out record of the weights the classifier holds ({} before any check)."""
        if not self.history or self.best_epoch < 1:
            return {}
        stage = self.history[-1]["stage"]
        records = [r for r in self.history if r["stage"] == stage]
        return records[min(self.best_epoch, len(records)) - 1]


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


# --------------------------------------------------------------------------- recipes


#: Attribute under which :meth:`AdversarialLoss.prepare` keeps a model's attack logits.
_FAST_ATTR = "_advgui_attack_logits"


def _model_fn(model: Any) -> Any:
    """The logits the training attack differentiates: the engine's faster input gradient where
    :meth:`AdversarialLoss.prepare` built it (it must be built eagerly), else the model."""
    fast = getattr(model, _FAST_ATTR, None)
    return fast if fast is not None else (lambda x: model(x, training=False))


@dataclass(frozen=True)
class AdversarialLoss:
    """Adversarial training's batch loss for :func:`advgui.core.fit.fit`: every batch is attacked
    with the current weights (outside the gradient tape), then trained on.

    ``method``: ``fgsm-at`` (one step of eps from the image, trained on clean and adversarial
    halves), ``fast-at`` (one step from a uniform random start), ``pgd-at`` (``steps`` steps
    from a uniform start), ``trades`` (``steps`` steps maximising the KL from N(0, 0.001); loss
    ``CE(x) + beta KL(p(x) || p(x'))``). The attack step is ``step_ratio`` eps, so it follows
    eps up the ramp (eps grows from 0 over the first ``ramp`` of training: no early collapse).
    """

    method: str
    eps: float
    step_ratio: float
    steps: int = 1
    beta: float = 6.0
    ramp: float = 0.3

    def eps_at(self, step: int, total: int) -> float:
        ramp = int(self.ramp * total)
        return self.eps * min(1.0, (step + 1) / ramp) if ramp else self.eps

    def prepare(self, model: Any) -> None:
        """Before the step is traced: the attack's logits through the engine's rewrites (the
        same numbers from the live weights; PGD-AT's inner attack is most of its time)."""
        from advgui.core.attacks.engine import fast_logits

        object.__setattr__(model, _FAST_ATTR, fast_logits(model))

    def attack(self, model: Any, x: Any, y: Any, eps: Any) -> Any:
        f = _model_fn(model)
        step = self.step_ratio * eps
        if self.method == "fgsm-at":
            return pgd_graph(f, x, y, eps, step, 1, start="none")
        if self.method == "fast-at":
            return pgd_graph(f, x, y, eps, step, 1, start="uniform")
        start = "trades" if self.method == "trades" else "uniform"
        return pgd_graph(f, x, y, eps, step, self.steps, start=start)

    def batch_loss(self, model: Any, x: Any, x_adv: Any, y: Any) -> tuple[Any, Any, Any]:
        t = tf()
        if self.method == "fgsm-at":
            z = model(t.concat([x, x_adv], 0), training=True)
            labels = t.concat([y, y], 0)
            return t.reduce_mean(_ce(z, labels)), z, labels
        if self.method == "trades":
            z_nat = model(x, training=True)
            z_adv = model(x_adv, training=True)
            loss = t.reduce_mean(_ce(z_nat, y)) + self.beta * t.reduce_mean(_kl(z_nat, z_adv))
            return loss, z_adv, y
        z = model(x_adv, training=True)
        return t.reduce_mean(_ce(z, y)), z, y


def adversarial_loss(cfg: DefenseConfig) -> AdversarialLoss:
    """The recipe of ``cfg.method`` (not ``distill``: that is :class:`fit.CrossEntropy` at T)."""
    ratio = {"fgsm-at": 1.0, "fast-at": cfg.fast_step}.get(
        cfg.method, cfg.pgd_step / max(cfg.eps, 1e-12)
    )
    return AdversarialLoss(
        method=cfg.method,
        eps=cfg.eps,
        step_ratio=ratio,
        steps=cfg.steps,
        beta=cfg.beta,
        ramp=cfg.eps_ramp,
    )


def recipe(cfg: DefenseConfig) -> fit.Recipe:
    """The batch loss of ``cfg.method`` (not ``distill``: :class:`fit.CrossEntropy` at T)."""
    from advgui.core.defenses.certified import IBPLoss, NoiseLoss

    if cfg.method == "noise":
        return NoiseLoss(cfg.sigma)
    if cfg.method == "ibp":
        return IBPLoss(cfg.eps, warmup=cfg.warmup, ramp=cfg.eps_ramp)
    return adversarial_loss(cfg)


def pgd_check(eps: float, steps: int) -> Any:
    """The held-out check's attack: PGD (1 restart, step 2.5 eps / steps) on cross-entropy; at
    eps 0 the images themselves."""
    t = tf()
    step = 2.5 * eps / steps

    def attack(f: Any, x: Any, y: Any) -> Any:
        if eps <= 0:
            return x
        return pgd_graph(f, x, y, t.constant(eps), t.constant(step), steps)

    return attack


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
    """Clean and PGD (1 restart) accuracy of a logits model; the per-epoch check's figures."""
    check = fit.Evaluator(
        model, attack=pgd_check(float(eps), int(steps)), scale=scale, batch_size=batch_size
    )
    ev = check(x, np.asarray(y, np.int64))
    return ev.accuracy, ev.robust_accuracy


# --------------------------------------------------------------------------- training


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


def _plan(cfg: DefenseConfig) -> fit.Plan:
    """Adam on defended training's one-cycle; whole batches only (one input shape: the inner
    attack's graph is traced once)."""
    schedule = fit.Schedule("onecycle", cfg.lr, **fit.DEFENDED_ONE_CYCLE)
    return fit.Plan(cfg.epochs, cfg.batch_size, schedule, "adam", cfg.seed, drop_last=True,
                    precision=cfg.precision)  # fmt: skip


def _holdout(
    cfg: DefenseConfig, hx: np.ndarray, hy: np.ndarray, *, scale: float = 1.0
) -> fit.Holdout:
    """Clean and PGD accuracy on the held-out images each epoch, and on what Stop leaves; fast
    adversarial training keeps the best epoch's weights (catastrophic overfitting). Noise
    training is checked clean only: it defends no L-inf ball."""
    if cfg.method == "noise":
        return fit.Holdout(hx, hy, check_when_stopped=True, batch_size=500)
    return fit.Holdout(
        hx,
        hy,
        attack=pgd_check(cfg.eps, cfg.check_steps),
        scale=scale,
        keep_best=cfg.method == "fast-at",
        check_when_stopped=True,
        batch_size=500,
    )


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
    Stop keeps the model so far (fast-AT: the best checked epoch), marked ``cancelled``.
    """
    cfg = config.validate()
    if cfg.method == "distill":
        return distill(cfg, mnist, progress=progress, cancel=cancel)
    keras().utils.set_random_seed(cfg.seed)
    t0 = time.perf_counter()
    x, y, hx, hy = _split(cfg, mnist)
    model = _new_model(cfg, base)
    if cfg.method == "ibp":  # refused before any training, with the layer that stops it
        from advgui.core.certify.ibp import verifiable

        verifiable(model)
    fitted = fit.fit(
        model,
        x,
        y,
        recipe(cfg),
        _plan(cfg),
        holdout=_holdout(cfg, hx, hy),
        test=(mnist.x_test, mnist.y_test),
        stage=fit.Stage(cfg.method, epochs_in_message=True),
        progress=progress,
        cancel=cancel,
    )
    return _result(cfg, model, [fitted], mnist, t0, base=base)


def _history(fits: list[fit.FitResult]) -> list[dict[str, Any]]:
    """The stored per-epoch records (a list of dicts; ``seconds`` since the stage began)."""
    return [
        {
            "epoch": int(r.epoch) if r.complete else r.epoch,
            "stage": r.stage,
            "loss": r.loss,
            "clean_accuracy": r.clean_accuracy,
            "robust_accuracy": r.robust_accuracy,
            "seconds": r.elapsed,
        }
        for fitted in fits
        for r in fitted.records
    ]


def _result(
    cfg: DefenseConfig,
    model: Any,
    fits: list[fit.FitResult],
    mnist: Any,
    t0: float,
    *,
    base: Classifier | None = None,
    stage: str | None = None,
) -> DefenseResult:
    """The classifier with its metadata; ``stage`` names a distillation stopped at its teacher."""
    last = fits[-1]
    test = last.test or fit.Evaluator(model)(mnist.x_test, mnist.y_test)
    history = _history(fits)
    cancelled = any(f.cancelled for f in fits) or stage is not None
    seconds = time.perf_counter() - t0
    name = {
        "distill": f"distill-T{cfg.temperature:g}",
        "noise": f"noise-sigma{cfg.sigma:g}",
    }.get(cfg.method, f"{cfg.method}-eps{cfg.eps:g}")
    meta: dict[str, Any] = {
        "name": name if stage is None else f"{name}-{stage}",
        "architecture": cfg.arch,
        "defense": cfg.method,
        "defense_config": asdict(cfg),
        "history": history,
        "best_epoch": last.best_epoch,
        **dataset_meta(mnist),  # "dataset" and "dataset_sha256"
        "seed": cfg.seed,
        "num_weights": models.count_params(model),
        "test_accuracy": float(test.accuracy),
        "confusion_matrix": fit.confusion_matrix(mnist.y_test, test.predictions).tolist(),
        "seconds": float(seconds),
        "train_seconds": float(sum(f.train_seconds for f in fits)),
        "epochs_completed": float(sum(f.epochs_completed for f in fits)),
        "cancelled": bool(cancelled),
        "trained_at": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if cfg.method == "noise":
        meta["sigma"] = cfg.sigma
    if cfg.method == "distill":
        meta["temperature"] = cfg.temperature
        if stage is not None:
            meta["distill_stage"] = stage
    if base is not None:
        meta["base_model"] = base.name
    return DefenseResult(
        Classifier(model, meta),
        history,
        seconds,
        asdict(cfg),
        last.best_epoch,
        cancelled=cancelled,
        test_accuracy=float(test.accuracy),
    )


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
    2016) and the held-out check does exactly that. Stopped before the student begins, the
    teacher is kept (trained at T too, so it masks gradients the same way), named and marked.
    """
    cfg = config.validate()
    t = tf()
    keras().utils.set_random_seed(cfg.seed)
    t0 = time.perf_counter()
    x, y, hx, hy = _split(cfg, mnist)
    temp = float(cfg.temperature)
    recipe = fit.CrossEntropy(temperature=temp)
    plan = _plan(cfg)
    holdout = _holdout(cfg, hx, hy, scale=temp)
    test = (mnist.x_test, mnist.y_test)

    def stage(name: str, index: int) -> fit.Stage:
        return fit.Stage(f"distill {name}", index, 2, epochs_in_message=True)

    teacher = build_defense_model(cfg.arch, seed=cfg.seed, **cfg.model_options)
    taught = fit.fit(
        teacher, x, y, recipe, plan, holdout=holdout, test=test, stage=stage("teacher", 0),
        progress=progress, cancel=cancel,
    )  # fmt: skip
    if taught.cancelled or (cancel is not None and cancel.cancelled):
        return _result(cfg, teacher, [taught], mnist, t0, stage="teacher")
    soft = np.concatenate(
        [
            np.asarray(t.nn.softmax(teacher(x[i : i + 1000], training=False) / temp))
            for i in range(0, len(x), 1000)
        ]
    ).astype(np.float32)
    student = build_defense_model(cfg.arch, seed=cfg.seed + 1, **cfg.model_options)
    learnt = fit.fit(
        student, x, soft, recipe, plan, holdout=holdout, test=test, stage=stage("student", 1),
        progress=progress, cancel=cancel,
    )  # fmt: skip
    return _result(cfg, student, [taught, learnt], mnist, t0)
