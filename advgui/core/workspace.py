"""The window's datasets side by side: each keeps its own loaded data, models and chosen model,
so switching to Fashion-MNIST and back finds MNIST's work as it was left.

Qt-free: the window's :class:`~advgui.qt.state.AppState` holds one :class:`Workspace` and
shows the active shelf; the stores follow :func:`advgui.core.paths.set_active_dataset`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from advgui.core import data, paths
from advgui.core.data import DatasetMismatchError, DatasetSpec


@dataclass
class Shelf:
    """One dataset's work in the window: its data once loaded, its models, the chosen one."""

    spec: DatasetSpec
    data: data.Dataset | None = None
    models: list[Any] = field(default_factory=list)
    current: Any = None
    #: Whether its model store was read in this session (read once, when first shown).
    store_read: bool = False


class Workspace:
    """The shelves of every dataset the window has shown, and which one is active."""

    def __init__(self, dataset: str | DatasetSpec | None = None) -> None:
        self._shelves: dict[str, Shelf] = {}
        self.active = self.shelf(data.get_spec(dataset))
        paths.set_active_dataset(self.active.spec.name)

    @property
    def spec(self) -> DatasetSpec:
        return self.active.spec

    def shelf(self, dataset: str | DatasetSpec | None = None) -> Shelf:
        spec = data.get_spec(dataset) if dataset is not None else self.active.spec
        found = self._shelves.get(spec.name)
        if found is None:
            found = self._shelves[spec.name] = Shelf(spec)
        return found

    def switch(self, dataset: str | DatasetSpec) -> Shelf:
        """Make ``dataset`` the active one (its stores too); its shelf, as it was left."""
        self.active = self.shelf(data.get_spec(dataset))
        paths.set_active_dataset(self.active.spec.name)
        return self.active


def switch_refusal(target: DatasetSpec, running: Sequence[str]) -> str | None:
    """Why the window must not switch to ``target`` now (None: it may).

    A job started on one dataset would finish into the other's view and store, so a running
    job (named in words, "a training") is stopped by the user first, never silently.
    """
    if not running:
        return None
    what = " and ".join(running)
    verb, it = ("are", "them") if len(running) > 1 else ("is", "it")
    return (
        f"{what[0].upper()}{what[1:]} {verb} running: stop {it} before switching to "
        f"{target.title} (a result belongs to the dataset it started on)."
    )


def model_problem(clf: Any, dataset: Any) -> str | None:
    """Why ``clf`` must not be used on ``dataset`` (a loaded dataset, a spec or a name), in
    one line; None when it may (see :func:`advgui.core.data.check_dataset`)."""
    if clf is None or dataset is None:
        return None
    try:
        data.check_dataset(clf, dataset)
    except DatasetMismatchError as err:
        text = str(err)
        cut = text.find("; use --dataset")
        if cut >= 0:  # the window's way to switch, not the command line's
            trained = data.model_dataset(getattr(clf, "meta", {}) or {})
            hint = f"; choose {trained.title} in the Dataset menu" if trained else ""
            text = text[:cut] + hint
        return text
    return None
