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
one) run on one thread (:class:`~advgui.core.attacks.graph.OneThread`), 2.5x faster there.

Rounding to 8 bits (a saved PNG) can undo an attack. With ``quantize`` (the default) the result
is snapped to the 1/255 grid and, where snapping lost the adversarial label, a few signed
one-level steps on the grid restore it, so the exported PNG keeps the label.
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar

import numpy as np

from advgui.core import tuning
from advgui.core.attacks.base import Attack, check_param, compiled, register
from advgui.core.attacks.graph import ONE_THREAD_MAX_BATCH, fast_logits, one_thread
from advgui.core.errors import ParameterError
from advgui.core.progress import CancelToken, Progress, ProgressCallback, Throttle, check
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
    z_goal = t.reduce_sum(onehot * z, axis=1)
    z_other = t.reduce_max(z - 1e9 * onehot, axis=1)
    return t.maximum(z_other - z_goal, -kappa)


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


def _build_chunk(model: Any, loss: str, optimizer: str) -> Any:
    """A compiled function running ``k`` steps of the optimisation (one trace per model)."""
    t = tf()
    img = t.TensorSpec([None, 28, 28, 1], t.float32)
    vec = t.TensorSpec([None], t.float32)
    scalar = t.TensorSpec([], t.float32)
    b1, b2, eps = 0.9, 0.999, 1e-8
    logits = fast_logits(model)

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
                count = count + 1.0
                m = b1 * m + (1.0 - b1) * g
                v = b2 * v + (1.0 - b2) * t.square(g)
                # Bias corrections folded into scalars (Kingma & Ba, section 2): the same
                # update with two fewer image-sized ops per step.
                c1 = 1.0 - t.pow(b1, count)
                c2 = t.sqrt(1.0 - t.pow(b2, count))
                # Cosine decay: large steps to cross the boundary, small ones to settle at the
                # least-distortion balance instead of jittering around it.
                lr_t = lr * (0.5 + 0.5 * t.cos(math.pi * (count - 1.0) / total))
                x = x - (lr_t * c2 / c1) * m / (t.sqrt(v) + eps * c2)
            else:
                x = x - lr * g
            x = t.clip_by_value(x, 0.0, 1.0)
        return x, m, v, count, costs.stack()

    return chunk


