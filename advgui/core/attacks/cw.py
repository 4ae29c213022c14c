"""Carlini-Wagner L2 (2017): the smallest L2 change that crosses the decision boundary.

Box constraints vanish under the change of variables x = (tanh(w) + 1) / 2; Adam minimises
||x - x0||^2 + c * f(x) with f the logit margin clipped at -kappa, and a binary search per input
finds the smallest c that still succeeds. Every input of the batch has its own c, and the
smallest successful example seen at any iteration is kept (the paper's reference code does
the same). As in the reference code, a binary-search step aborts early when the batch loss
stops falling (checked every tenth of its iterations).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from advgui.core.attacks import spec as sp
from advgui.core.attacks.base import Attack, Details, Outcome, Task, register
from advgui.core.attacks.engine import (
    adam,
    compiled,
    fast_logits,
    image_spec,
    kernel,
    onehot_margin,
    run_steps,
)
from advgui.core.attacks.spec import MINIMUM_NORM
from advgui.core.tfimport import tf

_BIG = 1e10


@register
class CarliniWagnerL2(Attack):
    """C&W L2 with binary search over c and confidence ``kappa`` (targeted or untargeted)."""

    name: ClassVar[str] = "cw"
    kind: ClassVar[str] = MINIMUM_NORM
    spec: ClassVar[tuple[sp.Param, ...]] = (
        sp.steps(100),
        sp.Param("search_steps", 9, lo=1, hi=50, integer=True, label="Searches",
                 help="binary-search steps over the trade-off constant c"),
        sp.Param("c", 0.1, lo=1e-6, hi=1e6, label="Initial c", advanced=True),
        sp.Param("kappa", 0.0, lo=0.0, hi=1000.0, label="Confidence kappa",
                 help="logit margin the example must reach"),
        sp.Param("step_size", 0.1, lo=1e-6, hi=10.0, label="Step size",
                 help="Adam's learning rate"),
        sp.Param("abort_early", True, label="Abort early", advanced=True,
                 help="end a search step when the loss stops falling"),
    )  # fmt: skip

    def _build(self, clf: Any, targeted: bool, params: dict[str, Any]) -> Any:
        t = tf()
        kappa, lr = float(params["kappa"]), float(params["step_size"])
        vec = t.TensorSpec([None], t.float32)
        logits = fast_logits(clf)

        @kernel
        def loss_grad(w: Any, x0: Any, onehot: Any, c: Any) -> Any:
            with t.GradientTape() as tape:
                tape.watch(w)
                xa = (t.tanh(w) + 1.0) / 2.0
                z = logits(xa)
                gap = -onehot_margin(t, z, onehot, targeted)  # <= -kappa: succeeded
                l2 = t.reduce_sum(t.square(xa - x0), axis=[1, 2, 3])
                total = t.reduce_sum(l2 + c * t.maximum(gap, -kappa))
            return xa, gap, l2, total, tape.gradient(total, w)

        @t.function(
            input_signature=[image_spec(), image_spec(), image_spec(), t.TensorSpec([], t.float32),
                             vec, image_spec(), t.TensorSpec([None], t.bool),
                             image_spec(), t.TensorSpec([None], t.int64), vec,
                             t.TensorSpec([], t.int32)],
            reduce_retracing=True,
        )  # fmt: skip
        def steps_fn(w, m, v, it, best_l2, best_adv, found, x0, cls, c, k):  # type: ignore[no-untyped-def]
            onehot = t.one_hot(cls, 10, dtype=t.float32)
            total = t.constant(0.0)
            for _ in t.range(k):
                xa, gap, l2, total, grad = loss_grad(w, x0, onehot, c)
                # The current iterate: successful with the margin kappa and smaller than before?
                ok = (gap <= -kappa) & (l2 < best_l2)
                best_l2 = t.where(ok, l2, best_l2)
                best_adv = t.where(ok[:, None, None, None], xa, best_adv)
                found = found | (gap <= -kappa)
                m, v, it, direction = adam(t, grad, m, v, it)
                w = w - lr * direction
            return w, m, v, it, best_l2, best_adv, found, total

        return steps_fn

    def run(self, clf: Any, x: np.ndarray, task: Task) -> Outcome:
        labels, goals, params = task.labels, task.goals, task.params
        progress, cancel = task.progress, task.cancel
        t = tf()
        targeted = goals is not None
        graph = ("cw", params["kappa"], params["step_size"], targeted)
        steps_fn = compiled(clf, graph, lambda: self._build(clf, targeted, params))
        steps, searches = params["steps"], params["search_steps"]
        n = len(x)
        x0 = t.constant(x)
        cls = t.constant((goals if targeted else labels).astype(np.int64))
        w0 = t.constant(np.arctanh((2.0 * x - 1.0) * 0.999999).astype(np.float32))
        c = np.full(n, params["c"], dtype=np.float32)
        lo = np.zeros(n, dtype=np.float32)
        hi = np.full(n, _BIG, dtype=np.float32)
        best_l2 = t.constant(np.full(n, np.inf, dtype=np.float32))
        best_adv = x0
        steps_run = np.zeros(n, dtype=np.int64)
        total_steps = searches * steps
        check_every = max(1, steps // 10)
        abort = params["abort_early"]
        for s in range(searches):
            prev = [np.inf]

            c_t = t.constant(c)

            def step(state: Any, k: int, c_t: Any = c_t) -> Any:
                return steps_fn(*state[:7], x0, cls, c_t, t.constant(k, t.int32))

            def stop(state: Any, done: int, prev: list = prev) -> bool:
                loss = float(state[7])
                if loss > prev[0] * 0.9999:
                    return True
                prev[0] = loss
                return False

            zeros = t.zeros_like(w0)
            state = (w0, zeros, zeros, t.constant(0.0), best_l2, best_adv,
                     t.zeros([n], t.bool), t.constant(0.0))  # fmt: skip
            state, ran = run_steps(
                step,
                state,
                steps,
                progress=progress,
                cancel=cancel,
                message=f"cw: search step {s + 1} of {searches}, c median "
                f"{float(np.median(c)):.3g}",
                offset=s * steps,
                grand_total=total_steps,
                stop=stop if abort else None,
                boundary=check_every if abort else 0,
                info=lambda st: {"found": int(np.asarray(st[6]).sum())},
            )
            best_l2, best_adv = state[4], state[5]
            found = np.asarray(state[6])
            steps_run += ran
            # Binary search: success -> smaller c; failure -> larger (x10 until bracketed).
            hi = np.where(found, np.minimum(hi, c), hi)
            lo = np.where(found, lo, np.maximum(lo, c))
            c = np.where(hi < _BIG, (lo + hi) / 2.0, c * 10.0).astype(np.float32)
        l2 = np.asarray(best_l2)
        best = np.sqrt(np.where(np.isfinite(l2), l2, np.nan))
        return Outcome(np.asarray(best_adv), steps=steps_run, details=Details(best_l2=best, c=hi))
