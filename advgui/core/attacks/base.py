"""The attack interface, after Foolbox 3: parameters declared once (:mod:`.spec`), set at
construction, checked there; then called on a batch (``eps`` may be given per call, so a
sweep reuses one attack and one trace); the result says per input whether the attack
succeeded, with norms, probabilities and the attack's own typed details.

Every attack differentiates the model's *logits* (``Classifier.logits_model``), keeps pixels in
[0, 1], reports progress every step through a plain callback and checks its cancel token
between steps.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from advgui.core.attacks.spec import FIXED_BUDGET, WHITE_BOX, Param, by_name, check_all
from advgui.core.errors import ParameterError
from advgui.core.progress import CancelToken, ProgressCallback

#: name -> Attack subclass; filled by :func:`register`.
ATTACKS: dict[str, type[Attack]] = {}


def register(cls: type[Attack]) -> type[Attack]:
    ATTACKS[cls.name] = cls
    return cls


def make_attack(name: str, **params: Any) -> Attack:
    """The registered attack ``name`` with ``params`` checked against its spec."""
    import advgui.core.attacks  # noqa: F401  (registers every attack; no TensorFlow)

    if name not in ATTACKS:
        raise ParameterError(f"unknown attack {name!r}; choose one of {sorted(ATTACKS)}")
    return ATTACKS[name](**params)


@dataclass
class Details:
    """What some attacks know beyond the images, each a typed field (None: not applicable)."""

    lam: list[float] | None = None  # the deck's targeted attack: lambda chosen per image
    lam_tried: list[list[float]] | None = None  # ... and every lambda of the search
    x_start: np.ndarray | None = None  # where a descent started, when not at the image
    stall_note: str | None = None  # why the literal deck cost stalls
    margin: np.ndarray | None = None  # logit margin of the kept example (> 0: success)
    precision: str | None = None  # arithmetic of the gradients ("float32", "bfloat16")
    c: np.ndarray | None = None  # C&W: the smallest successful trade-off constant
    best_l2: np.ndarray | None = None  # C&W: L2 of the best example found
    failed: np.ndarray | None = None  # DeepFool: still classified correctly
    pixels_used: np.ndarray | None = None  # JSMA: pixels changed per image
    queries: np.ndarray | None = None  # model queries per image (black-box attacks, cascades)
    zero_gradient: np.ndarray | None = None  # APGD: the gradient at the start point is all zero
    min_norm: np.ndarray | None = None  # FAB, HopSkipJump: smallest norm found (inf: none)
    cascade: list[dict[str, Any]] | None = None  # AutoAttack: per attack, points run on, broken
    flags: list[dict[str, Any]] | None = None  # AutoAttack: warnings about the evaluation
    chunks: int | None = None  # run in this many chunks (run_batch)
    #: Black-box attacks: [queries used, value] of the first image as the run went (Square:
    #: its logit margin, HopSkipJump: its distance); what the Attack tab plots.
    trace: list[list[float]] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }

    @classmethod
    def from_dict(cls, data: Any) -> Details:
        """From a stored record (hostile: unknown keys are dropped, arrays rebuilt)."""
        if not isinstance(data, dict):
            return cls()
        out = cls()
        for f in fields(cls):
            value = data.get(f.name)
            if value is None:
                continue
            if f.name == "trace":  # pairs of numbers, else dropped
                value = _trace(value)
                if value is None:
                    continue
            elif f.name in _ARRAYS:
                value = np.asarray(value)
            elif f.name in _RECORDS and not (  # lists of plain records; else dropped
                isinstance(value, list) and all(isinstance(v, dict) for v in value)
            ):
                continue
            setattr(out, f.name, value)
        return out

    def digest(self) -> dict[str, Any] | None:
        """What a summary keeps: the records (a cascade, warning flags) as they are and the
        median of the queries; None if there are none."""
        out: dict[str, Any] = {}
        if self.cascade:
            out["cascade"] = self.cascade
        if self.flags:
            out["flags"] = self.flags
        if self.queries is not None and len(self.queries):
            out["queries_median"] = float(np.median(self.queries))
        return out or None

    @classmethod
    def merge(cls, parts: list[Details]) -> Details:
        """The details of consecutive chunks of one run (:func:`~.batch.run_batch`): arrays
        concatenated, per-image lists joined, cascades added up attack by attack, flags
        joined by name with their counts added; a value that differs between chunks and has
        no rule is dropped."""
        out = cls(chunks=len(parts))
        for f in fields(cls):
            values = [getattr(p, f.name) for p in parts]
            if f.name == "chunks" or values[0] is None:
                continue
            if f.name == "trace":  # the first image's, which is in the first chunk
                setattr(out, f.name, values[0])
                continue
            if all(isinstance(v, np.ndarray) and v.ndim >= 1 for v in values):
                setattr(out, f.name, np.concatenate(values))
            elif f.name in ("lam", "lam_tried") and all(isinstance(v, list) for v in values):
                setattr(out, f.name, [x for v in values for x in v])
            elif f.name == "flags" and all(isinstance(v, list) for v in values):
                from advgui.core.attacks import flags

                setattr(out, f.name, flags.merge(values))
            elif f.name == "cascade" and all(isinstance(v, list) for v in values):
                setattr(out, f.name, _add_records(values))
            elif all(v == values[0] for v in values if not isinstance(v, np.ndarray)):
                setattr(out, f.name, values[0])
        if out.cascade and out.queries is not None:
            out.flags = _masking_of_the_whole(out.flags, out.cascade, len(out.queries))
        return out


def _masking_of_the_whole(
    found: list[dict[str, Any]] | None, cascade: list[dict[str, Any]], n: int
) -> list[dict[str, Any]] | None:
    """The gradient-masking flags decided again on the whole run's cascade: a chunk where the
    black-box attack broke too few to fire has no flag to add up, yet its images count (a
    sum over the chunks that fired said "122 of 8305" on a run whose cascade said 124 of
    9279)."""
    from advgui.core.attacks import flags

    kept = [f for f in found or [] if f.get("name") != "gradient-masking"]
    kept += flags.black_box_beats(cascade, n)
    return None if found is None and not kept else kept


_ARRAYS = frozenset(
    {"x_start", "margin", "c", "best_l2", "failed", "pixels_used", "queries", "zero_gradient",
     "min_norm"}
)  # fmt: skip
#: Fields holding lists of records keyed by a name ("attack" or "name").
_RECORDS = ("cascade", "flags")
#: The most points a stored trace may hold (one per query of a long Square run is 10,000s).
MAX_TRACE = 100_000


def _trace(value: Any) -> list[list[float]] | None:
    """A stored trace as pairs of finite floats, or None when it is anything else."""
    if not isinstance(value, list) or len(value) > MAX_TRACE:
        return None
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.ndim != 2 or arr.shape[1:] != (2,) or not np.isfinite(arr).all():
        return None
    return arr.tolist()


def _add_records(lists: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Cascade records of several chunks joined by attack: counts and seconds added, the rest
    (kinds, access) kept from the first chunk."""
    merged: dict[str, dict[str, Any]] = {}
    for records in lists:
        for rec in records:
            key = str(rec.get("attack"))
            if key not in merged:
                merged[key] = dict(rec)
                continue
            into = merged[key]
            for name, value in rec.items():
                old = into.get(name)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    if isinstance(old, (int, float)) and not isinstance(old, bool):
                        into[name] = old + value
                elif old is None:
                    into[name] = value
    return list(merged.values())


