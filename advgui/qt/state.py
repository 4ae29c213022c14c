"""State shared by the tabs: the dataset and the list of models.

Lives in the GUI thread; tabs read it and listen to its signals. Background work never
mutates it directly: jobs return results and a GUI-thread slot stores them here.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from advgui.core.data import Mnist


class AppState(QObject):
    datasetChanged = Signal(object)  # Mnist
    modelsChanged = Signal()
    currentModelChanged = Signal(object)  # Classifier | None

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.mnist: Mnist | None = None
        self.models: list[Any] = []
        self.current_model: Any = None
        #: Stored models listed from their metadata while TensorFlow loads them (StoreEntry).
        self.pending: list[Any] = []

    def set_dataset(self, mnist: Mnist) -> None:
        self.mnist = mnist
        self.datasetChanged.emit(mnist)

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
