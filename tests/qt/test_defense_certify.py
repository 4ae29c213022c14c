"""Certification in the Defenses tab offscreen: a certified column, the certified-accuracy
plot, and noise/IBP training from the defended-training form."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from qt_helpers import check_only


@pytest.fixture(scope="module")
def certified_models(mnist):
    from conftest import cached_model, defended_s2

    ibp = cached_model(
        "gui-ibp-s2", mnist, lambda: defended_s2(mnist, "ibp", eps=0.1, epochs=2, n_train=20000)
    )
    noise = cached_model(
        "gui-noise-s2",
        mnist,
        lambda: defended_s2(mnist, "noise", sigma=0.5, epochs=1, n_train=20000),
    )
    return ibp, noise


@pytest.fixture
def tab(qtbot, state, certified_models):
    from conftest import shown_defense_tab

    yield from shown_defense_tab(qtbot, state, certified_models)


def _only_model(tab, index):
    from PySide6.QtCore import Qt

    lw = tab.setup.model_list
    for i in range(lw.count()):
        lw.item(i).setCheckState(Qt.CheckState.Checked if i == index else Qt.CheckState.Unchecked)


def _run(tab, qtbot):
    tab.run_button.click()
    assert tab.job is not None, tab.status.text()
    with qtbot.waitSignal(tab.job.finished, timeout=120000):
        pass
    assert tab.job.outcome == "returned", tab.status.text()


def test_ibp_certified_column_and_plot(tab, qtbot):
    from advgui.qt.widgets.defense_table import COLUMNS

    _only_model(tab, 0)
    s = tab.setup
    check_only(s.transform_list, {"none"})
    check_only(s.attack_list, {"fgsm"})
    s.eps_edit.setText("0,0.1")
    s.n_spin.setValue(100)
    s.certify_combo.setCurrentText("ibp")
    assert not s.sigma_spin.isEnabled()
    _run(tab, qtbot)
    cert = tab.result["results"][0]["certified"]
    assert cert["method"] == "ibp" and cert["consistent"]
    col = [key for key, _ in COLUMNS].index("certified")
    by_attack = {}
    for r in range(tab.table.rowCount()):
        attack = tab.table.item(r, 2).text()
        eps = tab.table.item(r, 3).value
        by_attack[(attack, eps)] = tab.table.item(r, col).value
    for eps, v in zip(cert["eps"], cert["verified_accuracy"], strict=True):
        assert by_attack[("fgsm", eps)] == pytest.approx(v)  # beside the attack's figure
        assert by_attack[("certified:ibp", eps)] == pytest.approx(v)
    (curve,) = tab.certified_plot.curves
    assert curve["norm"] == "linf" and curve["accuracy"] == cert["verified_accuracy"]
    assert "BUG" not in tab.certified_plot.caption.text()
    assert "L-inf" in tab.certified_plot.plot.getAxis("bottom").labelText
    assert not tab.certified_plot.plot.isHidden()  # shown once there is something certified


def test_smoothing_certified_plot_against_l2_radius(tab, qtbot):
    _only_model(tab, 1)
    s = tab.setup
    check_only(s.transform_list, {"none"})
    check_only(s.attack_list, {"fgsm"})
    s.eps_edit.setText("0,0.1")
    s.n_spin.setValue(30)
    s.certify_combo.setCurrentText("smoothing")
    s.sigma_spin.setValue(0.0)  # "as trained": the model's sigma 0.5
    s.samples_spin.setValue(500)
    s.radii_edit.setText("0,0.5")
    s.smoothing_attack_spin.setValue(10)
    _run(tab, qtbot)
    cert = tab.result["results"][0]["certified"]
    assert cert["sigma"] == 0.5 and cert["n_samples"] == 500 and len(cert["radius"]) == 30
    (curve,) = tab.certified_plot.curves
    assert curve["norm"] == "l2" and curve["radii"] == [0.0, 0.5]
    assert curve["accuracy"] == cert["certified_accuracy"]
    assert "sigma 0.5" in tab.certified_plot.caption.text()
    emp = cert["empirical"]
    assert emp["n"] == 10 and curve["empirical"] == emp["accuracy"]  # drawn dashed beside it
    shown = {
        tab.table.item(r, 3).value: tab.table.item(r, 5).value
        for r in range(tab.table.rowCount())
        if tab.table.item(r, 2).text() == "empirical:smoothing"
    }
    assert shown == pytest.approx(dict(zip(emp["radii"], emp["accuracy"], strict=True)))


def test_stop_during_certification_keeps_the_attacks(tab, qtbot):
    """Certification is its own step ("Certifying <model>: k/N images"); Stop during it ends
    the job within seconds, the attack rows stay, the certified column says stopped and holds
    no number."""
    import time

    from advgui.qt.widgets.defense_table import COLUMNS

    _only_model(tab, 1)
    s = tab.setup
    check_only(s.transform_list, {"none"})
    check_only(s.attack_list, {"fgsm"})
    s.eps_edit.setText("0,0.1")
    s.n_spin.setValue(30)
    s.certify_combo.setCurrentText("smoothing")
    s.sigma_spin.setValue(0.0)
    s.samples_spin.setValue(2_000_000)  # minutes of certifying: Stop comes long before its end
    tab.run_button.click()
    assert tab.job is not None, tab.status.text()
    label = tab.state.models[1].name
    qtbot.waitUntil(lambda: f"Certifying {label}: " in tab.status.text(), timeout=60000)
    assert tab.status.text().endswith("/30 images"), tab.status.text()
    rows = {tab.table.item(r, 2).text() for r in range(tab.table.rowCount())}
    assert rows == {"fgsm", "certified:smoothing"}  # the attack shown while certifying
    t0 = time.perf_counter()
    tab.stop_button.click()
    with qtbot.waitSignal(tab.job.finished, timeout=10000):
        pass
    assert time.perf_counter() - t0 < 5.0
    assert tab.job.outcome == "cancelled"
    assert "stopped while certifying" in tab.status.text() and label in tab.status.text()
    assert tab.progress_bar.text().startswith("stopped at")
    col = [key for key, _ in COLUMNS].index("certified")
    robust = [key for key, _ in COLUMNS].index("robust_accuracy")
    by_attack = {}
    for r in range(tab.table.rowCount()):
        by_attack.setdefault(tab.table.item(r, 2).text(), []).append(r)
    assert len(by_attack["fgsm"]) == 2  # eps 0 and 0.1, with their figures
    for r in by_attack["fgsm"]:
        assert tab.table.item(r, robust).text().endswith("%")
        assert tab.table.item(r, col).text() == ""
    (r,) = by_attack["certified:smoothing"]
    assert tab.table.item(r, col).text() == "stopped"
    assert tab.table.item(r, robust).text() == ""
    assert not tab.certified_plot.curves and "stopped" in tab.certified_plot.caption.text()
    assert tab.result is None  # nothing complete to export


def test_bad_certification_input_marks_the_field(tab, qtbot):
    s = tab.setup
    s.certify_combo.setCurrentText("smoothing")
    s.radii_edit.setText("0,-1")
    tab.run_button.click()
    assert tab.job is None and "radii" in tab.status.text()
    assert "b00020" in s.radii_edit.styleSheet()
    _only_model(tab, 0)  # the IBP model was not noise-trained: a sigma must be given
    s.radii_edit.setText("0,1")
    s.sigma_spin.setValue(0.0)
    tab.run_button.click()
    with qtbot.waitSignal(tab.job.finished, timeout=60000):
        pass
    assert tab.job.outcome != "returned"
    assert "give a sigma" in tab.status.text(), tab.status.text()


def test_train_noise_and_ibp_from_the_form(tab, qtbot):
    p = tab.train_panel
    p.method_combo.setCurrentText("ibp")
    assert p.eps_spin.isEnabled() and not p.sigma_spin.isEnabled()
    assert p.config().eps_ramp == 0.5 and p.config().warmup == 0.2  # IBP's own schedule
    p.method_combo.setCurrentText("noise")
    assert p.sigma_spin.isEnabled() and not p.eps_spin.isEnabled()
    p.sigma_spin.setValue(0.25)
    p.arch_combo.setCurrentText("cnn-s2")
    p.epochs_spin.setValue(1)
    p.n_spin.setValue(2000)
    p.train_button.click()
    with qtbot.waitSignal(p.job.finished, timeout=120000):
        pass
    assert p.job.outcome == "returned", p.status.text()
    clf = tab.state.models[-1]
    assert clf.meta["defense"] == "noise" and clf.meta["sigma"] == 0.25
    assert "noise-sigma0.25" in p.status.text() and "PGD" not in p.status.text()
