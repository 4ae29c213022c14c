"""The Defense tab offscreen: a small comparison fills curves and table, Stop, exports."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
from qt_helpers import (
    MARK,
    _check_bug_report,
    _configure_comparison,
    _wait,
    check_only,
)

from advgui.core.errors import AdvguiError

pytest.importorskip("pytestqt")


@pytest.fixture(scope="module")
def small_clf(mnist):
    from conftest import cached_model, fit_plain

    return cached_model("small-s2", mnist, lambda: fit_plain(mnist, "cnn-s2", 1, 10000))


@pytest.fixture
def tab(qtbot, state, small_clf):
    from conftest import shown_defense_tab

    yield from shown_defense_tab(qtbot, state, [small_clf])


def test_small_comparison_fills_curves_table_and_exports(tab, qtbot, tmp_path, mnist, small_clf):
    s = tab.setup
    assert s.model_list.count() == 1 and s.selected_models() == [small_clf]
    check_only(s.transform_list, {"none", "squeeze-bits:1"})
    check_only(s.attack_list, {"fgsm"})
    s.eps_edit.setText("0, 0.1, 0.3")
    s.n_spin.setValue(200)
    partial_seen = []
    tab.plot.attack_combo.currentIndexChanged.connect(lambda _: partial_seen.append(1))
    tab.run_button.click()
    assert not tab.run_button.isEnabled() and tab.stop_button.isEnabled()
    with qtbot.waitSignal(tab.job.finished, timeout=120000):
        pass
    assert tab.job.outcome == "returned", tab.status.text()
    assert tab.run_button.isEnabled() and not tab.stop_button.isEnabled()
    # Two lines (bare, squeezed) plus the dashed naive curve of the squeezed model.
    assert len(tab.plot.items) == 2
    assert tab.certified_plot.plot.isHidden()  # nothing certified: a line, the table has room
    assert tab.table.rowCount() == 2 * 3
    clean = small_clf.accuracy(mnist.x_test[:200], mnist.y_test[:200])
    entry = tab.result["results"][0]
    assert entry["clean_accuracy"] == pytest.approx(clean)
    # Squeezing's naive FGSM is masked: the notes say so next to the numbers.
    assert "Gradient masking" in tab.notes.toPlainText()
    # Sorting by robust accuracy orders the rows by value.
    tab.table.sortItems(5)
    values = [tab.table.item(r, 5).value for r in range(tab.table.rowCount())]
    assert values == sorted(values)

    tab.export_csv(str(tmp_path / "r.csv"))
    tab.export_json(str(tmp_path / "r.json"))
    tab.export_png(str(tmp_path / "r.png"))
    with open(tmp_path / "r.csv") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 6 and {r["transform"] for r in table} == {"none", "squeeze-bits:1"}
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["results"][1]["attacks"]["fgsm"]["eps"] == [0.0, 0.1, 0.3]
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Reopening the JSON shows the same table.
    tab.load_result(str(tmp_path / "r.json"))
    assert tab.table.rowCount() == 6
    bad = tmp_path / "bad.json"
    bad.write_text('{"results": [{"label": 1}]}')
    with pytest.raises(AdvguiError):
        tab.load_result(str(bad))
    (tmp_path / "junk.json").write_text("not json")
    with pytest.raises(AdvguiError):
        tab.load_result(str(tmp_path / "junk.json"))


def test_stop_a_running_comparison(tab, qtbot):
    s = tab.setup
    check_only(s.transform_list, {"none", "noise:0.3"})
    check_only(s.attack_list, {"pgd"})
    s.steps_spin.setValue(200)
    s.n_spin.setValue(2000)
    tab.run_button.click()
    qtbot.waitUntil(lambda: tab.progress_bar.value() > 0, timeout=60000)
    tab.stop_button.click()
    with qtbot.waitSignal(tab.job.finished, timeout=60000):
        pass
    assert tab.job.outcome == "cancelled"
    assert "stopped" in tab.status.text()
    assert tab.run_button.isEnabled() and tab.result is None
    assert tab.progress_bar.text().startswith("stopped at") and tab.progress_bar.value() < 1000


def test_bad_input_is_reported_not_run(tab):
    tab.setup.eps_edit.setText("0, 2")
    tab.run_button.click()
    assert tab.job is None and "epsilon" in tab.status.text()
    tab.setup.eps_edit.setText("0,0.1")
    check_only(tab.setup.attack_list, set())
    tab.run_button.click()
    assert tab.job is None and "attack" in tab.status.text()


def test_train_defended_model_from_tab(tab, qtbot):
    p = tab.train_panel
    p.method_combo.setCurrentText("pgd-at")
    assert p.epochs_spin.value() == 6  # the method's default
    p.method_combo.setCurrentText("fast-at")
    assert p.epochs_spin.value() == 10
    p.arch_combo.setCurrentText("cnn-s2")
    p.epochs_spin.setValue(2)
    p.n_spin.setValue(2000)
    before = len(tab.state.models)
    p.train_button.click()
    with qtbot.waitSignal(p.job.finished, timeout=120000):
        pass
    assert p.job.outcome == "returned", p.status.text()
    assert len(p.history) == 2  # one point per epoch on the live plot
    xs, ys = p.robust_curve.getData()
    assert list(xs) == [1, 2] and np.all((ys >= 0) & (ys <= 1))
    assert p.plots.point_count("val_accuracy") == 2  # held-out clean accuracy per epoch
    assert p.plots.point_count("loss") >= 2  # live adversarial loss
    assert len(tab.state.models) == before + 1
    assert tab.state.models[-1].meta["defense"] == "fast-at"
    assert tab.setup.model_list.count() == before + 1


def test_stopped_defended_training_is_kept_marked_and_stored(tab, qtbot):
    from advgui.core.store import ModelStore
    from advgui.qt.widgets.model_list import describe

    p = tab.train_panel
    p.method_combo.setCurrentText("fast-at")
    p.arch_combo.setCurrentText("cnn-s2")
    p.epochs_spin.setValue(20)
    p.n_spin.setValue(20000)
    before = len(tab.state.models)
    p.train_button.click()
    qtbot.waitUntil(lambda: len(p.history) >= 1, timeout=120000)  # one epoch checked
    p.stop_button.click()
    assert not p.stop_button.isEnabled() and "model so far is kept" in p.status.text()
    with qtbot.waitSignal(p.job.finished, timeout=120000):
        pass
    assert p.job.outcome == "returned", p.status.text()
    # The best model so far joined the shared list, marked stopped, and is in the store.
    assert len(tab.state.models) == before + 1
    clf = tab.state.models[-1]
    assert clf.meta["cancelled"] is True and clf.meta["defense"] == "fast-at"
    assert 1 <= clf.meta["epochs_completed"] < 20
    assert "stopped" in describe(clf) and "stored" in describe(clf)
    (entry,) = ModelStore().entries()
    assert entry.meta["name"] == clf.name and entry.meta["cancelled"] is True
    items = [tab.setup.model_list.item(i).text() for i in range(tab.setup.model_list.count())]
    assert items[-1] == f"{clf.name} [stopped]"
    text = p.status.text()
    assert "Stopped after" in text and "marked stopped" in text and "model store" in text
    assert f"epoch {clf.meta['best_epoch']} kept" in text
    # The held-out checks, the one after Stop included, are on the plot.
    xs, ys = p.robust_curve.getData()
    assert len(xs) == len(p.history) == len(clf.meta["history"]) >= 1
    assert clf.meta["history"][-1]["epoch"] == pytest.approx(clf.meta["epochs_completed"])
    assert list(ys) == [h["robust_accuracy"] for h in clf.meta["history"]]
    assert p.train_button.isEnabled() and not p.stop_button.isEnabled()
    assert p.progress_bar.text().startswith("stopped at") and p.progress_bar.value() < 1000


def test_defended_training_has_its_own_page_with_full_size_plots(tab, qtbot):
    """Issue 17.9: defended training is a page of its own, its plots beside the settings;
    its Run and Stop keys are the same as elsewhere (one page shown at a time)."""
    tab.resize(1280, 760)
    tab.show()
    pages = tab.pages
    assert [pages.tabText(i) for i in range(pages.count())] == [
        "Compare defenses",
        "Train a defended model",
        "Leaderboard",
    ]
    pages.setCurrentWidget(tab.train_panel)
    qtbot.wait(50)
    p = tab.train_panel
    assert p.plots.isVisible() and not tab.run_button.isVisible()
    assert p.plots.width() > 600 and p.plots.height() > 400
    assert "(Ctrl+Return)" in p.train_button.toolTip() and "(Ctrl+.)" in p.stop_button.toolTip()


@pytest.mark.gui
def test_stop_comparison_at_random_moments(defense_tab, qtbot):
    tab = defense_tab
    rng = random.Random(5)
    _configure_comparison(tab)
    for _ in range(2):
        tab.start()
        job = tab.job
        assert job is not None and job.is_running(), tab.status.text()
        qtbot.wait(rng.randint(0, 2000))
        tab.stop()
        _wait(qtbot, job)
        assert job.outcome in ("returned", "cancelled"), tab.status.text()
        assert tab.run_button.isEnabled() and not tab.stop_button.isEnabled()


@pytest.mark.gui
def test_bug_in_comparison_worker(defense_tab, qtbot, monkeypatch, log_file):
    from advgui.core import evaluation

    tab = defense_tab
    _configure_comparison(tab, n=50)

    def broken(*args, **kwargs):
        raise KeyError("injected comparison failure")

    monkeypatch.setattr(evaluation, "evaluate", broken)
    tab.start()
    _wait(qtbot, tab.job)
    assert tab.job.outcome == "errored"
    _check_bug_report(tab, log_file, "injected comparison failure")
    assert tab.run_button.isEnabled()
    monkeypatch.undo()
    tab.start()
    _wait(qtbot, tab.job)
    assert tab.job.outcome == "returned", tab.status.text()


@pytest.mark.gui
@pytest.mark.parametrize(
    ("eps", "transform", "field"),
    [
        ("nan", "", "eps"),
        ("0.1, inf", "", "eps"),
        ("-0.1", "", "eps"),
        ("5", "", "eps"),
        ("a,b", "", "eps"),
        ("", "", "eps"),
        ("0.1", "jpeg:0", "transform"),
        ("0.1", "median:-1", "transform"),
        ("0.1", "bogus", "transform"),
    ],
)
def test_defense_form_marks_and_explains_bad_values(defense_tab, eps, transform, field):
    tab = defense_tab
    tab.setup.eps_edit.setText(eps)
    tab.setup.custom_transform.setText(transform)
    tab.start()
    assert tab.job is None and tab.run_button.isEnabled()
    assert tab.status.text() and "comparing" not in tab.status.text()
    marked = {"eps": tab.setup.eps_edit, "transform": tab.setup.custom_transform}
    for name, widget in marked.items():
        assert (MARK in widget.styleSheet()) == (name == field), (name, tab.status.text())
