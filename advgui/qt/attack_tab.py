"""Attack tab: choose an image (test set, import, drawing), an attack and its parameters, run it
in the background with a live view, compare before and after, export verified PNGs.

The attack list comes from the registry, and each attack's own defaults fill the fields when it
is chosen; fields an attack does not take are disabled. All TensorFlow work runs in a
:class:`~advgui.qt.workers.Job`; this tab only shows and drives it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from advgui.core import export, history, images
from advgui.core.errors import AdvguiError, ParameterError
from advgui.core.progress import Progress
from advgui.core.results import ResultEntry, ResultStore
from advgui.qt.dialogs import show_error
from advgui.qt.state import AppState
from advgui.qt.widgets.attack_canvas import DrawingCanvas
from advgui.qt.widgets.attack_compare import AttackCompareWidget
from advgui.qt.widgets.attack_gallery import AttackGallery
from advgui.qt.widgets.attack_views import CostCurve, DigitView, PerturbationView, ProbabilityBars
from advgui.qt.widgets.history import HistoryBox
from advgui.qt.workers import ErrorInfo, Job, run_job

#: Parameter fields of the form, in order: attack parameter name -> label.
FIELDS = {
    "loss": "Classification term",
    "start": "Start from",
    "optimizer": "Optimizer",
    "lam": "Lambda",
    "confidence": "Goal confidence",
    "steps": "Steps",
    "step_size": "Step size",
    "eps": "Epsilon",
    "seed": "Seed",
}
PREFERRED = ("targeted", "noise", "fgsm")
#: Parameters the form never shows (internal knobs with good defaults).
HIDDEN = ("batch_size",)
#: Pictures up to this size decode in the GUI thread (well under 50 ms); bigger ones in a job.
INLINE_DECODE_PIXELS = 1_000_000


def _attacks() -> dict[str, type]:
    from advgui.core.attacks import ATTACKS

    return ATTACKS


def attack_defaults(cls: type) -> dict[str, Any]:
    """An attack's parameters and their defaults, from its spec."""
    return cls.defaults()


def _results_dir() -> Path:
    """Where export dialogs open: the user's results folder (created), else home."""
    from advgui.core import paths

    try:
        paths.results_dir().mkdir(parents=True, exist_ok=True)
    except OSError:
        return Path.home()
    return paths.results_dir()


def _short(clf: Any) -> str:
    acc = clf.meta.get("test_accuracy") if hasattr(clf, "meta") else None
    return clf.name + (f"  ({100 * acc:.1f}%)" if isinstance(acc, (int, float)) else "")


