"""An attack's rows as concurrent streams: shards of about :data:`SHARD_ROWS` images, run
``tuning.settings().attack_streams`` at a time in threads.

One batch through a compiled attack loop leaves the CPU's cores idle part of the time: the
small per-image bookkeeping ops (argmax, selects, reductions) and the Python between chunks run
on one thread while the other waits. A second stream fills those gaps with its convolutions,
and a shard of a few hundred images keeps its activations in the cache. Measured on the
2-core Xeon (APGD-CE-100 on 1,000 images of the PGD-AT CNN, ``benchmarks/bench_autoattack.py``):
165 images/s as one batch, 185 as two concurrent halves, 194 as four quarters two at a time.
Whether streams help is measured per machine (``core/tuning.py``: ``attack_streams``); on a GPU
there is one stream.

Every image's attack is independent of the others in its batch, so a shard gives the same
result as the whole batch. Progress is merged over the shards (their steps weighted by their
rows, their ``info`` counts summed); Stop reaches every shard through one token, and an error
in one stops the others.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from advgui.core import tuning
from advgui.core.progress import Cancelled, CancelToken, Progress, ProgressCallback

T = TypeVar("T")

#: Rows per shard (four quarters of 1,000 images ran 5% faster than two halves, on the Xeon).
SHARD_ROWS = 256
#: No shard smaller than this: below it the ops are too short to overlap well.
MIN_SHARD_ROWS = 128


def split(n: int, streams: int | None = None) -> list[np.ndarray]:
    """The shards of ``n`` rows (one, all of them, where streams are off or ``n`` is small)."""
    streams = tuning.settings().attack_streams if streams is None else streams
    if streams <= 1 or n < 2 * MIN_SHARD_ROWS:
        return [np.arange(n)]
    count = max(streams, -(-n // SHARD_ROWS))
    count = min(count, n // MIN_SHARD_ROWS)
    return np.array_split(np.arange(n), count)


class _Linked(CancelToken):
    """Cancelled when the caller's token is, or when a sibling shard failed."""

    def __init__(self, outer: CancelToken | None) -> None:
        super().__init__()
        self._outer = outer

    @property
    def cancelled(self) -> bool:
        return self._event.is_set() or (self._outer is not None and self._outer.cancelled)


class _Merged:
    """One progress line over the shards: each shard reports ``done`` of its own ``steps``."""

    def __init__(
        self,
        callback: ProgressCallback | None,
        rows: list[int],
        offset: int,
        span: int,
        grand: int,
        start_info: list[dict[str, Any]],
    ) -> None:
        self._callback = callback
        self._rows = rows
        self._offset, self._span, self._grand = offset, span, grand
        self._done = [0.0] * len(rows)
        self._info = [dict(i) for i in start_info]
        self._message = ""
        self._lock = threading.Lock()

    def part(self, i: int) -> ProgressCallback:
        def report(update: Progress) -> None:
            with self._lock:
                self._done[i] = update.fraction
                self._info[i] = dict(update.info)
                self._message = update.message
                self._send()

        return report

    def finished(self, i: int) -> None:
        """A shard that stopped early (every image broken) counts as done."""
        with self._lock:
            self._done[i] = 1.0
            self._send()

    def _send(self) -> None:
        if self._callback is None:
            return
        n = sum(self._rows)
        frac = sum(r * d for r, d in zip(self._rows, self._done, strict=True)) / max(n, 1)
        keys = {k for info in self._info for k in info}
        info = {
            k: sum(info.get(k, 0) for info in self._info)
            for k in keys
            if all(isinstance(info.get(k, 0), int) for info in self._info)
        }
        done = self._offset + int(frac * self._span)
        self._callback(Progress(done, self._grand, self._message, info))


def run(
    work: Callable[[np.ndarray, ProgressCallback | None, CancelToken], T],
    n: int,
    *,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
    offset: int,
    steps: int,
    grand: int,
    start_info: Callable[[np.ndarray], dict[str, Any]] = lambda rows: {},
    streams: int | None = None,
) -> list[tuple[np.ndarray, T]]:
    """``work(rows, progress, cancel)`` over the shards of ``n`` rows; (rows, result) per shard.

    ``work`` reports its own ``steps`` (``Progress.fraction`` is what counts); the merged line
    runs from ``offset`` over ``steps`` of ``grand``. One shard runs in the calling thread.
    """
    streams = tuning.settings().attack_streams if streams is None else streams
    parts = split(n, streams)
    rows = [len(p) for p in parts]
    merged = _Merged(progress, rows, offset, steps, grand, [start_info(p) for p in parts])
    token = _Linked(cancel)

    def one(i: int) -> T:
        try:
            out = work(parts[i], merged.part(i), token)
        except BaseException:
            token.cancel()  # the siblings stop at their next chunk
            raise
        merged.finished(i)
        return out

    if len(parts) == 1:
        return [(parts[0], one(0))]
    with ThreadPoolExecutor(max_workers=min(streams, len(parts))) as pool:
        futures = [pool.submit(one, i) for i in range(len(parts))]
    errors = [e for e in (f.exception() for f in futures) if e is not None]
    # The shard's own error, not the Cancelled it caused in its siblings.
    first = next((e for e in errors if not isinstance(e, Cancelled)), errors[0] if errors else None)
    if first is not None:
        raise first
    return [(p, f.result()) for p, f in zip(parts, futures, strict=True)]
