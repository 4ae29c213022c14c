"""HopSkipJump (Chen, Jordan & Wainwright, IEEE S&P 2020): needs only the predicted label.

From any misclassified starting point (random noise, shrunk towards the image by a binary
search), each iteration walks back to the decision boundary by binary search, estimates the
boundary's normal there from the labels of ``100 * sqrt(t)`` random probes (at most
``max_evals``), and steps along it by a geometric search that halves the step until the point
is adversarial again. A decision-based attack is immune to any masking of gradients or scores:
it is the last word on whether a model only looks robust.

As in ART 1.20 (and the authors' code): the probe radius delta is 0.1 at first, then
sqrt(d) theta times the distance (L2) or d theta times it (L-inf), theta = 0.01 / sqrt(d)
(L2) or 0.01 / d; the binary searches stop at theta (the first one, from the random start, at
0.001); the step starts at 2 distance / sqrt(t + 1).

Every image of the batch runs the same schedule at once: the binary searches are a fixed
number of halvings, the probes of many images go through the model together, and the
geometric search runs for all images until each has its step.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from advgui.core.attacks import spec as sp
from advgui.core.attacks.base import Attack, Details, Outcome, Task, register
from advgui.core.attacks.engine import compiled, image_spec, run_steps, stateless_seed
from advgui.core.attacks.spec import DECISION_BASED, MINIMUM_NORM
from advgui.core.progress import Partial
from advgui.core.tfimport import tf

DIM = 784
#: Probes of the model per compiled call of the gradient estimate (bounds memory).
PROBES_PER_CALL = 16384
#: The geometric step search gives up after this many halvings (the step is then 2^-30 of it).
MAX_HALVINGS = 30


@register
class HopSkipJump(Attack):
    """HopSkipJump: decision-based (labels only) minimum-norm attack, L2 or L-inf."""

    name: ClassVar[str] = "hsj"
    kind: ClassVar[str] = MINIMUM_NORM
    access: ClassVar[str] = DECISION_BASED
    takes_starts: ClassVar[bool] = True
    spec: ClassVar[tuple[sp.Param, ...]] = (
        sp.norm("l2"),
        sp.steps(50, hi=10_000),
        sp.Param("max_evals", 10_000, lo=1, hi=1_000_000, integer=True, label="Max probes",
                 help="most label queries of one gradient estimate"),
        sp.Param("init_evals", 100, lo=1, hi=100_000, integer=True, label="Initial probes",
                 help="label queries of the first gradient estimate (then x sqrt(iteration))"),
        sp.Param("init_size", 100, lo=1, hi=100_000, integer=True, label="Start tries",
                 advanced=True, help="random images tried to find a misclassified start"),
        sp.seed(0),
    )  # fmt: skip

    @classmethod
    def trace_axis(cls, params: dict[str, Any], targeted: bool) -> tuple[str, str, str] | None:
        # Labels only: there is no margin to see, the distance to the image is what falls.
        norm = "L2" if params.get("norm") == "l2" else "Linf"
        return f"{norm} distance to the image (labels only)", "label queries", f"{norm} distance"

    def _build(self, clf: Any, norm: str, targeted: bool) -> Any:
        t = tf()
        model = clf.logits_model
        ints = t.TensorSpec([None], t.int64)
        vec = t.TensorSpec([None], t.float32)
        i32 = t.TensorSpec([], t.int32)
        seed_spec = t.TensorSpec([], t.int64)

        def adversarial(xa: Any, cls: Any) -> Any:
            pred = t.argmax(model(t.clip_by_value(xa, 0.0, 1.0), training=False), axis=1)
            return t.equal(pred, cls) if targeted else t.not_equal(pred, cls)

        @t.function(input_signature=[image_spec(), ints])
        def decide(xa: Any, cls: Any) -> Any:
            return adversarial(xa, cls)

        def blend(x0: Any, xa: Any, a: Any, how: str) -> Any:
            a4 = a[:, None, None, None]
            if how == "l2":
                return (1.0 - a4) * x0 + a4 * xa
            return t.clip_by_value(xa, x0 - a4, x0 + a4)

        def make_bsearch(how: str) -> Any:
            @t.function(input_signature=[image_spec(), image_spec(), ints, vec, i32])
            def bsearch(x0: Any, xa: Any, cls: Any, high: Any, k: Any) -> Any:
                """``k`` halvings of [0, high] towards the boundary; the adversarial end."""
                low = t.zeros_like(high)
                for _ in t.range(k):
                    mid = (low + high) / 2.0
                    ok = adversarial(blend(x0, xa, mid, how), cls)
                    high = t.where(ok, mid, high)
                    low = t.where(ok, low, mid)
                return blend(x0, xa, high, how)

            return bsearch

        @t.function(input_signature=[image_spec(), vec, ints, i32, seed_spec])
        def estimate(xb: Any, delta: Any, cls: Any, m: Any, seed: Any) -> Any:
            """The boundary's normal at ``xb`` from the labels of ``m`` probes per image."""
            n = t.shape(xb)[0]
            shape = t.stack([n, m, 28, 28, 1])
            if norm == "l2":
                u = t.random.stateless_normal(shape, seed=stateless_seed(t, seed, 0, 2))
            else:
                u = t.random.stateless_uniform(shape, seed=stateless_seed(t, seed, 0, 3),
                                               minval=-1.0, maxval=1.0)  # fmt: skip
            u = u / t.sqrt(t.reduce_sum(u * u, axis=[2, 3, 4], keepdims=True))
            d5 = delta[:, None, None, None, None]
            probes = t.clip_by_value(xb[:, None] + d5 * u, 0.0, 1.0)
            u = (probes - xb[:, None]) / d5
            flat = t.reshape(probes, [-1, 28, 28, 1])
            ok = adversarial(flat, t.repeat(cls, m))
            phi = t.reshape(2.0 * t.cast(ok, t.float32) - 1.0, [n, m, 1, 1, 1])
            mean = t.reduce_mean(phi, axis=1, keepdims=True)
            uniform = t.abs(mean) == 1.0  # all probes agree: no baseline to subtract
            centred = t.where(uniform, phi, phi - mean)
            return t.reduce_mean(centred * u, axis=1)

        @t.function(input_signature=[image_spec(), image_spec(), vec, ints])
        def geometric(xb: Any, update: Any, step: Any, cls: Any) -> Any:
            """Halve the step until ``xb + step * update`` is adversarial (per image)."""
            n = t.shape(xb)[0]
            found = t.zeros([n], t.bool)
            tries = t.zeros([n], t.int32)
            out = xb
            for _ in t.range(MAX_HALVINGS):
                if t.reduce_all(found):
                    break
                step = t.where(found, step, step / 2.0)
                cand = t.clip_by_value(xb + step[:, None, None, None] * update, 0.0, 1.0)
                ok = adversarial(cand, cls) & ~found
                tries = tries + t.cast(~found, t.int32)
                out = t.where(ok[:, None, None, None], cand, out)
                found = found | ok
            return out, tries

        searches = {"l2": make_bsearch("l2"), "linf": make_bsearch("linf")}
        return decide, searches, estimate, geometric

    def run(self, clf: Any, x: np.ndarray, task: Task) -> Outcome:
        t = tf()
        params = task.params
        norm = params["norm"]
        targeted = task.goals is not None
        decide, searches, estimate, geometric = compiled(
            clf, ("hsj", norm, targeted), lambda: self._build(clf, norm, targeted)
        )
        cls_np = (task.goals if targeted else task.labels).astype(np.int64)
        n = len(x)
        rng = np.random.default_rng(params["seed"])
        queries = np.zeros(n, np.int64)
        best = x.copy()
        start_ok = np.asarray(decide(t.constant(x), t.constant(cls_np)))
        queries += 1
        dist = np.where(start_ok, 0.0, np.inf).astype(np.float32)
        # A misclassified start: the caller's where it is one, else random noise (already
        # adversarial images stay as they are).
        x_adv = x.copy()
        found = start_ok.copy()
        if task.starts is not None:
            todo = np.flatnonzero(~found)
            ok = np.asarray(decide(t.constant(task.starts[todo]), t.constant(cls_np[todo])))
            queries[todo] += 1
            x_adv[todo[ok]] = task.starts[todo[ok]]
            found[todo[ok]] = True
        for _ in range(params["init_size"]):
            todo = np.flatnonzero(~found)
            if len(todo) == 0:
                break
            noise = rng.uniform(0.0, 1.0, size=(len(todo), 28, 28, 1)).astype(np.float32)
            ok = np.asarray(decide(t.constant(noise), t.constant(cls_np[todo])))
            queries[todo] += 1
            x_adv[todo[ok]] = noise[ok]
            found[todo[ok]] = True
        live = np.flatnonzero(found & ~start_ok)
        if len(live) == 0:
            return Outcome(best, steps=0, details=Details(min_norm=dist, queries=queries))
        theta = 0.01 / math.sqrt(DIM) if norm == "l2" else 0.01 / DIM
        x0 = t.constant(x[live])
        cls = t.constant(cls_np[live])
        init_k = math.ceil(math.log2(1.0 / 0.001))
        cur = searches["l2"](x0, t.constant(x_adv[live]), cls, t.ones([len(live)]),
                             t.constant(init_k, t.int32))  # fmt: skip
        queries[live] += init_k
        x0_np = x[live]
        state = {"cur": np.asarray(cur), "it": 0}

        def measure(xa: np.ndarray) -> np.ndarray:
            d = (xa - x0_np).reshape(len(xa), -1).astype(np.float64)
            return np.abs(d).max(axis=1) if norm == "linf" else np.sqrt((d * d).sum(axis=1))

        trace: list[list[float]] = []  # the first image's distance against its queries

        def note() -> None:
            if live[0] == 0:
                d = (state["cur"][0] - x0_np[0]).astype(np.float64).ravel()
                dist0 = np.abs(d).max() if norm == "linf" else np.sqrt((d * d).sum())
                trace.append([float(queries[0]), float(dist0)])

        note()

        def one_iteration() -> None:
            it = state["it"]
            cur_np = state["cur"]
            d_now = measure(cur_np)
            if it == 0:
                delta = np.full(len(live), 0.1, np.float32)
            else:
                scale = math.sqrt(DIM) * theta if norm == "l2" else DIM * theta
                delta = (scale * d_now).astype(np.float32)
            delta = np.maximum(delta, 1e-8)
            # Back to the boundary.
            if norm == "l2":
                high, k = np.ones(len(live), np.float32), math.ceil(math.log2(1.0 / theta))
            else:
                high = d_now.astype(np.float32)
                k = math.ceil(math.log2(1.0 / theta))  # threshold high * theta (high <= 1)
            xb = searches[norm](x0, t.constant(cur_np), cls, t.constant(high),
                                t.constant(k, t.int32))  # fmt: skip
            queries[live] += k
            # The boundary's normal from random probes, a block of images at a time.
            m = min(int(params["init_evals"] * math.sqrt(it + 1)), params["max_evals"])
            block = max(1, PROBES_PER_CALL // m)
            xb_np = np.asarray(xb)
            grads = []
            for s in range(0, len(live), block):
                seed = t.constant(int(params["seed"]) * 1_000_003 + it * 1009 + s, t.int64)
                grads.append(np.asarray(estimate(
                    t.constant(xb_np[s : s + block]), t.constant(delta[s : s + block]),
                    cls[s : s + block], t.constant(m, t.int32), seed,
                )))  # fmt: skip
            queries[live] += m
            g = np.concatenate(grads)
            if norm == "l2":
                update = g / (np.sqrt((g.astype(np.float64) ** 2).reshape(len(g), -1).sum(1))
                              .reshape(-1, 1, 1, 1) + 1e-12)  # fmt: skip
            else:
                update = np.sign(g)
            d_b = measure(xb_np)
            step = (2.0 * d_b / math.sqrt(it + 1)).astype(np.float32)
            new, tries = geometric(xb, t.constant(update.astype(np.float32)), t.constant(step),
                                   cls)  # fmt: skip
            queries[live] += np.asarray(tries)
            state["cur"] = np.asarray(new)
            state["it"] = it + 1
            note()

        def step_fn(_: Any, k: int) -> Any:
            for _ in range(k):
                one_iteration()
            return None

        run_steps(step_fn, None, params["steps"], progress=task.progress, cancel=task.cancel,
                  message="hsj", info=lambda _: {"median_dist": float(np.median(
                      measure(state["cur"])))},
                  partial=lambda _: Partial(trace=list(trace)) if trace else None)  # fmt: skip
        final = state["cur"]
        ok = np.asarray(decide(t.constant(final), cls))
        best[live[ok]] = final[ok]
        dist[live[ok]] = measure(final)[ok]
        return Outcome(
            best, steps=np.where(found, state["it"], 0),
            details=Details(min_norm=dist, queries=queries, trace=trace or None),
        )  # fmt: skip