class _DetailsView(dict):
    _names = frozenset(f.name for f in fields(Details))

    def __missing__(self, key: str) -> None:
        if key in self._names:
            return None
        raise KeyError(key)


@dataclass
class Outcome:
    """What :meth:`Attack.run` returns: the adversarial images and what the run measured."""

    x_adv: np.ndarray
    steps: np.ndarray | int = 1
    cost_history: np.ndarray | None = None  # (steps, N): what the attack minimises, per step
    details: Details = field(default_factory=Details)


@dataclass
class Task:
    """One call's work for :meth:`Attack.run`: the classes to move away from (``labels``) or
    to reach (``goals``, None: untargeted), this call's parameters (``eps`` may differ from the
    object's), and where to report progress and look for Stop."""

    labels: np.ndarray
    goals: np.ndarray | None
    params: dict[str, Any]
    progress: ProgressCallback | None = None
    cancel: CancelToken | None = None
    #: Starting points, one per image (attacks with ``takes_starts``), or None.
    starts: np.ndarray | None = None


@dataclass
class AttackResult:
    """Per-input outcome of one attack run over a batch of N images."""

    method: str
    params: dict[str, Any]
    x: np.ndarray  # (N, 28, 28, 1) originals
    x_adv: np.ndarray  # (N, 28, 28, 1) float32 in [0, 1]
    labels: np.ndarray  # (N,) true labels, -1 where unknown
    goals: np.ndarray | None  # (N,) target classes, None for untargeted
    probs_before: np.ndarray  # (N, 10)
    probs_after: np.ndarray  # (N, 10)
    success: np.ndarray  # (N,) bool
    l0: np.ndarray  # (N,) number of changed pixels
    l2: np.ndarray
    linf: np.ndarray
    steps: np.ndarray  # (N,) steps run
    seconds: float
    cost_history: np.ndarray | None = None  # (steps, N) for iterative attacks
    details: Details = field(default_factory=Details)

    @property
    def extra(self) -> dict[str, Any]:
        """The details that apply, by name; a detail the attack does not set reads as None."""
        return _DetailsView(self.details.as_dict())

    @property
    def pred_before(self) -> np.ndarray:
        return self.probs_before.argmax(axis=1)

    @property
    def pred_after(self) -> np.ndarray:
        return self.probs_after.argmax(axis=1)

    def __len__(self) -> int:
        return len(self.x_adv)

    def record(self, i: int) -> dict[str, Any]:
        """Plain JSON-ready facts about input ``i``."""
        goal = None if self.goals is None else int(self.goals[i])
        target_class = goal if goal is not None else int(self.pred_after[i])
        return {
            "method": self.method,
            "params": dict(self.params),
            "source_label": int(self.labels[i]),
            "goal": goal,
            "pred_before": int(self.pred_before[i]),
            "pred_after": int(self.pred_after[i]),
            "probs_before": [float(p) for p in self.probs_before[i]],
            "probs_after": [float(p) for p in self.probs_after[i]],
            "goal_confidence": float(self.probs_after[i, target_class]),
            "success": bool(self.success[i]),
            "l0": int(self.l0[i]),
            "l2": float(self.l2[i]),
            "linf": float(self.linf[i]),
            "steps": int(self.steps[i]),
            "seconds": float(self.seconds),
        }

    def summary(self) -> dict[str, Any]:
        """Batch figures: success rate, robust accuracy, norms over successes, speed."""
        n = len(self)
        ok = self.success
        known = self.labels >= 0
        robust = (self.pred_after == self.labels) & known
        norms = {}
        for name, values in (("l0", self.l0), ("l2", self.l2), ("linf", self.linf)):
            vals = values[ok] if ok.any() else np.zeros(0)
            norms[f"mean_{name}"] = float(vals.mean()) if len(vals) else math.nan
            norms[f"median_{name}"] = float(np.median(vals)) if len(vals) else math.nan
        return {
            "method": self.method,
            "params": dict(self.params),
            "n": n,
            "success_rate": float(ok.mean()) if n else math.nan,
            "robust_accuracy": float(robust.sum() / known.sum()) if known.any() else math.nan,
            "clean_accuracy": (
                float(((self.pred_before == self.labels) & known).sum() / known.sum())
                if known.any()
                else math.nan
            ),
            **norms,
            "seconds": float(self.seconds),
            "images_per_second": float(n / self.seconds) if self.seconds > 0 else math.nan,
        }


