"""Garbage holding Qt objects is collected in the GUI thread while a worker runs Python."""

from __future__ import annotations

import gc
import os
import sys
import threading
from typing import ClassVar

import pytest
from PySide6.QtCore import QObject

from advgui.qt import gcguard
from advgui.qt.workers import Job, run_job

pytest.importorskip("PySide6")


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


def test_quiet_hold_collects_nothing_until_released(qtbot):
    gc.collect()
    _Tracked.freed_in.clear()
    gcguard.hold(quiet=True)
    try:
        for _ in range(5):
            _Tracked()
        junk = [[i] for i in range(50_000)]
        qtbot.wait(3 * gcguard.INTERVAL_MS)
        assert len(junk) and _Tracked.freed_in == [] and not gc.isenabled()
    finally:
        gcguard.release(quiet=True)
    assert gc.isenabled() and gcguard.holders() == 0
    gc.collect()
    assert len(_Tracked.freed_in) == 5


_PRELOAD = """
import gc, os, sys, threading
from PySide6.QtWidgets import QApplication
app = QApplication([])
from advgui.qt.main_window import MainWindow
base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
w = MainWindow(data_path=sys.argv[1])
from PySide6.QtCore import QElapsedTimer
clock = QElapsedTimer(); clock.start()
while not w.tf_label.text().endswith(("ready", "load")) and clock.elapsed() < 120000:
    app.processEvents()
def nice(tid):
    with open(f"/proc/self/task/{tid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])
tids = [int(t) for t in os.listdir("/proc/self/task")]
main = threading.main_thread().native_id
lowered = [t for t in tids if t != main and nice(t) >= base + 5]
frozen = gc.get_freeze_count() > 0
print(w.tf_label.text(), gc.isenabled(), frozen, nice(main) == base, len(lowered))
w.close()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux")
def test_preload_lowers_tensorflow_threads_and_freezes_its_modules(tmp_path, mnist_path):
    import subprocess

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "ADVGUI_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", _PRELOAD, str(mnist_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    label, enabled, frozen, main_same, lowered = proc.stdout.strip().splitlines()[-1].rsplit(" ", 4)
    assert label.endswith("ready") and enabled == "True" and frozen == "True"
    assert main_same == "True"  # the GUI thread keeps its priority
    assert int(lowered) >= 2  # TensorFlow's compute threads run below it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux")
def test_worker_threads_run_below_the_gui_thread(qtbot):
    from advgui.core.tfimport import BACKGROUND_NICE

    def work(progress, cancel):
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    results = []
    job = run_job(work, name="nice", on_result=results.append)
    qtbot.waitUntil(lambda: job.outcome is not None and job not in Job.live, timeout=10000)
    main = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert results == [min(19, main + BACKGROUND_NICE)]
