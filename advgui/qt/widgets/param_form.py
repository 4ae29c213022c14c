"""A form built from an attack's spec (:mod:`advgui.core.attacks.spec`): one field per
parameter, with the spec's range, label and help; basic parameters first, advanced ones in a
collapsible group.

Field kinds: a choice is a combo box, on/off a check box, an integer or a float a spin box
limited to the spec's range, a number that may be a word (lambda "auto") a spin box with a
check box, an optional number (None: the attack chooses) a spin box whose lowest entry reads
"default". The form only edits and reads values; the owner validates them against the attack
(rules between parameters live there) and marks the field a refusal names.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from advgui.core.attacks.spec import Param

MARK_STYLE = "border: 2px solid #b00020;"
#: Spin boxes need finite limits; a spec without one gets these.
_FLOAT_LIMIT = 1e9
_INT_LIMIT = 2**31 - 1


def _decimals_of(value: float) -> int:
    """Decimals needed to write ``value`` exactly, up to 6 (1e-6 and smaller count as 7)."""
    for d in range(7):
        if abs(round(value, d) - value) <= 1e-12 * max(1.0, abs(value)):
            return d
    return 7


def number_layout(p: Param) -> tuple[float, float, float, int]:
    """(minimum, maximum, single step, decimals) of a float field for ``p``.

    The step is half the default's decade (0.3 -> 0.05, 0.01 -> 0.005); decimals go one finer
    than the step and are enough for the default and the range ends, but a lower limit that
    only says "above 0" (step sizes: 1e-6) is rounded up to the first value the field shows.
    """
    default = p.default if isinstance(p.default, (int, float)) else None
    lo = p.lo if math.isfinite(p.lo) else -_FLOAT_LIMIT
    hi = p.hi if math.isfinite(p.hi) else _FLOAT_LIMIT
    base = abs(default) if default else (start_number(p) if default is None else 0.0)
    base = base or min(abs(hi), 1.0) or 1.0
    step = 10.0 ** math.floor(math.log10(base)) / 2
    needed = [_decimals_of(step) + 1]  # one finer than a step: 0.3 -> 0.031 can be typed
    if default is not None:
        needed.append(_decimals_of(default))
    for end in (lo, hi):
        if _decimals_of(end) <= 4:
            needed.append(_decimals_of(end))
    decimals = max(3, min(6, max(needed)))
    grain = 10.0**-decimals
    lo = math.ceil(round(lo / grain, 6)) * grain
    hi = math.floor(round(hi / grain, 6)) * grain
    return lo, hi, step, decimals


def start_number(p: Param) -> float:
    """What a number field shows when the default is a word or None."""
    if isinstance(p.default, (int, float)) and not isinstance(p.default, bool):
        return float(p.default)
    if p.lo > 0 and _decimals_of(p.lo) <= 4:
        return p.lo
    return min(p.hi, 1.0) / 10 if p.hi > 0 else max(p.lo, 0.0)


class Collapsible(QWidget):
    """A header button that shows or hides its body (closed when built)."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.button = QToolButton()
        self.button.setText(title)
        self.button.setCheckable(True)
        self.button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.button.setArrowType(Qt.ArrowType.RightArrow)
        self.button.setAutoRaise(True)
        self.button.toggled.connect(self.set_open)
        self.body = QWidget()
        self.body.setVisible(False)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.button)
        lay.addWidget(self.body)

    def set_open(self, on: bool) -> None:
        if self.button.isChecked() != on:
            self.button.setChecked(on)  # comes back here through toggled
            return
        self.button.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.body.setVisible(on)

    def is_open(self) -> bool:
        return self.button.isChecked()


