"""Lazy TensorFlow: imported on first use, or ahead of time in a background thread.

Importing TensorFlow takes seconds; the window must appear in well under one. The GUI calls
:func:`preload` right after showing the window so that the import is done by the time the user
presses Start, without ever blocking the event loop.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from types import ModuleType

from advgui.core import tuning

_lock = threading.Lock()
_thread: threading.Thread | None = None
_error: BaseException | None = None


def _configure_env() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    # A session gets a thread pool of its own (sized by its config) instead of sharing the
    # process-wide one: attacks on one image run faster on one thread (attacks/engine.py).
    os.environ.setdefault("TF_OVERRIDE_GLOBAL_THREADPOOL", tuning.pool_override_env())


#: Set by :func:`quiet_start` (``advgui <command> --quiet``).
_quiet = False


def quiet_start() -> None:
    """Drop the lines TensorFlow's C++ runtime writes to stderr while it starts ("oneDNN
    custom operations are on", "failed call to cuInit", ...): they bypass Python and
    ``TF_CPP_MIN_LOG_LEVEL``, and a quiet command must leave stderr empty. Python errors
    still surface as exceptions. Effective only before the first import."""
    global _quiet
    _quiet = True


@contextlib.contextmanager
def _stderr_fd_silenced() -> Iterator[None]:
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2: nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def tf() -> ModuleType:
    """Return the ``tensorflow`` module, importing it (once, thread-safely) if needed."""
    _configure_env()
    with _lock:
        if _quiet and "tensorflow" not in sys.modules:
            with _stderr_fd_silenced():
                import tensorflow

                tensorflow.config.list_physical_devices()  # the device probe logs too
        import tensorflow

        return tensorflow


def keras() -> ModuleType:
    tf()
    import keras as _keras

    return _keras


def is_loaded() -> bool:
    import sys

    return "tensorflow" in sys.modules and (_thread is None or not _thread.is_alive())


def _load_native_libraries() -> None:
    """dlopen TensorFlow's two big shared libraries through libc, without the GIL.

    Loading them (about 1 GB, with their static initialisers) inside ``import tensorflow``
    holds the GIL for about 0.25 s, which freezes the GUI thread. A ctypes call into libc
    releases the GIL, so doing that part first, here, leaves the event loop running; the
    import then finds the libraries already loaded. Best effort: any failure just means the
    import loads them itself.
    """
    import ctypes
    import importlib.util
    import sys
    from pathlib import Path

    if not sys.platform.startswith("linux"):
        return
    try:
        spec = importlib.util.find_spec("tensorflow")
        if spec is None or not spec.submodule_search_locations:
            return
        root = Path(next(iter(spec.submodule_search_locations)))
        libc = ctypes.CDLL(None)
        libc.dlopen.restype = ctypes.c_void_p
        libc.dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
        for name in ("libtensorflow_framework.so.2", "libtensorflow_cc.so.2"):
            path = root / name
            if path.is_file():
                # RTLD_LAZY and local scope, as a dependency would be: RTLD_GLOBAL here
                # made the later import abort.
                libc.dlopen(str(path).encode(), os.RTLD_LAZY)
    except (OSError, AttributeError, ValueError, StopIteration):
        return


#: Niceness added to TensorFlow's compute threads (when the GUI preloads it) and to the GUI's
#: worker threads (Linux): with both cores busy training, the GUI thread then gets a core at
#: once instead of waiting its turn.
BACKGROUND_NICE = 5


def lower_thread_priority() -> None:
    """Run this thread ``BACKGROUND_NICE`` below the main thread; threads it creates inherit
    that (Linux only: elsewhere ``setpriority`` applies to the whole process, which must not
    slow the GUI). Idempotent."""
    if not sys.platform.startswith("linux"):
        return
    try:
        base = os.getpriority(os.PRIO_PROCESS, threading.main_thread().native_id or 0)
        nice = tuning.early_settings().background_nice  # BACKGROUND_NICE unless overridden
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), base + nice)
    except (OSError, AttributeError):
        return


def preload() -> threading.Thread:
    """Start importing TensorFlow in a daemon thread; returns the thread (idempotent)."""
    global _thread

    def run() -> None:
        global _error
        try:
            lower_thread_priority()
            _load_native_libraries()
            keras()
            # Start the runtime here, so that its compute threads are created by (and inherit
            # the priority of) this thread.
            tf().constant(0.0).numpy()
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
