"""Garbage holding Qt objects is collected in the GUI thread while a worker runs Python."""

from __future__ import annotations

import gc
import threading
from typing import ClassVar

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QObject

from advgui.qt import gcguard
from advgui.qt.workers import Job, run_job


class _Tracked(QObject):
    """A QObject in a reference cycle: only the cyclic collector can free it."""

    freed_in: ClassVar[list[str]] = []

    def __init__(self) -> None:
        super().__init__()
        self.me = self

    def __del__(self) -> None:
        _Tracked.freed_in.append(threading.current_thread().name)


def test_worker_allocations_never_collect_qt_garbage(qtbot):
    gc.collect()
    _Tracked.freed_in.clear()
    enabled_during: list[bool] = []
    started = threading.Event()
    go = threading.Event()

    def work(progress, cancel):
        started.set()
        go.wait(10)
        enabled_during.append(gc.isenabled())
        junk = [[i] for i in range(300_000)]  # crosses the gen-0 threshold hundreds of times
        return len(junk)

    job = run_job(work, name="allocate")
    assert gcguard.holders() == 1
    assert started.wait(10)
    for _ in range(20):
        _Tracked()  # garbage cycles made while the worker runs
    go.set()
    qtbot.waitUntil(lambda: job.outcome is not None and job not in Job.live, timeout=30000)
    assert job.outcome == "returned" and enabled_during == [False]
    assert gcguard.holders() == 0 and gc.isenabled()
    gc.collect()
    assert len(_Tracked.freed_in) == 20
    assert set(_Tracked.freed_in) == {threading.main_thread().name}


def test_the_timer_collects_while_workers_hold(qtbot):
    gc.collect()
    _Tracked.freed_in.clear()
    gcguard.hold()
    try:
        for _ in range(5):
            _Tracked()
        junk = [[i] for i in range(50_000)]  # counters over the thresholds, gc disabled
        assert not gc.isenabled() and len(junk)
        qtbot.waitUntil(lambda: len(_Tracked.freed_in) == 5, timeout=5000)
        assert set(_Tracked.freed_in) == {threading.main_thread().name}
    finally:
        gcguard.release()
    assert gc.isenabled()
