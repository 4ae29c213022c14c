"""Where advgui keeps its cache, model store and logs (per user, via platformdirs).

``ADVGUI_HOME`` overrides the root, so tests and lab setups can isolate everything in one folder.
Each dataset has its own cache folder, model store and results, so switching datasets keeps
their work apart; MNIST keeps the folders it has always used (``models``, ``results``), any
other dataset gets ``<data>/<name>/models`` and ``<data>/<name>/results``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import platformdirs

APP = "advgui"
#: The dataset whose work lives in the top-level folders (as before datasets were named).
DEFAULT_DATASET = "mnist"
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
#: The dataset the window works on: where stores made without a folder look (the CLI names
#: its dataset's folders itself and never changes this).
_active = DEFAULT_DATASET


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


def _work_dir(dataset: str, base: Path | None = None) -> Path:
    root = data_dir() if base is None else base
    return root if _checked(dataset) == DEFAULT_DATASET else root / dataset


def store_dir(dataset: str = DEFAULT_DATASET, *, base: Path | None = None) -> Path:
    """The model store of models trained on ``dataset`` (in ``base``, default
    :func:`data_dir`)."""
    return _work_dir(dataset, base) / "models"


def results_dir(dataset: str = DEFAULT_DATASET, *, base: Path | None = None) -> Path:
    """Stored attack runs and comparisons made on ``dataset`` (in ``base``, default
    :func:`data_dir`)."""
    return _work_dir(dataset, base) / "results"


def active_dataset() -> str:
    """The dataset whose stores :class:`~advgui.core.store.ModelStore` and
    :class:`~advgui.core.results.ResultStore` use when given no folder."""
    return _active


def set_active_dataset(dataset: str) -> str:
    """Point the default stores at ``dataset``'s folders (the window's dataset chooser); the
    previous name is returned, so a caller can put it back."""
    global _active
    previous, _active = _active, _checked(dataset)
    return previous


class DatasetFolder:
    """A store's folder: the one given, or the active dataset's as :func:`active_dataset` says
    at each use (so the window's stores follow its dataset chooser), in the user's data folder
    as it was when the store was made."""

    #: ``store_dir`` or ``results_dir``: the subclass's kind of folder.
    _folder: Callable[..., Path]

    def __init__(self, root: Path | str | None = None) -> None:
        self._root = Path(root) if root is not None else None
        self._base = data_dir()

    @property
    def root(self) -> Path:
        if self._root is not None:
            return self._root
        return type(self)._folder(active_dataset(), base=self._base)


def log_dir() -> Path:
    return data_dir() / "logs"
