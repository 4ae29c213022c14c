"""Background jobs: run a core function in a QThread with progress, result, error and cancel.

Modelled on superqt's ``thread_worker``: the worker emits ``progress``/``returned``/``errored``/
``cancelled`` and stops through a thread-safe :class:`CancelToken` it checks between steps (a
queued signal to a busy worker would never run). The worker's signals are received by
:class:`Job`, a QObject living in the GUI thread, and re-emitted there, so any slot or lambda a
tab connects to a ``Job`` runs in the GUI thread and may touch widgets.

A :class:`JobSlot` holds a tab's one job of a kind (the attack, the export...): starting the
next one cancels and disconnects the one before, so a late result never reaches the view, and
every job of the slot shares one error, cancel and finish path.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from advgui.core.errors import AdvguiError
from advgui.core.progress import Cancelled, CancelToken, Partial, Progress
from advgui.core.tfimport import lower_thread_priority
from advgui.qt import gcguard

log = logging.getLogger(__name__)

JobFn = Callable[..., Any]
"""Called as ``fn(progress=callback, cancel=token)`` in the worker thread."""


@dataclass
class ErrorInfo:
    """What went wrong in a job: a user-facing message and, for bugs, the traceback."""

    message: str
    details: str
    user_error: bool


class _Runner(QObject):
    progress = Signal(object)
    returned = Signal(object)
    errored = Signal(object)
    cancelled = Signal()
    done = Signal()

    def __init__(self, fn: JobFn, token: CancelToken) -> None:
        super().__init__()
        self._fn = fn
        self._token = token

    @Slot()
    def run(self) -> None:
        lower_thread_priority()  # the GUI thread comes first when both want a core
        try:
            result = self._fn(progress=self.progress.emit, cancel=self._token)
        except Cancelled:
            self.cancelled.emit()
        except AdvguiError as err:
            self.errored.emit(ErrorInfo(str(err), "", True))
        except BaseException as err:  # a bug: keep the app alive, show and log it
            details = traceback.format_exc()
            log.error("job failed:\n%s", details)
            self.errored.emit(ErrorInfo(f"{type(err).__name__}: {err}", details, False))
        else:
            self.returned.emit(result)
        finally:
            self.done.emit()


class Job(QObject):
    """One background job. Connect to its signals, then :meth:`start`; :meth:`cancel` to stop.

    ``finished`` fires last, after exactly one of ``returned``, ``errored`` or ``cancelled``,
    once the thread has ended. A partial result the core attaches to a progress update comes
    on ``partial`` (just before that update, which then carries progress only).
    """

    progress = Signal(object)  # Progress
    partial = Signal(object)  # Partial
    returned = Signal(object)
    errored = Signal(object)  # ErrorInfo
    cancelled = Signal()
    finished = Signal()

    #: Every job whose thread may still run; the main window and tests join them.
    live: ClassVar[set[Job]] = set()

    def __init__(self, fn: JobFn, *, name: str = "job", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.token = CancelToken()
        self.outcome: str | None = None
        self._thread = QThread()
        self._thread.setObjectName(f"advgui-{name}")
        self._runner = _Runner(fn, self.token)
        self._runner.moveToThread(self._thread)
        self._thread.started.connect(self._runner.run)
        self._runner.progress.connect(self._on_progress)
        self._runner.returned.connect(self._on_returned)
        self._runner.errored.connect(self._on_errored)
        self._runner.cancelled.connect(self._on_cancelled)
        # Direct: quit() is thread-safe, and the GUI thread may be blocked in wait().
        self._runner.done.connect(self._thread.quit, Qt.ConnectionType.DirectConnection)
        self._thread.finished.connect(self._on_thread_finished)

    def start(self) -> Job:
        Job.live.add(self)
        gcguard.hold()
        self._thread.start()
        return self

    def cancel(self) -> None:
        self.token.cancel()

    def is_running(self) -> bool:
        return self._thread.isRunning()

    def wait(self, msecs: int = 30000) -> bool:
        """Block until the thread ends (for shutdown and tests); True if it did."""
        return self._thread.wait(msecs)

    @Slot(object)
    def _on_progress(self, update: Progress) -> None:
        if update.partial is not None:
            self.partial.emit(update.partial)
            update = replace(update, partial=None)
        self.progress.emit(update)

    @Slot(object)
    def _on_returned(self, result: Any) -> None:
        self.outcome = "returned"
        self.returned.emit(result)

    @Slot(object)
    def _on_errored(self, info: ErrorInfo) -> None:
        self.outcome = "errored"
        self.errored.emit(info)

    @Slot()
    def _on_cancelled(self) -> None:
        self.outcome = "cancelled"
        self.cancelled.emit()

    @Slot()
    def _on_thread_finished(self) -> None:
        if self in Job.live:
            Job.live.discard(self)
            gcguard.release()
        self.finished.emit()


def run_job(
    fn: JobFn,
    *,
    name: str = "job",
    parent: QObject | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_partial: Callable[[Partial], None] | None = None,
    on_result: Callable[[Any], None] | None = None,
    on_error: Callable[[ErrorInfo], None] | None = None,
    on_cancel: Callable[[], None] | None = None,
    on_finish: Callable[[], None] | None = None,
) -> Job:
    """Create, connect and start a :class:`Job` in one call (handlers run in the GUI thread)."""
    job = Job(fn, name=name, parent=parent)
    for signal, handler in (
        (job.progress, on_progress),
        (job.partial, on_partial),
        (job.returned, on_result),
        (job.errored, on_error),
        (job.cancelled, on_cancel),
        (job.finished, on_finish),
    ):
        if handler is not None:
            signal.connect(handler)
    return job.start()


class JobSlot(QObject):
    """One job at a time for one purpose of one owner, with one shared path for its outcome.

    :meth:`start` cancels the slot's previous job and disconnects it: whatever it still sends
    (progress, a result computed for inputs that are gone) is dropped. Handlers given here
    serve every job of the slot; ``on_result`` may be given per start. ``on_finish`` runs
    right after the outcome handler (returned, errored or cancelled), so a view that asks
    :meth:`is_running` there already reads False. The thread itself ends a moment later;
    :meth:`join` (shutdown, tests) waits for it.
    """

    def __init__(
        self,
        name: str,
        parent: QObject,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        on_partial: Callable[[Partial], None] | None = None,
        on_result: Callable[[Any], None] | None = None,
        on_error: Callable[[ErrorInfo], None] | None = None,
        on_cancel: Callable[[], None] | None = None,
        on_finish: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(parent)
        self.name = name
        #: The slot's current job (the last started, until :meth:`drop`); None before any.
        self.job: Job | None = None
        self._handlers = {
            "progress": on_progress,
            "partial": on_partial,
            "returned": on_result,
            "errored": on_error,
            "cancelled": on_cancel,
        }
        self._on_finish = on_finish
        self._wiring: list[tuple[Any, Callable[..., None]]] = []

    def start(
        self, fn: JobFn, *, on_result: Callable[[Any], None] | None = None, name: str | None = None
    ) -> Job:
        """Drop the previous job, then start ``fn`` as this slot's job."""
        self.drop()
        job = Job(fn, name=name or self.name, parent=self.parent())
        handlers = dict(self._handlers)
        if on_result is not None:
            handlers["returned"] = on_result
        for signal_name, handler in handlers.items():
            outcome = signal_name in ("returned", "errored", "cancelled")
            relay = self._relay(job, handler, outcome)
            signal = getattr(job, signal_name)
            signal.connect(relay)
            self._wiring.append((signal, relay))
        self.job = job
        return job.start()

    def _relay(self, job: Job, handler: Callable[..., None] | None, outcome: bool) -> Any:
        def relay(*args: Any) -> None:
            if job is not self.job:
                return  # a dropped job's late signal
            if handler is not None:
                handler(*args)
            if outcome and self._on_finish is not None and job is self.job:
                self._on_finish()

        return relay

    def is_running(self) -> bool:
        """True while the current job has not delivered its outcome."""
        return self.job is not None and self.job.outcome is None and self.job in Job.live

    def cancel(self) -> bool:
        """Ask the current job to stop; True if one was running."""
        if not self.is_running():
            return False
        assert self.job is not None
        self.job.cancel()
        return True

    def is_stopping(self) -> bool:
        """True once Stop was asked of the running job (its progress no longer counts)."""
        return self.is_running() and self.job is not None and self.job.token.cancelled

    def drop(self) -> None:
        """Cancel the current job and disconnect it: nothing it sends reaches a handler."""
        for signal, relay in self._wiring:
            with contextlib.suppress(RuntimeError, TypeError):  # already gone with its job
                signal.disconnect(relay)
        self._wiring = []
        if self.job is not None:
            self.job.cancel()
        self.job = None

    def join(self, msecs: int = 30000) -> bool:
        """Cancel the current job and wait for its thread (shutdown)."""
        if self.job is None:
            return True
        self.job.cancel()
        return self.job.wait(msecs)


def cancel_and_join_all(timeout_ms: int = 30000) -> bool:
    """Cancel every live job and wait for its thread; True if all ended in time."""
    jobs = list(Job.live)
    for job in jobs:
        job.cancel()
    return all(job.wait(timeout_ms) for job in jobs)
