"""The attack comparison widget: runs attacks in a background job, fills a sortable table,
shows images side by side, stops on request and refuses bad parameters with a message."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

pytestmark = pytest.mark.gui


@pytest.fixture
def widget(qtbot):
    from advgui.qt.state import AppState
    from advgui.qt.widgets.attack_compare import AttackCompareWidget

    w = AttackCompareWidget(AppState())
    qtbot.addWidget(w)
    yield w
    w.shutdown()


@pytest.fixture(scope="module")
def images(mnist, trained_cnn):
    x, y = mnist.x_test[:30], mnist.y_test[:30]
    ok = trained_cnn.predict(x) == y
    return x[ok][:3], y[ok][:3]


def test_parse_params():
    from advgui.core.errors import ParameterError
    from advgui.qt.widgets.attack_compare import parse_params

    assert parse_params("eps=0.3, steps=40; norm=l2, random_start=false") == {
        "eps": 0.3,
        "steps": 40,
        "norm": "l2",
        "random_start": False,
    }
    with pytest.raises(ParameterError):
        parse_params("eps 0.3")


def test_compare_fills_sortable_table_and_images(qtbot, widget, trained_cnn, images):
    x, y = images
    widget.set_inputs(trained_cnn, x, y)
    widget.set_methods(
        ["pgd", "deepfool", "jsma"],
        {"pgd": "eps=0.3, step_size=0.02, steps=15", "jsma": "max_share=0.1"},
    )
    progress = []
    with qtbot.waitSignal(widget.resultsReady, timeout=120000) as blocker:
        job = widget.run()
        assert job is not None and widget.is_running()
        assert not widget.run_button.isEnabled() and widget.stop_button.isEnabled()
        job.progress.connect(lambda u: progress.append(u.fraction))
    results = blocker.args[0]
    assert set(results) == {"pgd", "deepfool", "jsma"}
    assert progress and progress == sorted(progress)
    rows = widget.table_rows()
    assert {r["Attack"] for r in rows} == {"pgd", "deepfool", "jsma"}
    # The table shows what the results say.
    by_name = {r["Attack"]: r for r in rows}
    for name, res in results.items():
        assert float(by_name[name]["Success %"]) == pytest.approx(100 * res.success.mean(), abs=0.1)
    assert float(by_name["pgd"]["Linf"]) <= 0.3 + 1e-3
    # Sorting by L2 (numeric, not text) puts the smallest first.
    widget.table.sortItems(4)
    l2 = [float(r["L2"]) for r in widget.table_rows()]
    assert l2 == sorted(l2)
    # Original + one thumbnail per attack, for the chosen image.
    assert widget.strip_layout.count() == 4
    widget.image_index.setValue(2)
    assert widget.strip_layout.count() == 4
    assert widget.run_button.isEnabled() and not widget.stop_button.isEnabled()


def test_stop_keeps_window_responsive_and_job_joined(qtbot, widget, trained_cnn, images):
    x, y = images
    widget.set_inputs(trained_cnn, np.repeat(x, 20, axis=0), np.repeat(y, 20))
    widget.set_methods(["pgd", "cw"], {"pgd": "eps=0.3, steps=5000", "cw": "steps=1000"})
    with qtbot.waitSignal(widget.runningChanged, timeout=10000, check_params_cb=lambda r: not r):
        job = widget.run()
        qtbot.waitUntil(lambda: widget.progress.value() > 0, timeout=60000)
        widget.stop()
    assert job.outcome == "cancelled"
    assert "Stopped" in widget.status.text()
    assert not widget.is_running() and widget.run_button.isEnabled()
    assert widget.progress.text().startswith("stopped at") and widget.progress.value() < 1000


def test_bad_parameters_and_missing_inputs_give_messages(qtbot, widget, trained_cnn, images):
    assert widget.run() is None
    assert "No model" in widget.status.text()
    x, y = images
    widget.set_inputs(trained_cnn, x, y)
    widget.set_methods(["pgd"], {"pgd": "eps=5"})
    assert widget.run() is None and "eps" in widget.status.text()
    widget.set_methods(["deepfool"], {"deepfool": "steps=5"})
    widget.set_goal(3)
    assert widget.run() is None and "target" in widget.status.text()
    widget.set_methods([])
    widget.set_goal(None)
    assert widget.run() is None and "at least one" in widget.status.text()
    assert not widget.is_running()


def test_new_inputs_during_a_run_drop_the_old_run(qtbot, widget, trained_cnn, images):
    x, y = images
    widget.set_inputs(trained_cnn, np.repeat(x, 20, axis=0), np.repeat(y, 20))
    widget.set_methods(["pgd"], {"pgd": "eps=0.3, steps=5000"})
    old = widget.run()
    qtbot.waitUntil(lambda: widget.progress.value() > 0, timeout=60000)
    widget.set_inputs(trained_cnn, x[:1], y[:1])
    qtbot.waitUntil(lambda: not old.is_running(), timeout=30000)
    qtbot.wait(100)  # let the old job's queued signals arrive
    assert old.outcome == "cancelled"
    assert widget.results == {} and widget.table.rowCount() == 0
    assert "1 image(s) ready" in widget.status.text()
    assert widget.run_button.isEnabled() and not widget.is_running()


def test_focus_stays_on_the_buttons_through_a_run(qtbot, widget, trained_cnn, images):
    """Issue 17.16: when a comparison ends, focus returns to Run, not to a form field with
    its text selected."""
    from PySide6.QtCore import Qt

    x, y = images
    widget.set_inputs(trained_cnn, x, y)
    widget.set_methods(["fgsm", "cw"], {"cw": "steps=20"})
    widget.show()
    widget.activateWindow()
    qtbot.waitUntil(widget.isActiveWindow, timeout=5000)
    widget.run_button.setFocus(Qt.FocusReason.OtherFocusReason)
    assert widget.run_button.hasFocus()
    from PySide6.QtWidgets import QApplication

    moves = []
    QApplication.instance().focusChanged.connect(lambda old, new: moves.append(new))
    with qtbot.waitSignal(widget.runningChanged, timeout=120000, check_params_cb=lambda r: not r):
        widget.run()
        assert widget.stop_button.hasFocus()  # Run went grey: focus went to Stop beside it
    assert widget.run_button.hasFocus(), widget.focusWidget()
    assert moves == [widget.stop_button, widget.run_button]  # never anywhere else
    assert "(Ctrl+Shift+Return)" in widget.run_button.toolTip()
