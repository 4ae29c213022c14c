"""Iterative gradient attacks: BIM, PGD (Linf and L2, random start, restarts) and MI-FGSM.

All three climb the cross-entropy of the logits (untargeted) or descend it towards the goal
(targeted) with a compiled multi-step loop, projecting onto the epsilon ball and [0, 1] after
every step. PGD with restarts is the robustness check the brief asks for: each restart after
the first attacks only the inputs that are still classified correctly, and the strongest
example per input (largest logit margin) is kept (Madry et al. 2018).
``precision="bfloat16"`` computes the gradients with a bfloat16 copy of the model (several
times faster on CPUs with AMX/AVX512-BF16; offered only where core/tuning.py finds bf16 hardware
that measures faster, float32 elsewhere); projection, clipping and the choice of the strongest
example stay in float32.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from advgui.core.attacks import spec as sp
from advgui.core.attacks.base import Attack, Details, Outcome, Task, register
from advgui.core.attacks.engine import (
    PRECISIONS,
    GradView,
    compiled,
    image_spec,
    kernel,
    margin,
    run_steps,
)
from advgui.core.errors import ParameterError
from advgui.core.tfimport import tf

NORMS = ("linf", "l2")
#: Largest useful L2 radius on a 28x28 image in [0, 1] (the whole image flipped).
MAX_L2 = 28.0

_PRECISION = sp.Param(
    "precision",
    "float32",
    choices=PRECISIONS,
    advanced=True,
    help="arithmetic of the gradients (bfloat16: faster on CPUs with AMX)",
)


def _step_size(hi: float = 1.0) -> sp.Param:
    return sp.Param("step_size", 0.01, lo=1e-6, hi=hi, optional=True, label="Step size",
                    help="size of one step; none: 2.5 eps / steps (Madry et al.)")  # fmt: skip


class _Iterative(Attack):
    """Shared loop of BIM, PGD and MI-FGSM (they differ in start, direction and restarts)."""

    @classmethod
    def cost_axis(cls, params: dict[str, Any], targeted: bool) -> tuple[str, str] | None:
        # The loss each step ascends: rises toward 0 targeted, grows untargeted.
        title = "loss maximised" + (" (first restart)" if params.get("restarts", 1) > 1 else "")
        if targeted:
            return title, "-cross-entropy of the goal"
        return title, "cross-entropy of the true class"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        params.setdefault("norm", "linf")
        hi = 1.0 if params["norm"] == "linf" else MAX_L2
        params["eps"] = sp.eps(hi=hi).check(params["eps"])
        if params.get("step_size") is None:  # Madry's rule of thumb: 2.5 eps / steps
            eps, steps = params["eps"], params["steps"]
            params["step_size"] = 2.5 * eps / steps if eps > 0 else 0.01
        params["step_size"] = sp.step_size(0.01, hi=hi).check(params["step_size"])
        return params

    def _build(self, view: GradView, judge: Any, targeted: bool, params: dict[str, Any]) -> Any:
        """Compiled steps on ``view`` (maybe bfloat16) and a float32 margin on ``judge``."""
        t = tf()
        norm, decay = params["norm"], params.get("decay")
        lab_spec = t.TensorSpec([None], t.int64)
        scalar = t.TensorSpec([], t.float32)
        logits = view.logits

        @kernel
        def loss_grad(x_adv: Any, cls: Any) -> Any:
            with t.GradientTape() as tape:
                tape.watch(x_adv)
                z = t.cast(logits(x_adv), t.float32)
                ce = t.nn.sparse_softmax_cross_entropy_with_logits(labels=cls, logits=z)
                loss = -ce if targeted else ce
                total = t.reduce_sum(loss)
            return loss, tape.gradient(total, x_adv)

        @t.function(
            input_signature=[image_spec(), image_spec(), image_spec(), lab_spec,
                             t.TensorSpec([], t.int32), scalar, scalar],
            reduce_retracing=True,
        )  # fmt: skip
        def steps_fn(x_adv: Any, x0: Any, g: Any, cls: Any, k: Any, eps: Any, step: Any) -> Any:
            losses = t.TensorArray(t.float32, size=k)
            for i in t.range(k):
                loss, grad = loss_grad(x_adv, cls)
                losses = losses.write(i, loss)
                if decay is not None:
                    l1 = t.reduce_sum(t.abs(grad), axis=[1, 2, 3], keepdims=True)
                    g = decay * g + grad / (l1 + 1e-12)
                    direction = t.sign(g)
                elif norm == "linf":
                    direction = t.sign(grad)
                else:
                    l2 = t.sqrt(t.reduce_sum(grad * grad, axis=[1, 2, 3], keepdims=True))
                    direction = grad / (l2 + 1e-12)
                x_adv = x_adv + step * direction
                delta = x_adv - x0
                if norm == "linf":
                    delta = t.clip_by_value(delta, -eps, eps)
                else:
                    l2 = t.sqrt(t.reduce_sum(delta * delta, axis=[1, 2, 3], keepdims=True))
                    delta = delta * t.minimum(1.0, eps / (l2 + 1e-12))
                x_adv = t.clip_by_value(x0 + delta, 0.0, 1.0)
            return x_adv, g, losses.stack()

        @t.function(input_signature=[image_spec(), lab_spec])
        def margin_fn(x_adv: Any, cls: Any) -> Any:
            return margin(t, judge(x_adv, training=False), cls, targeted)

        return steps_fn, margin_fn

    @staticmethod
    def _start(x: np.ndarray, rng: np.random.Generator, params: dict[str, Any]) -> np.ndarray:
        eps = params["eps"]
        if not params.get("random_start") or eps == 0:
            return x.copy()
        if params["norm"] == "linf":
            noise = rng.uniform(-eps, eps, size=x.shape)
        else:  # uniform in the L2 ball: Gaussian direction, radius eps * U^(1/d)
            d = int(np.prod(x.shape[1:]))
            noise = rng.standard_normal(size=x.shape)
            noise /= np.sqrt((noise**2).sum(axis=(1, 2, 3), keepdims=True)) + 1e-12
            noise *= eps * rng.uniform(size=(len(x), 1, 1, 1)) ** (1.0 / d)
        return np.clip(x + noise, 0.0, 1.0).astype(np.float32)

    def run(self, clf: Any, x: np.ndarray, task: Task) -> Outcome:
        labels, goals, params = task.labels, task.goals, task.params
        progress, cancel = task.progress, task.cancel
        t = tf()
        targeted = goals is not None
        precision = params.get("precision", "float32")
        view = GradView(clf, precision)
        # Only these settings shape the graph; eps and the step size are tensors.
        graph = (self.name, params["norm"], params.get("decay"), view.precision, targeted)
        steps_fn, margin_fn = compiled(
            clf, graph, lambda: self._build(view, clf.logits_model, targeted, params)
        )
        cls_np = (goals if targeted else labels).astype(np.int64)
        rng = np.random.default_rng(params.get("seed", 0))
        n = len(x)
        steps, restarts = params["steps"], params.get("restarts", 1)
        best = x.copy()
        best_margin = np.full(n, -np.inf, dtype=np.float32)
        history: np.ndarray | None = None
        steps_run = np.zeros(n, dtype=np.int64)
        eps_t = t.constant(params["eps"], t.float32)
        step_t = t.constant(params["step_size"], t.float32)
        for r in range(restarts):
            todo = np.flatnonzero(best_margin <= 0) if r else np.arange(n)
            if len(todo) == 0:
                break
            x0 = t.constant(x[todo])
            cls = t.constant(cls_np[todo])
            start = t.constant(self._start(x[todo], rng, params))
            costs: list[np.ndarray] = []

            def step(state: Any, k: int, x0: Any = x0, cls: Any = cls, costs: list = costs) -> Any:
                x_adv, g, losses = steps_fn(
                    state[0], x0, state[1], cls, t.constant(k, t.int32), eps_t, step_t
                )
                costs.append(losses.numpy())
                return x_adv, g

            (x_adv, _), _ = run_steps(
                step,
                (start, t.zeros_like(start)),
                steps,
                progress=progress,
                cancel=cancel,
                message=f"{self.name}: restart {r + 1} of {restarts}",
                offset=r * steps,
                grand_total=steps * restarts,
            )
            m = margin_fn(x_adv, cls).numpy()
            better = m > best_margin[todo]
            idx = todo[better]
            best[idx] = x_adv.numpy()[better]
            best_margin[idx] = m[better]
            steps_run[todo] += steps
            if r == 0:
                history = np.concatenate(costs, axis=0)
        return Outcome(
            best,
            steps=steps_run,
            cost_history=history,
            details=Details(margin=best_margin, precision=view.precision),
        )


@register
class PGD(_Iterative):
    """Projected gradient descent (Madry et al.), Linf or L2, random start, restarts."""

    name: ClassVar[str] = "pgd"
    spec: ClassVar[tuple[sp.Param, ...]] = (
        sp.Param("eps", 0.3, lo=0.0, hi=MAX_L2, label="Epsilon",
                 help="perturbation budget (L-inf: per pixel; L2: whole image)"),
        _step_size(hi=MAX_L2),
        sp.steps(40),
        sp.restarts(1),
        sp.Param("norm", "linf", choices=NORMS, label="Norm", help="the ball to stay in"),
        sp.Param("random_start", True, label="Random start", advanced=True,
                 help="start from a random point of the ball (needed for restarts)"),
        sp.seed(0),
        _PRECISION,
    )  # fmt: skip

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        if params["restarts"] > 1 and not params["random_start"]:
            raise ParameterError("restarts need a random start", field="restarts")
        return super().validate(params)


@register
class BIM(_Iterative):
    """Basic iterative method (Kurakin et al.): PGD Linf from the clean image, no restarts."""

    name: ClassVar[str] = "bim"
    spec: ClassVar[tuple[sp.Param, ...]] = (sp.eps(0.3), _step_size(), sp.steps(40), _PRECISION)


@register
class MIFGSM(_Iterative):
    """Momentum iterative FGSM (Dong et al. 2018): sign of an L1-normalised gradient average."""

    name: ClassVar[str] = "mifgsm"
    spec: ClassVar[tuple[sp.Param, ...]] = (
        sp.eps(0.3),
        sp.steps(10),
        sp.Param("decay", 1.0, lo=0.0, hi=10.0, label="Momentum decay"),
        sp.step_size(None, help="default: eps / steps (Dong et al.)"),
        _PRECISION,
    )  # fmt: skip

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        # Dong et al.: step = eps / steps, so that the last step can just reach the ball's edge.
        if params["step_size"] is None and params["eps"] > 0:
            params["step_size"] = params["eps"] / params["steps"]
        return super().validate(params)
