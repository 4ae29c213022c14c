"""Robustness evaluation that does not flatter: every model and defense, the same attacks.

For each model and input transformation the evaluation measures clean accuracy and robust
accuracy over an epsilon grid, under each chosen attack run twice:

- *naive*: the attack differentiates the defended model as it presents itself (a distilled
  network's softmax, the true gradient of a squeezer, one draw of random noise);
- *adaptive*: the attack differentiates a view built to defeat gradient masking: logits divided
  by the distillation temperature (Carlini & Wagner 2016), BPDA through transformations and EOT
  over random ones (Athalye et al. 2018).

An image counts as robust at an epsilon only if the deployed model classifies it correctly
clean and under *both* attacks: ``robust_accuracy`` is the worst case, ``naive`` and
``adaptive`` are kept side by side so that a gap (gradient masking) is visible and explained.

Minimum-norm attacks (C&W, DeepFool, FAB, HopSkipJump, the deck's targeted descent) run once;
their perturbation is projected onto each epsilon ball (L-inf) before the deployed model
classifies it. What an attack reports beyond images (AutoAttack's cascade and warning flags,
queries) is kept per view and epsilon in the attack's ``details``; its flags become notes.

Results are plain JSON-able dicts (see :func:`evaluate`), with helpers for CSV rows and a PNG.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from advgui import __version__
from advgui.core import precision
from advgui.core.attacks.flags import cascade_text
from advgui.core.defenses.detector import SqueezeDetector
from advgui.core.defenses.transforms import parse_transform, transform_label, wrap
from advgui.core.errors import ParameterError
from advgui.core.fileio import atomic_write_bytes, atomic_write_text, json_default
from advgui.core.models import Classifier
from advgui.core.precision import check as check_precision
from advgui.core.progress import CancelToken, Partial, Progress, ProgressCallback, check
from advgui.core.tfimport import keras


def eval_attacks() -> list[str]:
    """Attacks an evaluation offers, from the registry: a fixed-budget attack runs once per
    epsilon; a minimum-norm one runs once and is projected onto each epsilon ball."""
    from advgui.core.attacks import ATTACKS

    return [name for name, cls in ATTACKS.items() if cls.evaluable]


def _kind(name: str) -> str:
    from advgui.core.attacks import ATTACKS

    return ATTACKS[name].kind


#: Parameters used unless the caller overrides them (fast enough for 1,000 images on a CPU).
DEFAULT_ATTACK_PARAMS: dict[str, dict[str, Any]] = {
    "cw": {"steps": 100, "search_steps": 5},
    "deepfool": {"steps": 50},
    "targeted": {"steps": 200, "quantize": False},
}
RESULT_VERSION = 1
CERTIFY_METHODS = ("smoothing", "ibp")


@dataclass
class EvalConfig:
    """What to measure; stored in the result so a run can be told apart and repeated."""

    attacks: Sequence[str] = ("fgsm", "pgd")
    eps: Sequence[float] = (0.0, 0.1, 0.2, 0.3)
    n: int = 1000
    restarts: int = 1
    pgd_steps: int = 40
    eot_samples: int = 8
    adaptive: bool = True
    detector_fpr: float | None = None
    batch_size: int = 500
    seed: int = 0
    attack_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Certification of every bare model beside the attacks: None, "smoothing" (L2, at
    #: ``radii``) or "ibp" (L-inf, at the epsilon grid).
    certify: str | None = None
    #: Smoothing's noise; None: the sigma the model was noise-trained with.
    sigma: float | None = None
    n0: int = 100
    n_samples: int = 100_000
    alpha: float = 0.001
    radii: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
    #: Smoothing's empirical check: SmoothAdv PGD-L2 on the first this many of the ``n``
    #: images at every radius (0: no check), ``smoothing_attack_samples`` noise draws per
    #: step, g's class after it from ``smoothing_attack_votes`` draws.
    smoothing_attack: int = 100
    smoothing_attack_samples: int = 16
    smoothing_attack_steps: int = 20
    smoothing_attack_votes: int = 1000
    #: "float32" or "mixed": the attacks' arithmetic (core/precision.py); every figure is
    #: judged by the float32 model either way.
    precision: str = "float32"

    def validate(self) -> EvalConfig:
        attacks = [str(a).strip() for a in self.attacks]
        if not attacks:
            raise ParameterError("choose at least one attack", field="attacks")
        for a in attacks:
            if a not in eval_attacks():
                raise ParameterError(
                    f"unknown attack {a!r} for evaluation; choose from {', '.join(eval_attacks())}",
                    field="attacks",
                )
        self.attacks = tuple(dict.fromkeys(attacks))
        self.precision = check_precision(self.precision)
        eps = []
        for e in self.eps:
            try:
                v = float(e)
            except (TypeError, ValueError):
                raise ParameterError(f"epsilon must be a number, got {e!r}", field="eps") from None
            if not math.isfinite(v) or not 0.0 <= v <= 1.0:
                raise ParameterError(f"epsilon must be between 0 and 1, got {e!r}", field="eps")
            eps.append(v)
        if not eps:
            raise ParameterError("give at least one epsilon", field="eps")
        self.eps = tuple(sorted(set(eps)))
        for name, value, lo, hi in (
            ("n", self.n, 1, 10000),
            ("restarts", self.restarts, 1, 100),
            ("pgd_steps", self.pgd_steps, 1, 10000),
            ("eot_samples", self.eot_samples, 1, 100),
            ("batch_size", self.batch_size, 1, 10000),
            ("smoothing_attack", self.smoothing_attack, 0, 10000),
            ("smoothing_attack_samples", self.smoothing_attack_samples, 1, 1024),
            ("smoothing_attack_steps", self.smoothing_attack_steps, 1, 1000),
            ("smoothing_attack_votes", self.smoothing_attack_votes, 1, 1_000_000),
        ):
            if not isinstance(value, (int, np.integer)) or not lo <= int(value) <= hi:
                raise ParameterError(
                    f"{name} must be a whole number between {lo} and {hi}, got {value!r}",
                    field=name,
                )
        if self.certify not in (None, *CERTIFY_METHODS):
            raise ParameterError(
                f"certify must be one of {', '.join(CERTIFY_METHODS)}, got {self.certify!r}",
                field="certify",
            )
        if self.certify == "smoothing":
            from advgui.core.certify.smoothing import SmoothingConfig

            SmoothingConfig(
                sigma=0.5 if self.sigma is None else self.sigma,
                n0=self.n0,
                n=self.n_samples,
                alpha=self.alpha,
            ).validate()
            self.radii = tuple(sorted({float(r) for r in self.radii}))
        elif self.sigma is not None:
            raise ParameterError("sigma is for --certify smoothing only", field="sigma")
        if self.detector_fpr is not None and not 0.0 < float(self.detector_fpr) < 0.5:
            raise ParameterError(
                f"detector false-positive rate must be between 0 and 0.5, got {self.detector_fpr}",
                field="detector_fpr",
            )
        return self


def parse_eps_grid(text: str) -> tuple[float, ...]:
    """``"0,0.1,0.2,0.3"`` -> a validated, sorted epsilon grid."""
    parts = [p for p in str(text).replace(";", ",").split(",") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ParameterError(
            f"epsilon grid must be numbers separated by commas, got {text!r}", field="eps"
        ) from None
    return tuple(EvalConfig(eps=values).validate().eps)


# --------------------------------------------------------------------------- views


def _temperature(clf: Classifier) -> float | None:
    if clf.meta.get("defense") == "distill" and clf.meta.get("temperature"):
        return float(clf.meta["temperature"])
    return None


def probability_view(clf: Classifier) -> Classifier:
    """What an attacker differentiating the deployed softmax sees: log-probabilities.

    A saturated softmax returns exactly 1 and 0 in float32, so these gradients are zero.
    """
    k = keras()
    inputs = k.Input(shape=(28, 28, 1), name="image")
    p = k.layers.Softmax()(clf.logits_model(inputs))
    out = k.ops.log(p + 1e-30)
    return Classifier(clf.model, dict(clf.meta), k.Model(inputs, out, name="softmax_view"))


def scaled_view(clf: Classifier, scale: float) -> Classifier:
    """Logits divided by ``scale`` (the distillation temperature): same argmax, live gradient."""
    k = keras()
    inputs = k.Input(shape=(28, 28, 1), name="image")
    out = k.layers.Rescaling(1.0 / scale)(clf.logits_model(inputs))
    return Classifier(clf.model, dict(clf.meta), k.Model(inputs, out, name="scaled_logits"))


@dataclass
class Target:
    """One model with one input transformation, and the views attacks differentiate."""

    clf: Classifier
    transform: str
    deployed: Classifier
    naive: Classifier
    adaptive: Classifier | None  # None: identical to naive (nothing to adapt to)
    how_adaptive: str

    @property
    def label(self) -> str:
        return self.clf.name if self.transform == "none" else f"{self.clf.name} + {self.transform}"


def make_target(clf: Classifier, transform: str = "none", *, eot_samples: int = 8) -> Target:
    specs = parse_transform(transform)
    label = transform_label(specs)
    temp = _temperature(clf)
    deployed = wrap(clf, specs, mode="deployed") if specs else clf
    naive_base = probability_view(clf) if temp else clf
    naive = wrap(naive_base, specs, mode="naive") if specs else naive_base
    how = []
    if temp:
        how.append(f"logits divided by T={temp:g}")
    if specs:
        how.append("BPDA (identity backward) through " + label)
    if any(s.random for s in specs):
        how.append(f"EOT over {eot_samples} draws")
    adaptive = None
    if how:
        base = scaled_view(clf, temp) if temp else clf
        adaptive = wrap(base, specs, mode="adaptive", eot_samples=eot_samples) if specs else base
    return Target(clf, label, deployed, naive, adaptive, "; ".join(how))


# --------------------------------------------------------------------------- running


def make_eval_attack(cfg: EvalConfig, name: str) -> Any:
    """The attack as the evaluation runs it, from its spec: the L-inf norm where it has a
    choice, the config's iteration count (with Madry's step 2.5 eps / steps, recomputed for
    each epsilon at call time), restarts and seed wherever the attack takes them; then the
    caller's own parameters."""
    from advgui.core.attacks import ATTACKS, make_attack
    from advgui.core.attacks.spec import FIXED_BUDGET

    cls = ATTACKS[name]
    params = dict(DEFAULT_ATTACK_PARAMS.get(name, {}))
    norm = cls.param("norm")
    if norm is not None and "linf" in norm.choices:
        params["norm"] = "linf"  # the epsilon grid is L-inf
    if cls.kind == FIXED_BUDGET:
        step = cls.param("step_size")
        if step is not None and step.optional and step.default is not None:
            params.update(steps=cfg.pgd_steps, step_size=None)  # a fixed-step iterative attack
        if cls.param("restarts") is not None:
            params["restarts"] = cfg.restarts
        if cls.param("seed") is not None:
            params["seed"] = cfg.seed
    params.update(cfg.attack_params.get(name, {}))
    return make_attack(name, **params)


