"""One numeric check for every parameter a user types: attacks, training, defenses.

NaN, infinities, booleans, text and out-of-range values are refused with a message that names
the field, so the GUI can mark it and the CLI can print one line.
"""

from __future__ import annotations

import math
from typing import Any

from advgui.core.errors import ParameterError


def check_number(
    name: str,
    value: Any,
    *,
    lo: float,
    hi: float,
    integer: bool = False,
    label: str | None = None,
) -> Any:
    """``value`` as an int (``integer``) or float, finite and in [lo, hi]; else ParameterError
    with ``field=name``. ``label`` is the name shown to the user (default ``name``)."""
    label = label or name
    if isinstance(value, bool):
        raise ParameterError(f"{label} must be a number, got {value!r}", field=name)
    try:
        num = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{label} must be a number, got {value!r}", field=name) from None
    if not math.isfinite(num):
        raise ParameterError(f"{label} must be a finite number, got {value!r}", field=name)
    if integer and num != int(num):
        raise ParameterError(f"{label} must be a whole number, got {value!r}", field=name)
    if not lo <= num <= hi:
        raise ParameterError(f"{label} must be between {lo:g} and {hi:g}, got {num:g}", field=name)
    return int(num) if integer else num
