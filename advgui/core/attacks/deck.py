"""The slide deck's two gradient-descent attacks, kept exact, plus the terms that make them work.

The deck minimises ``C = 1/2 ||onehot(goal) - softmax(f(x))||^2 (+ lambda ||x - x_target||^2)``.
Taken literally on a confident network this stalls: where softmax saturates (p close to 0 or
1) its Jacobian ``diag(p) - p p^T`` is close to zero, so the gradient vanishes before the goal
class gains any probability. So the classification term is a choice: ``deck`` (the literal
formula, for teaching), ``ce`` (cross-entropy on the logits, the default) or ``margin``
(Carlini-Wagner: ``max(max_{j != goal} z_j - z_goal, -kappa)``). Lambda can be ``auto``: a
per-image binary search, like C&W's search over c, for the largest lambda (least distortion)
that still reaches the requested goal confidence.

The optimisation runs as a compiled TensorFlow loop over chunks of steps; between chunks Python
reports progress and checks the cancel token. Chunks are sized to take about 50 ms, so Stop
answers quickly while the per-call overhead stays negligible. A few images (the Attack tab's
one) run on one thread (:class:`~advgui.core.attacks.engine.OneThread`), 2.5x faster there.

Rounding to 8 bits (a saved PNG) can undo an attack. With ``quantize`` (the default) the result
is snapped to the 1/255 grid and, where snapping lost the adversarial label, a few signed
one-level steps on the grid restore it, so the exported PNG keeps the label.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from advgui.core.attacks import spec as sp
from advgui.core.attacks.base import Attack, Details, Outcome, Task, register
from advgui.core.attacks.engine import (
    adam,
    compiled,
    fast_logits,
    image_spec,
    one_thread,
    onehot_margin,
    run_steps,
)
from advgui.core.attacks.spec import MINIMUM_NORM
from advgui.core.progress import CancelToken, Partial, Progress, Throttle
from advgui.core.tfimport import tf

LOSSES = ("deck", "ce", "margin")
OPTIMIZERS = ("adam", "gd")
STARTS = ("target", "noise")
#: Wall time one compiled chunk should take: short enough for a prompt Stop.
CHUNK_SECONDS = 0.05
#: Signed grid steps the quantisation-aware finish may take.
FINISH_STEPS = 20
#: Why the literal deck cost can stall, in one line (shown by the GUI and the CLI).
STALL_NOTE = (
    "The deck's literal cost 1/2||y - softmax(f(x))||^2 can stall: on a confident network "
    "softmax saturates and its gradient vanishes, so 'ce' (cross-entropy on logits) is the default."
)


def kappa_for(confidence: float) -> float:
    """Logit margin that guarantees ``confidence``: p_goal >= 1 / (1 + 9 exp(-kappa))."""
    return math.log(9.0 * confidence / (1.0 - confidence))


def class_term(t: Any, z: Any, onehot: Any, loss: str, kappa: Any) -> Any:
    """Per-image classification term (N,) on logits ``z`` for the goal classes ``onehot``;
    ``t`` is the tensorflow module (passed in: this runs inside compiled code)."""
    if loss == "deck":
        p = t.nn.softmax(z)
        return 0.5 * t.reduce_sum(t.square(onehot - p), axis=1)
    if loss == "ce":
        return t.nn.softmax_cross_entropy_with_logits(labels=onehot, logits=z)
    return t.maximum(-onehot_margin(t, z, onehot, targeted=True), -kappa)


def deck_cost(
    clf: Any, x: np.ndarray, goals: np.ndarray, x_target: np.ndarray | None, lam: float
) -> tuple[np.ndarray, np.ndarray]:
    """The deck's literal cost per image and its gradient w.r.t. ``x`` (for teaching and tests)."""
    t = tf()
    x = t.constant(np.asarray(x, np.float32).reshape(-1, 28, 28, 1))
    onehot = t.one_hot(np.asarray(goals, np.int64).reshape(-1), 10)
    target = (
        x if x_target is None else t.constant(np.asarray(x_target, np.float32).reshape(x.shape))
    )
    with t.GradientTape() as tape:
        tape.watch(x)
        z = clf.logits_model(x, training=False)
        cost = class_term(t, z, onehot, "deck", 0.0)
        cost += lam * t.reduce_sum(t.square(x - target), axis=[1, 2, 3])
    return cost.numpy(), tape.gradient(cost, x).numpy()


