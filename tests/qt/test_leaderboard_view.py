"""The Defenses tab's Leaderboard page: a folder of real models ranked in a job, progress per
model, Stop, refused files shown, bad input marked."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("pytestqt")

pytestmark = pytest.mark.gui


@pytest.fixture
def panel(qtbot, mnist):
    from advgui.qt.defense_tab import DefenseTab
    from advgui.qt.state import AppState

    state = AppState()
    state.set_dataset(mnist)
    tab = DefenseTab(state)
    qtbot.addWidget(tab)
    yield tab.leaderboard
    tab.leaderboard.slot.join()


@pytest.fixture
def folder(class_models, tmp_path):
    for p in class_models:
        shutil.copy(p, tmp_path / p.name)
    (tmp_path / "zed.keras").write_bytes(b"junk")
    return tmp_path


def test_ranks_a_folder_with_progress_per_model(panel, folder, qtbot):
    panel.folder_edit.setText(str(folder))
    panel.attack_combo.setCurrentText("fgsm")
    panel.eps_spin.setValue(0.1)
    panel.n_spin.setValue(40)
    seen = set()
    job = panel.start()
    job.progress.connect(lambda u: seen.add(u.info.get("model")))
    qtbot.waitUntil(lambda: panel.result is not None, timeout=120000)
    assert seen >= {"alice", "bob", "carol"}
    ranked = [panel.table.item(r, 1).text() for r in range(3)]
    assert sorted(ranked) == ["alice", "bob", "carol"]
    assert panel.table.item(0, 0).text() == "1"
    assert panel.table.item(3, 1).text() == "zed.keras"
    assert panel.table.item(3, 5).text().startswith("refused: ")
    assert panel.run_button.isEnabled() and not panel.stop_button.isEnabled()


def test_stop_ends_the_run_and_bad_input_is_marked(panel, folder, qtbot, tmp_path):
    panel.start()  # no folder chosen
    assert panel.folder_edit.styleSheet() and panel.job is None
    panel.folder_edit.setText(str(tmp_path / "missing"))
    panel.start()
    assert "no such folder" in panel.status.text() and panel.job is None
    panel.folder_edit.setText(str(folder))
    panel.attack_combo.setCurrentText("pgd")
    panel.n_spin.setValue(200)
    job = panel.start()
    assert not panel.folder_edit.styleSheet()
    qtbot.waitUntil(lambda: panel.table.rowCount() >= 1, timeout=120000)  # a chunk done
    panel.stop()
    qtbot.waitUntil(lambda: job.outcome is not None, timeout=60000)
    assert panel.result is None and panel.status.text().startswith("Stopped")
    assert panel.run_button.isEnabled()


def test_certified_column_and_bad_certify_fields_are_marked(panel, folder, qtbot):
    panel.folder_edit.setText(str(folder))
    panel.attack_combo.setCurrentText("fgsm")
    panel.eps_spin.setValue(0.1)
    panel.n_spin.setValue(20)
    assert not panel.sigma_edit.isEnabled()  # smoothing's fields only for smoothing
    panel.certify_combo.setCurrentText("smoothing")
    assert panel.sigma_edit.isEnabled() and panel.samples_edit.isEnabled()
    panel.sigma_edit.setText("zero")
    assert panel.start() is None and panel.job is None
    assert panel.sigma_edit.styleSheet() and "sigma" in panel.status.text()
    panel.sigma_edit.setText("0.25")
    panel.samples_edit.setText("0")
    assert panel.start() is None
    assert panel.samples_edit.styleSheet() and not panel.sigma_edit.styleSheet()
    assert "n-samples must be between 1" in panel.status.text()
    panel.samples_edit.setText("200")
    panel.start()
    assert not panel.samples_edit.styleSheet()
    qtbot.waitUntil(lambda: panel.result is not None, timeout=120000)
    header = [panel.table.horizontalHeaderItem(c).text() for c in range(panel.table.columnCount())]
    col = header.index("certified")
    assert header[col - 1] == "robust"
    by_name = {e["model"]: e for e in panel.result["ranking"]}
    for row in range(3):
        entry = by_name[panel.table.item(row, 1).text()]
        shown = panel.table.item(row, col).text()
        assert shown == f"{100 * entry['certified_accuracy']:.1f}%"
        assert 0.0 <= entry["certified_accuracy"] <= 1.0
    assert panel.result["config"]["sigma"] == 0.25 and panel.result["config"]["n_samples"] == 200
