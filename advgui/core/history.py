"""Session history: attack runs and defense comparisons kept in the results store as they
finish, and turned back into what the tabs show when the app is opened again.

An attack run is stored whole (images, probabilities, cost curves as arrays; numbers as JSON),
so reopening it shows exactly what the Attack tab showed, without the model. A comparison is
the JSON dict :func:`advgui.core.evaluation.evaluate` returns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from advgui.core.attacks.base import AttackResult, Details
from advgui.core.errors import DataError
from advgui.core.results import ResultEntry, ResultStore

ATTACK_KIND = "attack"
COMPARISON_KIND = "comparison"
_ARRAYS = ("x", "x_adv", "labels", "goals", "probs_before", "probs_after", "success", "l0",
           "l2", "linf", "steps", "cost_history")  # fmt: skip


def attack_title(result: AttackResult, model: str) -> str:
    n = len(result)
    ok = int(np.asarray(result.success).sum())
    return f"{result.method} on {model}: {ok}/{n} fooled"


def save_attack(
    store: ResultStore,
    result: AttackResult,
    *,
    model: str,
    indices: list[int] | None = None,
    inputs: np.ndarray | None = None,
    png_pred: np.ndarray | None = None,
) -> ResultEntry:
    """Keep a finished attack run (atomic: a whole entry or none). ``inputs`` are the images
    attacked, where the run started elsewhere (the deck's attack from noise); ``png_pred`` the
    classes of the adversarial images after 8-bit rounding (:func:`export.png_predictions`),
    which the lab report shows."""
    arrays = {k: np.asarray(getattr(result, k)) for k in _ARRAYS if getattr(result, k) is not None}
    if inputs is not None:
        arrays["inputs"] = np.asarray(inputs, np.float32)
    if png_pred is not None:
        arrays["png_pred"] = np.asarray(png_pred, np.int64)
    payload = {
        "method": result.method,
        "params": dict(result.params),
        "seconds": float(result.seconds),
        "extra": result.details.as_dict(),
        "model": model,
        "indices": None if indices is None else [int(i) for i in indices],
        "summary": result.summary(),
    }
    return store.add(ATTACK_KIND, payload, name=attack_title(result, model), arrays=arrays)


def load_attack(entry: ResultEntry) -> tuple[AttackResult, dict[str, Any]]:
    """An attack run back from the store, and its payload (model name, test indices) with
    ``inputs``: the attacked images (``result.x`` where none were stored).

    :class:`DataError` if the entry is damaged (missing or inconsistent arrays).
    """
    arrays = entry.arrays()
    p = entry.payload
    try:
        n = len(arrays["x_adv"])
        result = AttackResult(
            method=str(p["method"]),
            params=dict(p.get("params") or {}),
            x=arrays["x"].astype(np.float32),
            x_adv=arrays["x_adv"].astype(np.float32),
            labels=arrays["labels"].astype(np.int64),
            goals=arrays["goals"].astype(np.int64) if "goals" in arrays else None,
            probs_before=arrays["probs_before"].astype(np.float32),
            probs_after=arrays["probs_after"].astype(np.float32),
            success=arrays["success"].astype(bool),
            l0=arrays["l0"],
            l2=arrays["l2"],
            linf=arrays["linf"],
            steps=arrays["steps"],
            seconds=float(p.get("seconds", 0.0)),
            cost_history=arrays.get("cost_history"),
            details=Details.from_dict(p.get("extra")),
        )
        shapes_ok = (
            result.x.shape == result.x_adv.shape == (n, 28, 28, 1)
            and result.probs_before.shape == result.probs_after.shape == (n, 10)
            and all(len(a) == n for a in (result.labels, result.success, result.l2, result.steps))
            and (result.goals is None or len(result.goals) == n)
        )
        if not shapes_ok:
            raise ValueError("arrays of inconsistent shapes")
        indices = p.get("indices")
        if indices is not None and len(indices) != n:
            raise ValueError("indices do not match the images")
        inputs = arrays["inputs"].astype(np.float32) if "inputs" in arrays else result.x
        if inputs.shape != result.x.shape:
            raise ValueError("inputs do not match the images")
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise DataError(f"{entry.path.name}: damaged attack result ({err})") from err
    return result, {**p, "inputs": inputs}


def save_comparison(store: ResultStore, result: dict[str, Any]) -> ResultEntry:
    """Keep a finished defense comparison."""
    found = result.get("results")
    labels = (
        [str(e.get("label", "?")) for e in found if isinstance(e, dict)]
        if isinstance(found, list)
        else []
    )
    name = (
        f"{', '.join(labels[:3])}{'...' if len(labels) > 3 else ''} ({result.get('n', '?')} images)"
    )
    return store.add(COMPARISON_KIND, result, name=name)


def load_comparison(entry: ResultEntry) -> dict[str, Any]:
    """A stored comparison; :class:`DataError` if it is not one."""
    result = entry.payload
    if not isinstance(result.get("results"), list) or not isinstance(result.get("eps"), list):
        raise DataError(f"{entry.path.name}: damaged comparison (no results or eps)")
    return result
