"""APGD (Croce & Hein, ICML 2020): PGD that needs no step size, and the DLR loss.

PGD's result depends on a step size nobody tunes per model. APGD starts at 2 eps and halves
the step, per image, at checkpoints (after 22, 41, 57, 70, 80, 87, 93 and 99 of 100
iterations: p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)) when the loss rose in fewer than
rho = 75% of the steps since the last checkpoint, or when the step was not halved there and the
best loss has not improved since; a halving restarts from the best point. Each step mixes the
gradient step with the previous one (momentum 0.75).

Losses: cross-entropy (``apgd-ce``), and the Difference of Logits Ratio (``apgd-dlr``)
``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``, which does not change when the logits are
scaled, so a saturated softmax (distillation, a model scaled by 1000) does not hide the
gradient. ``apgd-t`` runs the targeted DLR ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``
towards each of the most likely other classes in turn, each only on the images still robust.

``eot`` averages the gradient over several calls of a randomised model (Athalye et al. 2018).
The whole loop is compiled (:mod:`.engine`); images already broken leave the batch between
chunks, so a weak model costs a few steps, not 100.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from advgui.core.attacks import spec as sp
from advgui.core.attacks import streams
from advgui.core.attacks.base import Attack, Details, Outcome, Task, register
from advgui.core.attacks.engine import (
    compiled,
    fast_logits,
    image_spec,
    kernel,
    normalized,
    project,
    run_steps,
)
from advgui.core.tfimport import tf

NORMS = ("linf", "l2")
#: Largest useful L2 radius on a 28x28 image in [0, 1].
MAX_L2 = 28.0


def checkpoints(steps: int) -> list[tuple[int, int]]:
    """(iteration index, length of the period it closes) of every step-size check.

    The paper's p_j: the first period is 22% of the iterations, each next one 3% shorter,
    none shorter than 6% (all at least one iteration).
    """
    period = max(int(0.22 * steps), 1)
    shorter, shortest = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    out, at = [], 0
    while at + period <= steps:
        at += period
        out.append((at - 1, period))
        period = max(period - shorter, shortest)
    return out


def dlr(t: Any, z: Any, y: Any) -> Any:
    """Untargeted DLR loss (to maximise): the margin over the spread of the top logits."""
    onehot = t.one_hot(y, z.shape[-1], dtype=z.dtype)
    z_y = t.reduce_sum(z * onehot, axis=1)
    z_other = t.reduce_max(z - 1e9 * onehot, axis=1)
    top = t.math.top_k(z, 3).values
    return -(z_y - z_other) / (top[:, 0] - top[:, 2] + 1e-12)


def dlr_targeted(t: Any, z: Any, y: Any, target: Any) -> Any:
    """Targeted DLR loss (to maximise): the label's lead over the target, over the spread."""
    z_y = t.gather(z, y, axis=1, batch_dims=1)
    z_t = t.gather(z, target, axis=1, batch_dims=1)
    top = t.math.top_k(z, 4).values
    return -(z_y - z_t) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def _loss(t: Any, name: str, z: Any, y: Any, target: Any) -> Any:
    if name == "ce":
        return t.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z)
    if name == "ce-targeted":
        return -t.nn.sparse_softmax_cross_entropy_with_logits(labels=target, logits=z)
    if name == "dlr":
        return dlr(t, z, y)
    return dlr_targeted(t, z, y, target)


def random_start(
    x: np.ndarray, rng: np.random.Generator, eps: float, norm: str, scale: float = 1.0
) -> np.ndarray:
    """A random point at distance ``scale * eps`` (L-inf: uniform noise whose largest pixel
    is at eps; L2: a Gaussian direction), clipped to [0, 1]."""
    if norm == "linf":
        noise = rng.uniform(-1.0, 1.0, size=x.shape)
        noise /= np.abs(noise).reshape(len(x), -1).max(axis=1).reshape(-1, 1, 1, 1) + 1e-12
    else:
        noise = rng.standard_normal(size=x.shape)
        noise /= np.sqrt((noise**2).reshape(len(x), -1).sum(axis=1)).reshape(-1, 1, 1, 1) + 1e-12
    return np.clip(x + scale * eps * noise, 0.0, 1.0).astype(np.float32)


