"""The list of models shared by every tab, bound to :class:`AppState` (trained, loaded, stored).

Any tab can embed a :class:`ModelList`; they all show the same ``AppState.models`` and the same
current model. Loading and saving run as background jobs (a model file may be large and loading
imports TensorFlow), and a bad file is reported under the list without losing anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from advgui.core import models, workspace
from advgui.core.store import ModelStore
from advgui.qt.state import AppState
from advgui.qt.workers import ErrorInfo, Job, run_job


def describe(clf: Any, *, stored: bool | None = None) -> str:
    """One line for a model: name, test accuracy, and whether it is stored or was stopped.

    ``stored`` says whether its file is in the model store (default: its metadata says so).
    """
    meta = clf.meta
    if stored is None:
        stored = bool(meta.get("stored"))
    text = clf.name
    acc = meta.get("test_accuracy")
    if isinstance(acc, (int, float)):
        text += f"  ({100 * acc:.2f}%)"
    flags = []
    if meta.get("cancelled"):
        flags.append("stopped")
    if meta.get("outputs") not in (None, "logits"):
        flags.append(str(meta["outputs"]))  # attacks then see logits made from them
    if stored:
        flags.append("stored")
    elif meta.get("path"):
        flags.append("file")
    else:
        flags.append("unsaved")
    return f"{text}  [{', '.join(flags)}]"


def tooltip(clf: Any) -> str:
    meta = clf.meta
    rows = [
        ("architecture", meta.get("architecture")),
        ("outputs", meta.get("outputs")),
        ("logits from", meta.get("outputs_how")),
        ("test accuracy", meta.get("test_accuracy")),
        ("epochs", meta.get("epochs_completed")),
        ("seed", meta.get("seed")),
        ("weights", meta.get("num_weights")),
        ("trained at", meta.get("trained_at")),
        ("file", meta.get("path")),
    ]
    return "\n".join(f"{k}: {v}" for k, v in rows if v is not None)


class ModelList(QWidget):
    """The shared model list with Load..., Save as... and Remove."""

    #: A one-line message for the user (errors and confirmations).
    message = Signal(str)

    def __init__(
        self, state: AppState, *, store: ModelStore | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.state = state
        self.store = store or ModelStore()
        self.jobs: list[Job] = []
        self.list = QListWidget()
        self.list.setMinimumHeight(90)
        self.load_button = QPushButton("Load...")
        self.save_button = QPushButton("Save as...")
        self.remove_button = QPushButton("Remove")
        self.load_button.setToolTip("Load a Keras .keras classifier (safe mode)")
        self.save_button.setToolTip("Save the selected model as a .keras file")
        self.remove_button.setToolTip("Remove the selected model (and its copy in the store)")
        self.status = QLabel()
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        for b in (self.load_button, self.save_button, self.remove_button):
            buttons.addWidget(b)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.list, 1)
        lay.addLayout(buttons)
        lay.addWidget(self.status)

        self.load_button.clicked.connect(self._ask_load)
        self.save_button.clicked.connect(self._ask_save)
        self.remove_button.clicked.connect(self._ask_remove)
        self.list.currentRowChanged.connect(self._on_row)
        state.modelsChanged.connect(self.refresh)
        state.currentModelChanged.connect(lambda _clf: self.refresh())
        self.refresh()

    # ------------------------------------------------------------------ view

    @Slot()
    def refresh(self) -> None:
        self.list.blockSignals(True)
        try:
            self.list.clear()
            for clf in self.state.models:
                item = QListWidgetItem(describe(clf, stored=self.store.contains(clf)))
                problem = workspace.model_problem(clf, self.state.spec)
                item.setToolTip(tooltip(clf) if problem is None else f"{problem}\n{tooltip(clf)}")
                if problem is not None:  # listed, marked: never used here without a word
                    item.setForeground(QColor("#b00020"))
                    item.setText(item.text() + "  (other dataset)")
                self.list.addItem(item)
            loaded = {str(c.meta.get("path")) for c in self.state.models}
            for entry in self.state.pending:  # after the loaded ones: rows stay aligned
                if str(entry.path) in loaded:
                    continue
                acc = entry.meta.get("test_accuracy")
                text = entry.name + (f"  ({100 * acc:.2f}%)" if isinstance(acc, float) else "")
                item = QListWidgetItem(f"{text}  [loading...]")
                item.setFlags(Qt.ItemFlag.NoItemFlags)  # shown, not yet usable
                item.setToolTip(f"{entry.path}\nTensorFlow is loading this model")
                self.list.addItem(item)
            current = self._index_of(self.state.current_model)
            self.list.setCurrentRow(current)
        finally:
            self.list.blockSignals(False)
        has = self.state.current_model is not None
        self.save_button.setEnabled(has)
        self.remove_button.setEnabled(has)

    def _index_of(self, clf: Any) -> int:
        return next((i for i, c in enumerate(self.state.models) if c is clf), -1)

    @Slot(int)
    def _on_row(self, row: int) -> None:
        if 0 <= row < len(self.state.models):
            self.state.set_current_model(self.state.models[row])

    def say(self, text: str, *, error: bool = False) -> None:
        self.status.setStyleSheet("color: #b00020;" if error else "")
        self.status.setText(text)
        self.message.emit(text)

    # ------------------------------------------------------------------ actions

    def _ask_load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load a model", str(Path.home()), "Keras models (*.keras);;All files (*)"
        )
        if path:
            self.load(path)

    def load(self, path: str | Path) -> Job:
        """Load a model file in the background; it joins the list and becomes current."""
        self.say(f"loading {Path(path).name}...")
        self.load_button.setEnabled(False)

        def work(progress: Any, cancel: Any) -> Any:
            return models.load_model(path)

        def done(clf: Any) -> None:
            self.state.add_model(clf)
            self.say(f"loaded {Path(path).name} ({clf.meta['outputs']} outputs)")

        return self._run(work, "load-model", done, lambda: self.load_button.setEnabled(True))

    def _ask_save(self) -> None:
        clf = self.state.current_model
        if clf is None:
            return
        start = str(Path.home() / f"{_safe_stem(clf.name)}.keras")
        path, _ = QFileDialog.getSaveFileName(self, "Save model as", start, "Keras (*.keras)")
        if path:
            if not path.endswith(".keras"):
                path += ".keras"
            self.save(clf, path)

    def save(self, clf: Any, path: str | Path) -> Job:
        """Save ``clf`` to ``path`` (atomically) in the background."""
        self.say(f"saving {Path(path).name}...")

        def work(progress: Any, cancel: Any) -> Path:
            return models.save_model(clf, path)

        def done(saved: Path) -> None:
            self.say(f"saved {saved}")

        return self._run(work, "save-model", done)

    def _ask_remove(self) -> None:
        clf = self.state.current_model
        if clf is None:
            return
        delete = False
        if self.store.contains(clf):
            answer = QMessageBox.question(
                self,
                "Remove model",
                f"Remove {clf.name} from the list and delete its copy in the model store?",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
            delete = True
        self.remove(clf, delete_stored=delete)

    def remove(self, clf: Any, *, delete_stored: bool = False) -> None:
        """Take ``clf`` off the list; with ``delete_stored`` also delete its store file."""
        if delete_stored:
            try:
                self.store.remove(clf)
            except Exception as err:  # the file stays; say why
                self.say(str(err), error=True)
                return
        self.state.remove_model(clf)
        self.say(f"removed {clf.name}")

    def _run(self, work: Any, name: str, on_result: Any, on_finish: Any = None) -> Job:
        def on_error(info: ErrorInfo) -> None:
            self.say(info.message, error=True)
            if not info.user_error:
                from advgui.qt.dialogs import show_error

                show_error(self, "Model file", info)

        def finished() -> None:
            if job in self.jobs:
                self.jobs.remove(job)
            if on_finish is not None:
                on_finish()

        job = run_job(
            work,
            name=name,
            parent=self,
            on_result=on_result,
            on_error=on_error,
            on_finish=finished,
        )
        self.jobs.append(job)
        return job

    def shutdown(self) -> None:
        for job in list(self.jobs):
            job.cancel()
            job.wait()


def _safe_stem(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._") or "model"
