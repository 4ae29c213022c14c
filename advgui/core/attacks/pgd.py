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

from advgui.core import tuning
from advgui.core.attacks.base import Attack, check_param, register
from advgui.core.attacks.batch import run_steps
from advgui.core.attacks.graph import fast_logits, kernel
from advgui.core.errors import ParameterError
from advgui.core.progress import CancelToken, ProgressCallback
from advgui.core.tfimport import keras, tf

NORMS = ("linf", "l2")
#: Largest useful L2 radius on a 28x28 image in [0, 1] (the whole image flipped).
MAX_L2 = 28.0


def margin(t: Any, z: Any, cls: Any, targeted: bool) -> Any:
    """Logit margin, positive exactly when the attack succeeded (the usual "strength").

    Targeted: z_goal - max_other; untargeted: max_other - z_label. ``t`` is the tensorflow
    module (passed in so that traced code never calls :func:`tf`).
    """
    onehot = t.one_hot(cls, z.shape[-1], dtype=z.dtype)
    z_cls = t.reduce_sum(z * onehot, axis=1)
    z_other = t.reduce_max(z - 1e9 * onehot, axis=1)
    return z_cls - z_other if targeted else z_other - z_cls


#: Compiled settings kept per model; the oldest is dropped beyond this (a user sweeping
#: epsilon must not grow memory without bound).
MAX_COMPILED_PER_MODEL = 16


def compiled_cache(owner: Any, model: Any, build: Any) -> Any:
    """Compiled functions for ``model`` and the attack's settings, built once and kept on the
    model (so they die with it).

    Retracing a gradient of a CNN costs seconds; run_batch calls one attack on many chunks,
    and the Attack tab makes a new attack object for every run: keying on the attack's class
    and settings (not on the object) keeps the number of traces bounded over a long session.
    An attack may name the only settings its graph depends on in ``graph_settings`` (the
    others are passed as tensors), so that an epsilon sweep reuses one trace.
    """
    names = getattr(owner, "graph_settings", None)
    if names is None:
        names = [k for k in vars(owner) if not k.startswith("_")]
    settings = tuple(sorted((k, repr(getattr(owner, k))) for k in names))
    key = (type(owner).__qualname__, settings)
    cache = model.__dict__.setdefault("_advgui_attack_fns", {})
    if key in cache:
        cache[key] = cache.pop(key)  # most recently used last
    else:
        while len(cache) >= MAX_COMPILED_PER_MODEL:
            cache.pop(next(iter(cache)))
        cache[key] = build()
    return cache[key]


#: Arithmetic of the gradient computation; the result is always judged in float32.
PRECISIONS = ("float32", "bfloat16")


def bfloat16_view(model: Any) -> Any:
    """A bfloat16-compute copy of ``model`` with its current weights (None if it cannot be
    cloned, e.g. a custom layer).

    On CPUs with AMX or AVX512-BF16 oneDNN runs bfloat16 convolutions several times faster;
    a gradient's sign barely changes. Weights are copied on every call, so a model trained
    further is never attacked through a stale copy.
    """
    k = keras()
    copy = model.__dict__.get("_advgui_bf16")
    if copy is None:

        def clone(layer: Any) -> Any:
            cfg = layer.get_config()
            cfg["dtype"] = "mixed_bfloat16"
            return layer.__class__.from_config(cfg)

        try:
            copy = k.models.clone_model(model, clone_function=clone)
        except Exception:  # Keras raises many types for layers it cannot rebuild
            return None
        model.__dict__["_advgui_bf16"] = copy
    copy.set_weights(model.get_weights())
    return copy


def image_spec() -> Any:
    t = tf()
    return t.TensorSpec([None, 28, 28, 1], t.float32)


