"""Randomized smoothing (Cohen, Rosenfeld & Kolter 2019): a certified L2 radius per image.

The smoothed classifier g(x) is the class the base classifier f picks most often under
Gaussian noise N(0, sigma^2 I). Cohen et al.'s two procedures, as in their reference code
(``code/core.py`` of locuslab/smoothing):

- PREDICT: count f's classes over ``n`` noisy copies; return the top class if a two-sided
  binomial test of its count against the runner-up's rejects "equally likely" at ``alpha``,
  else abstain.
- CERTIFY: guess the top class from ``n0`` draws, count it over ``n`` fresh draws, take the
  one-sided (1 - alpha) Clopper-Pearson lower bound pA of its probability; if pA > 1/2,
  g is constant within L2 radius ``sigma * Phi^-1(pA)`` of x with probability 1 - alpha, else
  abstain. An abstention counts as wrong.

Noise is added without clipping to [0, 1], as in the reference (the theorem holds in R^d).
Counting runs in one compiled function per chunk of noisy copies; progress and Stop between
chunks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from advgui.core.errors import ParameterError
from advgui.core.params import check_number
from advgui.core.progress import CancelToken, Progress, ProgressCallback, check
from advgui.core.tfimport import tf

ABSTAIN = -1
#: Noisy copies per compiled call: big enough to keep the CPU's vector units busy, small
#: enough that Stop answers within a fraction of a second.
CHUNK = 4096
#: Images sharing one call's noise draws (see :func:`_count_fn`).
SHARE = 8
#: Certified accuracy is reported at these L2 radii unless others are asked for.
DEFAULT_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


def lower_confidence_bound(n_a: np.ndarray | int, n: int, alpha: float) -> np.ndarray:
    """One-sided (1 - alpha) Clopper-Pearson lower bound of a binomial proportion, as the
    reference's ``proportion_confint(NA, N, alpha=2 * alpha, method="beta")[0]``: the
    ``alpha`` quantile of Beta(nA, n - nA + 1), and 0 where nA is 0."""
    from scipy.stats import beta

    k = np.asarray(n_a, np.float64)
    with np.errstate(invalid="ignore"):
        lo = beta.ppf(alpha, k, n - k + 1)
    return np.where(k > 0, np.nan_to_num(lo, nan=0.0), 0.0)


@dataclass(frozen=True)
class SmoothingConfig:
    """The settings of a certification (defaults: the issue's and Cohen et al.'s)."""

    sigma: float = 0.5
    n0: int = 100
    n: int = 100_000
    alpha: float = 0.001
    seed: int = 0
    chunk: int = CHUNK

    def validate(self) -> SmoothingConfig:
        check_number("sigma", self.sigma, lo=1e-3, hi=10.0)
        check_number("n0", self.n0, lo=1, hi=10_000_000, integer=True)
        check_number("n", self.n, lo=1, hi=100_000_000, integer=True)
        check_number("alpha", self.alpha, lo=1e-12, hi=0.5)
        check_number("chunk", self.chunk, lo=1, hi=1_000_000, integer=True)
        return self


def _count_fn(clf: Any, sigma: float, independent: bool = False) -> Callable[..., Any]:
    """A compiled ``(x (G, 28, 28, 1), m, seed (2,)) -> (G, classes)`` counts of f's
    predictions over ``m`` noisy copies of each image; kept in the classifier's cache.

    The G images of a call share its ``m`` noise draws: drawing the noise took 40% of a call
    when each image had its own (Philox normals cost about as much as the small CNN's
    forward pass here). Each image's samples stay independent N(0, sigma^2 I) draws (every
    call has its own seed), which is all its certificate needs; only the certificates of
    images of one call are correlated, which leaves each one's 1 - alpha guarantee and the
    expected certified accuracy as they are. ``independent``: every image draws its own
    noise (the empirical check's votes, whose tolerance counts on independent misses)."""
    from advgui.core.attacks.engine import compiled

    model = clf.logits_model

    def build() -> Any:
        t = tf()

        @t.function(
            input_signature=[
                t.TensorSpec([None, 28, 28, 1], t.float32),
                t.TensorSpec([], t.int32),
                t.TensorSpec([2], t.int64),
            ],
            autograph=False,
        )
        def count(x: Any, m: Any, seed: Any) -> Any:
            g = t.shape(x)[0]
            draws = t.concat([[g if independent else 1, m], t.shape(x)[1:]], 0)
            noise = t.random.stateless_normal(draws, seed, dtype=t.float32)
            batch = t.reshape(x[:, None] + sigma * noise, t.concat([[g * m], t.shape(x)[1:]], 0))
            z = model(batch, training=False)
            pred = t.argmax(z, axis=1, output_type=t.int32)
            onehot = t.one_hot(pred, t.shape(z)[1], dtype=t.int32)
            return t.reduce_sum(t.reshape(onehot, [g, m, -1]), axis=1)

        return count

    key = ("smoothing-counts", id(model), float(sigma), bool(independent))
    return compiled(clf, key, build)


class Sampler:
    """Counts of the base classifier's classes under noise, for many images at once, with
    progress in noisy copies and Stop between compiled calls."""

    def __init__(
        self,
        clf: Any,
        sigma: float,
        *,
        seed: int = 0,
        chunk: int = CHUNK,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        total: int = 0,
        message: str = "smoothing",
        independent: bool = False,
    ) -> None:
        self.fn = _count_fn(clf, float(sigma), independent)
        self.seed = int(seed)
        self.chunk = int(chunk)
        self.progress = progress
        self.cancel = cancel
        self.total = max(1, int(total))
        self.done = 0
        self.message = message
        self._calls = 0
        self._last = 0.0

    def counts(self, x: np.ndarray, n: int) -> np.ndarray:
        """(len(x), classes) counts over ``n`` noisy copies of each image."""
        x = np.asarray(x, np.float32).reshape(-1, 28, 28, 1)
        share = max(1, min(len(x), SHARE))
        m = max(1, min(int(n), self.chunk // share))
        group = max(1, self.chunk // m)
        out = None
        for lo in range(0, len(x), group):
            xg = x[lo : lo + group]
            left = int(n)
            acc = None
            while left > 0:
                check(self.cancel)
                k = min(m, left)
                seed = np.array([self.seed, self._calls], np.int64)
                self._calls += 1
                c = self.fn(xg, np.int32(k), seed).numpy().astype(np.int64)
                acc = c if acc is None else acc + c
                left -= k
                self.done += k * len(xg)
                self._report()
            out = acc if out is None else np.concatenate([out, acc])
        return out if out is not None else np.zeros((0, 10), np.int64)

    def _report(self) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self._last >= 0.2 or self.done >= self.total:
            self._last = now
            self.progress(Progress(min(self.done, self.total), self.total, self.message))


@dataclass(frozen=True)
class Certificate:
    """CERTIFY's answer per image: the class (-1: abstain), the certified L2 radius (0 when
    abstaining), the lower bound pA and whether it is the true class."""

    prediction: np.ndarray
    radius: np.ndarray
    p_lower: np.ndarray
    correct: np.ndarray
    config: SmoothingConfig
    seconds: float

    def certified_accuracy(self, radii: Sequence[float] = DEFAULT_RADII) -> list[float]:
        """Share of images certified correct with a radius of at least each ``r`` (Cohen's
        ``analyze``: abstentions and wrong classes count as not certified)."""
        if not len(self.radius):
            return [math.nan for _ in radii]
        return [float(np.mean(self.correct & (self.radius >= float(r)))) for r in radii]

    def record(self, radii: Sequence[float] = DEFAULT_RADII) -> dict[str, Any]:
        cfg = self.config
        return {
            "method": "smoothing",
            "norm": "l2",
            "sigma": cfg.sigma,
            "n0": cfg.n0,
            "n_samples": cfg.n,
            "alpha": cfg.alpha,
            "seed": cfg.seed,
            "radii": [float(r) for r in radii],
            "certified_accuracy": self.certified_accuracy(radii),
            "abstain_rate": float(np.mean(self.prediction == ABSTAIN)) if len(self.radius) else 0,
            "prediction": [int(p) for p in self.prediction],
            "radius": [float(r) for r in self.radius],
            "correct": [int(c) for c in self.correct],
            "seconds": self.seconds,
        }


def certify(
    clf: Any,
    x: np.ndarray,
    y: np.ndarray,
    config: SmoothingConfig | None = None,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Certificate:
    """Cohen et al.'s CERTIFY for every image of ``x`` (see the module's docstring)."""
    from scipy.stats import norm

    cfg = (config or SmoothingConfig()).validate()
    t0 = time.perf_counter()
    x = np.asarray(x, np.float32).reshape(-1, 28, 28, 1)
    y = np.asarray(y, np.int64)
    sampler = Sampler(
        clf, cfg.sigma, seed=cfg.seed, chunk=cfg.chunk, progress=progress, cancel=cancel,
        total=len(x) * (cfg.n0 + cfg.n), message=f"certifying (sigma {cfg.sigma:g})",
    )  # fmt: skip
    guess = sampler.counts(x, cfg.n0).argmax(axis=1)
    counts = sampler.counts(x, cfg.n)
    n_a = counts[np.arange(len(x)), guess]
    p_a = lower_confidence_bound(n_a, cfg.n, cfg.alpha)
    ok = p_a > 0.5
    pred = np.where(ok, guess, ABSTAIN)
    radius = np.where(ok, cfg.sigma * norm.ppf(np.clip(p_a, 0.5, 1.0)), 0.0)
    return Certificate(pred, radius, p_a, pred == y, cfg, time.perf_counter() - t0)


def predict(
    clf: Any,
    x: np.ndarray,
    config: SmoothingConfig | None = None,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """Cohen et al.'s PREDICT: g's class per image, or -1 (abstain) where the binomial test of
    the top two counts does not reject equality at ``alpha``."""
    from scipy.stats import binomtest

    cfg = (config or SmoothingConfig()).validate()
    x = np.asarray(x, np.float32).reshape(-1, 28, 28, 1)
    sampler = Sampler(
        clf, cfg.sigma, seed=cfg.seed + 1, chunk=cfg.chunk, progress=progress, cancel=cancel,
        total=len(x) * cfg.n, message=f"smoothed prediction (sigma {cfg.sigma:g})",
    )  # fmt: skip
    counts = sampler.counts(x, cfg.n)
    top2 = np.argsort(-counts, axis=1, kind="stable")[:, :2]
    out = np.full(len(x), ABSTAIN, np.int64)
    for i, (a, b) in enumerate(top2):
        n_a, n_b = int(counts[i, a]), int(counts[i, b])
        if n_a + n_b and binomtest(n_a, n_a + n_b, 0.5).pvalue <= cfg.alpha:
            out[i] = a
    return out


def parse_radii(text: str) -> tuple[float, ...]:
    """``"0,0.5,1,2"`` -> sorted L2 radii (non-negative, finite)."""
    parts = [p for p in str(text).replace(";", ",").split(",") if p.strip()]
    try:
        values = sorted({float(p) for p in parts})
    except ValueError:
        raise ParameterError(
            f"radii must be numbers separated by commas, got {text!r}", field="radii"
        ) from None
    if not values or any(not math.isfinite(v) or v < 0 or v > 100 for v in values):
        raise ParameterError(f"radii must be between 0 and 100, got {text!r}", field="radii")
    return tuple(values)


def _attack_step(clf: Any, sigma: float, samples: int) -> Callable[..., Any]:
    """One compiled SmoothAdv step (see :func:`attack_l2`), kept in the classifier's cache:
    the empirical check calls it for every batch and radius."""
    from advgui.core.attacks.engine import compiled

    model = clf.logits_model

    def build() -> Any:
        t = tf()

        @t.function(autograph=False, reduce_retracing=True)
        def step(xa: Any, x0: Any, yy: Any, r: Any, size: Any, seed_: Any) -> Any:
            n = t.shape(xa)[0]
            with t.GradientTape() as tape:
                tape.watch(xa)
                batch = t.repeat(xa, samples, axis=0)
                noise = t.random.stateless_normal(t.shape(batch), seed_, dtype=t.float32)
                p = t.nn.softmax(model(batch + sigma * noise, training=False))
                mean = t.reduce_mean(t.reshape(p, [n, samples, -1]), axis=1)
                loss = -t.reduce_sum(t.math.log(t.gather(mean, yy, batch_dims=1) + 1e-12))
            g = tape.gradient(loss, xa)
            norm = t.sqrt(t.reduce_sum(g * g, axis=[1, 2, 3], keepdims=True)) + 1e-12
            xa = xa + size[:, None, None, None] * g / norm
            d = xa - x0
            dn = t.sqrt(t.reduce_sum(d * d, axis=[1, 2, 3], keepdims=True)) + 1e-12
            d = d * t.minimum(1.0, r[:, None, None, None] / dn)
            return t.clip_by_value(x0 + d, 0.0, 1.0)

        return step

    return compiled(clf, ("smoothadv-step", id(model), float(sigma), int(samples)), build)


def attack_l2(
    clf: Any,
    x: np.ndarray,
    y: np.ndarray,
    sigma: float,
    eps: float | np.ndarray,
    *,
    steps: int = 20,
    samples: int = 64,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """PGD in L2 against the smoothed classifier itself (Salman et al. 2019's SmoothAdv): each
    step ascends the cross-entropy of f's softmax averaged over ``samples`` noise draws (EOT),
    normalised L2 steps of 2.5 eps / steps, projected on the ball of ``eps`` (one per image
    allowed) and the pixel range. The empirical check of a certificate: inside the certified
    radius it must not change g's class. Progress per step, Stop between steps."""
    t = tf()
    step = _attack_step(clf, float(sigma), int(samples))
    x = np.asarray(x, np.float32).reshape(-1, 28, 28, 1)
    radius = np.broadcast_to(np.asarray(eps, np.float32), (len(x),)).copy()
    x0 = t.constant(x)
    yy = t.constant(np.asarray(y, np.int64))
    r = t.constant(radius)
    size = t.constant(2.5 * radius / steps)
    xa = x0
    for i in range(int(steps)):
        check(cancel)
        xa = step(xa, x0, yy, r, size, t.constant([seed, i], t.int64))
        if progress is not None:
            progress(Progress(i + 1, int(steps), "SmoothAdv PGD-L2"))
    # A last projection in float64 terms: rounding must not leave the ball.
    out = xa.numpy()
    d = (out - x).reshape(len(x), -1)
    dn = np.linalg.norm(d.astype(np.float64), axis=1)
    scale = np.minimum(1.0, radius / np.maximum(dn, 1e-12))
    out = np.clip(x + (d * scale[:, None]).reshape(x.shape), 0.0, 1.0).astype(np.float32)
    return out


#: Chernoff tail below which a certified-over-empirical gap is no longer Monte-Carlo luck.
CHECK_LEVEL = 1e-3


def miss_tolerance(expected: float, m: int) -> float:
    """The most images (as a share of ``m``) that sound certificates can lose to the check's
    own Monte Carlo, ``expected`` of them on average: the largest k whose Chernoff bound
    P(K >= k) <= e^-mu (e mu / k)^k for a sum of independent Bernoullis of mean mu is still
    at least :data:`CHECK_LEVEL` (k = 0 when mu is 0)."""
    if m <= 0 or expected <= 0:
        return 0.0
    k = max(1, math.ceil(expected))
    while k <= m and -expected + k * (1 + math.log(expected / k)) >= math.log(CHECK_LEVEL):
        k += 1
    return min(m, k - 1) / m


def empirical_check(
    clf: Any,
    x: np.ndarray,
    y: np.ndarray,
    radius: np.ndarray,
    correct: np.ndarray,
    radii: Sequence[float],
    *,
    sigma: float,
    alpha: float,
    steps: int = 20,
    samples: int = 16,
    votes: int = 1000,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    """The smoothed classifier's accuracy under :func:`attack_l2` at each L2 radius, beside
    the certified accuracy of the same images (``radius``/``correct``: their certificates).

    An image counts as robust at r when g's class (the most frequent of ``votes`` noisy
    copies, no abstention) is right on the clean image and after the attack at every radius
    up to r: an attack at a smaller radius is one at r too, so the figure only falls.

    ``tolerance`` is how far certified may sit above empirical by Monte Carlo alone, per
    radius: a certificate is wrong with probability at most ``alpha``, and an image certified
    at R >= r keeps pA >= Phi((R - r) / sigma) within r, so the vote misses its class with
    probability at most P(Binomial(votes, pA) <= votes / 2) at each radius checked (union
    bound over the radii). Each image's votes draw their own noise, so given the attacked
    images the misses are independent; above that, by :func:`miss_tolerance`, the gap is a
    bug. (The certificates' own alpha inherits certification's sharing of draws among up to
    :data:`SHARE` images; at most alpha per image, it barely moves the tolerance.)"""
    from scipy.stats import binom, norm

    t0 = time.perf_counter()
    x = np.asarray(x, np.float32).reshape(-1, 28, 28, 1)
    y = np.asarray(y, np.int64)
    radius = np.asarray(radius, np.float64)
    correct = np.asarray(correct, bool)
    m = len(x)
    radii = [float(r) for r in radii]
    group = max(1, 1024 // max(1, int(samples)))
    robust = np.ones(m, bool)
    accuracy, certified, tolerance, broken = [], [], [], []
    miss = np.zeros(m)  # union bound of the vote's misses so far, per certified image
    total = max(1, len(radii) * m)

    def report(j: int, k: float, r: float) -> None:
        if progress is not None:
            progress(Progress(j * m + k, total, f"r={r:g}: {int(k)}/{m} images"))

    for j, r in enumerate(radii):
        x_adv = x.copy()
        todo = np.flatnonzero(robust) if r > 0 else np.zeros(0, np.int64)
        for lo in range(0, len(todo), group):
            idx = todo[lo : lo + group]
            report(j, m - len(todo) + lo, r)

            def inner(u: Progress, j: int = j, r: float = r, base: int = m - len(todo) + lo,
                      n_idx: int = len(idx)) -> None:  # fmt: skip
                report(j, base + u.fraction * n_idx, r)

            x_adv[idx] = attack_l2(
                clf, x[idx], y[idx], sigma, r, steps=steps, samples=samples,
                seed=seed * 1000 + j * 100 + lo // group, progress=inner, cancel=cancel,
            )  # fmt: skip
        sampler = Sampler(clf, sigma, seed=seed + 1000 + j, cancel=cancel, independent=True)
        counts = sampler.counts(x_adv, votes) if m else np.zeros((0, 10), np.int64)
        robust &= counts.argmax(axis=1) == y
        report(j, m, r)
        held = correct & (radius >= r)
        q = norm.cdf((radius[held] - r) / sigma)
        miss[held] += binom.cdf(votes // 2, votes, q)
        expected = float(np.sum(np.minimum(1.0, alpha + miss[held])))
        accuracy.append(float(robust.mean()) if m else math.nan)
        certified.append(float(held.mean()) if m else math.nan)
        tolerance.append(miss_tolerance(expected, m))
        broken.append(int(np.sum(held & ~robust)))
    return {
        "attack": "smoothadv-pgd-l2",
        "n": m,
        "steps": int(steps),
        "samples": int(samples),
        "votes": int(votes),
        "radii": radii,
        "accuracy": accuracy,
        "certified_accuracy": certified,
        "tolerance": tolerance,
        "broken_certified": broken,
        "seconds": time.perf_counter() - t0,
    }
