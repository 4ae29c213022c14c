"""FAB (Croce & Hein, ICML 2020): the smallest L-inf or L2 change that crosses the boundary.

Each step linearises the classifier at the current point x1 and projects both x1 and the
original x0 onto the linearised boundary, inside the box [0, 1]; the new point is a mix of the
two projections biased towards x0 (alpha <= alpha_max) with an overshoot eta. Once a point is
adversarial it is kept if smaller than the best so far, and the search steps back towards x0
by a factor beta: FAB walks along the boundary towards the original image.

``fab-t`` linearises only the difference of the logits of the label and of one target class
(one gradient per step), for each of the most likely other classes in turn; ``fab`` takes the
closest of all nine linearised boundaries (the full Jacobian, ten gradients per step).

With a ``bound`` (AutoAttack gives its eps), an image whose best example is within it is done
and leaves the batch; without one, every image runs all steps and the smallest example is
returned. Later targets and restarts run only on images with nothing within the bound (without
one: the reference's 0.3 in L-inf, 1.0 in L2, also the radius of the random restarts).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from advgui.core.attacks import spec as sp
from advgui.core.attacks.apgd import random_start
from advgui.core.attacks.base import Attack, Details, Outcome, Task, register
from advgui.core.attacks.engine import compiled, fast_logits, image_spec, kernel, run_steps
from advgui.core.attacks.spec import MINIMUM_NORM
from advgui.core.errors import ParameterError
from advgui.core.tfimport import tf

#: Bound and radius of the random restarts when no bound is given (the reference's defaults).
DEFAULT_EPS = {"linf": 0.3, "l2": 1.0}
_FAR = 1e12


def box_projection(
    t: Any, x: Any, w: Any, b: Any, norm: str, rounds: int | None = None, newton: int = 3
) -> Any:
    """The smallest change d (L-inf or L2) with w.(x + d) = b and x + d in [0, 1], per row.

    Where the hyperplane cannot be reached inside the box, the change that gets closest.
    Every coordinate moves towards the hyperplane by min(mu, room) (L-inf) or
    min(mu |w_i|, room) (L2), room being its distance to the box's wall, so w.d grows with mu
    piecewise linearly and concavely. A few bisections bracket the mu that reaches the
    hyperplane (no sort: TensorFlow sorts through top_k, slow on a CPU), on [0, 1] for L-inf
    and over 17 decades on a log scale for L2 (where mu = room / |w| spans them); Newton
    steps from below then cannot overshoot on a concave function and end on the exact segment.
    """
    c = b - t.reduce_sum(w * x, axis=1)
    s = t.sign(c)
    w = w * s[:, None]
    c = (c * s)[:, None]
    aw = t.abs(w)
    live = aw > 0.0
    room = t.where(w > 0.0, 1.0 - x, x)
    full = aw * room  # how much w.d a coordinate gives once saturated
    if norm == "linf":
        slope, brk = aw, room
    else:
        slope, brk = aw * aw, room / t.where(live, aw, 1.0)
    brk = t.where(live, brk, 0.0)

    def reach(mu: Any) -> Any:  # = sum of where(brk <= mu, full, mu * slope)
        return t.reduce_sum(t.minimum(full, mu * slope), axis=1, keepdims=True)

    top = t.reduce_max(brk, axis=1, keepdims=True)
    feasible = reach(top) >= c
    if norm == "linf":
        lo, hi = t.zeros_like(top), top
        for _ in range(6 if rounds is None else rounds):
            mid = (lo + hi) / 2.0
            short = reach(mid) < c
            lo, hi = t.where(short, mid, lo), t.where(short, hi, mid)
    else:
        span = 40.0  # nats below the largest breakpoint
        log_top = t.math.log(t.maximum(top, 1e-30))
        lo_t, hi_t = log_top - span, log_top
        for _ in range(12 if rounds is None else rounds):
            mid = (lo_t + hi_t) / 2.0
            short = reach(t.exp(mid)) < c
            lo_t, hi_t = t.where(short, mid, lo_t), t.where(short, hi_t, mid)
        lo = t.where(reach(t.exp(log_top - span)) < c, t.exp(lo_t), 0.0)
        hi = top
    mu = lo
    for _ in range(newton):
        free = t.reduce_sum(t.where(brk <= mu, 0.0, slope), axis=1, keepdims=True)
        mu = t.minimum(mu + (c - reach(mu)) / t.maximum(free, 1e-30), hi)
    mu = t.where(feasible, mu, _FAR)
    size = t.minimum(mu, room) if norm == "linf" else t.minimum(mu * aw, room)
    return t.where(live, t.sign(w) * size, 0.0)


def _norm(t: Any, v: Any, norm: str) -> Any:
    if norm == "linf":
        return t.reduce_max(t.abs(v), axis=1)
    return t.sqrt(t.reduce_sum(v * v, axis=1))


class _FAB(Attack):
    kind: ClassVar[str] = MINIMUM_NORM
    #: One target class at a time (FAB-T) or the nearest of all (FAB).
    over_targets: ClassVar[bool] = False

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        if params["bound"] is not None and params["norm"] == "linf" and params["bound"] > 1.0:
            raise ParameterError("bound must be between 0 and 1 in L-inf", field="bound")
        return params

    def _build(self, clf: Any, norm: str, targeted_grad: bool, to_goal: bool, p: dict) -> Any:
        t = tf()
        logits = fast_logits(clf)
        alpha_max, eta, beta = float(p["alpha_max"]), float(p["eta"]), float(p["beta"])
        ints = t.TensorSpec([None], t.int64)
        vec = t.TensorSpec([None], t.float32)
        flags = t.TensorSpec([None], t.bool)

        @kernel
        def toward_target(x1: Any, y: Any, target: Any) -> Any:
            """The logits, the target's lead over the label, its gradient (one backward pass)."""
            with t.GradientTape() as tape:
                tape.watch(x1)
                z = t.cast(logits(x1), t.float32)
                f = t.gather(z, target, axis=1, batch_dims=1) - t.gather(z, y, axis=1, batch_dims=1)
                total = t.reduce_sum(f)
            return z, f, tape.gradient(total, x1)

        @kernel
        def nearest(x1: Any, y: Any, target: Any) -> Any:
            """The closest of the nine linearised boundaries (ten gradients, one pass)."""
            n = t.shape(x1)[0]
            tiled = t.tile(x1, [10, 1, 1, 1])
            sel = t.repeat(t.range(10, dtype=t.int64), n)
            with t.GradientTape() as tape:
                tape.watch(tiled)
                z_all = t.cast(logits(tiled), t.float32)
                picked = t.reduce_sum(t.gather(z_all, sel, axis=1, batch_dims=1))
            jac = t.transpose(t.reshape(tape.gradient(picked, tiled), [10, n, 784]), [1, 0, 2])
            z = z_all[:n]
            onehot = t.one_hot(y, 10, dtype=t.float32)
            f = z - t.reduce_sum(z * onehot, axis=1, keepdims=True)
            g = jac - t.reduce_sum(jac * onehot[:, :, None], axis=1, keepdims=True)
            dual = t.reduce_sum(t.abs(g), axis=2) if norm == "linf" else t.norm(g, axis=2)
            dist = t.abs(f) / (dual + 1e-12) + onehot * 1e10
            pick = t.argmin(dist, axis=1)
            g_pick = t.reshape(t.gather(g, pick, axis=1, batch_dims=1), [-1, 28, 28, 1])
            return z, t.gather(f, pick, axis=1, batch_dims=1), g_pick

        linearise = toward_target if targeted_grad else nearest

        @t.function(input_signature=[image_spec(), ints, ints])
        def init_fn(x1: Any, y: Any, target: Any) -> Any:
            _, f, g = linearise(x1, y, target)
            return f, g

        @t.function(
            input_signature=[image_spec(), image_spec(), vec, flags, vec, image_spec(),
                             image_spec(), ints, ints, vec, t.TensorSpec([], t.int32)],
            reduce_retracing=True,
        )  # fmt: skip
        def steps_fn(x1, best, res, found, f, g, x0, y, target, bound, k):  # type: ignore[no-untyped-def]
            n = t.shape(x0)[0]
            x0f = t.reshape(x0, [n, 784])
            for _ in t.range(k):
                w = t.reshape(g, [n, 784])
                xf = t.reshape(x1, [n, 784])
                b = t.reduce_sum(w * xf, axis=1) - f
                d = box_projection(t, t.concat([xf, x0f], 0), t.concat([w, w], 0),
                                   t.concat([b, b], 0), norm)  # fmt: skip
                d1, d2 = d[:n], d[n:]
                a1 = t.maximum(_norm(t, d1, norm), 1e-8)
                a2 = t.maximum(_norm(t, d2, norm), 1e-8)
                alpha = t.clip_by_value(a1 / (a1 + a2), 0.0, alpha_max)[:, None]
                xf = t.clip_by_value((xf + eta * d1) * (1.0 - alpha) + (x0f + eta * d2) * alpha,
                                     0.0, 1.0)  # fmt: skip
                x1 = t.reshape(xf, [n, 28, 28, 1])
                # One pass gives the new point's label and the next step's linearisation;
                # only where it is adversarial (and steps back) is the latter taken again.
                z, f, g = linearise(x1, y, target)
                pred = t.argmax(z, axis=1)
                adv = t.equal(pred, target) if to_goal else t.not_equal(pred, y)
                size = _norm(t, xf - x0f, norm)
                better = adv & (size < res)
                best = t.where(better[:, None, None, None], x1, best)
                res = t.where(better, size, res)
                found = found | (better & (size <= bound))
                x1 = t.where(adv[:, None, None, None], x0 + (x1 - x0) * beta, x1)
                back = t.where(adv)[:, 0]

                def again(x1: Any = x1, f: Any = f, g: Any = g, back: Any = back) -> Any:
                    _, f_b, g_b = linearise(t.gather(x1, back), t.gather(y, back),
                                            t.gather(target, back))  # fmt: skip
                    return (t.tensor_scatter_nd_update(f, back[:, None], f_b),
                            t.tensor_scatter_nd_update(g, back[:, None], g_b))  # fmt: skip

                # (never on an empty batch: oneDNN's fused convolutions refuse one)
                f, g = t.cond(t.size(back) > 0, again, lambda f=f, g=g: (f, g))
            return x1, best, res, found, f, g

        return init_fn, steps_fn

    def _one_run(self, fns: Any, x: np.ndarray, y: np.ndarray, target: np.ndarray,
                 start: np.ndarray, bound: float, params: dict[str, Any], task: Task,
                 message: str, offset: int, grand: int) -> tuple[np.ndarray, ...]:  # fmt: skip
        """One run from ``start``: (best adversarial images or x, their norms: inf if none)."""
        t = tf()
        init_fn, steps_fn = fns
        n = len(x)
        out_x, out_res = x.copy(), np.full(n, np.inf, np.float32)
        f0, g0 = init_fn(t.constant(start), t.constant(y), t.constant(target))
        run = {
            "state": (t.constant(start), t.constant(x), t.fill([n], np.float32(np.inf)),
                      t.zeros([n], t.bool), f0, g0),
            "consts": (t.constant(x), t.constant(y), t.constant(target),
                       t.fill([n], np.float32(bound))),
            "pos": np.arange(n),
        }  # fmt: skip

        def settle(rows: np.ndarray) -> None:
            pos = run["pos"][rows]
            out_x[pos] = np.asarray(run["state"][1])[rows]
            out_res[pos] = np.asarray(run["state"][2])[rows]

        def step(_: Any, k: int) -> Any:
            done = np.asarray(run["state"][3])
            if done.any():  # within the bound: nothing more to find for these
                settle(np.flatnonzero(done))
                keep = t.constant(np.flatnonzero(~done))
                run["state"] = tuple(t.gather(s, keep) for s in run["state"])
                run["consts"] = tuple(t.gather(c, keep) for c in run["consts"])
                run["pos"] = run["pos"][np.asarray(keep)]
            if len(run["pos"]):
                run["state"] = steps_fn(*run["state"], *run["consts"], t.constant(k, t.int32))
            return None

        def stop(_: Any, done: int) -> bool:
            return bool(np.asarray(run["state"][3]).all())

        run_steps(step, None, params["steps"], progress=task.progress, cancel=task.cancel,
                  message=message, offset=offset, grand_total=grand, stop=stop,
                  info=lambda _: {"found": int(np.isfinite(out_res).sum())})  # fmt: skip
        settle(np.arange(len(run["pos"])))
        return out_x, out_res

    def run(self, clf: Any, x: np.ndarray, task: Task) -> Outcome:
        params = task.params
        norm, steps, restarts = params["norm"], params["steps"], params["restarts"]
        to_goal = task.goals is not None
        targeted_grad = self.over_targets or to_goal
        key = ("fab", norm, targeted_grad, to_goal, params["alpha_max"], params["eta"],
               params["beta"])  # fmt: skip
        fns = compiled(clf, key, lambda: self._build(clf, norm, targeted_grad, to_goal, params))
        bound = params["bound"]
        # Within a run an image leaves once within the bound (AutoAttack needs no smaller
        # example); without one every image is refined to the end. Across targets and
        # restarts, images already within the bound (or the reference's default) are skipped.
        radius = DEFAULT_EPS[norm] if bound is None else float(bound)
        leave = -1.0 if bound is None else float(bound)
        labels = task.labels.astype(np.int64)
        z = clf.logits(x)
        pred = z.argmax(axis=1)
        n = len(x)
        if to_goal:
            goals = task.goals.astype(np.int64)
            todo_mask = pred != goals
            plans = [goals]
        else:
            todo_mask = pred == labels
            order = np.argsort(-z, axis=1)
            ranks = range(2, params["targets"] + 2) if self.over_targets else [2]
            plans = [order[:, r - 1] for r in ranks]  # (unused by the nearest boundary)
        best = x.copy()
        res = np.full(n, np.inf, np.float32)
        rng = np.random.default_rng(params["seed"])
        runs = np.zeros(n, np.int64)
        grand = len(plans) * restarts * steps
        done = 0
        for p, plan in enumerate(plans):
            for r in range(restarts):
                todo = np.flatnonzero(todo_mask & ~(res <= radius))
                if len(todo) == 0:
                    break
                start = x[todo] if r == 0 else random_start(x[todo], rng, radius, norm, 0.5)
                what = f"target {p + 1} of {len(plans)}, " if len(plans) > 1 else ""
                x_run, res_run = self._one_run(
                    fns, x[todo], labels[todo], plan[todo].astype(np.int64), start, leave,
                    params, task, f"{self.name}: {what}restart {r + 1} of {restarts}", done, grand,
                )  # fmt: skip
                done += steps
                runs[todo] += 1
                better = res_run < res[todo]
                best[todo[better]] = x_run[better]
                res[todo[better]] = res_run[better]
        # Each step: one linearisation (a gradient, which also gives the label).
        return Outcome(
            best, steps=runs * steps, details=Details(min_norm=res, queries=runs * (steps + 1))
        )


