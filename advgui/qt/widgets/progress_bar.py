"""One way every progress bar says how a job ended: done (full), or stopped where it was.

A stopped job used to leave its bar jumping to 100% (training keeps the model so far, so it
"finished") beside a stale ETA; "stopped at 31%" says what happened.
"""

from __future__ import annotations

from PySide6.QtWidgets import QProgressBar

RUNNING = "%p%"


def started(bar: QProgressBar) -> None:
    """A new job: empty bar, plain percentage."""
    bar.setFormat(RUNNING)
    bar.setValue(bar.minimum())


def done(bar: QProgressBar) -> None:
    """The job ran to its end."""
    bar.setFormat(RUNNING)
    bar.setValue(bar.maximum())


def stopped(bar: QProgressBar) -> None:
    """The job was stopped: keep the bar where it was and say so."""
    bar.setFormat("stopped at %p%")


def is_stopped(bar: QProgressBar) -> bool:
    return bar.format() != RUNNING
