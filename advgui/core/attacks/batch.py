"""Running attacks over many images: chunks with overall progress and cancel, one result.

Two pieces live here because every iterative attack and every batch caller needs them:

- :func:`run_steps` drives a compiled multi-step function in chunks sized so that the cancel
  token is checked (and progress reported) about every 0.15 s, however fast a step is: one
  Python call per step would waste time on small batches, one call for all steps would make
  Stop unresponsive.
- :func:`run_batch` runs an :class:`~advgui.core.attacks.base.Attack` over N images in chunks
  (memory stays bounded, progress is per image) and concatenates the per-chunk results into one
  :class:`~advgui.core.attacks.base.AttackResult`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from advgui.core.attacks.base import Attack, AttackResult
from advgui.core.errors import ParameterError
from advgui.core.progress import CancelToken, Progress, ProgressCallback, Throttle, check

#: Seconds of compiled work between two cancel checks.
CHUNK_SECONDS = 0.15


def run_steps(
    step_fn: Callable[[Any, int], Any],
    state: Any,
    total: int,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    message: str = "",
    offset: int = 0,
    grand_total: int | None = None,
    info: Callable[[Any], dict[str, Any]] | None = None,
    stop: Callable[[Any, int], bool] | None = None,
    boundary: int = 0,
) -> tuple[Any, int]:
    """Advance ``state`` by ``total`` steps through ``step_fn(state, k)`` (k steps per call).

    ``k`` adapts to the measured time per step (the first call, which may trace, uses 1).
    ``stop(state, done)`` may end the loop early; it is asked at multiples of ``boundary``
    steps (chunks never cross one) or after every chunk when ``boundary`` is 0. Returns the
    state and the number of steps run. Progress reports ``offset + done`` of ``grand_total``.
    """
    throttle = Throttle(progress, interval=0.2)
    grand = grand_total if grand_total is not None else total
    done, k = 0, 1
    while done < total:
        check(cancel)
        k = min(k, total - done)
        if boundary:
            k = min(k, boundary - done % boundary)
        t0 = time.perf_counter()
        state = step_fn(state, k)
        per_step = (time.perf_counter() - t0) / k
        done += k
        throttle(
            Progress(offset + done, grand, message, info(state) if info else {}),
            force=done == total,
        )
        k = max(1, min(1000, int(CHUNK_SECONDS / max(per_step, 1e-6))))
        if stop is not None and (not boundary or done % boundary == 0) and stop(state, done):
            break
    check(cancel)
    return state, done


def run_batch(
    attack: Attack,
    clf: Any,
    x: np.ndarray,
    labels: np.ndarray | None,
    *,
    goals: np.ndarray | int | None = None,
    batch_size: int = 128,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> AttackResult:
    """Attack N images ``batch_size`` at a time; progress counts images over the whole run.

    The result is one :class:`AttackResult` over all N, its ``seconds`` the wall time of the
    whole run (so ``summary()['images_per_second']`` is the real throughput).
    """
    x = np.asarray(x, dtype=np.float32).reshape(-1, 28, 28, 1)
    n = len(x)
    if n == 0:
        raise ParameterError("no images to attack", field="n")
    if int(batch_size) < 1:
        raise ParameterError("batch size must be at least 1", field="batch_size")
    batch_size = int(batch_size)
    labels_arr = None if labels is None else np.broadcast_to(np.asarray(labels), (n,))
    goals_arr = None if goals is None else np.broadcast_to(np.asarray(goals), (n,))
    parts: list[AttackResult] = []
    t0 = time.perf_counter()
    for start in range(0, n, batch_size):
        check(cancel)
        stop = min(n, start + batch_size)
        size = stop - start

        def chunk_progress(update: Progress, start: int = start, size: int = size) -> None:
            if progress is not None:
                done = start + update.fraction * size
                msg = f"{attack.name}: images {start + 1}-{start + size} of {n}"
                progress(Progress(done, n, msg, dict(update.info)))

        parts.append(
            attack(
                clf,
                x[start:stop],
                labels=None if labels_arr is None else labels_arr[start:stop],
                goals=None if goals_arr is None else goals_arr[start:stop],
                progress=chunk_progress,
                cancel=cancel,
            )
        )
    seconds = time.perf_counter() - t0
    result = concat_results(parts)
    result.seconds = seconds
    if progress is not None:
        progress(Progress(n, n, f"{attack.name}: done", {}))
    return result


def concat_results(parts: list[AttackResult]) -> AttackResult:
    """One result from consecutive chunks of the same attack (seconds are summed)."""
    if not parts:
        raise ParameterError("no results to combine")
    if len(parts) == 1:
        return parts[0]
    first = parts[0]

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts])

    histories = [p.cost_history for p in parts]
    cost = None
    if all(h is not None for h in histories) and len({h.shape[0] for h in histories}) == 1:
        cost = np.concatenate(histories, axis=1)
    extra: dict[str, Any] = {"chunks": len(parts)}
    for key, value in first.extra.items():
        values = [p.extra.get(key) for p in parts]
        if all(isinstance(v, np.ndarray) and v.ndim >= 1 for v in values):
            extra[key] = np.concatenate(values)
        elif all(v == value for v in values if not isinstance(v, np.ndarray)):
            extra[key] = value
    return AttackResult(
        method=first.method,
        params=dict(first.params),
        x=cat("x"),
        x_adv=cat("x_adv"),
        labels=cat("labels"),
        goals=None if first.goals is None else cat("goals"),
        probs_before=cat("probs_before"),
        probs_after=cat("probs_after"),
        success=cat("success"),
        l0=cat("l0"),
        l2=cat("l2"),
        linf=cat("linf"),
        steps=cat("steps"),
        seconds=float(sum(p.seconds for p in parts)),
        cost_history=cost,
        extra=extra,
    )
