"""Start the GUI: QApplication, logging to the user data folder, the main window."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path

_T0 = time.perf_counter()


def setup_logging() -> None:
    """Log warnings and errors (worker tracebacks included) to ``<data>/logs/advgui.log``."""
    from advgui.core import paths

    root = logging.getLogger()
    target = paths.log_dir() / "advgui.log"
    for old in [h for h in root.handlers if getattr(h, "_advgui_log", False)]:
        if Path(old.baseFilename) == target.absolute():
            return
        # The user data folder changed (ADVGUI_HOME, a test): log to the new one.
        root.removeHandler(old)
        old.close()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            target, maxBytes=2_000_000, backupCount=3, encoding="utf-8"
        )
    except OSError:
        return
    handler._advgui_log = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def run_app(*, data_path: str | None = None, dataset: str | None = None) -> int:
    """Open the main window and run the event loop; returns the exit code."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from advgui.core import tfimport
    from advgui.qt.main_window import MainWindow

    setup_logging()
    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("advgui")
    window = MainWindow(data_path=data_path, confirm_close=True, dataset=dataset)
    window.show()

    def report_startup() -> None:
        shown = time.perf_counter() - _T0
        logging.getLogger(__name__).info("window shown %.3f s after start", shown)
        if os.environ.get("ADVGUI_STARTUP_TIMING"):
            print(f"startup: window shown after {shown:.3f} s", flush=True)
        if os.environ.get("ADVGUI_QUIT_AFTER_SHOW"):
            window.confirm_close = False  # a scripted quit: nobody is there to answer
            window.close()

    QTimer.singleShot(0, report_startup)
    code = app.exec()
    # Exiting while the background TensorFlow import is half-way through crashes the process
    # (C++ static destructors race the importing thread), so let the import finish first.
    tfimport.wait_for_preload()
    return code
