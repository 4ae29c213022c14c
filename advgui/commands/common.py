"""Helpers shared by the subcommands: a terminal progress bar, JSON output, number parsing."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from advgui.core.fileio import atomic_write_text, json_default
from advgui.core.progress import Progress


class ProgressBar:
    """Progress on stderr: a redrawn bar on a terminal, a line every few seconds otherwise."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = self.stream.isatty()
        self._last = 0.0
        self._open = False

    def __call__(self, update: Progress) -> None:
        now = time.monotonic()
        final = update.done >= update.total
        if not final and now - self._last < (0.1 if self.tty else 5.0):
            return
        self._last = now
        filled = int(self.width * update.fraction)
        bar = "#" * filled + "-" * (self.width - filled)
        extra = " ".join(f"{k}={_fmt(v)}" for k, v in update.info.items())
        line = f"[{bar}] {100 * update.fraction:5.1f}% {update.message} {extra}".rstrip()
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
            self._open = not final
            if final:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._open and self.tty:
            self.stream.write("\n")
            self._open = False


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, default=json_default) + "\n")


def finite_float(text: str) -> float:
    """argparse type: a finite float (NaN and infinities are refused with a clear message)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
