"""Lazy TensorFlow: imported on first use, or ahead of time in a background thread.

Importing TensorFlow takes seconds; the window must appear in well under one. The GUI calls
:func:`preload` right after showing the window so that the import is done by the time the user
presses Start, without ever blocking the event loop.
"""

from __future__ import annotations

import os
import threading
from types import ModuleType

_lock = threading.Lock()
_thread: threading.Thread | None = None
_error: BaseException | None = None


def _configure_env() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def tf() -> ModuleType:
    """Return the ``tensorflow`` module, importing it (once, thread-safely) if needed."""
    _configure_env()
    with _lock:
        import tensorflow

        return tensorflow


def keras() -> ModuleType:
    tf()
    import keras as _keras

    return _keras


def is_loaded() -> bool:
    import sys

    return "tensorflow" in sys.modules and (_thread is None or not _thread.is_alive())


def preload() -> threading.Thread:
    """Start importing TensorFlow in a daemon thread; returns the thread (idempotent)."""
    global _thread

    def run() -> None:
        global _error
        try:
            keras()
        except BaseException as err:  # reported when the import is needed for real
            _error = err

    if _thread is None:
        _thread = threading.Thread(target=run, name="tf-preload", daemon=True)
        _thread.start()
    return _thread


def wait_for_preload(timeout: float | None = None) -> None:
    """Join the preload thread, if one was started (before the process exits)."""
    if _thread is not None:
        _thread.join(timeout)
