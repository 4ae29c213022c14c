"""JSMA (Papernot et al. 2016): change few pixels, chosen in pairs by a saliency map.

For the goal class t with logit gradient a = dZ_t/dx and b = sum over the other classes of
dZ_j/dx, the pair (p, q) of still-unused pixels is chosen that maximises
(a_p + a_q) * |b_p + b_q| subject to a_p + a_q > 0 and b_p + b_q < 0 (signs flipped for a
negative ``theta``); both pixels move by ``theta`` and leave the search domain. When no pair
meets the sign conditions the pair with the largest (a_p + a_q) - (b_p + b_q) is taken, so
the attack keeps going instead of stalling. It stops when the goal is reached or when
another pair would change more than ``max_share`` of the pixels (Papernot's gamma).
``saliency="goal"`` instead takes the two unused pixels with the largest goal-logit gradient,
the simplification ART 1.20 implements (kept for cross-checking; on logits it is the stronger
of the two at small pixel budgets).

Untargeted, the goal is the most likely wrong class of the clean image and any
misclassification counts as success. The full 784 x 784 pair map costs 2.4 MB per image, so
the search runs on sub-batches of ``_SUB`` images.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from advgui.core.attacks import spec as sp
from advgui.core.attacks.base import Attack, Details, Outcome, Task, register
from advgui.core.attacks.engine import compiled, fast_logits, image_spec, kernel, run_steps
from advgui.core.attacks.spec import MINIMUM_NORM
from advgui.core.errors import ParameterError
from advgui.core.progress import Progress
from advgui.core.tfimport import tf

_D = 784
_SUB = 16
_BIG = 1e30
#: "pairs": Papernot's pairwise map; "goal": the two pixels with the largest goal gradient.
SALIENCY = ("pairs", "goal")


@register
class JSMA(Attack):
    """Jacobian saliency map attack over pixel pairs; L0, targeted or untargeted."""

    name: ClassVar[str] = "jsma"
    kind: ClassVar[str] = MINIMUM_NORM
    evaluable: ClassVar[bool] = False  # an L0 attack: an L-inf ball says little of it
    spec: ClassVar[tuple[sp.Param, ...]] = (
        sp.Param("theta", 1.0, lo=-1.0, hi=1.0, label="Theta",
                 help="how much each chosen pixel changes (negative: darker)"),
        sp.Param("max_share", 0.1, lo=2.0 / _D, hi=1.0, label="Pixel budget",
                 help="largest share of pixels the attack may change"),
        sp.Param("saliency", "pairs", choices=SALIENCY, label="Saliency map", advanced=True,
                 help="pairs: Papernot's pairwise map; goal: ART's single-gradient variant"),
    )  # fmt: skip

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        if params["theta"] == 0:
            raise ParameterError("theta must not be 0 (pixels would never change)", field="theta")
        return params

    @staticmethod
    def max_iterations(params: dict[str, Any]) -> int:
        """Pairs that fit in the pixel budget: floor(784 * max_share / 2)."""
        return int(_D * params["max_share"] // 2)

    def _build(self, clf: Any, params: dict[str, Any]) -> Any:
        t = tf()
        theta = float(params["theta"])
        sign = 1.0 if theta > 0 else -1.0
        diag = t.linalg.diag(t.fill([_D], -_BIG))

        pairs = params["saliency"] == "pairs"
        model = clf.logits_model
        logits = fast_logits(clf)

        @kernel
        def goal_grads(x_adv: Any, goal_1h: Any) -> Any:
            n = t.shape(x_adv)[0]
            both = t.concat([x_adv, x_adv], axis=0)
            with t.GradientTape() as tape:
                tape.watch(both)
                z = logits(both)
                obj = t.reduce_sum(z[:n] * goal_1h) + t.reduce_sum(z[n:] * (1.0 - goal_1h))
            return tape.gradient(obj, both)

        def pair_choice(a: Any, b: Any, domain: Any, active: Any, n: Any) -> Any:
            # Pixels outside the domain get a hugely negative a, so no pair with one of them
            # has alpha > 0; the diagonal (p == q) is excluded the same way.
            a_m = t.where(domain, a, -_BIG)
            alpha = a_m[:, :, None] + a_m[:, None, :] + diag
            beta = b[:, :, None] + b[:, None, :]
            # alpha * |beta| where alpha > 0 and beta < 0, else 0 (half the work of where()).
            score = t.reshape(t.nn.relu(alpha) * t.nn.relu(-beta), [n, -1])
            best = t.argmax(score, axis=1, output_type=t.int32)
            has_valid = t.reduce_max(score, axis=1) > 0.0
            return t.cond(
                t.reduce_all(has_valid | ~active),
                lambda: best,
                lambda: t.where(
                    has_valid,
                    best,
                    t.argmax(t.reshape(alpha - beta, [n, -1]), axis=1, output_type=t.int32),
                ),
            )

        @t.function(
            input_signature=[image_spec(), t.TensorSpec([None, _D], t.bool),
                             t.TensorSpec([None], t.bool), t.TensorSpec([None], t.int32),
                             t.TensorSpec([None], t.int64), t.TensorSpec([None], t.int64),
                             t.TensorSpec([], t.bool), t.TensorSpec([], t.int32)],
            reduce_retracing=True,
        )  # fmt: skip
        def steps_fn(x_adv, domain, active, used, goal, source, targeted, k):  # type: ignore[no-untyped-def]
            n = t.shape(x_adv)[0]
            goal_1h = t.one_hot(goal, 10, dtype=t.float32)
            for _ in t.range(k):
                grads = t.reshape(goal_grads(x_adv, goal_1h), [2, n, _D])
                a, b = grads[0] * sign, grads[1] * sign
                if pairs:
                    best = pair_choice(a, b, domain, active, n)
                else:  # the two unused pixels with the largest goal gradient (ART's variant)
                    top = t.math.top_k(t.where(domain, a, -_BIG), k=2).indices
                    best = top[:, 0] * _D + top[:, 1]
                has_pair = t.reduce_sum(t.cast(domain, t.int32), axis=1) >= 2
                move = active & has_pair
                p, q = best // _D, best % _D
                pq = t.one_hot(p, _D) + t.one_hot(q, _D)
                pq = pq * t.cast(move, t.float32)[:, None]
                flat = t.clip_by_value(t.reshape(x_adv, [n, _D]) + theta * pq, 0.0, 1.0)
                x_adv = t.reshape(flat, [n, 28, 28, 1])
                domain = domain & ~(pq > 0)
                used = used + 2 * t.cast(move, t.int32)
                pred = t.argmax(model(x_adv, training=False), axis=1)
                done = t.where(targeted, t.equal(pred, goal), t.not_equal(pred, source))
                active = move & ~done
            return x_adv, domain, active, used

        return steps_fn

    def run(self, clf: Any, x: np.ndarray, task: Task) -> Outcome:
        labels, goals, params = task.labels, task.goals, task.params
        progress, cancel = task.progress, task.cancel
        t = tf()
        graph = ("jsma", params["theta"], params["saliency"])
        steps_fn = compiled(clf, graph, lambda: self._build(clf, params))
        n = len(x)
        logits = clf.logits(x)
        targeted = goals is not None
        if targeted:
            goal = goals.astype(np.int64)
        else:  # the most likely wrong class
            masked = logits.copy()
            masked[np.arange(n), labels] = -np.inf
            goal = masked.argmax(axis=1).astype(np.int64)
        pred = logits.argmax(axis=1)
        already = (pred == goal) if targeted else (pred != labels)
        flat = x.reshape(n, _D)
        domain = (flat < 1.0) if params["theta"] > 0 else (flat > 0.0)
        iters = self.max_iterations(params)
        out = x.copy()
        used_all = np.zeros(n, dtype=np.int64)
        steps_all = np.zeros(n, dtype=np.int64)
        for start in range(0, n, _SUB):
            sl = slice(start, min(n, start + _SUB))
            m = sl.stop - sl.start

            def sub_progress(update: Progress, start: int = start, m: int = m) -> None:
                if progress is not None:
                    done = start + update.fraction * m
                    progress(Progress(done, n, f"jsma: images {start + 1}-{start + m} of {n}"))

            state = (
                t.constant(x[sl]),
                t.constant(domain[sl]),
                t.constant(~already[sl]),
                t.zeros([m], t.int32),
            )

            def step(state: Any, k: int, sl: slice = sl) -> Any:
                return steps_fn(
                    *state, t.constant(goal[sl]), t.constant(labels[sl].astype(np.int64)),
                    t.constant(targeted), t.constant(k, t.int32),
                )  # fmt: skip

            if iters > 0:
                state, _ = run_steps(
                    step,
                    state,
                    iters,
                    progress=sub_progress,
                    cancel=cancel,
                    stop=lambda st, done: not bool(np.asarray(st[2]).any()),
                )
            out[sl] = np.asarray(state[0])
            used_all[sl] = np.asarray(state[3])
            steps_all[sl] = used_all[sl] // 2
        return Outcome(out, steps=steps_all, details=Details(pixels_used=used_all))
