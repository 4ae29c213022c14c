"""The lab report as PDF: the same HTML laid out by Qt (QTextDocument on a QPdfWriter), so
the PDF needs no dependency beyond PySide6.

It may run in a worker thread (the GUI's export job does: a report of 30 attack runs takes
about 2 s to lay out): outside the GUI thread Qt's text layout paints images as QImage, never
QPixmap, and QPainter may paint on a PDF writer there (checked: the same text and images as
a PDF laid out in the GUI thread).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from advgui import __version__
from advgui.core.fileio import atomic_write_bytes


def ensure_gui_app() -> Any:
    """The running QGuiApplication, or a new one (offscreen when there is no display)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    return QGuiApplication.instance() or QGuiApplication(["advgui"])


def html_to_pdf(html: str) -> bytes:
    """A4 PDF bytes of ``html`` (a QGuiApplication must exist)."""
    from PySide6.QtCore import QBuffer, QIODevice, QMarginsF
    from PySide6.QtGui import QPageLayout, QPageSize, QPdfWriter, QTextDocument

    buf = QBuffer()
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    writer = QPdfWriter(buf)
    writer.setPageSize(QPageSize(QPageSize.PageSizeId.A4))
    writer.setPageMargins(QMarginsF(12, 12, 12, 12), QPageLayout.Unit.Millimeter)
    writer.setTitle("advgui lab report")
    writer.setCreator(f"advgui {__version__}")
    doc = QTextDocument()
    doc.setHtml(html)
    doc.print_(writer)  # begins and ends its own painter: the PDF is complete afterwards
    data = bytes(buf.data())
    buf.close()
    return data


def write_pdf(html: str, path: Path | str) -> None:
    atomic_write_bytes(path, html_to_pdf(html))
