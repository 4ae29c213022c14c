"""Python's cyclic garbage collector, run only in the GUI thread while workers run Python.

A collection runs in whichever thread happens to allocate when a threshold is crossed. When
that is a worker and the garbage holds a Qt widget (a closed dialog, a replaced plot), the
widget is destroyed outside the GUI thread; seen here: the worker deadlocked inside
``QObject::~QObject`` waiting for the GIL while building a Keras model. pyqtgraph's
``GarbageCollector`` answers the same hazard the same way: while any worker runs, automatic
collection is off and a GUI-thread timer collects by the same thresholds.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer, Slot

#: How often the GUI thread checks the collector's counters while workers run.
INTERVAL_MS = 250


class _Guard(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.holders = 0
        self.quiet = 0  # holders that want no collection at all for now
        self.was_enabled = True
        self.timer = QTimer(self)
        self.timer.setInterval(INTERVAL_MS)
        self.timer.timeout.connect(self.collect)

    @Slot()
    def collect(self) -> None:
        """Collect the generations whose thresholds are crossed, as gc itself would."""
        if self.quiet:
            return
        thresholds = gc.get_threshold()
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if thresholds[generation] and counts[generation] > thresholds[generation]:
                gc.collect(generation)
                return


_guard: _Guard | None = None


def hold(*, quiet: bool = False) -> None:
    """A worker is starting (call in the GUI thread): collect here only, until release().

    ``quiet``: no collection at all until the matching release. For the TensorFlow import:
    it allocates so much that full collections ran every second, each holding the GIL for
    45-85 ms (profiled: the gaps fell inside ``gc`` work during ``marshal.loads`` and
    module bodies); with collection off the import leaves no gap over 30 ms.
    """
    global _guard
    if _guard is None:
        _guard = _Guard()
    if _guard.holders == 0:
        _guard.was_enabled = gc.isenabled()
        gc.disable()
        _guard.timer.start()
    _guard.holders += 1
    _guard.quiet += int(quiet)


def release(*, quiet: bool = False) -> None:
    """The worker ended (GUI thread): the last release restores automatic collection."""
    if _guard is None or _guard.holders == 0:
        return
    _guard.quiet = max(0, _guard.quiet - int(quiet))
    _guard.holders -= 1
    if _guard.holders == 0:
        _guard.timer.stop()
        if _guard.was_enabled:
            gc.enable()


def holders() -> int:
    """Workers currently holding the guard (for tests)."""
    return 0 if _guard is None else _guard.holders


def reset() -> None:
    """Drop every hold and restore automatic collection (after joining all workers: shutdown,
    test teardown), for holds whose release can no longer arrive."""
    if _guard is None or _guard.holders == 0:
        return
    _guard.holders = 1
    _guard.quiet = 0
    release()
