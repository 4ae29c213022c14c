"""Progress reporting and cooperative cancellation shared by every long job.

Core functions take ``progress`` (a plain callable) and ``cancel`` (a :class:`CancelToken`) as
keyword arguments, in the style of Orange's ``TaskState``: the core knows nothing about Qt, the
GUI worker forwards the updates as signals and sets the token from the GUI thread. A token is a
thread-safe flag checked between steps, because a queued signal to a busy worker never runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Cancelled(Exception):
    """Raised inside a job when its token was cancelled; the job leaves nothing half-done."""


class CancelToken:
    """A thread-safe cancel flag; ``check()`` raises :class:`Cancelled` once it is set."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self.cancelled:  # the property, so a token linked to others checks them too
            raise Cancelled()


@dataclass(frozen=True)
class Partial:
    """Part of a result that is ready before the job ends, each kind a typed field (None: not
    in this update), so a view never digs it out of ``Progress.info``. The GUI's job sends it
    on its own signal."""

    curve: Any = None  # np.ndarray (steps,): the cost so far of the first image
    image: Any = None  # np.ndarray (28, 28, 1): the first image as the attack has it now
    entry: dict[str, Any] | None = None  # evaluation: one model/transform's entry so far
    result: Any = None  # comparison: one finished attack's AttackResult
    trace: Any = None  # black-box attacks: [[queries, value], ...] of the first image so far


@dataclass
class Progress:
    """One progress update: ``done`` of ``total`` units, job-specific plain figures in
    ``info`` (what a progress line prints) and, now and then, a :class:`Partial` result.

    ``record`` is the typed object behind ``info`` where a job has one (training's
    :class:`~advgui.core.fit.BatchProgress` and :class:`~advgui.core.fit.EpochRecord`): the GUI
    maps it to curves; ``info`` stays the flat figures a terminal line shows.
    """

    done: float
    total: float
    message: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    partial: Partial | None = None
    record: Any = None

    @property
    def fraction(self) -> float:
        return 0.0 if self.total <= 0 else min(1.0, max(0.0, self.done / self.total))


ProgressCallback = Callable[[Progress], None]


class Throttle:
    """Forward at most one update per ``interval`` seconds; the final one always passes.

    Keeps a worker from flooding the GUI event loop with thousands of queued signals.
    """

    def __init__(self, callback: ProgressCallback | None, interval: float = 0.25) -> None:
        self._callback = callback
        self._interval = interval
        self._last = -float("inf")

    def __call__(self, update: Progress, *, force: bool = False) -> None:
        if self._callback is None:
            return
        now = time.monotonic()
        if force or update.done >= update.total or now - self._last >= self._interval:
            self._last = now
            self._callback(update)


def check(cancel: CancelToken | None) -> None:
    """Raise :class:`Cancelled` if ``cancel`` is set; a no-op for ``None``."""
    if cancel is not None:
        cancel.check()
