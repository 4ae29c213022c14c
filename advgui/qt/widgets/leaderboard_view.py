"""The Defenses tab's Leaderboard page: a folder of models (a class's submissions) ranked
under one attack by :mod:`advgui.core.leaderboard`, here or on a Ray cluster, with progress
per model and Stop. The view only shows and drives the core's run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from advgui.core.errors import ParameterError
from advgui.core.progress import Progress
from advgui.qt.widgets import buttons
from advgui.qt.widgets.param_form import MARK_STYLE
from advgui.qt.workers import ErrorInfo, Job, JobSlot

COLUMNS = ("#", "model", "clean", "robust", "certified", "progress / cascade and flags")
#: The last column: progress while a model runs, then its cascade, flags or refusal.
NOTES = len(COLUMNS) - 1


class LeaderboardPanel(QWidget):
    """Choose a folder (or files), an attack and a budget; Run ranks the models."""

    def __init__(self, dataset: Callable[[], Any], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from advgui.core.evaluation import eval_attacks

        self._dataset = dataset
        self.result: dict[str, Any] | None = None
        self._rows: dict[str, int] = {}
        self.slot = JobSlot(
            "leaderboard",
            self,
            on_progress=self._on_progress,
            on_result=self._on_result,
            on_error=self._on_error,
            on_cancel=lambda: self.status.setText("Stopped: every task ended."),
            on_finish=lambda: buttons.set_running(self.run_button, self.stop_button, False),
        )
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("a folder of .keras files (every file is checked)")
        self.browse_button = QPushButton("Choose folder...")
        self.attack_combo = QComboBox()
        self.attack_combo.addItems(eval_attacks())
        self.attack_combo.setCurrentText("autoattack")
        self.eps_spin = QDoubleSpinBox()
        self.eps_spin.setRange(0.01, 1.0)
        self.eps_spin.setSingleStep(0.05)
        self.eps_spin.setValue(0.3)
        self.n_spin = QSpinBox()
        self.n_spin.setRange(1, 10000)
        self.n_spin.setValue(1000)
        from advgui.core.leaderboard import CERTIFY_CHOICES

        self.certify_combo = QComboBox()
        self.certify_combo.addItems(list(CERTIFY_CHOICES))
        self.certify_combo.setToolTip(
            "Also certify every model: IBP-verified at epsilon (L-inf), or randomized "
            "smoothing's certified accuracy at L2 radius 0.5"
        )
        self.sigma_edit = QLineEdit("0.5")
        self.sigma_edit.setToolTip("Smoothing noise, the same for every model")
        self.samples_edit = QLineEdit("1000")
        self.samples_edit.setToolTip("Smoothing: noise samples per image for the bound")
        self.cluster_edit = QLineEdit()
        self.cluster_edit.setPlaceholderText("empty: this machine; HOST:PORT: a Ray cluster")
        self.run_button = QPushButton("Rank the models")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        buttons.bind(self.run_button, buttons.RUN, "Attack every model the same way and rank")
        buttons.bind(self.stop_button, buttons.STOP, "Stop every task")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.status = QLabel("Choose a folder of models, then Rank.")
        self.status.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(
            len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch
        )
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)

        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(self.browse_button)
        form = QFormLayout()
        form.addRow("Models", folder_row)
        form.addRow("Attack", self.attack_combo)
        form.addRow("Epsilon (L-inf)", self.eps_spin)
        form.addRow("Test images", self.n_spin)
        form.addRow("Certify", self.certify_combo)
        form.addRow("Sigma", self.sigma_edit)
        form.addRow("Noise samples", self.samples_edit)
        form.addRow("Ray cluster", self.cluster_edit)
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.stop_button)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(run_row)
        lay.addWidget(self.progress_bar)
        lay.addWidget(self.status)
        lay.addWidget(self.table, 1)

        self.browse_button.clicked.connect(self._browse)
        self.certify_combo.currentTextChanged.connect(self._certify_changed)
        self._certify_changed(self.certify_combo.currentText())
        self.run_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)

    # ------------------------------------------------------------------ actions

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of models")
        if folder:
            self.folder_edit.setText(folder)

    def _certify_changed(self, choice: str) -> None:
        for w in (self.sigma_edit, self.samples_edit):
            w.setEnabled(choice == "smoothing")

    def _mark(self, widget: QWidget | None, message: str) -> None:
        for w in (self.folder_edit, self.cluster_edit, self.sigma_edit, self.samples_edit):
            w.setStyleSheet(MARK_STYLE if w is widget else "")
        self.status.setText(message)

    def start(self) -> Job | None:
        """Check the inputs (a bad one is marked, nothing starts), then run in a job."""
        from advgui.core import leaderboard

        if self.slot.is_running():
            return None
        data = self._dataset()
        if data is None:
            self._mark(None, "Load the dataset first (the status bar shows it loading).")
            return None
        text = self.folder_edit.text().strip()
        if not text:
            self._mark(self.folder_edit, "Choose a folder of models.")
            return None
        if not Path(text).exists():
            self._mark(self.folder_edit, f"{text}: no such folder or file.")
            return None
        try:
            files = leaderboard.model_files([Path(text)])
            cfg = leaderboard.form_config(
                attack=self.attack_combo.currentText(),
                eps=round(self.eps_spin.value(), 4),
                n=self.n_spin.value(),
                certify=self.certify_combo.currentText(),
                sigma=self.sigma_edit.text(),
                n_samples=self.samples_edit.text(),
            )
        except ParameterError as err:
            fields = {"models": self.folder_edit, "sigma": self.sigma_edit,
                      "n_samples": self.samples_edit}  # fmt: skip
            self._mark(fields.get(err.field or ""), str(err))
            return None
        cluster = self.cluster_edit.text().strip() or None
        self._mark(None, f"Checking {len(files)} file(s)...")
        self.result = None
        self._rows = {}
        self.table.setRowCount(0)
        self.progress_bar.setValue(0)

        def work(progress: Any, cancel: Any) -> dict[str, Any]:
            return leaderboard.run(files, data, cfg, cluster=cluster, progress=progress,
                                   cancel=cancel)  # fmt: skip

        buttons.set_running(self.run_button, self.stop_button, True)
        return self.slot.start(work)

    def stop(self) -> None:
        if self.slot.cancel():
            self.status.setText("Stopping every task...")

    @property
    def job(self) -> Job | None:
        return self.slot.job

    # ------------------------------------------------------------------ outcomes

    def _on_progress(self, update: Progress) -> None:
        if self.slot.is_stopping():
            return
        self.progress_bar.setValue(int(1000 * update.fraction))
        self.status.setText(update.message)
        model = update.info.get("model")
        if model is None:
            return
        row = self._rows.get(model)
        if row is None:
            row = self._rows[model] = self.table.rowCount()
            self.table.insertRow(row)
            self.table.setItem(row, 1, QTableWidgetItem(str(model)))
        done, total = update.info.get("model_done", 0), update.info.get("model_total", 0)
        self.table.setItem(row, NOTES, QTableWidgetItem(f"{done}/{total} chunks done"))

    def _on_result(self, result: dict[str, Any]) -> None:
        from advgui.core.attacks.flags import cascade_text
        from advgui.core.leaderboard import certified_cell

        self.result = result
        self.table.setRowCount(0)
        for e in result["ranking"]:
            row = self.table.rowCount()
            self.table.insertRow(row)
            flags = ", ".join(f["name"] for f in e["flags"])
            extra = cascade_text(e["cascade"]) + (f"; flags: {flags}" if flags else "")
            if e.get("certify_error"):
                extra += f"; not certified: {e['certify_error']}"
            cells = (str(e["rank"]), e["model"], f"{e['clean_accuracy']:.1%}",
                     f"{e['robust_accuracy']:.1%}", certified_cell(e),
                     extra.removeprefix("; "))  # fmt: skip
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == NOTES and e["flags"]:
                    item.setToolTip("\n".join(f["message"] for f in e["flags"]))
                self.table.setItem(row, col, item)
        for r in result["refused"]:
            row = self.table.rowCount()
            self.table.insertRow(row)
            self.table.setItem(row, 1, QTableWidgetItem(Path(r["file"]).name))
            self.table.setItem(row, NOTES, QTableWidgetItem(f"refused: {r['reason']}"))
        self.progress_bar.setValue(1000)
        self.status.setText(
            f"{len(result['ranking'])} model(s) ranked, {len(result['refused'])} refused; "
            f"{result['tasks']} tasks on {result['executor']} ({result['device']})."
        )

    def _on_error(self, info: ErrorInfo) -> None:
        self._mark(self.cluster_edit if "cluster" in info.message.lower() else None, info.message)