def _low_view(view: Classifier, dtype_policy: str) -> Classifier | None:
    """The view the attack runs on at ``dtype_policy`` (None: float32, or not clonable)."""
    if dtype_policy == "float32":
        return None
    return precision.mixed_classifier(view, dtype_policy)


def _mixed_check(
    into: dict[str, Any],
    low: Classifier,
    view: Classifier,
    x_adv: np.ndarray,
    y: np.ndarray,
    clean_ok: np.ndarray,
) -> None:
    """One epsilon's agreement: the robust accuracy as the mixed view judges the images, and
    how many of them the two precisions classify differently."""
    pred_low = low.predict(x_adv)
    into["robust_accuracy_mixed"].append(float((clean_ok & (pred_low == y)).mean()))
    into["flips"].append(int(np.sum(pred_low != view.predict(x_adv))))


def _precision_notes(
    attack: str, dtype_policy: str, by_view: dict[str, dict[str, Any]], eps: Sequence[float]
) -> list[str]:
    """A note per view where the mixed attack's images are classified differently in float32."""
    notes = []
    for view, rec in by_view.items():
        if "flips" not in rec:
            notes.append(f"{attack} ({view}): run in float32 (the model cannot be cloned "
                         f"under {dtype_policy})")  # fmt: skip
            continue
        pos = [e for e in eps if e > 0]
        worst = [(f, e) for f, e in zip(rec["flips"], pos, strict=True) if f]
        if worst:
            flips, at = max(worst)
            notes.append(
                f"{attack} ({view}): the {dtype_policy} attack and the float32 re-check "
                f"disagree on {flips} image(s) at eps {at:g}; the figures are float32's"
            )
    return notes


