"""Where advgui keeps its cache, model store and logs (per user, via platformdirs).

``ADVGUI_HOME`` overrides the root, so tests and lab setups can isolate everything in one folder.
Each dataset has its own cache folder, model store and results, so switching datasets keeps
their work apart; MNIST keeps the folders it has always used (``models``, ``results``), any
other dataset gets ``<data>/<name>/models`` and ``<data>/<name>/results``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import platformdirs

APP = "advgui"
#: The dataset whose work lives in the top-level folders (as before datasets were named).
DEFAULT_DATASET = "mnist"
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


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


def _checked(dataset: str) -> str:
    if not _NAME.fullmatch(dataset):  # names come from the registry; never a path
        raise ValueError(f"not a dataset name: {dataset!r}")
    return dataset


def dataset_cache_dir(dataset: str = DEFAULT_DATASET) -> Path:
    """The verified copy of one dataset (``<cache>/mnist``, ``<cache>/fashion-mnist``)."""
    return cache_dir() / _checked(dataset)


def mnist_cache_dir() -> Path:
    return dataset_cache_dir("mnist")


def _work_dir(dataset: str) -> Path:
    return data_dir() if _checked(dataset) == DEFAULT_DATASET else data_dir() / dataset


def store_dir(dataset: str = DEFAULT_DATASET) -> Path:
    """The model store of models trained on ``dataset``."""
    return _work_dir(dataset) / "models"


def results_dir(dataset: str = DEFAULT_DATASET) -> Path:
    """Stored attack runs and comparisons made on ``dataset``."""
    return _work_dir(dataset) / "results"


def log_dir() -> Path:
    return data_dir() / "logs"