class ParamForm(QWidget):
    """The fields of one attack's parameters. ``edited`` names the parameter just changed."""

    edited = Signal(str)

    def __init__(
        self, spec: Sequence[Param], parent: QWidget | None = None, *, hidden: Iterable[str] = ()
    ) -> None:
        super().__init__(parent)
        skip = set(hidden)
        self.spec = {p.name: p for p in spec if p.name not in skip}
        #: Defaults that replace the spec's (the dataset's own L-inf budget...), by name.
        self.defaults: dict[str, Any] = {}
        #: name -> the editor (combo, check box or spin box) holding the value.
        self.widgets: dict[str, QWidget] = {}
        #: name -> what the form row shows (the editor, or a row with its "auto" box).
        self.rows: dict[str, QWidget] = {}
        #: name -> the check box that replaces the number by a word ("auto").
        self.word_boxes: dict[str, QCheckBox] = {}
        self.basic = QFormLayout()
        self.advanced = Collapsible("Advanced parameters")
        self.advanced_form = QFormLayout(self.advanced.body)
        self.advanced_form.setContentsMargins(12, 0, 0, 0)
        for p in self.spec.values():
            row = self._field(p)
            tip = self.tooltip(p)
            row.setToolTip(tip)
            self.widgets[p.name].setToolTip(tip)
            (self.advanced_form if p.advanced else self.basic).addRow(p.title, row)
        n_adv = sum(p.advanced for p in self.spec.values())
        self.advanced.button.setText(f"Advanced parameters ({n_adv})")
        self.advanced.setVisible(n_adv > 0)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(self.basic)
        lay.addWidget(self.advanced)
        self.reset()

    @staticmethod
    def tooltip(p: Param) -> str:
        parts = [p.help, p.describe()]
        if p.optional:
            parts.append("'default': the attack chooses")
        return "; ".join(x for x in parts if x)

    # ------------------------------------------------------------------ building

    def _field(self, p: Param) -> QWidget:
        kind = p.type
        changed = lambda *_: self.edited.emit(p.name)  # noqa: E731
        if kind == "choice":
            combo = QComboBox()
            for choice in p.choices:
                combo.addItem(choice, choice)
            combo.currentIndexChanged.connect(changed)
            self.widgets[p.name] = self.rows[p.name] = combo
            return combo
        if kind == "bool":
            box = QCheckBox()
            box.toggled.connect(changed)
            self.widgets[p.name] = self.rows[p.name] = box
            return box
        spin = self._spin(p)
        spin.valueChanged.connect(changed)
        self.widgets[p.name] = spin
        if not p.words:
            self.rows[p.name] = spin
            return spin
        word = QCheckBox(p.words[0])
        word.setToolTip(self.tooltip(p))
        word.toggled.connect(lambda on: spin.setEnabled(not on))
        word.toggled.connect(changed)
        self.word_boxes[p.name] = word
        row = QWidget()
        lay = QHBoxLayout(row)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(spin, 1)
        lay.addWidget(word)
        self.rows[p.name] = row
        return row

    @staticmethod
    def _spin(p: Param) -> QSpinBox | QDoubleSpinBox:
        if p.type == "int":
            spin: QSpinBox | QDoubleSpinBox = QSpinBox()
            lo = int(max(p.lo, -_INT_LIMIT)) if math.isfinite(p.lo) else -_INT_LIMIT
            hi = int(min(p.hi, _INT_LIMIT)) if math.isfinite(p.hi) else _INT_LIMIT
            spin.setRange(lo - 1 if p.optional else lo, hi)
            spin.setGroupSeparatorShown(hi >= 10_000)
        else:
            spin = QDoubleSpinBox()
            lo, hi, step, decimals = number_layout(p)
            spin.setDecimals(decimals)
            spin.setSingleStep(step)
            spin.setRange(lo - 10.0**-decimals if p.optional else lo, hi)
        if p.optional:
            spin.setSpecialValueText("default")
        return spin

    # ------------------------------------------------------------------ values

    def reset(self) -> None:
        """Show the defaults (the spec's, or :attr:`defaults`), without ``edited``."""
        values = {name: self.defaults.get(name, p.default) for name, p in self.spec.items()}
        self.set_values(values, quiet=True)

    def set_values(self, values: dict[str, Any], *, quiet: bool = False) -> None:
        for name, value in values.items():
            p = self.spec.get(name)
            if p is None:
                continue
            widget = self.widgets[name]
            blocked = [widget, self.word_boxes.get(name)] if quiet else []
            for w in blocked:
                if w is not None:
                    w.blockSignals(True)
            try:
                self._set(p, widget, value)
            finally:
                for w in blocked:
                    if w is not None:
                        w.blockSignals(False)

    def _set(self, p: Param, widget: QWidget, value: Any) -> None:
        if isinstance(widget, QComboBox):
            i = widget.findData(value)
            if i >= 0:
                widget.setCurrentIndex(i)
        elif isinstance(widget, QCheckBox):
            widget.setChecked(bool(value))
        elif isinstance(widget, (QSpinBox, QDoubleSpinBox)):
            word = self.word_boxes.get(p.name)
            if isinstance(value, str) and word is not None:
                word.setChecked(value in p.words)
                widget.setEnabled(not word.isChecked())
                widget.setValue(type(widget.value())(start_number(p)))
            elif value is None:
                widget.setValue(widget.minimum() if p.optional else start_number(p))
            else:
                if word is not None:
                    word.setChecked(False)
                    widget.setEnabled(True)
                widget.setValue(value)

    def value(self, name: str) -> Any:
        """The field's value as the attack takes it (None: left to the attack)."""
        p, widget = self.spec[name], self.widgets[name]
        if isinstance(widget, QComboBox):
            return widget.currentData()
        if isinstance(widget, QCheckBox):
            return widget.isChecked()
        word = self.word_boxes.get(name)
        if word is not None and word.isChecked():
            return p.words[0]
        assert isinstance(widget, (QSpinBox, QDoubleSpinBox))
        if p.optional and widget.value() == widget.minimum():
            return None
        return widget.value()

    def values(self) -> dict[str, Any]:
        """Every field's value; an optional number left at "default" is left out, so the
        attack chooses it (as it would on the command line)."""
        out = {name: self.value(name) for name in self.spec}
        return {k: v for k, v in out.items() if v is not None}

    # ------------------------------------------------------------------ marks

    def mark(self, name: str | None) -> None:
        """Outline the field ``name`` (None: no field); opens the advanced group if it is
        there, so the mark is seen."""
        for field, row in self.rows.items():
            row.setStyleSheet(MARK_STYLE if field == name else "")
        if name in self.spec and self.spec[name].advanced:
            self.advanced.set_open(True)

    def marked(self) -> str | None:
        return next((n for n, row in self.rows.items() if row.styleSheet()), None)