def _project(x: np.ndarray, x_adv: np.ndarray, eps: float) -> np.ndarray:
    return np.clip(x + np.clip(x_adv - x, -eps, eps), 0.0, 1.0).astype(np.float32)


class _Counter:
    """Overall progress over all (target, view, attack, epsilon) units of n images each."""

    def __init__(self, total: int, progress: ProgressCallback | None) -> None:
        self.total = max(1, total)
        self.done = 0
        self.progress = progress

    def sub(self, message: str) -> ProgressCallback:
        base = self.done

        def report(update: Progress) -> None:
            if self.progress is not None:
                self.progress(
                    Progress(base + update.fraction, self.total, f"{message}: {update.message}",
                             dict(update.info), update.partial)
                )  # fmt: skip

        return report

    def step(self, message: str, info: dict[str, Any] | None = None) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(Progress(self.done, self.total, message, info or {}))


def evaluate(
    models: Sequence[Classifier],
    mnist: Any,
    config: EvalConfig | None = None,
    *,
    transforms: Sequence[str] = ("none",),
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    """Evaluate every model under every transformation; returns a JSON-able dict.

    ``result["results"]`` holds one entry per model and transformation with ``clean_accuracy``
    and, per attack, lists aligned with ``eps``: ``robust_accuracy`` (worst case), ``naive``
    and ``adaptive`` (None where no adaptive view applies), plus ``notes`` where they disagree.
    Progress updates carry a ``Partial`` whose ``entry`` is the entry so far, for live display.
    """
    from advgui.core.attacks.batch import run_batch
    from advgui.core.attacks.spec import FIXED_BUDGET, MINIMUM_NORM

    cfg = (config or EvalConfig()).validate()
    if not models:
        raise ParameterError("choose at least one model", field="models")
    dtype_policy = precision.policy(cfg.precision)
    transforms = list(dict.fromkeys(transforms or ["none"]))
    for tr in transforms:
        parse_transform(tr)  # validate all before any work
    n = int(cfg.n)
    x = np.asarray(mnist.x_test[:n], np.float32).reshape(-1, 28, 28, 1)
    y = np.asarray(mnist.y_test[:n], np.int64)
    eps_pos = [e for e in cfg.eps if e > 0]
    t0 = time.perf_counter()

    targets = [make_target(m, tr, eot_samples=cfg.eot_samples) for m in models for tr in transforms]
    units = 0
    for tg in targets:
        views = 2 if (tg.adaptive is not None and cfg.adaptive) else 1
        for a in cfg.attacks:
            fixed = _kind(a) == FIXED_BUDGET
            units += views * (len(eps_pos) if fixed else (1 if eps_pos else 0))
    if cfg.certify is not None:
        checked = 2 if cfg.certify == "smoothing" and cfg.smoothing_attack > 0 else 1
        units += checked * sum(tg.transform == "none" for tg in targets)
    counter = _Counter(units + len(targets), progress)
    if cfg.certify is not None:  # refused before any attack runs: sigma, a verifiable model
        for tg in targets:
            if tg.transform == "none":
                check_certifiable(tg.clf, cfg)

    results = []
    for tg in targets:
        check(cancel)
        clean_ok = tg.deployed.predict(x) == y
        entry: dict[str, Any] = {
            "model": tg.clf.name,
            "transform": tg.transform,
            "label": tg.label,
            "defense": str(tg.clf.meta.get("defense", "none")),
            "clean_accuracy": float(clean_ok.mean()),
            "adaptive": tg.how_adaptive or None,
            "attacks": {},
            "notes": [],
        }
        counter.step(f"{tg.label}: clean accuracy {clean_ok.mean():.1%}")
        views = [("naive", tg.naive)]
        if tg.adaptive is not None and cfg.adaptive:
            views.append(("adaptive", tg.adaptive))
        adv_for_detector: dict[str, dict[float, np.ndarray]] = {}
        for a in cfg.attacks:
            t_att = time.perf_counter()
            per_view: dict[str, list[float]] = {}
            per_view_details: dict[str, list[dict[str, Any] | None]] = {}
            robust_ok = {e: clean_ok.copy() for e in cfg.eps}
            attack = make_eval_attack(cfg, a)
            fixed = attack.kind == FIXED_BUDGET
            mixed_by_view: dict[str, dict[str, Any]] = {}
            for view_name, view in views:
                accs = []
                digests: list[dict[str, Any] | None] = []
                once = None
                low = _low_view(view, dtype_policy)
                attacked = low if low is not None else view
                if low is not None:
                    mixed_by_view[view_name] = {"robust_accuracy_mixed": [], "flips": []}
                elif dtype_policy != "float32":  # a layer Keras cannot clone: said, not hidden
                    mixed_by_view[view_name] = {"policy": "float32", "note": "not clonable"}
                if attack.kind == MINIMUM_NORM and eps_pos:
                    goals = (y + 1) % 10 if not attack.supports_untargeted else None
                    res = run_batch(
                        attack, attacked, x, y, goals=goals, batch_size=cfg.batch_size,
                        progress=counter.sub(f"{tg.label}: {a} ({view_name})"), cancel=cancel,
                    )  # fmt: skip
                    counter.step(f"{tg.label}: {a} ({view_name}) done")
                    x_by_eps = {e: _project(x, res.x_adv, e) for e in eps_pos}
                    once = digest(res.details)
                else:
                    x_by_eps = {}
                for e in cfg.eps:
                    check(cancel)
                    if e == 0:
                        accs.append(float(clean_ok.mean()))
                        digests.append(None)
                        continue
                    if fixed:  # one attack object and one trace for the whole sweep
                        res = run_batch(
                            attack, attacked, x, y, eps=e, batch_size=cfg.batch_size,
                            progress=counter.sub(f"{tg.label}: {a} eps {e:g} ({view_name})"),
                            cancel=cancel,
                        )  # fmt: skip
                        x_adv = res.x_adv
                        digests.append(digest(res.details))
                    else:
                        x_adv = x_by_eps[e]
                        digests.append(once)
                    ok = clean_ok & (tg.deployed.predict(x_adv) == y)  # float32 judges
                    if low is not None:
                        _mixed_check(mixed_by_view[view_name], low, view, x_adv, y, clean_ok)
                    robust_ok[e] &= ok
                    accs.append(float(ok.mean()))
                    if view_name == views[-1][0]:
                        adv_for_detector.setdefault(a, {})[e] = x_adv
                    if fixed:
                        counter.step(
                            f"{tg.label}: {a} eps {e:g} ({view_name}): {ok.mean():.1%}",
                        )
                per_view[view_name] = accs
                per_view_details[view_name] = digests
            entry["attacks"][a] = {
                "eps": list(cfg.eps),
                "robust_accuracy": [float(robust_ok[e].mean()) for e in cfg.eps],
                "naive": per_view["naive"],
                "adaptive": per_view.get("adaptive"),
                "seconds": time.perf_counter() - t_att,
            }
            if any(d for ds in per_view_details.values() for d in ds):
                entry["attacks"][a]["details"] = per_view_details
            if dtype_policy != "float32":
                entry["attacks"][a]["precision"] = {"policy": dtype_policy, "views": mixed_by_view}
                entry["notes"].extend(_precision_notes(a, dtype_policy, mixed_by_view, cfg.eps))
            note = explain(entry, a)
            if note:
                entry["notes"].append(note)
            entry["notes"].extend(flag_notes(entry, a))
            if progress is not None:
                progress(
                    Progress(counter.done, counter.total, f"{tg.label}: {a} done",
                             partial=Partial(entry=_partial(entry)))
                )  # fmt: skip
        if cfg.certify is not None and tg.transform == "none":
            # Shown as running until it ends: a Stop here leaves it marked, not blank.
            entry["certified"] = {"method": cfg.certify, "status": "running"}
            if progress is not None:
                progress(
                    Progress(counter.done, counter.total, f"Certifying {tg.label}: 0/{n} images",
                             partial=Partial(entry=_partial(entry)))
                )  # fmt: skip
            entry["certified"] = certify_entry(
                tg.clf, x, y, cfg, progress=_per_image(counter.sub(f"Certifying {tg.label}"), n),
                cancel=cancel,
            )  # fmt: skip
            counter.step(f"Certifying {tg.label}: {n}/{n} images")
            if cfg.certify == "smoothing" and cfg.smoothing_attack > 0:
                entry["certified"]["empirical"] = smoothing_empirical(
                    tg.clf, x, y, entry["certified"], cfg,
                    progress=counter.sub(f"Attacking smoothed {tg.label} (SmoothAdv PGD-L2)"),
                    cancel=cancel,
                )  # fmt: skip
                counter.step(f"Attacking smoothed {tg.label}: done")
            entry["notes"].extend(check_certified(entry))
        if cfg.detector_fpr is not None and tg.transform == "none":
            entry["detector"] = _detector(tg, mnist, cfg, x, y, adv_for_detector)
        results.append(entry)
    return {
        "version": RESULT_VERSION,
        "config": {**asdict(cfg), "attacks": list(cfg.attacks), "eps": list(cfg.eps)},
        "transforms": transforms,
        "n": n,
        "eps": list(cfg.eps),
        "attacks": list(cfg.attacks),
        "results": results,
        "precision": cfg.precision,
        "precision_policy": dtype_policy,
        "seconds": time.perf_counter() - t0,
        "created": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
    }


# --------------------------------------------------------------------------- certification


def smoothing_sigma(clf: Classifier, cfg: EvalConfig) -> float:
    """The noise to smooth ``clf`` with: the config's, else the one it was trained under."""
    if cfg.sigma is not None:
        return float(cfg.sigma)
    trained = clf.meta.get("sigma") if clf.meta.get("defense") == "noise" else None
    if trained is None:
        raise ParameterError(
            f"give a sigma (--sigma) for smoothing {clf.name}: it was not noise-trained",
            field="sigma",
        )
    return float(trained)


def check_certifiable(clf: Classifier, cfg: EvalConfig) -> None:
    """Refuse what certification cannot do, before any work: a model IBP cannot bound
    (:class:`~advgui.core.certify.NotVerifiable`, naming the layer), smoothing without sigma."""
    if cfg.certify == "ibp":
        from advgui.core.certify.ibp import verifiable

        verifiable(clf.logits_model)
    elif cfg.certify == "smoothing":
        smoothing_sigma(clf, cfg)


def certify_entry(
    clf: Classifier,
    x: np.ndarray,
    y: np.ndarray,
    cfg: EvalConfig,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    """The certified figures of ``clf`` on ``(x, y)``: IBP at the epsilon grid (L-inf), or
    smoothing's per-image radius and certified accuracy at ``cfg.radii`` (L2)."""
    from advgui.core import certify

    if cfg.certify == "ibp":
        res = certify.verified_accuracy(clf, x, y, list(cfg.eps), progress=progress, cancel=cancel)
        return res.record()
    smooth = certify.SmoothingConfig(
        sigma=smoothing_sigma(clf, cfg), n0=cfg.n0, n=cfg.n_samples, alpha=cfg.alpha,
        seed=cfg.seed,
    )  # fmt: skip
    cert = certify.certify(clf, x, y, smooth, progress=progress, cancel=cancel)
    return cert.record(list(cfg.radii))


def _per_image(progress: ProgressCallback, n: int) -> ProgressCallback:
    """A certifier's progress (noisy copies or batches) as ``k/n images``."""

    def report(update: Progress) -> None:
        k = int(update.fraction * n)
        progress(Progress(update.done, update.total, f"{k}/{n} images"))

    return report


def smoothing_empirical(
    clf: Classifier,
    x: np.ndarray,
    y: np.ndarray,
    cert: dict[str, Any],
    cfg: EvalConfig,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    """The smoothed classifier under SmoothAdv PGD-L2 at each of ``cfg.radii``, on the first
    ``cfg.smoothing_attack`` images, beside their certified accuracy
    (:func:`advgui.core.certify.smoothing.empirical_check`)."""
    from advgui.core.certify.smoothing import empirical_check

    m = min(int(cfg.smoothing_attack), len(x))
    return empirical_check(
        clf, x[:m], y[:m], np.asarray(cert["radius"][:m]), np.asarray(cert["correct"][:m], bool),
        list(cfg.radii), sigma=float(cert["sigma"]), alpha=float(cert["alpha"]),
        steps=cfg.smoothing_attack_steps, samples=cfg.smoothing_attack_samples,
        votes=cfg.smoothing_attack_votes, seed=cfg.seed, progress=progress, cancel=cancel,
    )  # fmt: skip


def certified_violations(entry: dict[str, Any]) -> list[str]:
    """Where a certified figure is above an empirical one on the same model, norm and budget:
    a bug (a certificate no attack can break was broken, or a bound is unsound)."""
    cert = entry.get("certified")
    if not isinstance(cert, dict) or "status" in cert:
        return []
    out = []
    if cert.get("method") == "ibp":
        by_eps = dict(zip(cert["eps"], cert["verified_accuracy"], strict=True))
        top = max(by_eps.values(), default=0.0)
        if top > entry["clean_accuracy"] + 1e-12:
            out.append(f"IBP-verified {top:.1%} above clean {entry['clean_accuracy']:.1%}")
        for attack, res in entry["attacks"].items():
            for e, robust in zip(res["eps"], res["robust_accuracy"], strict=True):
                if e in by_eps and by_eps[e] > robust + 1e-12:
                    out.append(
                        f"IBP-verified {by_eps[e]:.1%} above {attack}'s {robust:.1%} at eps {e:g}"
                    )
    else:  # smoothing: certified accuracy can only fall with the radius
        acc = cert["certified_accuracy"]
        for r, a, b in zip(cert["radii"][1:], acc[:-1], acc[1:], strict=True):
            if b > a + 1e-12:
                out.append(f"certified accuracy rises to {b:.1%} at radius {r:g}")
        emp = cert.get("empirical")
        if isinstance(emp, dict):
            for r, c, e, tol in zip(emp["radii"], emp["certified_accuracy"], emp["accuracy"],
                                    emp["tolerance"], strict=True):  # fmt: skip
                if c > e + tol + 1e-12:
                    out.append(
                        f"certified {c:.1%} above SmoothAdv's {e:.1%} at L2 radius {r:g} on "
                        f"the first {emp['n']} images (Monte Carlo tolerance {tol:.1%})"
                    )
    return out


def check_certified(entry: dict[str, Any]) -> list[str]:
    """Flag :func:`certified_violations` in the entry (``certified.consistent``) and return the
    notes; the figures stay, so the bug can be looked at."""
    cert = entry.get("certified")
    if not isinstance(cert, dict) or "status" in cert:
        return []
    bad = certified_violations(entry)
    cert["consistent"] = not bad
    cert["violations"] = bad
    if bad:
        import logging

        logging.getLogger(__name__).error("certified above empirical: %s", "; ".join(bad))
    return [f"{entry['label']}: BUG, certified above empirical: {b}" for b in bad]


def _partial(entry: dict[str, Any]) -> dict[str, Any]:
    return {**entry, "attacks": {k: dict(v) for k, v in entry["attacks"].items()}}


def _detector(
    tg: Target, mnist: Any, cfg: EvalConfig, x: np.ndarray, y: np.ndarray, adv: dict
) -> dict[str, Any]:
    """Detection rate at the chosen false-positive rate, calibrated on other clean images.

    The attacks did not try to evade the detector: an attacker who knows it can (Carlini and
    Wagner 2017), so these rates are an upper bound.
    """
    fpr = float(cfg.detector_fpr)
    calib = np.asarray(mnist.x_test[-2000:], np.float32).reshape(-1, 28, 28, 1)
    det = SqueezeDetector(tg.deployed)
    det.calibrate(calib, fpr)
    out = {**det.describe(), "fpr_measured": float(det.detect(x).mean()), "detection_rate": {}}
    for a, by_eps in adv.items():
        rates = []
        for e in cfg.eps:
            if e not in by_eps:
                rates.append(None)
                continue
            fooled = tg.deployed.predict(by_eps[e]) != y
            flagged = det.detect(by_eps[e][fooled]) if fooled.any() else np.zeros(0, bool)
            rates.append(float(flagged.mean()) if len(flagged) else None)
        out["detection_rate"][a] = {"eps": list(cfg.eps), "rate": rates}
    return out


# --------------------------------------------------------------------------- attack details


def digest(details: Any) -> dict[str, Any] | None:
    """What an evaluation keeps of an attack's details (:meth:`Details.digest`)."""
    return details.digest() if hasattr(details, "digest") else None


def _details(res: dict[str, Any]) -> list[tuple[str, int, dict[str, Any]]]:
    """(view, index of the epsilon, digest) for every digest an attack entry holds (a stored
    result is read as it comes: anything not shaped like a digest is skipped)."""
    out: list[tuple[str, int, dict[str, Any]]] = []
    details = res.get("details")
    if not isinstance(details, dict):
        return out
    for view, digests in details.items():
        if not isinstance(digests, list):
            continue
        for i, d in enumerate(digests):
            if isinstance(d, dict):
                out.append((str(view), i, d))
    return out


def _records(d: dict[str, Any], name: str) -> list[dict[str, Any]]:
    value = d.get(name)
    return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


def flag_notes(entry: dict[str, Any], attack: str) -> list[str]:
    """One note per view and flag raised by the attack, at the epsilons where it was."""
    res = entry["attacks"][attack]
    seen: dict[tuple[str, str], list[tuple[float, str]]] = {}
    for view, i, d in _details(res):
        if i >= len(res["eps"]):
            continue
        for flag in _records(d, "flags"):
            seen.setdefault((view, str(flag.get("name"))), []).append(
                (res["eps"][i], str(flag.get("message", "")))
            )
    notes = []
    for (view, _), hits in seen.items():
        where = ", ".join(f"{e:g}" for e, _ in hits)
        notes.append(f"{entry['label']}, {attack} ({view}) at eps {where}: {hits[-1][1]}")
    return notes


# --------------------------------------------------------------------------- explanations

#: A gap larger than this (in accuracy) between naive and adaptive is worth explaining.
MASKING_GAP = 0.05


def explain(entry: dict[str, Any], attack: str) -> str | None:
    """One or two sentences where naive and adaptive attacks disagree, else None."""
    res = entry["attacks"][attack]
    if res.get("adaptive") is None:
        return None
    gaps = [nv - ad for nv, ad in zip(res["naive"], res["adaptive"], strict=True)]
    worst = max(range(len(gaps)), key=lambda i: abs(gaps[i]))
    gap, eps = gaps[worst], res["eps"][worst]
    if abs(gap) <= MASKING_GAP:
        return None
    head = (
        f"{entry['label']}, {attack} at eps {eps:g}: naive {res['naive'][worst]:.1%} vs "
        f"adaptive {res['adaptive'][worst]:.1%}."
    )
    if gap < 0:
        return (
            f"{head} The adaptive approximation is the weaker attack here; the robust "
            "accuracy column keeps the worst case of both."
        )
    why = []
    if entry.get("defense") == "distill":
        why.append(
            "distillation saturates the softmax, so the naive gradient underflows to zero; "
            "dividing the logits by the temperature brings it back"
        )
    tr = entry.get("transform", "none")
    if "squeeze-bits" in tr or "jpeg" in tr:
        why.append(
            "quantisation and JPEG have zero or no gradient, so the naive attack gets no "
            "signal; BPDA passes the gradient through as if the step were the identity"
        )
    if "median" in tr:
        why.append(
            "the median filter's gradient reaches only one pixel per window; BPDA does better"
        )
    if "noise" in tr:
        why.append("random noise makes each gradient a poor guess; EOT averages several draws")
    reason = "; ".join(why) or "the naive gradient is uninformative"
    return (
        f"{head} Gradient masking: {reason}. The naive figure overstates robustness; trust the "
        "adaptive one."
    )


# --------------------------------------------------------------------------- outputs


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per model, transformation, attack and epsilon (for tables and CSV), then
    the certified figures' rows; ``certified`` holds the certified figure at the row's budget
    (IBP beside each attack at its eps; smoothing only in its own rows: another norm)."""
    out = []
    for entry in result["results"]:
        cert = entry.get("certified")
        verified = (
            dict(zip(cert["eps"], cert["verified_accuracy"], strict=True))
            if isinstance(cert, dict) and cert.get("method") == "ibp" and "status" not in cert
            else {}
        )
        for attack, res in entry["attacks"].items():
            found = _details(res)
            for i, eps in enumerate(res["eps"]):
                here = [(view, d) for view, j, d in found if j == i]
                cascades = [
                    f"{v}: {cascade_text(_records(d, 'cascade'))}"
                    for v, d in here
                    if _records(d, "cascade")
                ]
                names = {str(f.get("name")) for _, d in here for f in _records(d, "flags")}
                out.append(
                    {
                        "model": entry["model"],
                        "transform": entry["transform"],
                        "defense": entry["defense"],
                        "attack": attack,
                        "eps": eps,
                        "clean_accuracy": entry["clean_accuracy"],
                        "robust_accuracy": res["robust_accuracy"][i],
                        "naive": res["naive"][i],
                        "adaptive": None if res["adaptive"] is None else res["adaptive"][i],
                        "cascade": "; ".join(cascades) or None,
                        "flags": ", ".join(sorted(names)) or None,
                        # IBP-verified accuracy of the same model at this eps, beside it.
                        "certified": verified.get(eps),
                    }
                )
        cert = entry.get("certified")
        if isinstance(cert, dict):
            out.extend(_certified_rows(entry, cert))
    return out


def _certified_rows(entry: dict[str, Any], cert: dict[str, Any]) -> list[dict[str, Any]]:
    """The certified figures as rows beside the attacks': ``attack`` is ``certified:ibp``
    (``eps`` the L-inf budget) or ``certified:smoothing`` (``eps`` the L2 radius), then
    smoothing's empirical check as ``empirical:smoothing`` rows (the attack's figure as
    ``robust_accuracy``, the same images' certified one as ``certified``). A certification
    still running or stopped is one row with no figure, its ``flags`` saying which."""
    base = {
        "model": entry["model"],
        "transform": entry["transform"],
        "defense": entry["defense"],
        "clean_accuracy": entry["clean_accuracy"],
        "naive": None,
        "adaptive": None,
        "cascade": None,
    }
    if "status" in cert:
        return [
            {**base, "attack": f"certified:{cert.get('method')}", "eps": None,
             "robust_accuracy": None, "flags": str(cert["status"]), "certified": None}
        ]  # fmt: skip
    ibp = cert.get("method") == "ibp"
    budgets = cert["eps"] if ibp else cert["radii"]
    figures = cert["verified_accuracy"] if ibp else cert["certified_accuracy"]
    flags = None if cert.get("consistent", True) else "certified-above-empirical"
    emp = cert.get("empirical")
    empirical = []
    if not ibp and isinstance(emp, dict):
        empirical = [
            {**base, "attack": "empirical:smoothing", "eps": r, "robust_accuracy": e,
             "flags": "certified-above-empirical" if c > e + tol + 1e-12 else None,
             "certified": c}
            for r, e, c, tol in zip(emp["radii"], emp["accuracy"], emp["certified_accuracy"],
                                    emp["tolerance"], strict=True)
        ]  # fmt: skip
    return [
        {
            "model": entry["model"],
            "transform": entry["transform"],
            "defense": entry["defense"],
            "attack": f"certified:{cert.get('method')}",
            "eps": e,
            "clean_accuracy": entry["clean_accuracy"],
            "robust_accuracy": a,
            "naive": None,
            "adaptive": None,
            "cascade": None,
            "flags": flags,
            "certified": a,
        }
        for e, a in zip(budgets, figures, strict=True)
    ] + empirical


CSV_FIELDS = (
    "model", "transform", "defense", "attack", "eps", "clean_accuracy", "robust_accuracy",
    "naive", "adaptive", "cascade", "flags", "certified",
)  # fmt: skip


def to_csv(result: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows(result):
        writer.writerow({k: "" if row[k] is None else row[k] for k in CSV_FIELDS})
    return buf.getvalue()


def curves(result: dict[str, Any], attack: str | None = None) -> list[dict[str, Any]]:
    """Robust accuracy against epsilon per model/transform: the worst over the chosen attacks
    (or one ``attack``), with the naive-only curve where it differs."""
    out = []
    for entry in result["results"]:
        names = [attack] if attack else list(entry["attacks"])
        names = [a for a in names if a in entry["attacks"]]
        if not names:
            continue
        eps = entry["attacks"][names[0]]["eps"]
        robust = np.min([entry["attacks"][a]["robust_accuracy"] for a in names], axis=0)
        naive = np.min([entry["attacks"][a]["naive"] for a in names], axis=0)
        out.append(
            {
                "label": entry["label"],
                "eps": list(eps),
                "robust": robust.tolist(),
                "naive": naive.tolist() if np.any(np.abs(naive - robust) > 1e-9) else None,
            }
        )
    return out


def save_json(result: dict[str, Any], path: Path | str) -> None:
    import json

    from advgui.core.tuning import loaded_device

    result = {**result, "device": result.get("device") or loaded_device()}
    atomic_write_text(path, json.dumps(result, indent=1, default=json_default) + "\n")


def save_csv(result: dict[str, Any], path: Path | str) -> None:
    atomic_write_text(path, to_csv(result))


PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]  # fmt: skip


@dataclass(frozen=True)
class PlotFrame:
    """Where a stand-alone PNG plot's axes sit, in pixels (``scale`` times 900x600): one
    place for the robust and the certified plots, and for tests to find a point."""

    size: tuple[int, int] = (900, 600)
    scale: int = 1
    x_max: float = 1.0

    @property
    def box(self) -> tuple[int, int, int, int]:
        k = max(1, int(self.scale))
        w, h = self.size[0] * k, self.size[1] * k
        return 70 * k, w - 270 * k, 70 * k, h - 60 * k

    def px(self, x: float, acc: float) -> tuple[float, float]:
        left, right, top, bottom = self.box
        return (left + (right - left) * x / (self.x_max or 1.0), bottom - (bottom - top) * acc)


def _dashed(d: Any, pts: list[tuple[float, float]], color: Any, width: int) -> None:
    """A dashed polyline: every other tenth of each segment drawn."""
    for a, b in itertools.pairwise(pts):
        for s in range(0, 10, 2):
            s1 = s + 1
            p0 = (a[0] + (b[0] - a[0]) * s / 10, a[1] + (b[1] - a[1]) * s / 10)
            p1 = (a[0] + (b[0] - a[0]) * s1 / 10, a[1] + (b[1] - a[1]) * s1 / 10)
            d.line([p0, p1], fill=color, width=width)


def _figure(
    result: dict[str, Any], frame: PlotFrame, ticks: Sequence[float], x_label: str, title: str
) -> tuple[Any, Any, Any]:
    """A white canvas with the frame's axes, grid, ticks, labels and title: (image, draw,
    small font)."""
    from PIL import Image, ImageDraw, ImageFont

    k = max(1, int(frame.scale))

    def font(pt: int) -> Any:
        try:
            return ImageFont.load_default(size=pt * k)
        except TypeError:  # Pillow without FreeType: the bitmap font
            return ImageFont.load_default()

    small, normal, big = font(11), font(13), font(16)
    img = Image.new("RGB", (frame.size[0] * k, frame.size[1] * k), "white")
    d = ImageDraw.Draw(img)
    left, right, top, bottom = frame.box
    d.rectangle([left, top, right, bottom], outline="black", width=k)
    for i in range(6):
        acc = i / 5
        yy = frame.px(0, acc)[1]
        d.line([left, yy, right, yy], fill=(225, 225, 225), width=k)
        d.text((left - 8 * k, yy), f"{acc:.0%}", fill="black", font=small, anchor="rm")
    for e in ticks:
        xx = frame.px(e, 0)[0]
        d.text((xx, bottom + 8 * k), f"{e:g}", fill="black", font=small, anchor="ma")
    d.text(((left + right) // 2, bottom + 30 * k), x_label, fill="black", font=normal,
           anchor="ma")  # fmt: skip
    y_label = "certified\naccuracy" if x_label.startswith("L2") else "robust\naccuracy"
    d.text((18 * k, (top + bottom) // 2), y_label, fill="black", font=small,
           anchor="lm")  # fmt: skip
    created = result.get("created") or _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    d.text((left, 14 * k), title, fill="black", font=big)
    dataset = result.get("dataset_title", "MNIST")
    d.text((left, 40 * k), f"{result.get('n', '?')} {dataset} test images; {created}; "
           f"advgui {__version__}", fill=(60, 60, 60), font=small)  # fmt: skip
    return img, d, small


def _markers(d: Any, pts: list[tuple[float, float]], color: Any, k: int, square: bool) -> None:
    for p in pts:
        r = 4 * k
        box = [p[0] - r, p[1] - r, p[0] + r, p[1] + r]
        (d.rectangle if square else d.ellipse)(box, fill=color)


def _legend(d: Any, frame: PlotFrame, i: int, label: str, color: Any, font: Any,
            dashed: bool = False) -> None:  # fmt: skip
    k = max(1, int(frame.scale))
    _, right, top, _ = frame.box
    ly = top + (10 + 24 * i) * k
    seg = [(right + 15 * k, ly + 7 * k), (right + 40 * k, ly + 7 * k)]
    if dashed:
        _dashed(d, seg, color, 2 * k)
    else:
        d.line(seg, fill=color, width=3 * k)
    d.text((right + 46 * k, ly), label[:34], fill="black", font=font)


def _png(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def verified_curves(result: dict[str, Any]) -> list[dict[str, Any]]:
    """IBP-verified accuracy per certified entry against the L-inf epsilon, for the robust
    plot (the same figures as the JSON's ``certified.verified_accuracy``)."""
    from advgui.core.certify.curves import certified_curves

    return [c for c in certified_curves(result) if c["norm"] == "linf"]


def render_png(
    result: dict[str, Any],
    attack: str | None = None,
    size: tuple[int, int] = (900, 600),
    scale: int = 1,
) -> bytes:
    """Robust accuracy versus epsilon as a PNG that stands alone: title (attack, N, date),
    axes with units, models in a legend beside the plot; IBP-verified accuracy, where there
    is some, as its own dashed line with square markers. Pillow: no display or Qt needed.
    ``scale`` multiplies the pixels (2: sharp on a slide or a high-DPI screen)."""
    k = max(1, int(scale))
    eps_all = result.get("eps") or [0.0, 1.0]
    frame = PlotFrame(size, k, max(eps_all) or 1.0)
    which = attack or "the worst of " + ", ".join(result.get("attacks", []))
    img, d, small = _figure(result, frame, eps_all, "epsilon (L-inf, pixel values in [0, 1])",
                            f"Robust accuracy under {which}")  # fmt: skip
    _, right, _, bottom = frame.box
    robust = curves(result, attack)
    for i, c in enumerate(robust):
        color = PALETTE[i % len(PALETTE)]
        pts = [frame.px(e, a) for e, a in zip(c["eps"], c["robust"], strict=True)]
        if len(pts) > 1:
            d.line(pts, fill=color, width=3 * k)
        _markers(d, pts, color, k, square=False)
        if c["naive"] is not None:  # dashed: naive (masked) figure
            npts = [frame.px(e, a) for e, a in zip(c["eps"], c["naive"], strict=True)]
            _dashed(d, npts, color, 2 * k)
        _legend(d, frame, i, c["label"], color, small)
    verified = verified_curves(result)
    if verified:
        d.text((right + 15 * k, bottom - 36 * k), "squares: IBP-verified", fill=(60, 60, 60),
               font=small)  # fmt: skip
    for j, c in enumerate(verified):
        color = PALETTE[(len(robust) + j) % len(PALETTE)]
        pts = [frame.px(e, a) for e, a in zip(c["radii"], c["accuracy"], strict=True)]
        _dashed(d, pts, color, 3 * k)
        _markers(d, pts, color, k, square=True)
        _legend(d, frame, len(robust) + j, c["label"] + " verified", color, small, dashed=True)
    d.text((right + 15 * k, bottom - 20 * k), "dashed: naive attack", fill=(60, 60, 60),
           font=small)  # fmt: skip
    return _png(img)


def certified_series(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per smoothed entry: ``label``, ``radii`` (L2), ``certified`` (all images, as the JSON's
    ``certified_accuracy``) and, where the empirical check ran, ``empirical`` (SmoothAdv's
    accuracy on its first ``empirical_n`` images) - what the certified plot draws."""
    out = []
    for entry in result.get("results", []):
        cert = entry.get("certified") if isinstance(entry, dict) else None
        if not isinstance(cert, dict) or cert.get("method") != "smoothing" or "status" in cert:
            continue
        emp = cert.get("empirical") if isinstance(cert.get("empirical"), dict) else None
        out.append(
            {
                "label": str(entry.get("label", "model")),
                "sigma": cert.get("sigma"),
                "radii": [float(r) for r in cert["radii"]],
                "certified": [float(a) for a in cert["certified_accuracy"]],
                "empirical": None if emp is None else [float(a) for a in emp["accuracy"]],
                "empirical_n": None if emp is None else int(emp["n"]),
                "consistent": bool(cert.get("consistent", True)),
            }
        )
    return out


def render_certified_png(
    result: dict[str, Any], size: tuple[int, int] = (900, 600), scale: int = 1
) -> bytes:
    """Smoothing's certified accuracy against the L2 radius (solid, square markers), with
    SmoothAdv's empirical accuracy of the same smoothed model (dashed) above it."""
    k = max(1, int(scale))
    series = certified_series(result)
    radii = sorted({r for s in series for r in s["radii"]}) or [0.0, 1.0]
    frame = PlotFrame(size, k, max(radii) or 1.0)
    sigmas = ", ".join(sorted({f"{s['sigma']:g}" for s in series if s["sigma"] is not None}))
    title = f"Certified accuracy, randomized smoothing (sigma {sigmas})"
    img, d, small = _figure(result, frame, radii, "L2 radius (pixel values in [0, 1])", title)
    _, right, _, bottom = frame.box
    for i, c in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        pts = [frame.px(r, a) for r, a in zip(c["radii"], c["certified"], strict=True)]
        if len(pts) > 1:
            d.line(pts, fill=color, width=3 * k)
        _markers(d, pts, color, k, square=True)
        if c["empirical"] is not None:
            epts = [frame.px(r, a) for r, a in zip(c["radii"], c["empirical"], strict=True)]
            _dashed(d, epts, color, 2 * k)
        bug = "" if c["consistent"] else " BUG"
        _legend(d, frame, i, c["label"] + bug, color, small)
    d.text((right + 15 * k, bottom - 36 * k), "solid: certified", fill=(60, 60, 60), font=small)
    shown = sorted({c["empirical_n"] for c in series if c["empirical_n"] is not None})
    if shown:
        on = "/".join(str(m) for m in shown)
        d.text((right + 15 * k, bottom - 20 * k), f"dashed: SmoothAdv PGD-L2 ({on} images)",
               fill=(60, 60, 60), font=small)  # fmt: skip
    return _png(img)


def certified_png_path(path: Path | str) -> Path:
    """Where ``--plot OUT.png`` puts smoothing's certified plot: ``OUT-certified.png``."""
    p = Path(path)
    return p.with_name(f"{p.stem}-certified{p.suffix or '.png'}")


def save_png(
    result: dict[str, Any], path: Path | str, attack: str | None = None, scale: int = 2
) -> list[Path]:
    """The plot as a PNG file at ``scale`` times 900x600 (2x by default) and, where smoothing
    certified something, its certified plot beside it (:func:`certified_png_path`); the
    files written."""
    atomic_write_bytes(path, render_png(result, attack, scale=scale))
    written = [Path(path)]
    if certified_series(result):
        extra = certified_png_path(path)
        atomic_write_bytes(extra, render_certified_png(result, scale=scale))
        written.append(extra)
    return written
