"""Adding an attack is one file, the GUI side: a class with a spec, defined here and
registered, appears in the Attack tab with its own form (ranges, labels, help, advanced group)
and in the compare view (defaults from its spec), and runs in both; it is offered by ``advgui
attack --method`` and ``advgui evaluate --attack`` too (tests/core/attacks/test_spec.py runs it in
the CLI and the evaluation)."""

from __future__ import annotations

import argparse
from typing import ClassVar

import numpy as np
import pytest

from advgui.core.attacks import ATTACKS, Attack
from advgui.core.attacks import spec as sp
from advgui.core.attacks.base import Outcome

pytest.importorskip("pytestqt")


pytestmark = pytest.mark.gui


class Brighten(Attack):
    """Brighten every pixel by gain * eps (a test attack, declared in this file only)."""

    name: ClassVar[str] = "brighten"
    supports_targeted: ClassVar[bool] = False
    spec: ClassVar[tuple[sp.Param, ...]] = (
        sp.eps(0.2),
        sp.Param("gain", 1.0, lo=0.5, hi=2.0, label="Gain", help="how much of eps is added"),
        sp.Param("mode", "add", choices=("add", "max"), label="Mode", help="add, or max with"),
        sp.Param("passes", 1, lo=1, hi=3, integer=True, advanced=True, help="times applied"),
    )

    def run(self, clf, x, task):
        params = task.params
        lift = params["gain"] * params["eps"]
        x_adv = np.maximum(x, lift) if params["mode"] == "max" else x + lift
        return Outcome(np.clip(np.minimum(x_adv, x + params["eps"]), 0, 1))


@pytest.fixture
def brighten(monkeypatch):
    monkeypatch.setitem(ATTACKS, Brighten.name, Brighten)  # what @register does, undone after
    return Brighten


def _choices(parser: argparse.ArgumentParser, command: str, flag: str) -> list[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next(a for a in sub.choices[command]._actions if flag in a.option_strings).choices


def test_attack_tab_builds_its_form_and_runs_it(brighten, qtbot, mnist, trained_cnn):
    from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QSpinBox

    from advgui.qt.attack_tab import AttackTab
    from advgui.qt.state import AppState

    state = AppState()
    tab = AttackTab(state)
    qtbot.addWidget(tab)
    tab.show()
    state.set_dataset(mnist)
    state.add_model(trained_cnn)
    methods = [tab.method_combo.itemText(i) for i in range(tab.method_combo.count())]
    assert "brighten" in methods
    tab.method_combo.setCurrentText("brighten")
    form = tab.controls.form
    gain, mode, passes = (form.widgets[n] for n in ("gain", "mode", "passes"))
    assert isinstance(gain, QDoubleSpinBox) and (gain.minimum(), gain.maximum()) == (0.5, 2.0)
    assert "how much of eps is added" in gain.toolTip() and "0.5 to 2" in gain.toolTip()
    assert isinstance(mode, QComboBox) and mode.currentData() == "add"
    assert isinstance(passes, QSpinBox) and (passes.minimum(), passes.maximum()) == (1, 3)
    # Basic fields show; the advanced one waits in the collapsed group.
    assert gain.isVisible() and not passes.isVisible() and not form.advanced.is_open()
    assert not tab.goal_combo.isEnabled()  # untargeted only, as the class says
    assert tab.params() == {"eps": 0.2, "gain": 1.0, "mode": "add", "passes": 1}
    gain.setValue(1.5)
    tab.gallery.select_index(0)
    from qt_helpers import _wait

    job = tab.run_attack()
    _wait(qtbot, job)
    res = tab.result
    assert job.outcome == "returned" and res.method == "brighten"
    assert res.params["gain"] == 1.5 and res.linf[0] == pytest.approx(0.2, abs=1e-6)
    tab.shutdown()


def test_compare_view_cli_and_evaluation_offer_it(brighten, qtbot, mnist, trained_cnn):
    from advgui.cli import build_parser
    from advgui.core import evaluation
    from advgui.qt.state import AppState
    from advgui.qt.widgets.attack_compare import AttackCompareWidget

    parser = build_parser()
    assert "brighten" in _choices(parser, "attack", "--method")
    assert "brighten" in _choices(parser, "evaluate", "--attack")
    assert "brighten" in evaluation.eval_attacks()

    # The compare view lists it with the defaults of its basic parameters, and runs it.
    widget = AttackCompareWidget(AppState())
    qtbot.addWidget(widget)
    row = widget.method_names().index("brighten")
    assert widget.methods.item(row, 1).text() == "eps=0.2, gain=1, mode=add"
    x, y = mnist.x_test[:3], mnist.y_test[:3]
    widget.set_inputs(trained_cnn, x, y)
    widget.set_methods(["brighten"])
    with qtbot.waitSignal(widget.resultsReady, timeout=60000) as blocker:
        widget.run()
    assert blocker.args[0]["brighten"].params["mode"] == "add"
    assert [r["Attack"] for r in widget.table_rows()] == ["brighten"]
    widget.shutdown()