class _APGD(Attack):
    """Shared loop of the three APGD variants (they differ in loss and targets)."""

    #: Loss when untargeted and when aiming at a goal.
    loss: ClassVar[str] = "ce"
    goal_loss: ClassVar[str] = "ce-targeted"
    #: Run towards the most likely other classes in turn (``targets`` of them).
    over_targets: ClassVar[bool] = False

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        hi = 1.0 if params["norm"] == "linf" else MAX_L2
        params["eps"] = sp.eps(hi=hi).check(params["eps"])
        return params

    def _build(self, clf: Any, loss: str, norm: str, eot: int, to_goal: bool) -> Any:
        t = tf()
        logits = fast_logits(clf)
        ints = t.TensorSpec([None], t.int64)
        vec = t.TensorSpec([None], t.float32)
        flags = t.TensorSpec([None], t.bool)
        scalar = t.TensorSpec([], t.float32)

        @kernel
        def loss_grad(xa: Any, y: Any, target: Any) -> Any:
            n = t.shape(xa)[0]
            with t.GradientTape() as tape:
                tape.watch(xa)
                xs = t.tile(xa, [eot, 1, 1, 1]) if eot > 1 else xa
                z = t.cast(logits(xs), t.float32)
                ys = t.tile(y, [eot]) if eot > 1 else y
                ts = t.tile(target, [eot]) if eot > 1 else target
                each = _loss(t, loss, z, ys, ts)
                total = t.reduce_sum(each)
            grad = tape.gradient(total, xa) / float(eot)
            mean = t.reduce_mean(t.reshape(each, [eot, n]), axis=0)
            return z[-n:], mean, grad  # the prediction of one draw, as deployed

        def robust(z: Any, y: Any, target: Any) -> Any:
            pred = t.argmax(z, axis=1)
            return t.not_equal(pred, target) if to_goal else t.equal(pred, y)

        @t.function(input_signature=[image_spec(), image_spec(), ints, ints, scalar])
        def init_fn(x_adv: Any, x0: Any, y: Any, target: Any, eps: Any) -> Any:
            z, loss_v, grad = loss_grad(x_adv, y, target)
            n = t.shape(x_adv)[0]
            step = t.fill([n], 2.0 * eps)
            acc = robust(z, y, target)
            zero = t.equal(t.reduce_sum(t.abs(grad), axis=[1, 2, 3]), 0.0)
            state = (x_adv, x_adv, grad, step, x_adv, grad, loss_v, x_adv, acc, loss_v,
                     t.zeros([n]), loss_v, t.ones([n], t.bool))  # fmt: skip
            return state, zero

        state_spec = [image_spec(), image_spec(), image_spec(), vec, image_spec(), image_spec(),
                      vec, image_spec(), flags, vec, vec, vec, flags]  # fmt: skip

        @t.function(
            input_signature=[*state_spec, image_spec(), ints, ints, scalar, scalar,
                             t.TensorSpec([], t.int32), t.TensorSpec([], t.int32),
                             t.TensorSpec([None], t.bool), vec],
            reduce_retracing=True,
        )  # fmt: skip
        def steps_fn(x_adv, x_old, grad, step, x_best, grad_best, loss_best, x_best_adv, acc,
                     loss_prev, rises, loss_last, halved_last,
                     x0, y, target, eps, rho, it0, k, check_at, period):  # type: ignore[no-untyped-def]  # fmt: skip
            # Per step, image-sized element-wise passes cost ~10% beside the gradient here
            # (benchmarks/bench_autoattack.py): the L-inf ball and [0, 1] are one box, clipped
            # to in two passes; the momentum is one expression; the checkpoint runs only at one.
            if norm == "linf":
                lo, hi = t.maximum(x0 - eps, 0.0), t.minimum(x0 + eps, 1.0)

                def into(v: Any) -> Any:
                    return t.minimum(t.maximum(v, lo), hi)
            else:

                def into(v: Any) -> Any:
                    return project(t, v, x0, eps, norm)

            for i in t.range(k):
                it = it0 + i
                a = t.where(it > 0, 0.75, 1.0)
                s4 = step[:, None, None, None]
                direction = t.sign(grad) if norm == "linf" else normalized(t, grad, norm)
                z1 = into(x_adv + s4 * direction)
                # x + a (z1 - x) + (1 - a) (x - x_old)
                x_adv, x_old = into((2.0 - 2.0 * a) * x_adv + a * z1 - (1.0 - a) * x_old), x_adv
                z, loss_v, grad = loss_grad(x_adv, y, target)
                ok = robust(z, y, target)
                acc = acc & ok
                x_best_adv = t.where((~ok)[:, None, None, None], x_adv, x_best_adv)
                better = loss_v > loss_best
                b4 = better[:, None, None, None]
                x_best = t.where(b4, x_adv, x_best)
                grad_best = t.where(b4, grad, grad_best)
                loss_best = t.where(better, loss_v, loss_best)
                rises = rises + t.cast(loss_v > loss_prev, t.float32)
                loss_prev = loss_v
                # The checkpoint: halve where the loss rose too rarely, or stalled unhalved.
                at = check_at[it]
                stalled = (~halved_last) & (loss_last >= loss_best)
                halve = (rises <= period[it] * rho) | stalled
                cut = at & halve
                step = t.where(cut, step / 2.0, step)
                c4 = cut[:, None, None, None]
                x_adv, grad = t.cond(
                    at,
                    lambda: (t.where(c4, x_best, x_adv), t.where(c4, grad_best, grad)),  # noqa: B023
                    lambda: (x_adv, grad),  # noqa: B023
                )
                halved_last = t.where(at, halve, halved_last)
                loss_last = t.where(at, loss_best, loss_last)
                rises = t.where(at, t.zeros_like(rises), rises)
            return (x_adv, x_old, grad, step, x_best, grad_best, loss_best, x_best_adv, acc,
                    loss_prev, rises, loss_last, halved_last)  # fmt: skip

        return init_fn, steps_fn

    def _one_run(
        self,
        fns: Any,
        x: np.ndarray,
        y: np.ndarray,
        target: np.ndarray,
        start: np.ndarray,
        params: dict[str, Any],
        task: Task,
        message: str,
        offset: int,
        grand: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One run of APGD from ``start``: (images, still robust, best loss, zero gradient),
        its rows in concurrent shards where that measured faster (:mod:`.streams`)."""
        outs = (np.empty_like(x), np.zeros(len(x), bool), np.zeros(len(x), np.float32),
                np.zeros(len(x), bool))  # fmt: skip

        def work(rows: np.ndarray, progress: Any, cancel: Any) -> tuple[np.ndarray, ...]:
            shard = (x[rows], y[rows], target[rows], start[rows])
            return self._shard_run(fns, shard, params, progress, cancel, message)

        for rows, got in streams.run(
            work, len(x), progress=task.progress, cancel=task.cancel, offset=offset,
            steps=params["steps"], grand=grand, start_info=lambda rows: {"robust": len(rows)},
        ):  # fmt: skip
            for out, part in zip(outs, got, strict=True):
                out[rows] = part
        return outs

    def _shard_run(
        self,
        fns: Any,
        shard: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        params: dict[str, Any],
        progress: Any,
        cancel: Any,
        message: str,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """APGD on one shard's (images, labels, targets, starts); progress in its own steps."""
        t = tf()
        x, y, target, start = shard
        init_fn, steps_fn = fns
        steps = params["steps"]
        n = len(x)
        eps = t.constant(params["eps"], t.float32)
        rho = t.constant(params["rho"], t.float32)
        check_at = np.zeros(steps, bool)
        period = np.ones(steps, np.float32)
        for i, length in checkpoints(steps):
            check_at[i], period[i] = True, length
        check_t, period_t = t.constant(check_at), t.constant(period)
        consts = [t.constant(x), t.constant(y), t.constant(target)]
        state, zero = init_fn(t.constant(start), consts[0], consts[1], consts[2], eps)
        out_x = np.empty_like(x)
        out_ok = np.zeros(n, bool)
        out_loss = np.full(n, -np.inf, np.float32)
        run = {"state": tuple(state), "consts": consts, "pos": np.arange(n), "it": 0}

        def settle(rows: np.ndarray, st: tuple, final: bool) -> None:
            """Write the finished rows' results (broken: the adversarial point; at the end,
            robust ones: the point of highest loss)."""
            pos = run["pos"][rows]
            acc = np.asarray(st[8])[rows]
            adv = np.asarray(st[7])[rows]
            best = np.asarray(st[4])[rows]
            out_x[pos] = np.where(acc[:, None, None, None], best, adv) if final else adv
            out_ok[pos] = acc
            out_loss[pos] = np.asarray(st[6])[rows]

        def compact() -> None:
            acc = np.asarray(run["state"][8])
            if acc.all():
                return
            settle(np.flatnonzero(~acc), run["state"], final=False)
            keep = t.constant(np.flatnonzero(acc))
            run["state"] = tuple(t.gather(s, keep) for s in run["state"])
            run["consts"] = [t.gather(c, keep) for c in run["consts"]]
            run["pos"] = run["pos"][np.asarray(keep)]

        def step(_: Any, k: int) -> Any:
            compact()
            if len(run["pos"]):
                run["state"] = tuple(
                    steps_fn(*run["state"], *run["consts"], eps, rho,
                             t.constant(run["it"], t.int32), t.constant(k, t.int32),
                             check_t, period_t)
                )  # fmt: skip
            run["it"] += k
            return None

        def stop(_: Any, done: int) -> bool:
            return not np.asarray(run["state"][8]).any()

        run_steps(step, None, steps, progress=progress, cancel=cancel, message=message, stop=stop,
                  info=lambda _: {"robust": int(np.asarray(run["state"][8]).sum())})  # fmt: skip
        settle(np.arange(len(run["pos"])), run["state"], final=True)
        return out_x, out_ok, out_loss, np.asarray(zero)

    def run(self, clf: Any, x: np.ndarray, task: Task) -> Outcome:
        params = task.params
        to_goal = task.goals is not None
        loss = self.goal_loss if to_goal else self.loss
        norm, eot, steps, restarts = (
            params["norm"],
            params["eot"],
            params["steps"],
            params["restarts"],
        )
        key = ("apgd", loss, norm, eot, to_goal)
        fns = compiled(clf, key, lambda: self._build(clf, loss, norm, eot, to_goal))
        rng = np.random.default_rng(params["seed"])
        labels = task.labels.astype(np.int64)
        n = len(x)
        z_clean = clf.logits(x)
        pred = z_clean.argmax(axis=1)
        if to_goal:
            goals = task.goals.astype(np.int64)
            robust = pred != goals
            plans: list[Any] = [goals]
        else:
            robust = pred == labels
            ranks = range(2, params["targets"] + 2) if self.over_targets else [None]
            order = np.argsort(-z_clean, axis=1)
            plans = [labels if r is None else order[:, r - 1] for r in ranks]
        best = x.copy()
        best_margin = np.full(n, -np.inf, np.float32)
        zero_grad = np.zeros(n, bool)
        runs = np.zeros(n, np.int64)
        grand = len(plans) * restarts * steps
        done = 0
        for p, plan in enumerate(plans):
            for r in range(restarts):
                todo = np.flatnonzero(robust)
                if len(todo) == 0:
                    break
                start = random_start(x[todo], rng, params["eps"], norm)
                what = f"target {p + 1} of {len(plans)}, " if len(plans) > 1 else ""
                msg = f"{self.name}: {what}restart {r + 1} of {restarts}"
                x_run, ok, _, zero = self._one_run(
                    fns, x[todo], labels[todo], plan[todo].astype(np.int64), start, params,
                    task, msg, done, grand,
                )  # fmt: skip
                done += steps
                runs[todo] += 1
                if p == 0 and r == 0:
                    zero_grad[todo] = zero
                broken = todo[~ok]
                best[broken] = x_run[~ok]
                robust[broken] = False
                # Still robust: keep the point closest to the boundary over all runs.
                kept = todo[ok]
                if len(kept):
                    m = _margin(clf.logits(x_run[ok]), labels[kept], None if not to_goal
                                else task.goals[kept])  # fmt: skip
                    closer = m > best_margin[kept]
                    best[kept[closer]] = x_run[ok][closer]
                    best_margin[kept[closer]] = m[closer]
        # Every iteration (and the start) evaluates the model and its gradient eot times.
        queries = runs * (steps + 1) * eot
        return Outcome(
            best, steps=runs * steps, details=Details(queries=queries, zero_gradient=zero_grad)
        )


def _margin(z: np.ndarray, labels: np.ndarray, goals: np.ndarray | None) -> np.ndarray:
    """Logit margin, positive when the attack succeeded (as :func:`.engine.margin`)."""
    rows = np.arange(len(z))
    if goals is not None:
        own = z[rows, goals]
        z = z.copy()
        z[rows, goals] = -np.inf
        return own - z.max(axis=1)
    own = z[rows, labels]
    z = z.copy()
    z[rows, labels] = -np.inf
    return z.max(axis=1) - own


def _spec(targets: bool) -> tuple[sp.Param, ...]:
    out = (
        sp.Param("eps", 0.3, lo=0.0, hi=MAX_L2, label="Epsilon",
                 help="perturbation budget (L-inf: per pixel; L2: whole image)"),
        sp.steps(100),
        sp.restarts(1),
        sp.norm(),
        sp.Param("rho", 0.75, lo=0.0, hi=1.0, label="rho", advanced=True,
                 help="halve the step where the loss rose in fewer than this share of steps"),
        sp.eot(1),
        sp.seed(0),
    )  # fmt: skip
    return (*out[:3], sp.targets(9), *out[3:]) if targets else out


@register
class APGDCE(_APGD):
    """APGD on the cross-entropy (Croce & Hein 2020): no step size to tune; 100 iterations."""

    name: ClassVar[str] = "apgd-ce"
    spec: ClassVar[tuple[sp.Param, ...]] = _spec(targets=False)


@register
class APGDDLR(_APGD):
    """APGD on the DLR loss: the same search on a loss that logit scaling cannot hide."""

    name: ClassVar[str] = "apgd-dlr"
    loss: ClassVar[str] = "dlr"
    goal_loss: ClassVar[str] = "dlr-targeted"
    spec: ClassVar[tuple[sp.Param, ...]] = _spec(targets=False)


@register
class APGDT(_APGD):
    """APGD-T: targeted DLR towards each of the most likely other classes in turn."""

    name: ClassVar[str] = "apgd-t"
    loss: ClassVar[str] = "dlr-targeted"
    goal_loss: ClassVar[str] = "dlr-targeted"
    over_targets: ClassVar[bool] = True
    spec: ClassVar[tuple[sp.Param, ...]] = _spec(targets=True)
