"""Error types that carry a message meant for the user.

The CLI prints ``str(err)`` on one line and exits 2; the GUI shows it in a dialog or next to the
field. Anything else that escapes is a bug and is logged with its traceback.
"""

from __future__ import annotations


class AdvguiError(Exception):
    """Base class: a user-facing problem (bad input, missing data), not a bug."""


class DataError(AdvguiError):
    """A dataset file or source is missing, corrupt or of the wrong format."""


class ModelFileError(AdvguiError):
    """A model file cannot be loaded safely or is not an MNIST classifier."""


class ParameterError(AdvguiError):
    """A parameter is out of range, NaN or otherwise unusable."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ExportError(AdvguiError):
    """Writing a result failed (folder not writable, disk full); nothing partial was left."""


class ImageFileError(AdvguiError):
    """An image file cannot be read as a digit."""