def _build_finish(model: Any) -> Any:
    """One signed step of one grey level toward the goal, staying on the 8-bit grid."""
    t = tf()
    logits = fast_logits(model)

    @t.function(
        input_signature=[
            t.TensorSpec([None, 28, 28, 1], t.float32),
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
    step = compiled(clf, ("deck-finish",), lambda: _build_finish(clf.logits_model))
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


class _Descent(Attack):
    """Shared engine: gradient descent on the input toward ``goals``."""

    supports_untargeted: ClassVar[bool] = False
    #: The attack minimises lambda * ||x - x_target||^2; the noise attack has no such term.
    has_lambda: ClassVar[bool] = True

    def __init__(
        self,
        *,
        steps: int = 500,
        step_size: float = 0.01,
        loss: str = "ce",
        lam: float | str = "auto",
        confidence: float = 0.9,
        kappa: float | None = None,
        start: str = "target",
        seed: int = 0,
        optimizer: str = "adam",
        searches: int = 8,
        quantize: bool = True,
    ) -> None:
        steps = check_param("steps", steps, lo=1, hi=100_000, integer=True)
        step_size = check_param("step_size", step_size, lo=1e-6, hi=1000)
        if loss not in LOSSES:
            raise ParameterError(
                f"loss must be one of {', '.join(LOSSES)}, got {loss!r}", field="loss"
            )
        if optimizer not in OPTIMIZERS:
            raise ParameterError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}",
                field="optimizer",
            )
        if start not in STARTS:
            raise ParameterError(
                f"start must be one of {', '.join(STARTS)}, got {start!r}", field="start"
            )
        confidence = check_param("confidence", confidence, lo=0.1, hi=0.9999)
        if kappa is None:
            kappa = kappa_for(confidence)
        kappa = check_param("kappa", kappa, lo=0, hi=100)
        if isinstance(lam, str) and lam.strip().lower() == "auto":
            lam = "auto"
        else:
            lam = check_param("lam", lam, lo=0, hi=1e6)
        if lam == "auto" and not self.has_lambda:
            lam = 0.0
        searches = check_param("searches", searches, lo=1, hi=20, integer=True)
        seed = check_param("seed", seed, lo=0, hi=2**31 - 1, integer=True)
        super().__init__(
            steps=steps,
            step_size=step_size,
            loss=loss,
            lam=lam,
            confidence=confidence,
            kappa=kappa,
            start=start,
            seed=seed,
            optimizer=optimizer,
            searches=searches,
            quantize=bool(quantize),
        )

    # ------------------------------------------------------------------ engine

    def start_point(self, x: np.ndarray) -> np.ndarray:
        """Where the descent starts: the image itself, or uniform noise (seeded)."""
        if self.params["start"] == "noise":
            return uniform_noise(self.params["seed"], x.shape)
        return x.copy()

    def descend(
        self,
        clf: Any,
        x_start: np.ndarray,
        x_target: np.ndarray,
        goals: np.ndarray,
        lam: np.ndarray,
        *,
        report: Any,
        cancel: CancelToken | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run ``steps`` steps from ``x_start``; returns (x, cost per step (steps, N))."""
        p = self.params
        chunk = compiled(
            clf,
            ("deck", p["loss"], p["optimizer"]),
            lambda: _build_chunk(clf.logits_model, p["loss"], p["optimizer"]),
        )
        n = len(x_start)
        run = chunk
        # One image, as in the Attack tab: one thread is faster where core/tuning.py measured so.
        if n <= min(ONE_THREAD_MAX_BATCH, tuning.settings().one_thread_max_batch):
            run = one_thread(clf, ("deck", p["loss"], p["optimizer"]), chunk, clf.logits_model)
            run = chunk if run is None else run
        x = np.asarray(x_start, np.float32)
        target = np.asarray(x_target, np.float32)
        onehot = np.eye(10, dtype=np.float32)[goals]
        lam_v = np.asarray(lam, np.float32).reshape(n)
        kappa, lr, total = (np.float32(p[k]) for k in ("kappa", "step_size", "steps"))
        m = np.zeros_like(x)
        v = np.zeros_like(x)
        count: Any = np.float32(0.0)
        costs: list[np.ndarray] = []
        done, k = 0, 5
        while done < p["steps"]:
            check(cancel)
            k = min(k, p["steps"] - done)
            t0 = time.perf_counter()
            x, m, v, count, c = run(
                x, target, onehot, lam_v, kappa, m, v, count, np.int32(k), lr, total
            )
            costs.append(np.asarray(c))
            done += k
            per_step = (time.perf_counter() - t0) / k
            report(done, costs, x)
            k = int(max(1, min(500, CHUNK_SECONDS / max(per_step, 1e-6))))
        return np.asarray(x), np.concatenate(costs, axis=0)

    def run(
        self,
        clf: Any,
        x: np.ndarray,
        labels: np.ndarray,
        goals: np.ndarray | None,
        *,
        progress: ProgressCallback | None,
        cancel: CancelToken | None,
    ) -> dict[str, Any]:
        assert goals is not None  # supports_untargeted is False: base checked
        p = self.params
        n = len(x)
        x_start = self.start_point(x)
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
                    {
                        "cost": float(curve[-1]),
                        "lam": float(lam[0]),
                        "curve": curve,
                        "image": np.asarray(x_now[0]),
                    },
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
            x_out, costs = self.descend(clf, x_start, x, goals, lam, report=report, cancel=cancel)
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
        return {
            "x_adv": best_x,
            "steps": steps_run,
            "cost_history": best_costs,
            "extra": {
                "lam": best_lam.tolist(),
                "lam_tried": tried,
                "x_start": x_start if p["start"] == "noise" and self.name != "noise" else None,
                "stall_note": STALL_NOTE if p["loss"] == "deck" else None,
            },
        }


@register
class TargetedAttack(_Descent):
    """The deck's targeted attack: looks like ``x_target`` (the input), classified ``goal``."""

    name: ClassVar[str] = "targeted"


@register
class NoiseAttack(_Descent):
    """The deck's attack from random noise: an image a person sees as noise, called ``goal``.

    The inputs only set how many images to make: each starts from seeded uniform noise, which
    the result holds as its original (``x``), so norms say how far the noise was changed.
    """

    name: ClassVar[str] = "noise"
    has_lambda: ClassVar[bool] = False

    def __init__(
        self,
        *,
        steps: int = 500,
        step_size: float = 0.01,
        loss: str = "ce",
        confidence: float = 0.9,
        kappa: float | None = None,
        seed: int = 0,
        optimizer: str = "adam",
        quantize: bool = True,
    ) -> None:
        super().__init__(
            steps=steps,
            step_size=step_size,
            loss=loss,
            lam=0.0,
            confidence=confidence,
            kappa=kappa,
            start="noise",
            seed=seed,
            optimizer=optimizer,
            searches=1,
            quantize=quantize,
        )

    def __call__(
        self,
        clf: Any,
        x: np.ndarray,
        *,
        labels: np.ndarray | None = None,
        goals: np.ndarray | int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Any:
        n = len(np.asarray(x, dtype=np.float32).reshape(-1, 28, 28, 1))
        noise = uniform_noise(self.params["seed"], (n, 28, 28, 1))
        return super().__call__(clf, noise, goals=goals, progress=progress, cancel=cancel)

    def start_point(self, x: np.ndarray) -> np.ndarray:
        return x.copy()  # ``x`` is the noise already
