"""Where advgui keeps its cache, model store and logs (per user, via platformdirs).

``ADVGUI_HOME`` overrides the root, so tests and lab setups can isolate everything in one folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "advgui"


def _root(kind: str) -> Path:
    home = os.environ.get("ADVGUI_HOME")
    if home:
        return Path(home) / kind
    if kind == "cache":
        return Path(platformdirs.user_cache_dir(APP, appauthor=False))
    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def cache_dir() -> Path:
    """Verified dataset copies: safe to delete, rebuilt from any source."""
    return _root("cache")


def data_dir() -> Path:
    """The user's work: model store, results, logs."""
    return _root("data")


def mnist_cache_dir() -> Path:
    return cache_dir() / "mnist"


def store_dir() -> Path:
    return data_dir() / "models"


def results_dir() -> Path:
    return data_dir() / "results"


def log_dir() -> Path:
    return data_dir() / "logs"