class _Iterative(Attack):
    """Shared loop of BIM, PGD and MI-FGSM (they differ in start, direction and restarts)."""

    #: Settings baked into the compiled graph; eps and step are passed in as tensors.
    graph_settings: ClassVar[tuple[str, ...]] = ("norm", "decay", "precision")
    norm: str = "linf"
    random_start: bool = False
    restarts: int = 1
    decay: float | None = None  # momentum (MI-FGSM)
    precision: str = "float32"

    def _init_precision(self, precision: str) -> None:
        if precision not in PRECISIONS:
            raise ParameterError(
                f"precision must be one of {PRECISIONS}, got {precision!r}", field="precision"
            )
        self.precision = precision

    def _init_common(self, eps: float, step: float | None, steps: int, norm: str) -> None:
        if norm not in NORMS:
            raise ParameterError(f"norm must be one of {NORMS}, got {norm!r}", field="norm")
        self.norm = norm
        hi = 1.0 if norm == "linf" else MAX_L2
        self.eps = check_param("eps", eps, lo=0.0, hi=hi)
        self.steps = check_param("steps", steps, lo=1, hi=100000, integer=True)
        if step is None:  # Madry's rule of thumb: 2.5 eps / steps
            step = 2.5 * self.eps / self.steps if self.eps > 0 else 0.01
        self.step = check_param("step", step, lo=1e-6, hi=hi)

    def _build(self, model: Any, targeted: bool, judge: Any = None) -> Any:
        """Compiled steps on ``model`` (maybe bfloat16) and a float32 margin on ``judge``."""
        t = tf()
        judge = model if judge is None else judge
        norm, decay = self.norm, self.decay
        lab_spec = t.TensorSpec([None], t.int64)
        scalar = t.TensorSpec([], t.float32)

        logits = fast_logits(model)

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

    def _start(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not self.random_start or self.eps == 0:
            return x.copy()
        if self.norm == "linf":
            noise = rng.uniform(-self.eps, self.eps, size=x.shape)
        else:  # uniform in the L2 ball: Gaussian direction, radius eps * U^(1/d)
            d = int(np.prod(x.shape[1:]))
            noise = rng.standard_normal(size=x.shape)
            noise /= np.sqrt((noise**2).sum(axis=(1, 2, 3), keepdims=True)) + 1e-12
            noise *= self.eps * rng.uniform(size=(len(x), 1, 1, 1)) ** (1.0 / d)
        return np.clip(x + noise, 0.0, 1.0).astype(np.float32)

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
        t = tf()
        targeted = goals is not None
        model = clf.logits_model
        bf16 = self.precision == "bfloat16" and tuning.settings().bf16_available  # CPU has it
        grad_model = bfloat16_view(model) if bf16 else model
        used = "bfloat16" if bf16 and grad_model is not None else "float32"
        grad_model = model if grad_model is None else grad_model
        steps_fn, margin_fn = compiled_cache(
            self, model, lambda: (self._build(grad_model, False, model),
                                  self._build(grad_model, True, model))
        )[int(targeted)]  # fmt: skip
        cls_np = (goals if targeted else labels).astype(np.int64)
        rng = np.random.default_rng(self.seed)
        n = len(x)
        best = x.copy()
        best_margin = np.full(n, -np.inf, dtype=np.float32)
        history: np.ndarray | None = None
        steps_run = np.zeros(n, dtype=np.int64)
        total = self.steps * self.restarts
        eps_t = t.constant(self.eps, t.float32)
        step_t = t.constant(self.step, t.float32)
        for r in range(self.restarts):
            todo = np.flatnonzero(best_margin <= 0) if r else np.arange(n)
            if len(todo) == 0:
                break
            x0 = t.constant(x[todo])
            cls = t.constant(cls_np[todo])
            start = t.constant(self._start(x[todo], rng))
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
                self.steps,
                progress=progress,
                cancel=cancel,
                message=f"{self.name}: restart {r + 1} of {self.restarts}",
                offset=r * self.steps,
                grand_total=total,
            )
            m = margin_fn(x_adv, cls).numpy()
            better = m > best_margin[todo]
            idx = todo[better]
            best[idx] = x_adv.numpy()[better]
            best_margin[idx] = m[better]
            steps_run[todo] += self.steps
            if r == 0:
                history = np.concatenate(costs, axis=0)
        return {
            "x_adv": best,
            "steps": steps_run,
            "cost_history": history,
            "extra": {"margin": best_margin, "precision": used},
        }


@register
class PGD(_Iterative):
    """Projected gradient descent (Madry et al.), Linf or L2, random start, restarts."""

    name: ClassVar[str] = "pgd"

    def __init__(
        self,
        *,
        eps: float = 0.3,
        step: float | None = 0.01,
        steps: int = 40,
        restarts: int = 1,
        norm: str = "linf",
        random_start: bool = True,
        seed: int = 0,
        precision: str = "float32",
    ) -> None:
        self._init_common(eps, step, steps, norm)
        self._init_precision(precision)
        self.restarts = check_param("restarts", restarts, lo=1, hi=1000, integer=True)
        self.random_start = bool(random_start)
        if self.restarts > 1 and not self.random_start:
            raise ParameterError("restarts need a random start", field="restarts")
        self.seed = check_param("seed", seed, lo=0, hi=2**32 - 1, integer=True)
        super().__init__(
            eps=self.eps, step=self.step, steps=self.steps, restarts=self.restarts,
            norm=self.norm, random_start=self.random_start, seed=self.seed,
            precision=self.precision,
        )  # fmt: skip


@register
class BIM(_Iterative):
    """Basic iterative method (Kurakin et al.): PGD Linf from the clean image, no restarts."""

    name: ClassVar[str] = "bim"

    def __init__(
        self,
        *,
        eps: float = 0.3,
        step: float | None = 0.01,
        steps: int = 40,
        precision: str = "float32",
    ) -> None:
        self._init_common(eps, step, steps, "linf")
        self._init_precision(precision)
        self.seed = 0
        super().__init__(eps=self.eps, step=self.step, steps=self.steps, precision=precision)


@register
class MIFGSM(_Iterative):
    """Momentum iterative FGSM (Dong et al. 2018): sign of an L1-normalised gradient average."""

    name: ClassVar[str] = "mifgsm"

    def __init__(
        self,
        *,
        eps: float = 0.3,
        steps: int = 10,
        decay: float = 1.0,
        step: float | None = None,
        precision: str = "float32",
    ) -> None:
        self._init_precision(precision)
        eps = check_param("eps", eps, lo=0.0, hi=1.0)
        steps = check_param("steps", steps, lo=1, hi=100000, integer=True)
        # Dong et al.: step = eps / steps, so that the last step can just reach the ball's edge.
        self._init_common(eps, eps / steps if step is None and eps > 0 else step, steps, "linf")
        self.decay = check_param("decay", decay, lo=0.0, hi=10.0)
        self.seed = 0
        super().__init__(
            eps=self.eps, step=self.step, steps=self.steps, decay=self.decay, precision=precision
        )