class Attack(ABC):
    """Base class. A subclass sets ``name``, ``kind`` and ``spec`` (its parameters, declared
    once) and implements :meth:`run`; it may override :meth:`validate` for rules between
    parameters and values derived from others. Nothing else: construction, checking, calling
    and measuring are here, the same for every attack."""

    name: ClassVar[str] = "attack"
    #: Fixed budget (an ``eps`` is given) or minimum norm: how an evaluation runs it.
    kind: ClassVar[str] = FIXED_BUDGET
    #: What it sees of the model: gradients, only the scores, or only the label.
    access: ClassVar[str] = WHITE_BOX
    #: Every parameter the attack takes.
    spec: ClassVar[tuple[Param, ...]] = ()
    #: Whether the attack can aim at a chosen class (``goals``).
    supports_targeted: ClassVar[bool] = True
    #: Whether it can run without goals (pushing away from the label).
    supports_untargeted: ClassVar[bool] = True
    #: Accepts ``starts``: points to begin from (a decision-based attack needs a misclassified
    #: one; an image of the target class, or another run's result, beats random noise).
    takes_starts: ClassVar[bool] = False
    #: Whether a robustness evaluation offers it (the noise attack replaces its inputs).
    evaluable: ClassVar[bool] = True

    def __init__(self, **params: Any) -> None:
        self._given = dict(params)
        self.params = self._checked(params)

    def _checked(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.validate(check_all(self.name, self.spec, params))

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        """Rules between parameters; values derived from others. Raise ParameterError."""
        return params

    @classmethod
    def cost_axis(cls, params: dict[str, Any], targeted: bool) -> tuple[str, str] | None:
        """What ``cost_history`` holds per step: (plot title, y axis label); None when the
        attack records no cost (the Attack tab then hides its cost plot)."""
        return None

    @classmethod
    def trace_axis(cls, params: dict[str, Any], targeted: bool) -> tuple[str, str, str] | None:
        """What ``details.trace`` plots: (title, x axis, y axis); None for an attack without
        one. A black-box attack's cost is counted in queries, not steps."""
        return None

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {p.name: p.default for p in cls.spec}

    @classmethod
    def param(cls, name: str) -> Param | None:
        return by_name(cls.spec).get(name)

    @classmethod
    def describe(cls) -> str:
        """One line for lists and tooltips: the docstring's first line."""
        return (cls.__doc__ or cls.name).strip().splitlines()[0]

    def with_eps(self, eps: float | None) -> dict[str, Any]:
        """The parameters with ``eps`` replaced (and what derives from it recomputed)."""
        if eps is None:
            return self.params
        if self.param("eps") is None:
            raise ParameterError(f"{self.name} takes no epsilon", field="eps")
        return self._checked({**self._given, "eps": eps})

    def prepare_inputs(self, x: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """The images the attack really starts from (the deck's noise attack: seeded noise)."""
        return x

    def __call__(
        self,
        clf: Any,
        x: np.ndarray,
        *,
        labels: np.ndarray | None = None,
        goals: np.ndarray | int | None = None,
        eps: float | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        starts: np.ndarray | None = None,
    ) -> AttackResult:
        params = self.with_eps(eps)
        x = np.asarray(x, dtype=np.float32).reshape(-1, 28, 28, 1)
        n = len(x)
        if n == 0:
            raise ParameterError("no images to attack")
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise ParameterError("images must be finite with pixels in [0, 1]")
        if starts is not None:
            if not self.takes_starts:
                raise ParameterError(f"{self.name} does not take starting points")
            starts = np.asarray(starts, dtype=np.float32)
            if starts.size != x.size:
                raise ParameterError("one starting point per image is needed")
            starts = starts.reshape(x.shape)
            if not np.isfinite(starts).all() or starts.min() < 0 or starts.max() > 1:
                raise ParameterError("starting points must be finite with pixels in [0, 1]")
        x = np.asarray(self.prepare_inputs(x, params), np.float32)
        if labels is None:
            labels_arr = np.full(n, -1, dtype=np.int64)
        else:
            labels_arr = np.broadcast_to(np.asarray(labels, dtype=np.int64), (n,)).copy()
        goals_arr = None
        if goals is not None:
            goals_arr = np.broadcast_to(np.asarray(goals, dtype=np.int64), (n,)).copy()
            if goals_arr.min() < 0 or goals_arr.max() > 9:
                raise ParameterError("target digit must be between 0 and 9", field="goal")
            if not self.supports_targeted:
                raise ParameterError(f"{self.name} cannot aim at a target digit", field="goal")
        elif not self.supports_untargeted:
            raise ParameterError(f"{self.name} needs a target digit", field="goal")
        probs_before = clf.predict_proba(x)
        # Untargeted attacks push away from the true label, or from the clean prediction.
        ref = np.where(labels_arr >= 0, labels_arr, probs_before.argmax(axis=1))
        t0 = time.perf_counter()
        out = self.run(clf, x, Task(ref, goals_arr, params, progress, cancel, starts))
        seconds = time.perf_counter() - t0
        return finalize(
            clf,
            method=self.name,
            params=params,
            x=x,
            x_adv=out.x_adv,
            labels=labels_arr,
            goals=goals_arr,
            probs_before=probs_before,
            steps=np.broadcast_to(np.asarray(out.steps), (n,)).astype(np.int64),
            seconds=seconds,
            cost_history=out.cost_history,
            details=out.details,
        )

    @abstractmethod
    def run(self, clf: Any, x: np.ndarray, task: Task) -> Outcome:
        """Attack ``x`` as ``task`` says; the adversarial images and what the run measured."""


def finalize(
    clf: Any,
    *,
    method: str,
    params: dict[str, Any],
    x: np.ndarray,
    x_adv: np.ndarray,
    labels: np.ndarray,
    goals: np.ndarray | None,
    probs_before: np.ndarray,
    steps: np.ndarray,
    seconds: float,
    cost_history: np.ndarray | None = None,
    details: Details | None = None,
) -> AttackResult:
    """Classify ``x_adv`` and measure it: the one place success and norms are defined."""
    x_adv = np.clip(np.asarray(x_adv, dtype=np.float32).reshape(x.shape), 0.0, 1.0)
    probs_after = clf.predict_proba(x_adv)
    pred_after = probs_after.argmax(axis=1)
    if goals is not None:
        success = pred_after == goals
    else:
        ref = np.where(labels >= 0, labels, probs_before.argmax(axis=1))
        success = pred_after != ref
    delta = (x_adv - x).reshape(len(x), -1)
    return AttackResult(
        method=method,
        params=dict(params),
        x=x,
        x_adv=x_adv,
        labels=labels,
        goals=goals,
        probs_before=probs_before,
        probs_after=probs_after,
        success=success,
        l0=(np.abs(delta) > 1e-6).sum(axis=1),
        l2=np.sqrt((delta.astype(np.float64) ** 2).sum(axis=1)),
        linf=np.abs(delta).max(axis=1),
        steps=steps,
        seconds=seconds,
        cost_history=cost_history,
        details=details or Details(),
    )