def _build_chunk(clf: Any, loss: str, optimizer: str) -> Any:
    """A compiled function running ``k`` steps of the optimisation (one trace per model)."""
    t = tf()
    img = image_spec()
    vec = t.TensorSpec([None], t.float32)
    scalar = t.TensorSpec([], t.float32)
    logits = fast_logits(clf)

    def cost_grad(x: Any, x_target: Any, onehot: Any, lam: Any, lam2: Any, kappa: Any) -> Any:
        # Only the network is differentiated by the tape; the distance term's gradient,
        # 2 lambda (x - x_target), is written out (fewer ops per step on one image).
        with t.GradientTape() as tape:
            tape.watch(x)
            term = class_term(t, logits(x), onehot, loss, kappa)
        diff = x - x_target
        cost = term + lam * t.reduce_sum(t.square(diff), axis=[1, 2, 3])
        return cost, tape.gradient(term, x) + lam2 * diff

    @t.function(
        input_signature=[
            img,  # x
            img,  # x_target
            t.TensorSpec([None, 10], t.float32),  # onehot goals
            vec,  # lambda per image
            scalar,  # kappa
            img,  # adam m
            img,  # adam v
            scalar,  # adam step count
            t.TensorSpec([], t.int32),  # k
            scalar,  # step size
            scalar,  # total steps, for the cosine decay of Adam's step size
        ]
    )
    def chunk(x, x_target, onehot, lam, kappa, m, v, count, k, lr, total):
        costs = t.TensorArray(t.float32, size=k)
        lam2 = t.reshape(2.0 * lam, [-1, 1, 1, 1])
        for i in t.range(k):
            cost, g = cost_grad(x, x_target, onehot, lam, lam2, kappa)
            costs = costs.write(i, cost)
            if optimizer == "adam":
                m, v, count, direction = adam(t, g, m, v, count)
                # Cosine decay: large steps to cross the boundary, small ones to settle at the
                # least-distortion balance instead of jittering around it.
                lr_t = lr * (0.5 + 0.5 * t.cos(math.pi * (count - 1.0) / total))
                x = x - lr_t * direction
            else:
                x = x - lr * g
            x = t.clip_by_value(x, 0.0, 1.0)
        return x, m, v, count, costs.stack()

    return chunk


def _build_finish(clf: Any) -> Any:
    """One signed step of one grey level toward the goal, staying on the 8-bit grid."""
    t = tf()
    logits = fast_logits(clf)

    @t.function(
        input_signature=[
            image_spec(),
            t.TensorSpec([None, 10], t.float32),
        ]
    )
    def step(x, onehot):
        with t.GradientTape() as tape:
            tape.watch(x)
            ce = t.nn.softmax_cross_entropy_with_logits(labels=onehot, logits=logits(x))
        g = tape.gradient(ce, x)
        x = t.round(x * 255.0 - t.sign(g)) / 255.0
        return t.clip_by_value(x, 0.0, 1.0)

    return step


