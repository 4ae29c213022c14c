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
    assert panel.table.item(3, 4).text().startswith("refused: ")
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
