"""State shared by the tabs: the dataset and the list of models.

Lives in the GUI thread; tabs read it and listen to its signals. Background work never
mutates it directly: jobs return results and a GUI-thread slot stores them here.

Each dataset keeps its own data, models and chosen model (a Qt-free
:class:`~advgui.core.workspace.Workspace`); ``mnist``, ``models`` and ``current_model`` are
the active dataset's, and :meth:`AppState.switch_dataset` swaps them all at once.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from advgui.core.data import DatasetSpec, Mnist
from advgui.core.workspace import Workspace


class AppState(QObject):
    datasetChanged = Signal(object)  # Mnist
    modelsChanged = Signal()
    currentModelChanged = Signal(object)  # Classifier | None
    #: The dataset chooser moved: the active dataset's spec (its data may not be loaded yet).
    datasetSwitched = Signal(object)  # DatasetSpec

    def __init__(self, parent: QObject | None = None, *, dataset: str | None = None) -> None:
        super().__init__(parent)
        self.workspace = Workspace(dataset)
        self.mnist: Mnist | None = None
        self.models: list[Any] = []
        self.current_model: Any = None
        #: Stored models listed from their metadata while TensorFlow loads them (StoreEntry).
        self.pending: list[Any] = []
        #: "float32" or "mixed" (core/precision.py), for training and attacks; set in the
        #: status bar beside the device.
        self.precision = "float32"

    @property
    def spec(self) -> DatasetSpec:
        """The active dataset (what the chooser shows), loaded or not."""
        return self.workspace.spec

    def set_dataset(self, mnist: Mnist) -> None:
        """Loaded data: shown if it is the active dataset's, else kept on its own shelf."""
        spec = getattr(mnist, "spec", None)
        if isinstance(spec, DatasetSpec) and spec is not self.spec:
            self.workspace.shelf(spec).data = mnist
            return
        self.mnist = mnist
        self.workspace.active.data = mnist
        self.datasetChanged.emit(mnist)

    def switch_dataset(self, dataset: str | DatasetSpec) -> bool:
        """Make ``dataset`` active: this one's models and choice are kept aside, the other's
        come back as they were left; False if it already was active."""
        old = self.workspace.active
        new = self.workspace.shelf(dataset)
        if new is old:
            return False
        old.data, old.models, old.current = self.mnist, self.models, self.current_model
        self.workspace.switch(new.spec)
        self.mnist, self.models, self.current_model = new.data, new.models, new.current
        self.pending = []
        self.datasetSwitched.emit(new.spec)
        self.modelsChanged.emit()
        self.currentModelChanged.emit(self.current_model)
        if self.mnist is not None:
            self.datasetChanged.emit(self.mnist)
        return True

    def add_model(self, clf: Any, *, make_current: bool = True) -> None:
        if clf not in self.models:
            self.models.append(clf)
        self.modelsChanged.emit()
        if make_current:
            self.set_current_model(clf)

    def set_pending(self, entries: list[Any]) -> None:
        """Show stored models at once, from their metadata, until they are loaded."""
        self.pending = list(entries)
        self.modelsChanged.emit()

    def remove_model(self, clf: Any) -> None:
        if clf in self.models:
            self.models.remove(clf)
            if self.current_model is clf:
                self.set_current_model(self.models[-1] if self.models else None)
            self.modelsChanged.emit()

    def set_current_model(self, clf: Any) -> None:
        if clf is not self.current_model:
            self.current_model = clf
            self.currentModelChanged.emit(clf)
