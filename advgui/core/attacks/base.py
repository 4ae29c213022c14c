"""The attack interface, after Foolbox 3: keyword-only parameters set once, then called on a
batch; the result says per input whether the attack succeeded, with norms and probabilities.

Every attack differentiates the model's *logits* (``Classifier.logits_model``), keeps pixels in
[0, 1], reports progress every step through a plain callback and checks its cancel token
between steps.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from advgui.core.errors import ParameterError
from advgui.core.params import check_number as check_param  # noqa: F401 (attacks import it here)
from advgui.core.progress import CancelToken, ProgressCallback

#: name -> Attack subclass; filled by :func:`register`.
ATTACKS: dict[str, type[Attack]] = {}


def register(cls: type[Attack]) -> type[Attack]:
    ATTACKS[cls.name] = cls
    return cls


def make_attack(name: str, **params: Any) -> Attack:
    # Import the modules that register attacks, lazily (they import TensorFlow when run).
    from advgui.core.attacks import _registry  # noqa: F401

    if name not in ATTACKS:
        raise ParameterError(f"unknown attack {name!r}; choose one of {sorted(ATTACKS)}")
    return ATTACKS[name](**params)


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
    extra: dict[str, Any] = field(default_factory=dict)

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
    """Base class. Subclasses set ``name``, validate parameters in ``__init__`` (keyword-only)
    and implement :meth:`run`, returning adversarial images (and optionally steps/costs)."""

    name: ClassVar[str] = "attack"
    #: Whether the attack can aim at a chosen class (``goals``).
    supports_targeted: ClassVar[bool] = True
    #: Whether it can run without goals (pushing away from the label).
    supports_untargeted: ClassVar[bool] = True

    def __init__(self, **params: Any) -> None:
        self.params = params

    def __call__(
        self,
        clf: Any,
        x: np.ndarray,
        *,
        labels: np.ndarray | None = None,
        goals: np.ndarray | int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> AttackResult:
        x = np.asarray(x, dtype=np.float32).reshape(-1, 28, 28, 1)
        n = len(x)
        if n == 0:
            raise ParameterError("no images to attack")
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise ParameterError("images must be finite with pixels in [0, 1]")
        probs_before = clf.predict_proba(x)
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
        # Untargeted attacks push away from the true label, or from the clean prediction.
        ref = np.where(labels_arr >= 0, labels_arr, probs_before.argmax(axis=1))
        t0 = time.perf_counter()
        out = self.run(clf, x, ref, goals_arr, progress=progress, cancel=cancel)
        seconds = time.perf_counter() - t0
        x_adv, steps, costs, extra = _unpack(out, n)
        return finalize(
            clf,
            method=self.name,
            params=self.params,
            x=x,
            x_adv=x_adv,
            labels=labels_arr,
            goals=goals_arr,
            probs_before=probs_before,
            steps=steps,
            seconds=seconds,
            cost_history=costs,
            extra=extra,
        )

    @abstractmethod
    def run(
        self,
        clf: Any,
        x: np.ndarray,
        labels: np.ndarray,
        goals: np.ndarray | None,
        *,
        progress: ProgressCallback | None,
        cancel: CancelToken | None,
    ) -> np.ndarray | dict[str, Any]:
        """Return ``x_adv`` or a dict with ``x_adv`` and optionally ``steps``,
        ``cost_history`` and ``extra``. ``labels`` are the classes to move away from."""


def _unpack(out: Any, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict]:
    if isinstance(out, dict):
        x_adv = out["x_adv"]
        steps = np.broadcast_to(np.asarray(out.get("steps", 1)), (n,)).astype(np.int64)
        return x_adv, steps, out.get("cost_history"), dict(out.get("extra", {}))
    return out, np.ones(n, dtype=np.int64), None, {}


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
    extra: dict[str, Any] | None = None,
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
        extra=extra or {},
    )


def compiled(clf: Any, key: tuple, build: Any) -> Any:
    """A compiled function cached on the classifier, so each model is traced once per ``key``
    (tracing costs far more than a run) and the cache dies with the model."""
    cache = clf.__dict__.setdefault("_advgui_compiled", {})
    if key not in cache:
        cache[key] = build()
    return cache[key]
