"""Spin boxes and combo boxes take the mouse wheel only when they have the keyboard focus.

Otherwise scrolling a panel changes whatever setting passes under the cursor, silently (the
Defenses panel's architecture box changed this way). One application-wide event filter: an
unfocused field hands the wheel to its parent, so the panel scrolls instead.
"""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QComboBox, QWidget


class WheelGuard(QObject):
    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        fields = (QAbstractSpinBox, QComboBox)
        if event.type() != QEvent.Type.Wheel or not isinstance(obj, fields):
            return False
        assert isinstance(obj, QWidget)
        if obj.focusPolicy() == Qt.FocusPolicy.WheelFocus:
            obj.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # the wheel no longer gives focus
        if obj.hasFocus():
            return False
        # Hand it up until someone takes it: the viewport of the scroll area above scrolls.
        # (A wheel event sent, not spontaneous, is not propagated by Qt itself.)
        parent = obj.parentWidget()
        while parent is not None:
            event.setAccepted(False)
            QCoreApplication.sendEvent(parent, event)
            if event.isAccepted():
                break
            parent = parent.parentWidget()
        return True


_guard: WheelGuard | None = None


def install(app: QApplication | None = None) -> WheelGuard:
    """Install the guard on the application once (the window and the tests call this)."""
    global _guard
    app = app or QApplication.instance()
    if _guard is None:
        _guard = WheelGuard()
        app.installEventFilter(_guard)
    return _guard
