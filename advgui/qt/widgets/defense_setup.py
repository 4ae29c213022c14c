"""What to compare: models, input transformations, attacks and the epsilon grid."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from advgui.core import workspace
from advgui.core.data import MNIST, DatasetSpec
from advgui.core.errors import ParameterError

TRANSFORM_PRESETS = ("squeeze-bits:1", "median:2", "jpeg:75", "noise:0.3")
ATTACK_CHOICES = ("fgsm", "pgd", "bim", "mifgsm", "cw", "deepfool", "targeted")
ATTACK_TIPS = {
    "fgsm": "one signed-gradient step (Goodfellow 2015)",
    "pgd": "projected gradient descent with random start and restarts (Madry 2018)",
    "bim": "iterative FGSM from the clean image",
    "mifgsm": "momentum iterative FGSM",
    "cw": "Carlini-Wagner L2, projected onto each epsilon ball",
    "deepfool": "minimal perturbation, projected onto each epsilon ball",
    "targeted": "the deck's targeted descent (goal: next digit), projected onto each ball",
}
CERTIFY_TIPS = (
    "no certification",
    "randomized smoothing (Cohen 2019): certified L2 radius per image",
    "interval bound propagation (Gowal 2019): verified accuracy at each epsilon",
)


def _checklist(items: list[tuple[str, str, bool]]) -> QListWidget:
    w = QListWidget()
    for text, tip, checked in items:
        it = QListWidgetItem(text)
        it.setFlags(it.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        it.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        it.setToolTip(tip)
        w.addItem(it)
    return w


def _checked(w: QListWidget) -> list[int]:
    return [i for i in range(w.count()) if w.item(i).checkState() == Qt.CheckState.Checked]


def parse_grid_quietly(text: str) -> tuple[float, ...] | None:
    from advgui.core.evaluation import parse_eps_grid

    try:
        return tuple(parse_eps_grid(text))
    except ParameterError:
        return None


class DefenseSetup(QWidget):
    """Inputs of one comparison; :meth:`eval_config` validates them (ParameterError, field)."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._models: list[Any] = []
        #: The dataset compared on: a model trained on another is marked and never compared.
        self.spec: DatasetSpec = MNIST
        self.model_list = QListWidget()
        self.model_list.setToolTip("Models from the Training tab or loaded files")
        self.transform_list = _checklist(
            [("none", "the bare model", True)]
            + [(p, "input transformation in front of the model", False) for p in TRANSFORM_PRESETS]
        )
        self.custom_transform = QLineEdit()
        self.custom_transform.setPlaceholderText("more, e.g. squeeze-bits:4+median:3")
        self.attack_list = _checklist(
            [(a, ATTACK_TIPS[a], a in ("fgsm", "pgd")) for a in ATTACK_CHOICES]
        )
        self.eps_edit = QLineEdit("0,0.1,0.2,0.3")
        self.eps_edit.setToolTip("L-inf budgets, separated by commas")
        self.n_spin = QSpinBox()
        self.n_spin.setRange(10, 10000)
        self.n_spin.setValue(1000)
        self.restarts_spin = QSpinBox()
        self.restarts_spin.setRange(1, 100)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 1000)
        self.steps_spin.setValue(40)
        self.adaptive_check = QCheckBox("adaptive attacks too (BPDA, EOT, logits/T)")
        self.adaptive_check.setChecked(True)
        self.detector_spin = QDoubleSpinBox()
        self.detector_spin.setRange(0.0, 0.49)
        self.detector_spin.setSingleStep(0.01)
        self.detector_spin.setDecimals(2)
        self.detector_spin.setSpecialValueText("off")
        self.detector_spin.setToolTip("feature-squeezing detector: false-positive rate (0: off)")

        # Certification of every bare model, beside the attacks (core/certify).
        self.certify_combo = QComboBox()
        self.certify_combo.addItems(["none", "smoothing", "ibp"])
        for i, tip in enumerate(CERTIFY_TIPS):
            self.certify_combo.setItemData(i, tip, Qt.ItemDataRole.ToolTipRole)
        self.sigma_spin = QDoubleSpinBox()
        self.sigma_spin.setRange(0.0, 2.0)
        self.sigma_spin.setSingleStep(0.25)
        self.sigma_spin.setDecimals(2)
        self.sigma_spin.setSpecialValueText("as trained")
        self.sigma_spin.setToolTip("smoothing noise (as trained: the model's noise-training sigma)")
        self.samples_spin = QSpinBox()
        self.samples_spin.setRange(100, 10_000_000)
        self.samples_spin.setSingleStep(10_000)
        self.samples_spin.setValue(100_000)
        self.samples_spin.setToolTip("smoothing: noisy copies per image for the bound")
        self.radii_edit = QLineEdit("0,0.25,0.5,0.75,1,1.5,2")
        self.radii_edit.setToolTip("smoothing: L2 radii the certified accuracy is reported at")
        self.smoothing_attack_spin = QSpinBox()
        self.smoothing_attack_spin.setRange(0, 10_000)
        self.smoothing_attack_spin.setValue(100)
        self.smoothing_attack_spin.setSpecialValueText("off")
        self.smoothing_attack_spin.setToolTip(
            "smoothing: attack the smoothed classifier (SmoothAdv PGD-L2) on this many of the "
            "test images at every radius, its accuracy beside the certified one (0: off)"
        )
        self.certify_combo.currentTextChanged.connect(self._certify_changed)
        self._certify_changed("none")

        models_box = QGroupBox("Models")
        QVBoxLayout(models_box).addWidget(self.model_list)
        tr_box = QGroupBox("Input transformations")
        tr_lay = QVBoxLayout(tr_box)
        tr_lay.addWidget(self.transform_list)
        tr_lay.addWidget(self.custom_transform)
        at_box = QGroupBox("Attacks")
        QVBoxLayout(at_box).addWidget(self.attack_list)
        form = QFormLayout()
        form.addRow("epsilon grid", self.eps_edit)
        form.addRow("test images", self.n_spin)
        form.addRow("PGD steps", self.steps_spin)
        form.addRow("PGD restarts", self.restarts_spin)
        form.addRow("detector FPR", self.detector_spin)
        form.addRow(self.adaptive_check)
        form.addRow("certify", self.certify_combo)
        form.addRow("noise sigma", self.sigma_spin)
        form.addRow("noise samples", self.samples_spin)
        form.addRow("L2 radii", self.radii_edit)
        form.addRow("attack smoothed", self.smoothing_attack_spin)
        lists = QHBoxLayout()
        lists.addWidget(tr_box)
        lists.addWidget(at_box)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(models_box)
        lay.addLayout(lists)
        lay.addLayout(form)
        for w in (self.transform_list, self.attack_list, self.model_list):
            w.setMaximumHeight(150)
            w.itemChanged.connect(lambda *_: self.changed.emit())

    def _certify_changed(self, method: str) -> None:
        for w in (self.sigma_spin, self.samples_spin, self.radii_edit, self.smoothing_attack_spin):
            w.setEnabled(method == "smoothing")
        self.changed.emit()

    # ------------------------------------------------------------------ models

    def set_models(self, models: list[Any]) -> None:
        """Show ``models``, keeping the check marks of those still there (new ones checked)."""
        was = {id(m): self.model_list.item(i).checkState() for i, m in enumerate(self._models)}
        self.model_list.blockSignals(True)
        self.model_list.clear()
        self._models = list(models)
        for m in self._models:
            stopped = bool(m.meta.get("cancelled"))
            it = QListWidgetItem(f"{m.name} [stopped]" if stopped else m.name)
            it.setFlags(it.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            it.setCheckState(was.get(id(m), Qt.CheckState.Checked))
            defense = m.meta.get("defense")
            tip = f"defense: {defense}" if defense else "no defense"
            tip += "; training was stopped: the model so far" if stopped else ""
            problem = workspace.model_problem(m, self.spec)
            if problem is not None:
                it.setText(it.text() + " (other dataset)")
                it.setForeground(QColor("#b00020"))
                tip = f"{problem}\n{tip}"
            it.setToolTip(tip)
            self.model_list.addItem(it)
        self.model_list.blockSignals(False)
        self.changed.emit()

    def set_dataset(self, spec: DatasetSpec) -> None:
        """Compare on ``spec``: the list is marked again for it; an epsilon grid left at the
        other dataset's default takes this one's."""
        old, self.spec = self.spec, spec
        if parse_grid_quietly(self.eps_edit.text()) == tuple(old.eps_grid):
            self.eps_edit.setText(",".join(f"{e:g}" for e in spec.eps_grid))
        self.eps_edit.setToolTip(
            f"L-inf budgets, separated by commas (default on {spec.title}: "
            + ",".join(f"{e:g}" for e in spec.eps_grid) + ")"
        )  # fmt: skip
        self.set_models(self._models)

    def selected_models(self) -> list[Any]:
        """The checked models; ParameterError (field ``models``) if one belongs to another
        dataset: it is refused, never compared on this one."""
        chosen = [self._models[i] for i in _checked(self.model_list)]
        for m in chosen:
            problem = workspace.model_problem(m, self.spec)
            if problem is not None:
                raise ParameterError(problem, field="models")
        return chosen

    # ------------------------------------------------------------------ choices

    def transforms(self) -> list[str]:
        from advgui.core.defenses import parse_transform

        chosen = [self.transform_list.item(i).text() for i in _checked(self.transform_list)]
        extra = [t.strip() for t in self.custom_transform.text().split(",") if t.strip()]
        for t in extra:
            parse_transform(t)
        out = list(dict.fromkeys(chosen + extra))
        if not out:
            raise ParameterError("choose at least one transformation (or none)", field="transform")
        return out

    def attacks(self) -> list[str]:
        return [self.attack_list.item(i).text() for i in _checked(self.attack_list)]

    def eval_config(self) -> Any:
        from advgui.core.evaluation import EvalConfig, parse_eps_grid

        fpr = self.detector_spin.value()
        method = self.certify_combo.currentText()
        certify: dict[str, Any] = {}
        if method == "ibp":
            certify = {"certify": "ibp"}
        elif method == "smoothing":
            from advgui.core.certify import parse_radii

            sigma = self.sigma_spin.value()
            certify = {
                "certify": "smoothing",
                "sigma": sigma if sigma > 0 else None,
                "n_samples": self.samples_spin.value(),
                "radii": parse_radii(self.radii_edit.text()),
                "smoothing_attack": self.smoothing_attack_spin.value(),
            }
        return EvalConfig(
            attacks=tuple(self.attacks()),
            eps=parse_eps_grid(self.eps_edit.text()),
            n=self.n_spin.value(),
            restarts=self.restarts_spin.value(),
            pgd_steps=self.steps_spin.value(),
            adaptive=self.adaptive_check.isChecked(),
            detector_fpr=fpr if fpr > 0 else None,
            **certify,
        ).validate()