class AttackTab(QWidget):
    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.job: Job | None = None
        self.export_job: Job | None = None
        self.import_job: Job | None = None
        self.result: Any = None
        self.result_indices: list[int] | None = None
        self.result_model: Any = None
        self.result_inputs: np.ndarray | None = None
        self.source_x: np.ndarray | None = None
        self.source_label = -1
        self.source_index: int | None = None
        self.last_export: list[dict[str, Any]] = []
        #: Every finished run is kept here and listed again on the next start (History).
        self.results_store = ResultStore()

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._build_source())
        splitter.addWidget(self._build_params())
        self.results_tabs = QTabWidget()
        self.results_tabs.addTab(self._build_results(), "Result")
        self.compare = AttackCompareWidget(state)
        self.results_tabs.addTab(self.compare, "Compare attacks")
        self.results_tabs.currentChanged.connect(self._sync_compare)
        self.batch_spin.valueChanged.connect(self._sync_compare)
        splitter.addWidget(self.results_tabs)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setStretchFactor(2, 5)
        splitter.setSizes([300, 340, 560])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        state.datasetChanged.connect(self._on_dataset)
        state.modelsChanged.connect(self._refresh_models)
        state.currentModelChanged.connect(self._refresh_models)
        if state.mnist is not None:
            self._on_dataset(state.mnist)
        self._refresh_models()
        self._on_method()
        self._update_buttons()
        self.history.opened.connect(self.reopen)
        self.history.warned.connect(self.status.setText)
        self.history.refresh()

    # ------------------------------------------------------------------ building

    def _build_source(self) -> QWidget:
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Model"))
        self.model_combo = QComboBox()
        self.model_combo.setMinimumContentsLength(8)
        self.model_combo.currentIndexChanged.connect(self._on_model_chosen)
        row.addWidget(self.model_combo, 1)
        self.load_button = QPushButton("Load model...")
        self.load_button.clicked.connect(self.choose_model_file)
        row.addWidget(self.load_button)
        layout.addLayout(row)

        self.source_tabs = QTabWidget()
        self.gallery = AttackGallery()
        self.gallery.imageSelected.connect(self.select_test_image)
        self.source_tabs.addTab(self.gallery, "Test images")
        draw = QWidget()
        dl = QVBoxLayout(draw)
        self.canvas = DrawingCanvas()
        self.canvas.drawn.connect(self.use_canvas)
        dl.addWidget(QLabel("Draw a digit, or import a PNG/JPG (centred like MNIST)."))
        dl.addWidget(self.canvas, 0, Qt.AlignmentFlag.AlignHCenter)
        buttons = QHBoxLayout()
        self.import_button = QPushButton("Import image...")
        self.import_button.clicked.connect(self.choose_image_file)
        clear = QPushButton("Clear")
        clear.clicked.connect(self.canvas.clear)
        buttons.addWidget(self.import_button)
        buttons.addWidget(clear)
        dl.addLayout(buttons)
        dl.addStretch(1)
        self.source_tabs.addTab(draw, "Draw / import")
        layout.addWidget(self.source_tabs, 1)
        return box

    def _build_params(self) -> QWidget:
        box = QGroupBox("Attack")
        form = QFormLayout(box)
        self.method_combo = QComboBox()
        names = sorted(_attacks(), key=lambda n: (PREFERRED.index(n) if n in PREFERRED else 9, n))
        self.method_combo.addItems(names)
        self.method_combo.currentTextChanged.connect(self._on_method)
        form.addRow("Method", self.method_combo)
        self.goal_combo = QComboBox()
        self.goal_combo.addItem("none (untargeted)", None)
        for d in range(10):
            self.goal_combo.addItem(str(d), d)
        self.goal_combo.setCurrentIndex(3)  # goal 2, as in the deck
        form.addRow("Target digit", self.goal_combo)

        self.loss_combo = QComboBox()
        self.loss_combo.addItem("ce (cross-entropy)", "ce")
        self.loss_combo.addItem("margin (C&W)", "margin")
        self.loss_combo.addItem("deck (literal)", "deck")
        self.start_combo = QComboBox()
        self.start_combo.addItem("the image (x_target)", "target")
        self.start_combo.addItem("random noise", "noise")
        self.opt_combo = QComboBox()
        self.opt_combo.addItem("Adam (cosine decay)", "adam")
        self.opt_combo.addItem("plain gradient descent", "gd")
        self.lam_spin = QDoubleSpinBox()
        self.lam_spin.setRange(0.0, 1000.0)
        self.lam_spin.setDecimals(4)
        self.lam_spin.setSingleStep(0.01)
        self.lam_spin.setValue(0.05)
        self.lam_auto = QCheckBox("auto")
        self.lam_auto.setToolTip("binary search for the largest lambda reaching the confidence")
        self.lam_auto.toggled.connect(
            lambda on: self.lam_spin.setEnabled(not on and self._takes("lam"))
        )
        lam_row = QWidget()
        lr = QHBoxLayout(lam_row)
        lr.setContentsMargins(0, 0, 0, 0)
        lr.addWidget(self.lam_spin, 1)
        lr.addWidget(self.lam_auto)
        self.conf_spin = QDoubleSpinBox()
        self.conf_spin.setRange(0.1, 0.9999)
        self.conf_spin.setDecimals(4)
        self.conf_spin.setSingleStep(0.01)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 100_000)
        self.step_spin = QDoubleSpinBox()
        self.step_spin.setRange(0.0, 100.0)
        self.step_spin.setDecimals(4)
        self.step_spin.setSpecialValueText("default")
        self.step_spin.setSingleStep(0.005)
        self.eps_spin = QDoubleSpinBox()
        self.eps_spin.setRange(0.0, 1.0)
        self.eps_spin.setDecimals(3)
        self.eps_spin.setSingleStep(0.05)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.field_widgets: dict[str, QWidget] = {
            "loss": self.loss_combo,
            "start": self.start_combo,
            "optimizer": self.opt_combo,
            "lam": lam_row,
            "confidence": self.conf_spin,
            "steps": self.steps_spin,
            "step_size": self.step_spin,
            "eps": self.eps_spin,
            "seed": self.seed_spin,
        }
        for name, label in FIELDS.items():
            form.addRow(label, self.field_widgets[name])
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 1000)
        self.batch_spin.setToolTip(
            "attack the chosen test image and the next ones shown in the gallery"
        )
        form.addRow("Images (batch)", self.batch_spin)
        self.extra_box = QGroupBox("More parameters")
        self.extra_form = QFormLayout(self.extra_box)
        self.extra_widgets = {}
        form.addRow(self.extra_box)
        self.stall_note = QLabel(
            "<i>Why 'deck' stalls: softmax saturates on a confident network, so the gradient "
            "of 1/2||y - softmax||^2 vanishes; 'ce' and 'margin' work on the logits.</i>"
        )
        self.stall_note.setWordWrap(True)
        form.addRow(self.stall_note)

        self.run_button = QPushButton("Run attack")
        self.run_button.clicked.connect(self.run_attack)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.stop_button)
        form.addRow(buttons)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        form.addRow(self.progress)
        self.status = QLabel("Choose an image and a model, then Run.")
        self.status.setWordWrap(True)
        form.addRow(self.status)
        self.error_label = QLabel("")
        self.error_label.setStyleSheet("color: #b00020;")
        self.error_label.setWordWrap(True)
        form.addRow(self.error_label)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(box)
        scroll.setMinimumWidth(box.minimumSizeHint().width() + 24)
        return scroll

    def _build_results(self) -> QWidget:
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        self.history = HistoryBox(history.ATTACK_KIND, self.results_store)
        layout.addWidget(self.history)
        views = QHBoxLayout()
        self.original_view = DigitView("Original")
        self.adversarial_view = DigitView("Adversarial")
        self.delta_view = PerturbationView()
        for v in (self.original_view, self.adversarial_view, self.delta_view):
            views.addWidget(v)
        layout.addLayout(views)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.summary)
        plots = QHBoxLayout()
        self.bars = ProbabilityBars()
        self.cost = CostCurve()
        plots.addWidget(self.bars, 1)
        plots.addWidget(self.cost, 1)
        layout.addLayout(plots, 1)
        row = QHBoxLayout()
        row.addWidget(QLabel("Show result"))
        self.result_spin = QSpinBox()
        self.result_spin.setRange(1, 1)
        self.result_spin.valueChanged.connect(lambda v: self.show_result(v - 1))
        self.result_spin.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.UpDownArrows)
        row.addWidget(self.result_spin)
        self.result_count = QLabel("of 0")
        row.addWidget(self.result_count)
        row.addStretch(1)
        self.export_button = QPushButton("Export image...")
        self.export_button.clicked.connect(self.choose_export_file)
        self.export_batch_button = QPushButton("Export batch...")
        self.export_batch_button.clicked.connect(self.choose_export_folder)
        row.addWidget(self.export_button)
        row.addWidget(self.export_batch_button)
        layout.addLayout(row)
        return box

    # ------------------------------------------------------------------ models and data

    @Slot(object)
    def _on_dataset(self, mnist: Any) -> None:
        self.gallery.set_data(mnist.x_test, mnist.y_test)
        if self.source_x is None:
            self.gallery.select_index(0)

    @Slot()
    def _refresh_models(self, *_: Any) -> None:
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for clf in self.state.models:
            self.model_combo.addItem(_short(clf))
        current = self.state.current_model
        if current is not None and current in self.state.models:
            self.model_combo.setCurrentIndex(self.state.models.index(current))
        self.model_combo.blockSignals(False)
        if not self.state.models:
            self.model_combo.addItem("no model: train one or Load model...")
        self._update_buttons()
        self._sync_compare()

    def _on_model_chosen(self, i: int) -> None:
        if 0 <= i < len(self.state.models):
            self.state.set_current_model(self.state.models[i])

    def choose_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load a Keras model", str(Path.home()), "Keras models (*.keras)"
        )
        if path:
            self.load_model_file(path)

    def load_model_file(self, path: str | Path) -> Job:
        """Load a model in the background and make it the shared current model."""
        from advgui.core import models

        self.status.setText(f"Loading {Path(path).name}...")
        return run_job(
            lambda progress, cancel: models.load_model(path),
            name="attack-load-model",
            parent=self,
            on_result=self.state.add_model,
            on_error=lambda info: self._show_error("Cannot load model", info),
            on_finish=lambda: self.status.setText("Model loaded."),
        )

    # ------------------------------------------------------------------ source image

    @Slot(int)
    def select_test_image(self, i: int) -> None:
        mnist = self.state.mnist
        if mnist is None:
            return
        self._set_source(mnist.x_test[i], int(mnist.y_test[i]), i)

    def use_canvas(self) -> None:
        try:
            self._set_source(self.canvas.digit(), -1, None)
        except AdvguiError as err:
            self.error_label.setText(str(err))

    def choose_image_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import a digit", str(Path.home()), "Images (*.png *.jpg *.jpeg);;All files (*)"
        )
        if path:
            self.import_image(path)

    def import_image(self, path: str | Path) -> bool:
        """Import a picture as the source (and onto the canvas); False, with a message, if not.

        The header is checked here (format allow-list, size limit); a small picture is decoded
        at once, a big one in a background job, so a large photo never freezes the window.
        """
        try:
            width, height = images.image_size(path)
            digit = images.load_image(path) if width * height <= INLINE_DECODE_PIXELS else None
        except AdvguiError as err:
            self.error_label.setText(str(err))
            return False
        if digit is not None:
            self._use_imported(digit)
            return True
        self.status.setText(f"Reading {Path(path).name} ({width}x{height})...")
        self.import_job = run_job(
            lambda progress, cancel: images.load_image(path),
            name="attack-import-image",
            parent=self,
            on_result=self._use_imported,
            on_error=self._on_import_error,
            on_finish=lambda: self.status.setText(""),
        )
        return True

    def _on_import_error(self, info: ErrorInfo) -> None:
        if info.user_error:
            self.error_label.setText(info.message)
        else:
            self._show_error("Cannot import image", info)

    def _use_imported(self, digit: np.ndarray) -> None:
        self.canvas.set_digit(digit)
        self.source_tabs.setCurrentIndex(1)
        self._set_source(digit, -1, None)
        return True

    def _set_source(self, x: np.ndarray, label: int, index: int | None) -> None:
        self.source_x = np.asarray(x, np.float32).reshape(28, 28, 1)
        self.source_label = label
        self.source_index = index
        self.error_label.setText("")
        where = f"test image {index}, label {label}" if index is not None else "your image"
        self.original_view.set_image(self.source_x, where)
        self.batch_spin.setEnabled(index is not None)
        self._update_buttons()
        self._sync_compare()

    def _sync_compare(self, *_: Any) -> None:
        """Give the comparison the current model and images (the single-attack batch), while
        it is on screen; a change of inputs stops a comparison still running on old ones."""
        if self.results_tabs.currentWidget() is not self.compare:
            return
        clf = self.state.current_model
        if clf is None or self.source_x is None:
            return
        x, labels, _ = self._batch()
        if (
            self.compare.clf is clf
            and self.compare.x is not None
            and np.array_equal(self.compare.x, x)
        ):
            return
        self.compare.set_inputs(clf, x, labels if labels[0] >= 0 else None)

    # ------------------------------------------------------------------ parameters

    def _attack_class(self) -> type:
        return _attacks()[self.method_combo.currentText()]

    def _takes(self, name: str) -> bool:
        return name in self._param_names()

    def _param_names(self) -> dict[str, str]:
        """Form field -> the chosen attack's parameter (one name per concept: the same)."""
        d = attack_defaults(self._attack_class())
        return {f: f for f in self.field_widgets if f in d}

    @Slot()
    def _on_method(self, *_: Any) -> None:
        """Show the chosen attack's own defaults; disable the fields it does not take; add
        fields for its other parameters."""
        cls = self._attack_class()
        defaults = attack_defaults(cls)
        names = self._param_names()
        for name, widget in self.field_widgets.items():
            widget.setEnabled(name in names)
        values = {
            "confidence": self.conf_spin,
            "steps": self.steps_spin,
            "step_size": self.step_spin,
            "eps": self.eps_spin,
            "seed": self.seed_spin,
        }
        for name, spin in values.items():
            value = defaults.get(names.get(name, name))
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                spin.setValue(value)
            elif name == "step_size":
                spin.setValue(spin.minimum())  # shown as "default": the attack chooses
        for name, combo in (
            ("loss", self.loss_combo),
            ("start", self.start_combo),
            ("optimizer", self.opt_combo),
        ):
            i = combo.findData(defaults.get(name))
            if i >= 0:
                combo.setCurrentIndex(i)
        lam = defaults.get("lam")
        self.lam_auto.setChecked(lam == "auto")
        if isinstance(lam, (int, float)):
            self.lam_spin.setValue(lam)
        self.lam_spin.setEnabled("lam" in defaults and not self.lam_auto.isChecked())
        self.lam_auto.setEnabled("lam" in defaults)
        goal_item = self.goal_combo.model().item(0)
        goal_item.setEnabled(bool(cls.supports_untargeted))
        if not cls.supports_untargeted and self.goal_combo.currentData() is None:
            self.goal_combo.setCurrentIndex(3)
        if not cls.supports_targeted:
            self.goal_combo.setCurrentIndex(0)
        self.goal_combo.setEnabled(bool(cls.supports_targeted))
        self._build_extra_fields(defaults, set(names.values()))

    def _build_extra_fields(self, defaults: dict[str, Any], shown: set[str]) -> None:
        """Numeric and on/off parameters the fixed form lacks (restarts, c, overshoot...)."""
        while self.extra_form.rowCount():
            self.extra_form.removeRow(0)
        self.extra_widgets: dict[str, QWidget] = {}
        for name, default in defaults.items():
            if name in shown or name in HIDDEN:
                continue
            widget: QWidget
            if isinstance(default, bool):
                widget = QCheckBox()
                widget.setChecked(default)
            elif isinstance(default, int):
                widget = QSpinBox()
                widget.setRange(0, 1_000_000)
                widget.setValue(default)
            elif isinstance(default, float):
                widget = QDoubleSpinBox()
                widget.setDecimals(4)
                widget.setRange(-1e6, 1e6)
                widget.setValue(default)
            else:
                continue  # None or text: the attack's default applies
            self.extra_widgets[name] = widget
            self.extra_form.addRow(name.replace("_", " ").capitalize(), widget)
        self.extra_box.setVisible(bool(self.extra_widgets))

    def params(self) -> dict[str, Any]:
        """The parameters the chosen attack takes, read from the form."""
        names = self._param_names()
        values: dict[str, Any] = {
            "loss": self.loss_combo.currentData(),
            "start": self.start_combo.currentData(),
            "optimizer": self.opt_combo.currentData(),
            "lam": "auto" if self.lam_auto.isChecked() else self.lam_spin.value(),
            "confidence": self.conf_spin.value(),
            "steps": self.steps_spin.value(),
            "step_size": self.step_spin.value(),
            "eps": self.eps_spin.value(),
            "seed": self.seed_spin.value(),
        }
        if self.step_spin.value() == self.step_spin.minimum():
            del values["step_size"]  # "default": let the attack choose
        out = {names[k]: v for k, v in values.items() if k in names}
        for name, widget in self.extra_widgets.items():
            if isinstance(widget, QCheckBox):
                out[name] = widget.isChecked()
            elif isinstance(widget, (QSpinBox, QDoubleSpinBox)):
                out[name] = widget.value()
        return out

    def _mark_field(self, field: str | None) -> None:
        names = self._param_names()
        for name, widget in self.field_widgets.items():
            marked = field is not None and names.get(name) == field
            widget.setStyleSheet("border: 2px solid #b00020;" if marked else "")
        for name, widget in self.extra_widgets.items():
            widget.setStyleSheet("border: 2px solid #b00020;" if name == field else "")
        self.goal_combo.setStyleSheet("border: 2px solid #b00020;" if field == "goal" else "")

    # ------------------------------------------------------------------ running

    def _batch(self) -> tuple[np.ndarray, np.ndarray, list[int] | None]:
        assert self.source_x is not None
        n = self.batch_spin.value() if self.source_index is not None else 1
        if self.source_index is None or n == 1 or self.state.mnist is None:
            idx = None if self.source_index is None else [self.source_index]
            return self.source_x[None], np.array([self.source_label]), idx
        shown = self.gallery.visible_indices()
        pos = np.flatnonzero(shown == self.source_index)
        start = int(pos[0]) if len(pos) else 0
        chosen = [int(i) for i in shown[start : start + n]] or [self.source_index]
        mnist = self.state.mnist
        return mnist.x_test[chosen], mnist.y_test[chosen], chosen

    def run_attack(self) -> Job | None:
        """Validate, then run the attack in a background job; None if it cannot start."""
        if self.job is not None and self.job.is_running():
            return None
        self.error_label.setText("")
        self._mark_field(None)
        clf = self.state.current_model
        if clf is None:
            self.error_label.setText("No model: train one in the Training tab or Load model...")
            return None
        if self.source_x is None:
            self.error_label.setText("No image: pick a test image, draw or import one.")
            return None
        cls = self._attack_class()
        goal = self.goal_combo.currentData()
        try:
            if goal is None and not cls.supports_untargeted:
                raise ParameterError(f"{cls.name} needs a target digit", field="goal")
            from advgui.core.attacks import make_attack

            attack = make_attack(cls.name, **self.params())
        except ParameterError as err:
            self.error_label.setText(str(err))
            self._mark_field(err.field)
            return None
        x, labels, indices = self._batch()
        labels_arg = labels if (labels >= 0).all() else None

        store, model_name = self.results_store, clf.name

        def work(progress: Any, cancel: Any) -> Any:
            res = attack(clf, x, labels=labels_arg, goals=goal, progress=progress, cancel=cancel)
            try:  # kept the moment it finishes, before the GUI even hears of it
                png = export.png_predictions(clf, res.x_adv)
                entry = history.save_attack(
                    store, res, model=model_name, indices=indices, inputs=x, png_pred=png
                )
            except AdvguiError as err:
                return res, None, str(err)
            return res, entry, None

        self.cost.set_curve(None)
        self.adversarial_view.set_image(None, "running...")
        self.delta_view.set_delta(None)
        self.bars.set_probs(None, None)
        self.progress.setValue(0)
        self.status.setText(f"Running {cls.name} on {len(x)} image(s)...")
        self._pending = (indices, clf, x)
        self.job = run_job(
            work,
            name="attack",
            parent=self,
            on_progress=self._on_progress,
            on_result=self._on_result,
            on_error=lambda info: self._show_error("Attack failed", info),
            on_cancel=self._on_cancelled,
            on_finish=self._update_buttons,
        )
        self._update_buttons()
        return self.job

    def stop(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.status.setText("Stopping...")

    @Slot(object)
    def _on_progress(self, update: Progress) -> None:
        self.progress.setValue(int(1000 * update.fraction))
        info = update.info
        text = update.message
        if "cost" in info:
            text += f"  cost {info['cost']:.4g}"
        self.status.setText(text)
        if "curve" in info:
            self.cost.set_curve(info["curve"])
        if "image" in info and self.source_x is not None:
            live = np.asarray(info["image"], np.float32).reshape(28, 28, 1)
            self.adversarial_view.set_image(live, "optimising...")
            self.delta_view.set_delta(live - self.source_x)

    @Slot(object)
    def _on_result(self, payload: Any) -> None:
        result, entry, store_error = payload
        indices, clf, inputs = self._pending
        self._display(result, indices, clf, inputs)
        if entry is not None:
            self.history.add(entry)
        n = len(result)
        s = result.summary()
        self.status.setText(
            f"Done: {result.method} succeeded on {int(result.success.sum())}/{n} in "
            f"{result.seconds:.2f} s"
            + (
                f"; accuracy {100 * s['clean_accuracy']:.0f}% -> {100 * s['robust_accuracy']:.0f}%"
                if n > 1 and np.isfinite(s["robust_accuracy"])
                else ""
            )
            + (f"; not kept in the history: {store_error}" if store_error else "")
        )

    def _display(self, result: Any, indices: Any, clf: Any, inputs: np.ndarray) -> None:
        self.result, self.result_indices, self.result_model = result, indices, clf
        self.result_inputs = inputs
        self.progress.setValue(1000)
        n = len(result)
        self.result_spin.blockSignals(True)
        self.result_spin.setRange(1, n)
        self.result_spin.setValue(1)
        self.result_spin.blockSignals(False)
        self.result_count.setText(f"of {n}")
        self.show_result(0)

    def reopen(self, entry: ResultEntry) -> bool:
        """Show a stored run again (History); False, with a message, if it is damaged."""
        if self.job is not None and self.job.is_running():
            self.status.setText("Stop the running attack first.")
            return False
        try:
            result, info = history.load_attack(entry)
        except AdvguiError as err:
            self.status.setText(f"Cannot reopen: {err}")
            return False
        name = info.get("model")
        clf = next((m for m in self.state.models if m.name == name), None)
        self._display(result, info.get("indices"), clf, info["inputs"])
        self.status.setText(
            f"Reopened {entry.name} ({entry.created.replace('T', ' ')[:16]})"
            + ("" if clf is not None else f"; load model {name} to export it")
        )
        return True

    def show_result(self, k: int) -> None:
        """Show input ``k`` of the last result: images, probabilities, cost, numbers."""
        res = self.result
        if res is None or not 0 <= k < len(res):
            return
        rec = res.record(k)
        label = "?" if rec["source_label"] < 0 else rec["source_label"]
        if not np.array_equal(res.x[k], self.result_inputs[k]):
            where = "random start (noise)"  # the attack began from noise, not the image
        elif self.result_indices:
            where = f"test image {self.result_indices[k]}, label {label}"
        else:
            where = "your image"
        self.original_view.set_image(res.x[k], f"{where}\npredicted {rec['pred_before']}")
        conf = rec["goal_confidence"]
        self.adversarial_view.set_image(
            res.x_adv[k], f"predicted {rec['pred_after']} ({100 * conf:.1f}%)"
        )
        self.delta_view.set_delta(res.x_adv[k] - res.x[k], f"L2 {rec['l2']:.2f}")
        self.bars.set_probs(res.probs_before[k], res.probs_after[k])
        if res.cost_history is not None:
            self.cost.set_curve(np.asarray(res.cost_history)[:, k])
        else:
            self.cost.set_curve(None)
        goal = "" if rec["goal"] is None else f" goal {rec['goal']}"
        lam = res.details.lam
        lam_text = f", lambda {lam[k]:.4g}" if isinstance(lam, list) else ""
        self.summary.setText(
            f"<b>{'Success' if rec['success'] else 'Failed'}</b>: {rec['pred_before']} -> "
            f"{rec['pred_after']}{goal} at {100 * conf:.1f}%; L0 {rec['l0']}, "
            f"L2 {rec['l2']:.3f}, Linf {rec['linf']:.3f}; {rec['steps']} steps, "
            f"{rec['seconds']:.2f} s{lam_text}"
        )
        self._update_buttons()

    @Slot()
    def _on_cancelled(self) -> None:
        self.status.setText("Stopped: nothing was changed.")
        self.adversarial_view.set_image(None, "stopped")

    # ------------------------------------------------------------------ export

    def choose_export_file(self) -> None:
        if self.result is None:
            return
        k = self.result_spin.value() - 1
        rec = self.result.record(k)
        name = self.result.method
        if self.result_indices:
            name += f"_idx{self.result_indices[k]}"
        if rec["goal"] is not None:
            name += f"_to{rec['goal']}"
        path, _ = QFileDialog.getSaveFileName(
            self, "Export adversarial image", str(_results_dir() / f"{name}.png"), "PNG (*.png)"
        )
        if path:
            self.export_image(path)

    def choose_export_folder(self) -> None:
        if self.result is None:
            return
        folder = QFileDialog.getExistingDirectory(
            self, "Export the batch into", str(_results_dir())
        )
        if folder:
            self.export_batch(folder)

    def export_image(self, path: str | Path) -> Job | None:
        """Write the shown result as PNG + enlarged PNG + JSON, verified, in the background."""
        if self.result is None:
            return None
        k = self.result_spin.value() - 1
        res, clf, idx = self.result, self.result_model, self.result_indices
        index = idx[k] if idx else None
        return self._run_export(
            lambda progress, cancel: [export.export_image(res, k, clf, path, index=index)],
            str(path),
        )

    def export_batch(self, folder: str | Path) -> Job | None:
        """Write every image of the last run into ``folder`` with a CSV index."""
        if self.result is None:
            return None
        res, clf, idx = self.result, self.result_model, self.result_indices
        return self._run_export(
            lambda progress, cancel: export.export_batch(res, clf, folder, indices=idx),
            str(folder),
        )

    def _run_export(self, fn: Any, where: str) -> Job:
        self.status.setText(f"Exporting to {where}...")

        def done(records: list[dict[str, Any]]) -> None:
            self.last_export = records
            kept = sum(bool(r["png_success"]) for r in records)
            preds = ", ".join(str(r["png_pred"]) for r in records[:10])
            self.status.setText(
                f"Exported {len(records)} PNG(s) to {where}; read back and classified as "
                f"{preds}{'...' if len(records) > 10 else ''} ({kept} still adversarial)."
            )

        self.export_job = run_job(
            fn,
            name="attack-export",
            parent=self,
            on_result=done,
            on_error=lambda info: self._show_error("Export failed", info),
            on_finish=self._update_buttons,
        )
        self._update_buttons()
        return self.export_job

    # ------------------------------------------------------------------ misc

    def _show_error(self, title: str, info: ErrorInfo) -> None:
        self.error_label.setText(info.message)
        self.status.setText(title)
        if not info.user_error:
            show_error(self, title, info)

    def _update_buttons(self, *_: Any) -> None:
        running = self.job is not None and self.job.is_running()
        exporting = self.export_job is not None and self.export_job.is_running()
        ready = self.state.current_model is not None and self.source_x is not None
        self.run_button.setEnabled(ready and not running)
        self.stop_button.setEnabled(running)
        can_export = self.result is not None and self.result_model is not None and not exporting
        self.export_button.setEnabled(can_export)
        self.export_batch_button.setEnabled(can_export)
        self.method_combo.setEnabled(not running)

    def shutdown(self) -> None:
        """Cancel this tab's jobs (the window joins all threads afterwards)."""
        for job in (self.job, self.export_job):
            if job is not None:
                job.cancel()
        self.compare.shutdown()
