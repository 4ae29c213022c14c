"""Files the app needs at run time (window icon, desktop entry), shipped inside the package.

Read through :mod:`importlib.resources`, so they are found the same way in a checkout, an
installed wheel (zipped or not) and a PyInstaller bundle (``advgui/resources`` in its data).
"""

from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importlib.resources.abc is Python 3.11+
    from importlib.resources.abc import Traversable

#: The window icon (256 px) and the small one for the .deb's 64x64 hicolor folder.
ICON = "icons/advgui.png"
ICON_64 = "icons/advgui-64.png"
DESKTOP_ENTRY = "advgui.desktop"


def resource(name: str) -> Traversable:
    """The shipped file ``name`` (a ``/``-separated path below this package)."""
    ref = files(__name__)
    for part in name.split("/"):
        ref = ref / part
    return ref


def read_bytes(name: str) -> bytes:
    return resource(name).read_bytes()
