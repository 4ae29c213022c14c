"""Running an attack over many images: chunks with overall progress and cancel, one result.

:func:`run_batch` runs an :class:`~advgui.core.attacks.base.Attack` over N images in chunks
(memory stays bounded, progress is per image) and concatenates the per-chunk results into one
:class:`~advgui.core.attacks.base.AttackResult`. (The stepped loop inside one attack is
:func:`advgui.core.attacks.engine.run_steps`.)
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from advgui.core.attacks.base import Attack, AttackResult, Details
from advgui.core.errors import ParameterError
from advgui.core.progress import CancelToken, Progress, ProgressCallback, check


def run_batch(
    attack: Attack,
    clf: Any,
    x: np.ndarray,
    labels: np.ndarray | None,
    *,
    goals: np.ndarray | int | None = None,
    eps: float | None = None,
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
                progress(Progress(done, n, msg, dict(update.info), update.partial))

        parts.append(
            attack(
                clf,
                x[start:stop],
                labels=None if labels_arr is None else labels_arr[start:stop],
                goals=None if goals_arr is None else goals_arr[start:stop],
                eps=eps,
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
    details = Details.merge([p.details for p in parts])
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
        details=details,
    )
