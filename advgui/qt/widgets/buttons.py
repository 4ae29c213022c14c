"""Run / Stop / Export buttons: keyboard shortcuts named in their tooltips, and focus that stays
put when a job starts or ends.

Disabling the focused button makes Qt move focus to the next widget in the chain: after a
comparison that was a form field with its text selected (and a scroll area scrolled to it).
So the button that becomes usable is enabled, and given the focus, before the other goes.
"""

from __future__ import annotations

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QAbstractButton

#: The same keys in every tab (only the visible tab's buttons answer them).
RUN = "Ctrl+Return"
STOP = "Ctrl+."
EXPORT = "Ctrl+E"
EXPORT_ALL = "Ctrl+Shift+E"


def bind(button: QAbstractButton, key: str, tip: str = "") -> None:
    """Give ``button`` the shortcut ``key`` and a tooltip that names it."""
    seq = QKeySequence(key)
    button.setShortcut(seq)
    text = seq.toString(QKeySequence.SequenceFormat.NativeText)
    button.setToolTip(f"{tip} ({text})" if tip else text)


def set_running(
    run: QAbstractButton, stop: QAbstractButton, running: bool, ready: bool = True
) -> None:
    """Run usable when idle (and ``ready``), Stop while running; focus moves between the two
    instead of jumping to another widget."""
    if running:
        stop.setEnabled(True)
        if run.hasFocus():
            stop.setFocus()
        run.setEnabled(False)
    else:
        run.setEnabled(ready)
        if stop.hasFocus() and ready:
            run.setFocus()
        stop.setEnabled(False)


def disable(button: QAbstractButton, focus_to: QAbstractButton | None = None) -> None:
    """Disable ``button``; if it had the focus, hand it to ``focus_to`` (else keep it on the
    the next field neither)."""
    if button.hasFocus():
        if focus_to is not None and focus_to.isEnabled():
            focus_to.setFocus()
        else:
            button.clearFocus()
    button.setEnabled(False)
