"""Jobs: results, errors and cancellation arrive in the GUI thread; threads are joined."""

from __future__ import annotations

import threading
import time

import pytest

from advgui.core.errors import ParameterError
from advgui.core.progress import Progress

pytest.importorskip("pytestqt")


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


def test_job_slot_drops_the_previous_job_and_shares_one_outcome_path(qtbot):
    from PySide6.QtCore import QObject

    from advgui.core.progress import Partial
    from advgui.qt.workers import Job, JobSlot

    owner = QObject()
    seen: list[tuple] = []
    slot = JobSlot(
        "slot-test",
        owner,
        on_progress=lambda u: seen.append(("progress", u.message)),
        on_partial=lambda p: seen.append(("partial", p.curve)),
        on_result=lambda r: seen.append(("result", r)),
        on_cancel=lambda: seen.append(("cancelled",)),
        on_finish=lambda: seen.append(("finish", slot.is_running())),
    )
    release = threading.Event()

    def slow(progress, cancel):
        progress(Progress(0, 1, "old"))
        release.wait(5)  # still busy when the next job starts; ignores its token
        progress(Progress(1, 1, "old late", partial=Partial(curve=[1.0])))
        return "old result"

    def quick(progress, cancel):
        progress(Progress(1, 1, "new", {"cost": 1.0}, Partial(curve=[2.0])))
        return "new result"

    old = slot.start(slow)
    qtbot.waitUntil(lambda: ("progress", "old") in seen, timeout=5000)
    assert slot.is_running() and slot.job is old
    new = slot.start(quick)
    assert old.token.cancelled and slot.job is new
    qtbot.waitUntil(lambda: any(s[0] == "finish" for s in seen), timeout=5000)
    release.set()
    qtbot.waitUntil(lambda: old not in Job.live and new not in Job.live, timeout=5000)
    qtbot.wait(50)
    assert old.outcome == "returned"  # it finished, but nothing of it reached the handlers
    assert seen == [
        ("progress", "old"),
        ("partial", [2.0]),
        ("progress", "new"),
        ("result", "new result"),
        ("finish", False),
    ]
    assert not slot.cancel()  # nothing running: nothing to stop


def test_an_attack_in_concurrent_shards_reports_and_stops_through_the_gui_thread(
    qtbot, trained_cnn, mnist
):
    """APGD's shards report from their own threads: the updates still reach the window in
    the GUI thread, in order, and Stop ends every shard (attacks/streams.py)."""
    from advgui.core import tuning
    from advgui.core.attacks import make_attack, streams
    from advgui.qt.workers import Job

    x, y = mnist.x_test[:300], mnist.y_test[:300]
    attack = make_attack("apgd-ce", eps=0.1, steps=3000)
    shards = []

    def work(progress, cancel):
        with tuning.overridden(attack_streams=2):
            shards.append(len(streams.split(len(x))))
            return attack(trained_cnn, x, labels=y, progress=progress, cancel=cancel)

    seen = []
    job = Job(work, name="shards")
    job.progress.connect(lambda p: seen.append((threading.get_ident(), p.done, p.total)))
    with qtbot.waitSignal(job.cancelled, timeout=60000):
        job.start()
        qtbot.waitUntil(lambda: len(seen) >= 3, timeout=30000)
        job.cancel()
    assert job.wait()
    assert shards == [2] and job.outcome == "cancelled"
    assert {who for who, _, _ in seen} == {threading.get_ident()}
    done = [d for _, d, _ in seen]
    assert done == sorted(done) and 0 < done[-1] < seen[-1][2]