def _spec(targets: bool) -> tuple[sp.Param, ...]:
    head = (
        sp.norm(),
        sp.steps(100),
        sp.restarts(1),
    )
    tail = (
        sp.Param("bound", None, lo=0.0, hi=28.0, optional=True, label="Bound", advanced=True,
                 help="none: the smallest example; else an image is done once within this "
                 "norm (also the radius of the restarts)"),
        sp.Param("alpha_max", 0.1, lo=0.0, hi=1.0, label="alpha max", advanced=True,
                 help="largest weight of the projection of the original image"),
        sp.Param("eta", 1.05, lo=1.0, hi=10.0, label="Overshoot eta", advanced=True,
                 help="extrapolation past the linearised boundary"),
        sp.Param("beta", 0.9, lo=0.0, hi=1.0, label="Backward step beta", advanced=True,
                 help="after a success, step back towards the original by this factor"),
        sp.seed(0),
    )  # fmt: skip
    return (*head, sp.targets(9), *tail) if targets else (*head, *tail)


@register
class FAB(_FAB):
    """FAB (Croce & Hein 2020): minimum-norm walk along the nearest linearised boundary."""

    name: ClassVar[str] = "fab"
    spec: ClassVar[tuple[sp.Param, ...]] = _spec(targets=False)


@register
class FABT(_FAB):
    """FAB-T: FAB towards each of the most likely other classes in turn (one gradient a step)."""

    name: ClassVar[str] = "fab-t"
    over_targets: ClassVar[bool] = True
    spec: ClassVar[tuple[sp.Param, ...]] = _spec(targets=True)
