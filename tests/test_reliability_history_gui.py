"""Sessions survive in the GUI: an attack run and a comparison are kept as they finish, a new
window (the app opened again) lists them under History and reopens them into the view, and a
damaged stored entry is skipped with a warning in the status bar."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from reliability_qt import _wait, check_only

pytestmark = pytest.mark.gui


def _window(qtbot, mnist_path):
    from advgui.qt.main_window import MainWindow

    win = MainWindow(data_path=str(mnist_path), preload_tf=False)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.state.mnist is not None, timeout=60000)
    return win


def test_attack_run_is_kept_and_reopened_in_a_new_window(qtbot, mnist_path, trained_cnn):
    win = _window(qtbot, mnist_path)
    tab = win.attack_tab
    assert not tab.history.entries
    win.state.add_model(trained_cnn)
    tab.gallery.select_index(7)
    tab.method_combo.setCurrentText("fgsm")
    tab.eps_spin.setValue(0.3)
    tab.batch_spin.setValue(3)
    job = tab.run_attack()
    _wait(qtbot, job)
    assert job.outcome == "returned"
    shown = tab.result
    assert len(tab.history.entries) == 1 and "fgsm" in tab.history.combo.currentText()
    summary = tab.summary.text()
    win.close()

    again = _window(qtbot, mnist_path)  # the app opened again
    tab = again.attack_tab
    assert len(tab.history.entries) == 1
    assert tab.result is None
    tab.history.open_button.click()
    res = tab.result
    assert res is not None and res.method == "fgsm" and len(res) == 3
    np.testing.assert_array_equal(res.x_adv, shown.x_adv)
    assert tab.result_indices == [7, 8, 9] or len(tab.result_indices) == 3
    assert tab.summary.text() == summary and "Reopened" in tab.status.text()
    # Without its model the run can be looked at but not exported (the PNG is verified by it).
    assert not tab.export_button.isEnabled() and "load model test-cnn" in tab.status.text()
    again.state.add_model(trained_cnn)
    assert tab.reopen(tab.history.entries[0]) and tab.export_button.isEnabled()
    again.close()


def test_comparison_is_kept_and_reopened_in_a_new_window(qtbot, mnist_path, trained_cnn):
    win = _window(qtbot, mnist_path)
    win.state.add_model(trained_cnn)
    tab = win.defense_tab
    check_only(tab.setup.transform_list, {"none"})
    check_only(tab.setup.attack_list, {"fgsm"})
    tab.setup.eps_edit.setText("0, 0.2")
    tab.setup.n_spin.setValue(100)
    tab.start()
    _wait(qtbot, tab.job)
    assert tab.job.outcome == "returned", tab.status.text()
    result = tab.result
    rows = tab.table.rowCount()
    assert len(tab.history.entries) == 1
    win.close()

    again = _window(qtbot, mnist_path)
    tab = again.defense_tab
    assert len(tab.history.entries) == 1 and tab.result is None
    tab.history.open_button.click()
    assert tab.result["results"][0]["clean_accuracy"] == result["results"][0]["clean_accuracy"]
    assert tab.result["eps"] == [0.0, 0.2] and tab.table.rowCount() == rows
    assert "reopened" in tab.status.text()
    again.close()


def test_damaged_entries_are_skipped_with_a_status_bar_warning(qtbot, mnist_path, runs_store):
    from advgui.core import history

    good, damaged = runs_store
    win = _window(qtbot, mnist_path)
    tab = win.attack_tab
    assert [e.path for e in tab.history.entries] == [good.path]
    message = win.statusBar().currentMessage()
    assert "damaged" in message and damaged.path.name in message
    assert damaged.path.name in tab.status.text()
    # An entry damaged after listing is refused when opened, with a message; nothing breaks.
    (good.path / "arrays.npz").write_bytes(b"PK\x03\x04 not any more")
    assert tab.reopen(tab.history.entries[0]) is False
    assert "Cannot reopen" in tab.status.text() and tab.result is None
    assert tab.history.kind == history.ATTACK_KIND
    win.close()


@pytest.fixture
def runs_store(trained_cnn, mnist):
    from advgui.core import history
    from advgui.core.attacks import make_attack
    from advgui.core.results import ResultStore

    res = make_attack("fgsm", eps=0.2)(trained_cnn, mnist.x_test[:2], labels=mnist.y_test[:2])
    store = ResultStore()
    good = history.save_attack(store, res, model="test-cnn", indices=[0, 1])
    damaged = history.save_attack(store, res, model="test-cnn", indices=[0, 1])
    (damaged.path / "result.json").write_text('{"kind": "attack", "payl')
    return good, damaged
