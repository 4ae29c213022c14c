"""Sessions survive: attack runs and comparisons are kept in the results store as they finish,
come back whole, and a damaged entry is skipped with a warning instead of breaking the list."""

from __future__ import annotations

import pytest

from advgui.core import history
from advgui.core.results import ResultStore


def test_history_box_lists_newest_first_and_warns(qtbot, runs, tmp_path):
    pytest.importorskip("pytestqt")
    from advgui.qt.widgets.history import HistoryBox

    store = ResultStore(tmp_path)
    targeted, fgsm = runs
    history.save_attack(store, targeted, model="a")
    later = history.save_attack(store, fgsm, model="b")
    damaged = history.save_attack(store, fgsm, model="c")
    (damaged.path / "result.json").write_bytes(b"\x00\x01")
    history.save_comparison(store, {"eps": [0.1], "results": [], "n": 1})  # another kind
    warned: list[str] = []
    box = HistoryBox(history.ATTACK_KIND, store)
    qtbot.addWidget(box)
    box.warned.connect(warned.append)
    assert not box.open_button.isEnabled()  # nothing read before the owner asks
    assert box.refresh() and len(warned) == 1 and damaged.path.name in warned[0]
    assert box.warning == warned[0]
    assert box.combo.count() == 2 and len(box.entries) == 2
    opened = []
    box.opened.connect(opened.append)
    box.open_button.click()
    assert opened[0].path.name in {later.path.name, damaged.path.name} - {damaged.path.name}
    # A fresh result goes on top without re-reading.
    fresh = history.save_attack(store, targeted, model="d")
    box.add(fresh)
    assert box.combo.count() == 3 and box.combo.currentIndex() == 0
    box.open_button.click()
    assert opened[-1] is fresh
    empty = HistoryBox(history.ATTACK_KIND, ResultStore(tmp_path / "none"))
    qtbot.addWidget(empty)
    assert empty.refresh() == [] and empty.warning == ""
    assert not empty.open_button.isEnabled() and "nothing" in empty.combo.currentText()