def quantize(x: np.ndarray) -> np.ndarray:
    """Snap to the 8-bit grid exactly as a PNG export does."""
    return (np.round(np.clip(x, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def quantized_finish(
    clf: Any, x_adv: np.ndarray, goals: np.ndarray, *, steps: int = FINISH_STEPS
) -> tuple[np.ndarray, np.ndarray]:
    """Snap ``x_adv`` to 8 bits; where that loses the goal label the continuous image had,
    take signed one-level steps toward the goal until it is back. Returns (x, steps taken)."""
    xq = quantize(x_adv)
    want = clf.predict(x_adv) == goals
    taken = np.zeros(len(x_adv), np.int64)
    lost = want & (clf.predict(xq) != goals)
    if not lost.any():
        return xq, taken
    step = compiled(clf, ("deck-finish",), lambda: _build_finish(clf))
    onehot = np.eye(10, dtype=np.float32)[goals]
    for _ in range(steps):
        idx = np.flatnonzero(lost)
        if not len(idx):
            break
        xq[idx] = step(xq[idx], onehot[idx]).numpy()
        taken[idx] += 1
        lost[idx] = clf.predict(xq[idx]) != goals[idx]
    return xq, taken


def uniform_noise(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """The deck's "initial random image": uniform noise in [0, 1], reproducible by seed."""
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=shape).astype(np.float32)


def _common(steps: int = 500) -> tuple[sp.Param, ...]:
    return (
        sp.Param("loss", "ce", choices=LOSSES, label="Classification term",
                 help="ce: cross-entropy on logits; margin: C&W; deck: the literal formula"),
        sp.steps(steps),
        sp.step_size(0.01),
        sp.Param("confidence", 0.9, lo=0.1, hi=0.9999, label="Goal confidence",
                 help="probability of the goal class to reach"),
        sp.Param("kappa", None, lo=0.0, hi=100.0, optional=True, label="Margin kappa",
                 advanced=True, help="logit margin of the margin loss (default: from confidence)"),
        sp.Param("optimizer", "adam", choices=OPTIMIZERS, label="Optimizer"),
        sp.seed(0),
        sp.Param("quantize", True, label="Snap to 8 bits", advanced=True,
                 help="round to the PNG grid and keep the label (a few one-level steps)"),
    )  # fmt: skip


class _Descent(Attack):
    """Shared engine: gradient descent on the input toward ``goals``."""

    kind: ClassVar[str] = MINIMUM_NORM
    supports_untargeted: ClassVar[bool] = False
    #: The attack minimises lambda * ||x - x_target||^2; the noise attack has no such term.
    has_lambda: ClassVar[bool] = True

    @classmethod
    def cost_axis(cls, params: dict[str, Any], targeted: bool) -> tuple[str, str] | None:
        term = {"ce": "cross-entropy", "margin": "C&W margin", "deck": "1/2 ||y - p||^2"}
        label = term.get(str(params.get("loss")), "class term")
        if cls.has_lambda:
            label += " + lambda L2^2"
        return "cost minimised", label

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        if params["kappa"] is None:
            params["kappa"] = kappa_for(params["confidence"])
        params.setdefault("lam", 0.0)
        params.setdefault("start", "noise" if not self.has_lambda else "target")
        params.setdefault("searches", 1)
        if params["lam"] == "auto" and not self.has_lambda:
            params["lam"] = 0.0
        return params

    # ------------------------------------------------------------------ engine

    def start_point(self, x: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Where the descent starts: the image itself, or uniform noise (seeded)."""
        if params["start"] == "noise":
            return uniform_noise(params["seed"], x.shape)
        return x.copy()

    def descend(
        self,
        clf: Any,
        x_start: np.ndarray,
        x_target: np.ndarray,
        goals: np.ndarray,
        lam: np.ndarray,
        params: dict[str, Any],
        *,
        report: Any,
        cancel: CancelToken | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run ``steps`` steps from ``x_start``; returns (x, cost per step (steps, N))."""
        p = params
        key = ("deck", p["loss"], p["optimizer"])
        chunk = compiled(clf, key, lambda: _build_chunk(clf, p["loss"], p["optimizer"]))
        n = len(x_start)
        # One image, as in the Attack tab: one thread is faster there (engine.one_thread).
        run = one_thread(clf, key, chunk, n) or chunk
        x = np.asarray(x_start, np.float32)
        target = np.asarray(x_target, np.float32)
        onehot = np.eye(10, dtype=np.float32)[goals]
        lam_v = np.asarray(lam, np.float32).reshape(n)
        kappa, lr, total = (np.float32(p[k]) for k in ("kappa", "step_size", "steps"))
        zeros = np.zeros_like(x)
        costs: list[np.ndarray] = []

        def step(state: Any, k: int) -> Any:
            *state, c = run(*state[:1], target, onehot, lam_v, kappa, *state[1:], np.int32(k), lr,
                            total)  # fmt: skip
            costs.append(np.asarray(c))
            report(sum(len(c) for c in costs), costs, state[0])
            return state

        # Chunks of about 50 ms (first 5 steps): Stop answers at once on one image too.
        (x, *_), _ = run_steps(
            step, (x, zeros, zeros, np.float32(0.0)), p["steps"], cancel=cancel,
            chunk_seconds=CHUNK_SECONDS, first=5,
        )  # fmt: skip
        return np.asarray(x), np.concatenate(costs, axis=0)

    def run(self, clf: Any, x: np.ndarray, task: Task) -> Outcome:
        goals, params = task.goals, task.params
        progress, cancel = task.progress, task.cancel
        assert goals is not None  # supports_untargeted is False: base checked
        p = params
        n = len(x)
        x_start = self.start_point(x, p)
        auto = p["lam"] == "auto"
        searches = p["searches"] if auto else 1
        total = p["steps"] * searches
        throttle = Throttle(progress, interval=0.1)
        search = 0
        lam = np.full(n, 0.05 if auto else p["lam"], np.float64)

        def report(done: int, costs: list[np.ndarray], x_now: Any) -> None:
            if progress is None:
                return
            curve = np.concatenate(costs, axis=0)[:, 0]
            message = f"step {done}/{p['steps']}"
            if auto:
                message = f"lambda search {search + 1}/{searches}, " + message
            throttle(
                Progress(
                    search * p["steps"] + done,
                    total,
                    message,
                    {"cost": float(curve[-1]), "lam": float(lam[0])},
                    Partial(curve=curve, image=np.asarray(x_now[0])),
                ),
                force=done >= p["steps"],
            )

        best_x = x_start.copy()
        best_costs = np.zeros((p["steps"], n), np.float32)
        best_l2 = np.full(n, np.inf)
        best_lam = lam.copy()
        best_conf = np.full(n, -1.0)  # goal confidence of the fallback when nothing succeeds
        lo = np.zeros(n)  # largest lambda known to succeed
        hi = np.full(n, np.inf)  # smallest lambda known to fail
        tried: list[list[float]] = []
        steps_run = 0
        for search in range(searches):  # noqa: B007 (read by report)
            x_out, costs = self.descend(
                clf, x_start, x, goals, lam, p, report=report, cancel=cancel
            )
            steps_run += p["steps"]
            if p["quantize"]:
                x_out, _ = quantized_finish(clf, x_out, goals)
            conf = clf.predict_proba(x_out)[np.arange(n), goals]
            l2 = np.sqrt(((x_out - x).reshape(n, -1).astype(np.float64) ** 2).sum(axis=1))
            tried.append(lam.tolist())
            ok = conf >= p["confidence"] if auto else np.ones(n, bool)
            better = ok & (l2 < best_l2)
            fallback = ~np.isfinite(best_l2) & ~ok & (conf > best_conf)
            take = better | fallback
            best_x[take] = x_out[take]
            best_costs[:, take] = costs[:, take]
            best_lam[take] = lam[take]
            best_conf[take] = conf[take]
            best_l2[better] = l2[better]
            if not auto:
                break
            lo = np.where(ok, np.maximum(lo, lam), lo)
            hi = np.where(ok, hi, np.minimum(hi, lam))
            # Geometric bisection once bracketed; steps of x3 until then.
            up = np.where(np.isfinite(hi), np.sqrt(np.maximum(lo, 1e-12) * hi), lam * 3)
            down = np.where(lo > 0, np.sqrt(lo * hi), lam / 3)
            lam = np.where(ok, up, down)
            if np.all(np.isfinite(hi) & (lo > 0) & (hi / np.maximum(lo, 1e-12) < 1.25)):
                break
        return Outcome(
            best_x,
            steps=steps_run,
            cost_history=best_costs,
            details=Details(
                lam=best_lam.tolist(),
                lam_tried=tried,
                x_start=x_start if p["start"] == "noise" and self.name != "noise" else None,
                stall_note=STALL_NOTE if p["loss"] == "deck" else None,
            ),
        )


@register
class TargetedAttack(_Descent):
    """The deck's targeted attack: looks like ``x_target`` (the input), classified ``goal``."""

    name: ClassVar[str] = "targeted"
    spec: ClassVar[tuple[sp.Param, ...]] = (
        *_common(),
        sp.Param("lam", "auto", lo=0.0, hi=1e6, words=("auto",), label="Lambda",
                 help="weight of ||x - x_target||^2; auto: the largest that reaches the goal"),
        sp.Param("start", "target", choices=STARTS, label="Start from",
                 help="the image itself, or seeded uniform noise"),
        sp.Param("searches", 8, lo=1, hi=20, integer=True, label="Lambda searches",
                 advanced=True, help="binary-search runs of lambda = auto"),
    )  # fmt: skip


@register
class NoiseAttack(_Descent):
    """The deck's attack from random noise: an image a person sees as noise, called ``goal``.

    The inputs only set how many images to make: each starts from seeded uniform noise, which
    the result holds as its original (``x``), so norms say how far the noise was changed.
    """

    name: ClassVar[str] = "noise"
    has_lambda: ClassVar[bool] = False
    evaluable: ClassVar[bool] = False
    spec: ClassVar[tuple[sp.Param, ...]] = _common()

    def prepare_inputs(self, x: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return uniform_noise(params["seed"], x.shape)

    def start_point(self, x: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return x.copy()  # ``x`` is the noise already
