"""Jobs: results, errors and cancellation arrive in the GUI thread; threads are joined."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("pytestqt")

from advgui.core.errors import ParameterError
from advgui.core.progress import Progress


def test_result_and_progress_arrive_in_gui_thread(qtbot):
    from advgui.qt.workers import Job

    seen_threads = []

    def work(progress, cancel):
        for i in range(3):
            progress(Progress(i + 1, 3))
        return threading.get_ident()

    job = Job(work, name="t")
    job.progress.connect(lambda p: seen_threads.append(threading.get_ident()))
    results = []
    job.returned.connect(results.append)
    with qtbot.waitSignal(job.finished, timeout=5000):
        job.start()
    assert results and results[0] != threading.get_ident()
    assert seen_threads == [threading.get_ident()] * 3
    assert job.outcome == "returned"


def test_cancel_stops_between_steps(qtbot):
    from advgui.qt.workers import Job

    steps = []

    def work(progress, cancel):
        for i in range(1000):
            cancel.check()
            steps.append(i)
            time.sleep(0.01)

    job = Job(work, name="cancel")
    with qtbot.waitSignal(job.cancelled, timeout=5000):
        job.start()
        qtbot.wait(50)
        job.cancel()
    job.wait()
    assert 0 < len(steps) < 1000 and job.outcome == "cancelled"


def test_errors_carry_user_message_or_traceback(qtbot):
    from advgui.qt.workers import Job

    infos = []
    for exc in (ParameterError("epsilon must be finite"), ZeroDivisionError("boom")):

        def work(progress, cancel, exc=exc):
            raise exc

        job = Job(work, name="err")
        job.errored.connect(infos.append)
        with qtbot.waitSignal(job.finished, timeout=5000):
            job.start()
    assert infos[0].user_error and infos[0].message == "epsilon must be finite"
    assert not infos[1].user_error and "ZeroDivisionError" in infos[1].details
