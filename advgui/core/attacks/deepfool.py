"""DeepFool (Moosavi-Dezfooli et al. 2016): a near-minimal L2 step across the nearest boundary.

At each step the classifier is linearised around the current point; the closest of the nine
linearised boundaries is crossed with a step of |f_k| / ||w_k||^2 * w_k. The full Jacobian of
the ten logits comes from one backward pass over the batch tiled ten times. The overshoot
multiplies the accumulated perturbation, and success is judged on that overshot point (as in
the authors' code), so an input stops once x0 + (1 + overshoot) r crosses.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from advgui.core.attacks import spec as sp
from advgui.core.attacks.base import Attack, Details, Outcome, Task, register
from advgui.core.attacks.engine import compiled, fast_logits, image_spec, kernel, run_steps
from advgui.core.attacks.spec import MINIMUM_NORM
from advgui.core.tfimport import tf

_TOL = 1e-8


@register
class DeepFool(Attack):
    """Untargeted minimal-L2 attack with ``overshoot``; at most ``steps`` linearisations."""

    name: ClassVar[str] = "deepfool"
    kind: ClassVar[str] = MINIMUM_NORM
    supports_targeted: ClassVar[bool] = False
    spec: ClassVar[tuple[sp.Param, ...]] = (
        sp.steps(50, hi=10_000),
        sp.Param("overshoot", 0.02, lo=0.0, hi=10.0, label="Overshoot",
                 help="how far past the linearised boundary to step"),
    )  # fmt: skip

    def _build(self, clf: Any, overshoot: float) -> Any:
        t = tf()
        os_ = float(overshoot)
        model = clf.logits_model
        logits = fast_logits(clf)

        @kernel
        def jacobian(x_cur: Any, sel: Any) -> Any:
            tiled = t.tile(x_cur, [10, 1, 1, 1])
            with t.GradientTape() as tape:
                tape.watch(tiled)
                z_all = logits(tiled)
                picked = t.reduce_sum(t.gather(z_all, sel, axis=1, batch_dims=1))
            return z_all, tape.gradient(picked, tiled)

        @t.function(
            input_signature=[image_spec(), image_spec(), t.TensorSpec([None], t.bool),
                             t.TensorSpec([None], t.int64), t.TensorSpec([None], t.int32),
                             t.TensorSpec([], t.int32)],
            reduce_retracing=True,
        )  # fmt: skip
        def steps_fn(x_cur, x0, active, cls, count, k):  # type: ignore[no-untyped-def]
            n = t.shape(x0)[0]
            classes = t.range(10, dtype=t.int64)
            sel = t.repeat(classes, n)  # class of each row of the tiled batch
            for _ in t.range(k):
                z_all, jac = jacobian(x_cur, sel)
                jac = t.transpose(t.reshape(jac, [10, n, 784]), [1, 0, 2])  # (n, 10, 784)
                z = z_all[:n]
                onehot = t.one_hot(cls, 10, dtype=t.float32)
                z_cls = t.reduce_sum(z * onehot, axis=1, keepdims=True)
                g_cls = t.reduce_sum(jac * onehot[:, :, None], axis=1, keepdims=True)
                w = jac - g_cls  # (n, 10, 784)
                f = z - z_cls  # (n, 10)
                w_norm = t.norm(w, axis=2) + _TOL
                dist = t.abs(f) / w_norm + onehot * 1e30  # never the own class
                best = t.argmin(dist, axis=1)
                w_best = t.gather(w, best, axis=1, batch_dims=1)  # (n, 784)
                f_best = t.gather(f, best, axis=1, batch_dims=1)
                scale = (t.abs(f_best) + 1e-4) / (t.reduce_sum(w_best * w_best, axis=1) + _TOL)
                r = t.reshape(scale[:, None] * w_best, [-1, 28, 28, 1])
                count = count + t.cast(active, t.int32)
                mask = t.cast(active, t.float32)[:, None, None, None]
                x_cur = t.clip_by_value(x_cur + mask * r, 0.0, 1.0)
                x_adv = t.clip_by_value(x0 + (1.0 + os_) * (x_cur - x0), 0.0, 1.0)
                pred = t.argmax(model(x_adv, training=False), axis=1)
                active = active & t.equal(pred, cls)
            return x_cur, active, count

        return steps_fn

    def run(self, clf: Any, x: np.ndarray, task: Task) -> Outcome:
        labels, params = task.labels, task.params
        progress, cancel = task.progress, task.cancel
        t = tf()
        overshoot = params["overshoot"]
        steps_fn = compiled(clf, ("deepfool", overshoot), lambda: self._build(clf, overshoot))
        x0 = t.constant(x)
        cls = t.constant(labels.astype(np.int64))
        pred = clf.predict(x)
        active0 = t.constant(pred == labels)
        count0 = t.zeros([len(x)], t.int32)

        def step(state: Any, k: int) -> Any:
            x_cur, active, count = state
            return steps_fn(x_cur, x0, active, cls, count, t.constant(k, t.int32))

        def stop(state: Any, done: int) -> bool:
            return not bool(np.asarray(state[1]).any())

        (x_cur, active, count), _ = run_steps(
            step,
            (x0, active0, count0),
            params["steps"],
            progress=progress,
            cancel=cancel,
            message="deepfool",
            stop=stop,
            info=lambda st: {"remaining": int(np.asarray(st[1]).sum())},
        )
        x_cur = np.asarray(x_cur)
        x_adv = np.clip(x + (1.0 + overshoot) * (x_cur - x), 0.0, 1.0)
        steps = np.asarray(count).astype(np.int64)
        return Outcome(x_adv, steps=steps, details=Details(failed=np.asarray(active)))
