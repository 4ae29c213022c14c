"""The Attack tab's middle panel: method, target digit, the chosen attack's parameter form (one
per registered attack, built from its spec), the batch size, and below them, at one place
whatever the attack, Run, Stop, the progress bar and the status and error lines.

Every edit is checked against the attack (its spec and its rules between parameters, through
:meth:`AttackSession.check`): the refused field is outlined with the attack's message, and
the mark goes as soon as the value is fixed.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from advgui.core.data import DATASETS, MNIST, DatasetSpec
from advgui.core.errors import ParameterError
from advgui.core.sessions import AttackSession, attack_classes
from advgui.qt.widgets import buttons
from advgui.qt.widgets.param_form import MARK_STYLE, ParamForm

#: First in the method list: the deck's two attacks and FGSM; the others follow by name.
PREFERRED = ("targeted", "noise", "fgsm")
#: Parameters the form never shows (internal knobs with good defaults).
HIDDEN = ("batch_size",)
#: The fields the form had before it was built from specs; the others are "extra" fields.
CLASSIC = ("loss", "start", "optimizer", "lam", "confidence", "steps", "step_size", "eps", "seed")
#: Names kept for the fields of the classic form: (parameter, editor kind, its "auto" box).
FIELD_NAMES: dict[str, tuple[str, type, bool]] = {
    "eps_spin": ("eps", QDoubleSpinBox, False),
    "steps_spin": ("steps", QSpinBox, False),
    "step_spin": ("step_size", QDoubleSpinBox, False),
    "seed_spin": ("seed", QSpinBox, False),
    "conf_spin": ("confidence", QDoubleSpinBox, False),
    "lam_spin": ("lam", QDoubleSpinBox, False),
    "lam_auto": ("lam", QCheckBox, True),
    "loss_combo": ("loss", QComboBox, False),
    "start_combo": ("start", QComboBox, False),
    "opt_combo": ("optimizer", QComboBox, False),
}
STALL_NOTE = (
    "<i>Why 'deck' stalls: softmax saturates on a confident network, so the gradient "
    "of 1/2||y - softmax||^2 vanishes; 'ce' and 'margin' work on the logits.</i>"
)


class AttackControls(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._absent: dict[tuple[type, bool], QWidget] = {}
        self._field_error = ""  # the validation message the error line shows, if any
        box = QGroupBox("Attack")
        col = QVBoxLayout(box)
        top = QFormLayout()
        classes = attack_classes()
        names = sorted(classes, key=lambda n: (PREFERRED.index(n) if n in PREFERRED else 9, n))
        self.method_combo = QComboBox()
        for i, name in enumerate(names):
            self.method_combo.addItem(name)
            self.method_combo.setItemData(i, classes[name].describe(), Qt.ItemDataRole.ToolTipRole)
        top.addRow("Method", self.method_combo)
        self.goal_combo = QComboBox()
        self.goal_combo.addItem("none (untargeted)", None)
        self.spec: DatasetSpec = MNIST
        for d in range(10):
            self.goal_combo.addItem(str(d), d)
        self.goal_combo.setCurrentIndex(3)  # goal 2, as in the deck
        self.goal_label = QLabel("Target digit")
        top.addRow(self.goal_label, self.goal_combo)
        col.addLayout(top)
        self.forms: dict[str, ParamForm] = {}
        for name in names:
            form = ParamForm(classes[name].spec, hidden=HIDDEN)
            form.edited.connect(lambda _field, name=name: self._on_edited(name))
            form.hide()
            self.forms[name] = form
            col.addWidget(form)
        self.form = self.forms[names[0]]
        tail = QFormLayout()
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 1000)
        self.batch_spin.setToolTip(
            "attack the chosen test image and the next ones shown in the gallery"
        )
        tail.addRow("Images (batch)", self.batch_spin)
        col.addLayout(tail)
        self.stall_note = QLabel(STALL_NOTE)
        self.stall_note.setWordWrap(True)
        col.addWidget(self.stall_note)
        col.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(box)
        widest = max(f.sizeHint().width() for f in self.forms.values())
        scroll.setMinimumWidth(max(box.minimumSizeHint().width(), widest) + 48)

        self.run_button = QPushButton("Run attack")
        self.stop_button = QPushButton("Stop")
        buttons.bind(self.run_button, buttons.RUN, "Run the attack on the chosen image(s)")
        buttons.bind(self.stop_button, buttons.STOP, "Stop the attack; nothing is changed")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.status = QLabel("Choose an image and a model, then Run.")
        self.error_label = QLabel("")
        self.error_label.setStyleSheet("color: #b00020;")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(scroll, 1)
        row = QHBoxLayout()
        row.addWidget(self.run_button)
        row.addWidget(self.stop_button)
        lay.addLayout(row)
        lay.addWidget(self.progress)
        for label, lines in ((self.status, 2), (self.error_label, 3)):
            # Fixed heights: a longer message never moves Run and Stop.
            label.setWordWrap(True)
            label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
            label.setFixedHeight(label.fontMetrics().lineSpacing() * lines + 4)
            lay.addWidget(label)

        self.method_combo.currentTextChanged.connect(self._on_method)
        self.goal_combo.currentIndexChanged.connect(self.validate)
        self._on_method()

    # ------------------------------------------------------------------ reading

    def method(self) -> str:
        return self.method_combo.currentText()

    def goal(self) -> int | None:
        return self.goal_combo.currentData()

    def params(self) -> dict[str, Any]:
        """The parameters the chosen attack takes, read from its form."""
        return self.form.values()

    def set_classes(self, spec: DatasetSpec) -> None:
        """Offer ``spec``'s classes as targets (digits for MNIST, "7 Sneaker"...); the chosen
        target stays chosen."""
        old, self.spec = self.spec, spec
        for form in self.forms.values():  # the dataset's own L-inf budget, as a default
            eps = form.spec.get("eps")
            if eps is None or eps.default != MNIST.default_eps or form.value("eps") is None:
                continue
            shown = form.value("eps")
            was_default = abs(shown - form.defaults.get("eps", eps.default)) < 1e-9
            if spec.default_eps == eps.default:
                form.defaults.pop("eps", None)
            else:
                form.defaults["eps"] = spec.default_eps
            form.widgets["eps"].setToolTip(
                f"default {spec.default_eps:g} on {spec.title} (L-inf; "
                + ", ".join(f"{s.default_eps:g} on {s.title}" for s in DATASETS.values())
                + ")"
            )
            if was_default and old is not spec:
                form.set_values({"eps": form.defaults.get("eps", eps.default)}, quiet=True)
        self.goal_label.setText("Target digit" if spec.digits else "Target class")
        for d in range(spec.num_classes):
            self.goal_combo.setItemText(d + 1, spec.label(d))

    def field(self, name: str) -> QWidget:
        """A classic field by its old name (``eps_spin``...): the chosen attack's editor, or a
        disabled stand-in when the attack takes no such parameter."""
        param, kind, word = FIELD_NAMES[name]
        widget = (self.form.word_boxes if word else self.form.widgets).get(param)
        if widget is None:
            widget = self._absent.get((kind, word))
            if widget is None:
                widget = self._absent[(kind, word)] = kind(self)
                widget.setEnabled(False)
                widget.hide()
        return widget

    @property
    def extra_widgets(self) -> dict[str, QWidget]:
        """The numeric and on/off fields beyond the classic ones (restarts, c, overshoot...)."""
        spec, widgets = self.form.spec, self.form.widgets
        kinds = ("int", "float", "bool")
        return {n: w for n, w in widgets.items() if n not in CLASSIC and spec[n].type in kinds}

    # ------------------------------------------------------------------ method and checks

    def _on_method(self, *_: Any) -> None:
        """Show the chosen attack's form at its defaults; the goal follows what it supports."""
        cls = attack_classes()[self.method()]
        self.form.hide()
        self.form = self.forms[cls.name]
        self.form.reset()
        self.form.show()
        self.goal_combo.model().item(0).setEnabled(bool(cls.supports_untargeted))
        if not cls.supports_untargeted and self.goal() is None:
            self.goal_combo.setCurrentIndex(3)
        if not cls.supports_targeted:
            self.goal_combo.setCurrentIndex(0)
        self.goal_combo.setEnabled(bool(cls.supports_targeted))
        self.validate()

    def _on_edited(self, method: str) -> None:
        if method == self.method():  # a hidden form of another attack: not shown, not checked
            self.validate()

    def validate(self, *_: Any) -> bool:
        """Check the form and the goal as they are now: mark what is refused, with the
        attack's message; clear the mark once it is fixed."""
        deck_cost = "loss" in self.form.spec and self.form.value("loss") == "deck"
        self.stall_note.setVisible(deck_cost)
        try:
            AttackSession.check(self.method(), self.params(), self.goal())
        except ParameterError as err:
            self.mark(err.field, str(err))
            return False
        self.mark(None)
        return True

    def mark(self, field: str | None, message: str = "") -> None:
        """Outline ``field`` (a parameter or ``goal``) and show ``message``; None clears the
        mark and the message a check put there (other messages stay)."""
        self.form.mark(field if field in self.form.spec else None)
        self.goal_combo.setStyleSheet(MARK_STYLE if field == "goal" else "")
        if message:
            self.error_label.setText(message)
        elif self._field_error and self.error_label.text() == self._field_error:
            self.error_label.setText("")
        self._field_error = message

    def set_running(self, running: bool, ready: bool) -> None:
        buttons.set_running(self.run_button, self.stop_button, running, ready)
        self.method_combo.setEnabled(not running)
