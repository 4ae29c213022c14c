"""Square Attack (Andriushchenko et al., ECCV 2020): random search that needs only scores.

No gradient is ever taken, so a model that hides its gradient (a saturated softmax, an input
quantiser, anything non-differentiable) is attacked as well as any other: when Square breaks
points the white-box attacks did not, their figures overstate robustness.

Each query changes one random square of the current perturbation and keeps the change if the
logit margin z_y - max_{i != y} z_i fell (or the image is misclassified). The side of the
square shrinks with the query count: a share p of the pixels, p_init halved after 10, 50, 200,
500, 1000, 2000, 4000, 6000 and 8000 queries (AutoAttack's schedule, not rescaled to the
budget; ``rescale`` stretches it to the budget, as the paper's code and ART do).

- L-inf: starts from vertical stripes of +-eps; a square is set to one corner of the ball.
- L2: starts from a 5 x 5 grid of squares, each holding a pattern of concentric rings of
  opposite signs in its two halves; each query moves the mass of a second square into a new
  pattern in the first, so the perturbation stays on the sphere of radius eps.

Every image draws its own squares (the reference code shares one square per batch); the loop
is compiled, and images already broken leave the batch every :data:`COMPACT_EVERY` queries.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from advgui.core.attacks import spec as sp
from advgui.core.attacks.base import Attack, Details, Outcome, Task, register
from advgui.core.attacks.engine import (
    compiled,
    image_spec,
    normalized,
    run_steps,
    stateless_seed,
)
from advgui.core.attacks.spec import SCORE_BASED
from advgui.core.progress import Partial
from advgui.core.tfimport import tf

SIDE = 28
#: Broken images leave the batch at multiples of this many queries (a fixed rhythm: results
#: do not depend on how fast the machine is).
COMPACT_EVERY = 25
#: Query counts after which p halves (AutoAttack's schedule).
P_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_share(i: int, p_init: float, total: int | None = None) -> float:
    """Share of the pixels the square covers at query ``i`` (0-based); with ``total``, the
    schedule is stretched from 10,000 queries to ``total`` (the paper's code, ART)."""
    if total is not None:
        i = int(i / total * 10_000)
    halvings = sum(i > q for q in P_SCHEDULE)
    return p_init / 2**halvings


def side(i: int, p_init: float, norm: str, total: int | None = None) -> int:
    """Side of the square at query ``i`` (L2: odd and at least 3, so its pattern has a centre)."""
    s = round(math.sqrt(p_share(i, p_init, total) * SIDE * SIDE))
    if norm == "l2":
        s = max(s, 3)
        s += 1 - s % 2
    return max(1, min(s, SIDE))


def _rings(h: int, w: int) -> np.ndarray:
    """Concentric rectangles centred in an h x w block, the k-th weighted 1 / (k + 1)^2."""
    out = np.zeros((h, w))
    ch, cw = h // 2, w // 2
    for k in range(max(ch, cw) + 1):
        out[max(ch - k, 0) : ch + k + 1, max(cw - k, 0) : cw + k + 1] += 1.0 / (k + 1) ** 2
    return out / np.sqrt((out**2).sum())


def pattern(s: int) -> np.ndarray:
    """The L2 square's pattern: rings, positive in the top half, negative below; norm 1."""
    out = np.concatenate([_rings(s // 2, s), -_rings(s - s // 2, s)])
    return out / np.sqrt((out**2).sum())


def _l2_start(x: np.ndarray, rng: np.random.Generator, eps: float) -> np.ndarray:
    """A 5 x 5 grid of patterns with random signs (and orientation), scaled to L2 = eps."""
    n = len(x)
    s = SIDE // 5
    first = (SIDE - 5 * s) // 2
    base = pattern(s)
    delta = np.zeros((n, SIDE, SIDE))
    for a in range(5):
        for b in range(5):
            signs = rng.choice([-1.0, 1.0], size=(n, 1, 1))
            flip = rng.random(n) < 0.5
            tile = np.where(flip[:, None, None], base.T[None], base[None]) * signs
            r, c = first + a * s, first + b * s
            delta[:, r : r + s, c : c + s] = tile
    delta /= np.sqrt((delta**2).reshape(n, -1).sum(axis=1)).reshape(-1, 1, 1) + 1e-12
    return np.clip(x + eps * delta[..., None], 0.0, 1.0).astype(np.float32)


@register
class Square(Attack):
    """Square Attack: score-based random search (no gradients), 5,000 queries by default."""

    name: ClassVar[str] = "square"
    access: ClassVar[str] = SCORE_BASED
    spec: ClassVar[tuple[sp.Param, ...]] = (
        sp.Param("eps", 0.3, lo=0.0, hi=SIDE, label="Epsilon",
                 help="perturbation budget (L-inf: per pixel; L2: whole image)"),
        sp.queries(5000),
        sp.Param("p_init", 0.8, lo=1e-4, hi=1.0, label="Initial square share",
                 help="share of the pixels the first squares cover"),
        sp.norm(),
        sp.restarts(1),
        sp.Param("rescale", False, label="Rescale schedule", advanced=True,
                 help="shrink the squares on a schedule stretched to the budget (as ART) "
                 "instead of AutoAttack's fixed one"),
        sp.Param("loss", "margin", choices=("margin", "ce"), label="Loss", advanced=True,
                 help="what a query must lower: the logit margin or the cross-entropy"),
        sp.seed(0),
    )  # fmt: skip

    @classmethod
    def trace_axis(cls, params: dict[str, Any], targeted: bool) -> tuple[str, str, str] | None:
        y = "max other - z_goal" if targeted else "z_true - max other"
        return "logit margin (fooled below 0)", "queries", f"margin {y}"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        hi = 1.0 if params["norm"] == "linf" else SIDE
        params["eps"] = sp.eps(hi=hi).check(params["eps"])
        return params

    def _build(self, clf: Any, norm: str, loss: str, targeted: bool) -> Any:
        t = tf()
        model = clf.logits_model
        ints = t.TensorSpec([None], t.int64)
        vec = t.TensorSpec([None], t.float32)
        scalar = t.TensorSpec([], t.float32)
        idx = t.range(SIDE)

        def scores(xa: Any, cls: Any) -> tuple[Any, Any]:
            """(margin: > 0 while the attack has not succeeded, loss to lower)."""
            z = t.cast(model(xa, training=False), t.float32)
            onehot = t.one_hot(cls, 10, dtype=t.float32)
            z_cls = t.reduce_sum(z * onehot, axis=1)
            z_other = t.reduce_max(z - 1e9 * onehot, axis=1)
            m = z_other - z_cls if targeted else z_cls - z_other
            if loss == "margin":
                return m, m
            ce = t.nn.sparse_softmax_cross_entropy_with_logits(labels=cls, logits=z)
            return m, ce if targeted else -ce

        def window(r0: Any, c0: Any, s: Any) -> Any:
            rows = (idx[None, :] >= r0[:, None]) & (idx[None, :] < r0[:, None] + s)
            cols = (idx[None, :] >= c0[:, None]) & (idx[None, :] < c0[:, None] + s)
            both = rows[:, :, None] & cols[:, None, :]
            return t.cast(both, t.float32)[..., None]  # (N, 28, 28, 1)

        def corner(u: Any, s: Any) -> Any:
            """Random top-left rows or columns in [0, 28 - s) (0 when the square fills it)."""
            room = t.cast(t.maximum(SIDE - s, 1), t.float32)
            return t.cast(t.floor(u * room), t.int32)

        @t.function(input_signature=[image_spec(), ints])
        def score_fn(xa: Any, cls: Any) -> Any:
            return scores(xa, cls)

        def propose_linf(x_best: Any, x0: Any, eps: Any, s: Any, u: Any) -> Any:
            mask = window(corner(u[:, 0], s), corner(u[:, 1], s), s)
            sign = t.where(u[:, 2] < 0.5, -1.0, 1.0)[:, None, None, None]
            vertex = t.clip_by_value(x0 + sign * eps, 0.0, 1.0)
            return mask * vertex + (1.0 - mask) * x_best

        def propose_l2(x_best: Any, x0: Any, eps: Any, s: Any, pat: Any, u: Any) -> Any:
            r1, c1 = corner(u[:, 0], s), corner(u[:, 1], s)
            r2, c2 = corner(u[:, 2], s), corner(u[:, 3], s)
            m1, m2 = window(r1, c1, s), window(r2, c2, s)
            sign = t.where(u[:, 4] < 0.5, -1.0, 1.0)[:, None, None, None]
            # The pattern placed at (r1, c1), transposed for half of the images.
            dr = t.clip_by_value(idx[None, :] - r1[:, None], 0, SIDE - 1)  # (N, 28)
            dc = t.clip_by_value(idx[None, :] - c1[:, None], 0, SIDE - 1)
            flip = (u[:, 5] < 0.5)[:, None, None]
            first = t.where(flip, dc[:, None, :], dr[:, :, None])
            second = t.where(flip, dr[:, :, None], dc[:, None, :])
            placed = t.gather(t.reshape(pat, [-1]), first * SIDE + second)[..., None] * m1
            delta = x_best - x0

            def l2(v: Any) -> Any:
                return t.sqrt(t.reduce_sum(v * v, axis=[1, 2, 3], keepdims=True))

            old = delta * m1
            both = t.maximum(m1, m2)
            fresh = placed * sign + old / (l2(old) + 1e-12)
            room = t.maximum(eps * eps - t.square(l2(delta)), 0.0) + t.square(l2(delta * both))
            fresh = fresh / (l2(fresh) + 1e-12) * t.sqrt(room)
            delta = delta * (1.0 - both) + fresh
            return t.clip_by_value(x0 + normalized(t, delta, "l2") * eps, 0.0, 1.0)

        @t.function(
            input_signature=[image_spec(), vec, vec, t.TensorSpec([None], t.int32),
                             image_spec(), ints, scalar, t.TensorSpec([], t.int64),
                             t.TensorSpec([], t.int32), t.TensorSpec([], t.int32),
                             t.TensorSpec([None], t.int32), t.TensorSpec([None], t.int32),
                             t.TensorSpec([None, SIDE, SIDE], t.float32)],
            reduce_retracing=True,
        )  # fmt: skip
        def steps_fn(
            x_best,
            margin_min,
            loss_min,
            queries,
            x0,
            cls,
            eps,
            seed,
            it0,
            k,
            sides,
            which,
            patterns,
        ):  # type: ignore[no-untyped-def]
            n = t.shape(x0)[0]
            for i in t.range(k):
                it = it0 + i
                s = sides[it]
                u = t.random.stateless_uniform([n, 6], seed=stateless_seed(t, seed, it, 1))
                if norm == "linf":
                    x_new = propose_linf(x_best, x0, eps, s, u)
                else:
                    x_new = propose_l2(x_best, x0, eps, s, patterns[which[it]], u)
                m, lv = scores(x_new, cls)
                active = margin_min > 0.0
                better = active & ((lv < loss_min) | (m <= 0.0))
                loss_min = t.where(active & (lv < loss_min), lv, loss_min)
                margin_min = t.where(better, m, margin_min)
                x_best = t.where(better[:, None, None, None], x_new, x_best)
                queries = queries + t.cast(active, t.int32)
            return x_best, margin_min, loss_min, queries

        return score_fn, steps_fn

    def _schedule(self, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per query: the square's side, and for L2 the index of its pattern."""
        total, p_init, norm = params["queries"], params["p_init"], params["norm"]
        stretch = total if params["rescale"] else None
        sides = np.array([side(i, p_init, norm, stretch) for i in range(total)], np.int32)
        distinct = sorted(set(sides.tolist()))
        patterns = np.zeros((len(distinct), SIDE, SIDE), np.float32)
        if norm == "l2":
            for j, s in enumerate(distinct):
                patterns[j, :s, :s] = pattern(s)
        which = np.searchsorted(distinct, sides).astype(np.int32)
        return sides, which, patterns

    def run(self, clf: Any, x: np.ndarray, task: Task) -> Outcome:
        t = tf()
        params = task.params
        targeted = task.goals is not None
        norm, total, restarts = params["norm"], params["queries"], params["restarts"]
        key = ("square", norm, params["loss"], targeted)
        score_fn, steps_fn = compiled(
            clf, key, lambda: self._build(clf, norm, params["loss"], targeted)
        )
        cls_np = (task.goals if targeted else task.labels).astype(np.int64)
        sides, which, patterns = (t.constant(a) for a in self._schedule(params))
        eps = params["eps"]
        eps_t = t.constant(eps, t.float32)
        rng = np.random.default_rng(params["seed"])
        n = len(x)
        best = x.copy()
        margin = np.array(score_fn(t.constant(x), t.constant(cls_np))[0])
        queries = np.ones(n, np.int64)
        trace = [[1.0, float(margin[0])]]  # the first image's margin against its queries
        grand = total * restarts
        for r in range(restarts):
            todo = np.flatnonzero(margin > 0.0)
            if len(todo) == 0 or eps == 0:
                break
            x0 = x[todo]
            if norm == "linf":
                stripes = rng.choice([-eps, eps], size=(len(todo), 1, SIDE, 1))
                start = np.clip(x0 + stripes, 0.0, 1.0).astype(np.float32)
            else:
                start = _l2_start(x0, rng, eps)
            cls = t.constant(cls_np[todo])
            m0, l0 = score_fn(t.constant(start), cls)
            run = {
                "state": (t.constant(start), m0, l0, t.ones([len(todo)], t.int32)),
                "consts": (t.constant(x0), cls),
                "pos": np.arange(len(todo)),
                "it": 0,
            }
            out = {"x": start.copy(), "m": np.asarray(m0).copy(), "q": np.ones(len(todo), np.int64)}
            seed = t.constant(int(params["seed"]) * 1000 + r, t.int64)

            def settle(rows: np.ndarray, run: dict = run, out: dict = out) -> None:
                pos = run["pos"][rows]
                st = run["state"]
                out["x"][pos] = np.asarray(st[0])[rows]
                out["m"][pos] = np.asarray(st[1])[rows]
                out["q"][pos] = np.asarray(st[3])[rows]

            def step(
                _: Any,
                k: int,
                run: dict = run,
                settle: Any = settle,
                seed: Any = seed,
                out: dict = out,
                first_in: bool = bool(todo[0] == 0),
            ) -> Any:
                if run["it"] % COMPACT_EVERY == 0:
                    done = np.asarray(run["state"][1]) <= 0.0
                    if done.any():
                        settle(np.flatnonzero(done))
                        keep = np.flatnonzero(~done)
                        kt = t.constant(keep)
                        run["state"] = tuple(t.gather(s, kt) for s in run["state"])
                        run["consts"] = tuple(t.gather(c, kt) for c in run["consts"])
                        run["pos"] = run["pos"][keep]
                if len(run["pos"]):
                    run["state"] = steps_fn(
                        *run["state"], *run["consts"], eps_t, seed,
                        t.constant(run["it"], t.int32), t.constant(k, t.int32),
                        sides, which, patterns,
                    )  # fmt: skip
                run["it"] += k
                if first_in:  # the first image is in this restart: where it stands now
                    rows = np.flatnonzero(run["pos"] == 0)
                    st = run["state"]
                    if len(rows):
                        m_now, q_now = float(st[1][rows[0]]), int(st[3][rows[0]])
                    else:
                        m_now, q_now = float(out["m"][0]), int(out["q"][0])
                    point = [float(queries[0] + q_now), min(m_now, float(margin[0]))]
                    if point != trace[-1]:
                        trace.append(point)
                return None

            def stop(_: Any, done: int, run: dict = run) -> bool:
                return not (np.asarray(run["state"][1]) > 0.0).any()

            run_steps(
                step, None, total, progress=task.progress, cancel=task.cancel,
                message=f"square: restart {r + 1} of {restarts}", offset=r * total,
                grand_total=grand, stop=stop, boundary=COMPACT_EVERY,
                info=lambda _, run=run: {"robust": int((np.asarray(run["state"][1]) > 0).sum())},
                partial=lambda _: Partial(trace=list(trace)),
            )  # fmt: skip
            settle(np.arange(len(run["pos"])))
            queries[todo] += out["q"]
            better = out["m"] < margin[todo]
            best[todo[better]] = out["x"][better]
            margin[todo[better]] = out["m"][better]
        return Outcome(best, steps=queries - 1,
                       details=Details(queries=queries, margin=-margin, trace=trace))  # fmt: skip
