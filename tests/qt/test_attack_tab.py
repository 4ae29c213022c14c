"""The Attack tab offscreen: pick an image, choose a goal, run, watch, stop, export, compare."""

from __future__ import annotations

import csv
import json
import random
import struct
import zlib

import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox
from qt_helpers import (
    MARK,
    _check_bug_report,
    _type,
)
from qt_helpers import (
    _wait as _wait_joined,
)

pytest.importorskip("pytestqt")


pytestmark = pytest.mark.gui


@pytest.fixture
def tab(qtbot, mnist, trained_cnn):
    from advgui.qt.attack_tab import AttackTab
    from advgui.qt.state import AppState

    state = AppState()
    widget = AttackTab(state)
    qtbot.addWidget(widget)
    widget.resize(1200, 760)
    widget.show()
    state.set_dataset(mnist)
    state.add_model(trained_cnn)
    yield widget
    widget.shutdown()
    for job in (widget.job, widget.export_job):
        if job is not None:
            job.wait(30000)


def _wait(qtbot, job, timeout=60000):
    assert job is not None
    qtbot.waitUntil(lambda: not job.is_running() and job.outcome is not None, timeout=timeout)


def test_targeted_attack_from_gallery_updates_view_and_exports(
    tab, qtbot, mnist, tmp_path, monkeypatch
):
    # Pick the first 4 through the digit filter.
    tab.gallery.filter.setCurrentIndex(tab.gallery.filter.findData(4))
    assert set(mnist.y_test[tab.gallery.visible_indices()]) == {4}
    first_four = int(np.flatnonzero(mnist.y_test == 4)[0])
    tab.gallery.select_index(first_four)
    assert tab.source_index == first_four and tab.source_label == 4
    tab.method_combo.setCurrentText("targeted")
    tab.goal_combo.setCurrentIndex(tab.goal_combo.findData(2))
    assert tab.lam_auto.isChecked() and not tab.lam_spin.isEnabled()  # the attack's default
    tab.lam_auto.setChecked(False)
    tab.lam_spin.setValue(0.05)
    tab.steps_spin.setValue(150)
    assert not tab.eps_spin.isEnabled()  # the deck's attack has no epsilon
    assert tab.start_combo.isEnabled() and tab.start_combo.currentData() == "target"
    updates, partials = [], []
    job = tab.run_attack()
    job.progress.connect(updates.append)
    job.partial.connect(partials.append)
    assert tab.stop_button.isEnabled() and not tab.run_button.isEnabled()
    _wait(qtbot, job)
    assert job.outcome == "returned"
    # The live curve and image travel on their own typed channel, not inside Progress.info.
    assert updates and "curve" not in updates[-1].info and updates[-1].partial is None
    assert partials and len(partials[-1].curve) == 150 and partials[-1].image.shape == (28, 28, 1)
    res = tab.result
    assert res.goals[0] == 2 and res.pred_after[0] == 2
    assert int(np.argmax(tab.bars.after)) == 2 and int(np.argmax(tab.bars.before)) == 4
    assert len(tab.cost.values) == 150 and tab.cost.values[-1] < tab.cost.values[0]
    np.testing.assert_allclose(tab.adversarial_view.image, res.x_adv[0].reshape(28, 28))
    assert tab.delta_view.scale == pytest.approx(res.linf[0], abs=1e-6)
    assert "Success" in tab.summary.text() and "4 -> 2" in tab.summary.text()
    assert tab.run_button.isEnabled() and tab.export_button.isEnabled()

    from PySide6.QtWidgets import QFileDialog

    asked = {}

    def fake_save(parent, title, suggested, filt):
        asked["suggested"] = suggested
        return str(tmp_path / "adv.png"), filt

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(fake_save))
    tab.export_button.click()
    assert asked["suggested"].endswith(f"targeted_idx{first_four}_to2.png")
    ejob = tab.export_job
    _wait(qtbot, ejob)
    assert ejob.outcome == "returned", tab.error_label.text()
    side = json.loads((tmp_path / "adv.json").read_text())
    assert side["png_pred"] == 2 and side["index"] == first_four
    assert (tmp_path / "adv.png").is_file() and (tmp_path / "adv_x10.png").is_file()
    assert "classified as 2" in tab.status.text()


def test_fgsm_batch_and_batch_export(tab, qtbot, mnist, tmp_path):
    tab.gallery.select_index(10)
    tab.method_combo.setCurrentText("fgsm")
    assert tab.eps_spin.isEnabled() and tab.eps_spin.value() == pytest.approx(0.3)
    assert not tab.steps_spin.isEnabled() and not tab.start_combo.isEnabled()
    tab.goal_combo.setCurrentIndex(0)  # untargeted
    tab.batch_spin.setValue(5)
    job = tab.run_attack()
    _wait(qtbot, job)
    assert len(tab.result) == 5 and tab.result_indices == [10, 11, 12, 13, 14]
    assert tab.result_count.text() == "of 5"
    tab.result_spin.setValue(3)
    np.testing.assert_allclose(tab.original_view.image, mnist.x_test[12].reshape(28, 28))
    ejob = tab.export_batch(tmp_path / "out")
    _wait(qtbot, ejob)
    with open(tmp_path / "out" / "index.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["index"]) for r in rows] == [10, 11, 12, 13, 14]
    assert all((tmp_path / "out" / r["file"]).is_file() for r in rows)


def test_stop_a_long_run(tab, qtbot):
    tab.gallery.select_index(3)
    tab.method_combo.setCurrentText("targeted")
    tab.lam_auto.setChecked(False)
    tab.steps_spin.setValue(100_000)
    job = tab.run_attack()
    qtbot.waitUntil(lambda: tab.progress.value() > 0 or tab.cost.values.size > 0, timeout=30000)
    tab.stop_button.click()
    _wait(qtbot, job, timeout=10000)
    assert job.outcome == "cancelled"
    assert "Stopped" in tab.status.text() and tab.result is None
    assert tab.run_button.isEnabled() and not tab.stop_button.isEnabled()
    assert tab.progress.text().startswith("stopped at") and tab.progress.value() < 1000


def test_drawing_import_and_clear_errors(tab, qtbot, tmp_path):
    from PySide6.QtCore import QPoint

    tab.canvas.clear()
    tab.use_canvas()
    assert "empty" in tab.error_label.text()
    tab.canvas.stroke([QPoint(140, 40), QPoint(140, 240)])  # a "1"
    tab.use_canvas()
    assert tab.source_index is None and tab.source_label == -1
    x = tab.source_x.reshape(28, 28)
    rows = np.flatnonzero(x.max(1) > 0.2)
    assert rows[-1] - rows[0] + 1 in (19, 20, 21) and x[:, :4].max() == 0
    assert not tab.batch_spin.isEnabled()

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    assert not tab.import_image(bad)
    assert "not a readable" in tab.error_label.text()

    # The noise attack starts from noise: that is the original it shows.
    tab.gallery.select_index(0)
    tab.method_combo.setCurrentText("noise")
    tab.goal_combo.setCurrentIndex(tab.goal_combo.findData(5))
    tab.steps_spin.setValue(60)
    job = tab.run_attack()
    _wait(qtbot, job)
    assert "random start" in tab.original_view.caption.text()
    assert 0.4 < tab.original_view.image.mean() < 0.6 and tab.result.goals[0] == 5

    # A noise attack needs a goal: "untargeted" is refused with the field marked.
    tab.method_combo.setCurrentText("noise")
    assert not tab.goal_combo.model().item(0).isEnabled()
    tab.goal_combo.setCurrentIndex(0)
    assert tab.run_attack() is None
    assert "needs a target digit" in tab.error_label.text()
    assert "b00020" in tab.goal_combo.styleSheet()


def test_without_a_model_run_explains(qtbot, mnist):
    from advgui.qt.attack_tab import AttackTab
    from advgui.qt.state import AppState

    state = AppState()
    widget = AttackTab(state)
    qtbot.addWidget(widget)
    state.set_dataset(mnist)
    assert not widget.run_button.isEnabled()
    assert widget.run_attack() is None
    assert "No model" in widget.error_label.text()
    assert "softmax saturates" in widget.stall_note.text()
    # The placeholder fits its combo (it was clipped: "no model: train one or Load m").
    widget.resize(1280, 760)
    widget.show()
    combo = widget.model_combo
    qtbot.waitUntil(combo.isVisible)
    assert combo.fontMetrics().horizontalAdvance(combo.currentText()) < combo.width() - 20
    assert "Load model" in combo.toolTip()


def test_form_follows_each_attacks_own_parameters(qtbot, monkeypatch, mnist, trained_cnn):
    """An attack added to the registry gets its defaults and extra fields from its spec."""
    from advgui.core.attacks import ATTACKS, Attack
    from advgui.core.attacks import spec as sp
    from advgui.core.attacks.base import Outcome
    from advgui.core.errors import ParameterError
    from advgui.qt.attack_tab import AttackTab
    from advgui.qt.state import AppState

    class Shift(Attack):
        name = "shift"
        supports_targeted = False
        spec = (
            sp.eps(0.2),
            sp.step_size(None),
            sp.Param("restarts", 2, lo=1, hi=5, integer=True),
            sp.Param("random_start", True),
            sp.Param("norm", "linf", choices=("linf", "l2")),
        )

        def validate(self, params):
            if params["restarts"] > 1 and not params["random_start"]:
                raise ParameterError("restarts need a random start", field="restarts")
            return params

        def run(self, clf, x, task):
            return Outcome(np.clip(x + task.params["eps"], 0, 1))

    monkeypatch.setitem(ATTACKS, "shift", Shift)
    state = AppState()
    tab = AttackTab(state)
    qtbot.addWidget(tab)
    state.set_dataset(mnist)
    state.add_model(trained_cnn)
    tab.method_combo.setCurrentText("shift")
    assert tab.eps_spin.value() == pytest.approx(0.2) and tab.step_spin.isEnabled()
    assert tab.step_spin.text() == "default" and not tab.goal_combo.isEnabled()
    assert set(tab.extra_widgets) == {"restarts", "random_start"}
    # Every field, the choice too; "default" (the attack chooses) is left out.
    assert tab.params() == {"eps": 0.2, "restarts": 2, "random_start": True, "norm": "linf"}
    norm = tab.controls.form.widgets["norm"]
    assert [norm.itemData(i) for i in range(norm.count())] == ["linf", "l2"]
    tab.step_spin.setValue(0.05)
    assert tab.params()["step_size"] == pytest.approx(0.05)
    # The field has the spec's range (not 0..1e6): 9 cannot be entered.
    restarts = tab.extra_widgets["restarts"]
    assert (restarts.minimum(), restarts.maximum()) == (1, 5)
    restarts.setValue(9)
    assert restarts.value() == 5
    # A rule between parameters is checked on edit: the field is marked with the message...
    tab.extra_widgets["random_start"].setChecked(False)
    assert "restarts need a random start" in tab.error_label.text()
    assert "b00020" in restarts.styleSheet()
    assert tab.run_attack() is None and tab.job is None  # ...Run refuses it...
    assert "b00020" in restarts.styleSheet() and "random start" in tab.error_label.text()
    restarts.setValue(1)  # ...and fixing it clears mark and message at once, before any Run
    assert restarts.styleSheet() == "" and tab.error_label.text() == ""
    tab.extra_widgets["random_start"].setChecked(True)
    restarts.setValue(3)
    job = tab.run_attack()
    _wait(qtbot, job)
    assert job.outcome == "returned" and tab.result.params["restarts"] == 3
    # The deck's attacks show their own extra knobs: lambda searches and the 8-bit finish.
    tab.method_combo.setCurrentText("targeted")
    assert {"searches", "quantize"} <= set(tab.extra_widgets)
    tab.extra_widgets["quantize"].setChecked(False)
    assert tab.params()["quantize"] is False and "step_size" in tab.params()


# The comparison view inside the Attack tab: it follows the chosen image, batch and model.
def test_compare_tab_attacks_the_selected_images(tab, qtbot, mnist, trained_cnn):
    tab.gallery.select_index(3)
    tab.batch_spin.setValue(4)
    assert tab.compare.x is None  # inputs are handed over only when the view is shown
    tab.results_tabs.setCurrentWidget(tab.compare)
    assert tab.compare.clf is trained_cnn
    x, _, idx = tab._batch()
    assert len(x) == 4 and idx[0] == 3
    np.testing.assert_array_equal(tab.compare.x, x)
    np.testing.assert_array_equal(tab.compare.labels, mnist.y_test[idx])

    params = {"fgsm": "eps=0.3", "pgd": "eps=0.3, step_size=0.05, steps=10"}
    tab.compare.set_methods(["fgsm", "pgd"], params)
    with qtbot.waitSignal(tab.compare.resultsReady, timeout=120000) as blocker:
        tab.compare.run()
    results = blocker.args[0]
    assert set(results) == {"fgsm", "pgd"}
    assert tab.compare.table.rowCount() == 2
    # PGD at the same budget is at least as strong as FGSM on the same images
    assert results["pgd"].success.sum() >= results["fgsm"].success.sum()

    tab.gallery.select_index(10)  # a new image replaces the inputs and clears old rows
    assert tab.compare.table.rowCount() == 0
    assert tab._batch()[2][0] == 10
    np.testing.assert_array_equal(tab.compare.x, tab._batch()[0])


def test_a_new_input_or_run_clears_the_old_result_and_the_prediction_shows_at_once(
    tab, qtbot, mnist, trained_cnn
):
    """Issue 17.4 and 17.5: nothing of a result stays beside an input or run it is not of;
    the "before" bars show the model's prediction as soon as image and model are chosen."""
    from PySide6.QtCore import QPoint

    tab.gallery.select_index(7)
    expected = trained_cnn.predict_proba(mnist.x_test[7:8])[0]
    np.testing.assert_allclose(tab.bars.before, expected, rtol=1e-4, atol=1e-6)
    assert not tab.bars.after.any() and tab.adversarial_view.image is None
    assert f"predicts {int(expected.argmax())}" in tab.summary.text()
    tab.method_combo.setCurrentText("fgsm")
    tab.goal_combo.setCurrentIndex(0)
    _wait(qtbot, tab.run_attack())
    assert tab.adversarial_view.image is not None and tab.bars.after.any()
    assert tab.export_button.isEnabled()

    # A drawing: the FGSM image, change, bars and summary go; its own prediction comes.
    tab.canvas.clear()
    tab.canvas.stroke([QPoint(140, 40), QPoint(140, 240)])
    tab.use_canvas()
    assert tab.result is None and tab.adversarial_view.image is None
    assert tab.delta_view.image is None and not tab.bars.after.any()
    assert "Success" not in tab.summary.text() and "Failed" not in tab.summary.text()
    drawn = trained_cnn.predict_proba(tab.source_x[None])[0]
    np.testing.assert_allclose(tab.bars.before, drawn, rtol=1e-4, atol=1e-6)
    assert not tab.export_button.isEnabled()

    # A new run: the previous run's summary does not stay while it runs.
    tab.gallery.select_index(7)
    _wait(qtbot, tab.run_attack())
    assert "Success" in tab.summary.text() or "Failed" in tab.summary.text()
    tab.method_combo.setCurrentText("pgd")
    tab.steps_spin.setValue(5000)
    job = tab.run_attack()
    assert "Running pgd" in tab.summary.text() and not tab.bars.after.any()
    assert tab.adversarial_view.image is None
    tab.stop_button.click()
    _wait(qtbot, job)
    # Stopped: the FGSM result from before is shown again, as it was.
    assert tab.result.method == "fgsm" and tab.bars.after.any()


def test_cost_plot_says_what_each_method_plots_or_hides(tab, qtbot):
    """Issue 17.6: PGD's rising loss and the deck's falling cost are named as such; FGSM
    (no cost per step) hides the plot rather than keep an earlier run's axes."""
    tab.gallery.select_index(2)
    tab.goal_combo.setCurrentIndex(0)
    tab.method_combo.setCurrentText("pgd")
    tab.steps_spin.setValue(20)
    _wait(qtbot, tab.run_attack())
    assert not tab.cost.isHidden() and len(tab.cost.values) == 20
    assert tab.cost.getAxis("left").labelText == "cross-entropy of the true class"
    assert "maximised" in tab.cost.plotItem.titleLabel.text
    tab.method_combo.setCurrentText("fgsm")
    job = tab.run_attack()
    assert tab.cost.isHidden()  # from the start of the run: FGSM records no cost
    _wait(qtbot, job)
    assert tab.cost.isHidden() and tab.cost.values.size == 0
    tab.method_combo.setCurrentText("targeted")
    tab.goal_combo.setCurrentIndex(tab.goal_combo.findData(3))
    tab.steps_spin.setValue(30)
    _wait(qtbot, tab.run_attack())
    assert not tab.cost.isHidden() and "minimised" in tab.cost.plotItem.titleLabel.text
    assert tab.cost.getAxis("left").labelText.startswith("cross-entropy + lambda")


def test_run_stop_export_have_shortcuts_named_in_tooltips(tab, qtbot):
    """Issue 17.19: Ctrl+Return runs, Ctrl+. stops, Ctrl+E exports; the tooltips say so."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    assert "(Ctrl+Return)" in tab.run_button.toolTip()
    assert "(Ctrl+.)" in tab.stop_button.toolTip()
    assert "(Ctrl+E)" in tab.export_button.toolTip()
    assert "(Ctrl+Shift+E)" in tab.export_batch_button.toolTip()
    tab.activateWindow()
    qtbot.waitUntil(tab.isActiveWindow, timeout=5000)
    tab.gallery.select_index(5)
    tab.method_combo.setCurrentText("pgd")
    tab.goal_combo.setCurrentIndex(0)
    tab.steps_spin.setValue(100_000)
    tab.results_tabs.setCurrentWidget(tab.compare)  # its own Run (other keys) on screen too
    QTest.keyClick(tab, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: tab.job is not None, timeout=2000)  # a shortcut clicks animated
    job = tab.job
    assert job is not None and tab.attack_slot.is_running() and not tab.compare.is_running()
    QTest.keyClick(tab, Qt.Key.Key_Period, Qt.KeyboardModifier.ControlModifier)
    _wait(qtbot, job, timeout=10000)
    assert job.outcome == "cancelled"


def test_stop_attacks_at_random_moments(attack_tab, qtbot):
    tab = attack_tab
    rng = random.Random(3)
    tab.gallery.select_index(0)
    for method in ("pgd", "targeted", "deepfool"):
        tab.method_combo.setCurrentText(method)
        if method == "targeted":
            tab.lam_auto.setChecked(False)
        tab.goal_combo.setCurrentIndex(tab.goal_combo.findData(2) if method == "targeted" else 0)
        tab.steps_spin.setValue(3000)
        tab.batch_spin.setValue(20)
        job = tab.run_attack()
        assert job is not None, tab.error_label.text()
        qtbot.wait(rng.randint(0, 1500))
        tab.stop()
        _wait_joined(qtbot, job)
        assert job.outcome in ("returned", "cancelled"), tab.error_label.text()
        assert tab.run_button.isEnabled() and not tab.stop_button.isEnabled()
    tab.method_combo.setCurrentText("fgsm")
    tab.batch_spin.setValue(1)
    job = tab.run_attack()
    _wait_joined(qtbot, job)
    assert job.outcome == "returned" and tab.result is not None and tab.result.method == "fgsm"


def test_bug_in_attack_worker(attack_tab, qtbot, monkeypatch, log_file):
    from advgui.core.attacks.fgsm import FGSM

    tab = attack_tab
    tab.gallery.select_index(2)
    tab.method_combo.setCurrentText("fgsm")

    def broken(self, *args, **kwargs):
        raise ZeroDivisionError("injected attack failure")

    monkeypatch.setattr(FGSM, "run", broken)
    job = tab.run_attack()
    _wait_joined(qtbot, job)
    assert job.outcome == "errored"
    _check_bug_report(tab, log_file, "injected attack failure")
    monkeypatch.undo()
    job = tab.run_attack()
    _wait_joined(qtbot, job)
    assert job.outcome == "returned"


GARBAGE = ["nan", "inf", "-inf", "-5", "0", "1e99", "99999999999", "abc", "--1", ""]


def test_attack_fields_refuse_typed_garbage(attack_tab, qtbot):
    tab = attack_tab
    tab.method_combo.setCurrentText("targeted")
    tab.lam_auto.setChecked(False)
    spins = {
        "lam": tab.lam_spin,
        "confidence": tab.conf_spin,
        "steps": tab.steps_spin,
        "step_size": tab.step_spin,
        "seed": tab.seed_spin,
        "batch": tab.batch_spin,
    }
    tab.method_combo.setCurrentText("fgsm")
    spins["eps"] = tab.eps_spin
    for name, spin in spins.items():
        for text in GARBAGE:
            before = spin.value()
            _type(qtbot, spin, text)
            assert np.isfinite(spin.value()), (name, text)
            assert spin.minimum() <= spin.value() <= spin.maximum(), (name, text)
            if text in ("nan", "inf", "abc", ""):
                assert spin.value() == before, (name, text)


def test_attack_needs_a_goal_marks_the_field(attack_tab, qtbot):
    tab = attack_tab
    tab.gallery.select_index(0)
    tab.method_combo.setCurrentText("targeted")
    tab.goal_combo.setCurrentIndex(0)  # "none": the deck's targeted attack needs a digit
    assert tab.run_attack() is None and tab.job is None
    assert "target digit" in tab.error_label.text()
    assert MARK in tab.goal_combo.styleSheet()
    tab.goal_combo.setCurrentIndex(tab.goal_combo.findData(3))
    tab.method_combo.setCurrentText("fgsm")
    tab.eps_spin.setValue(0.1)
    job = tab.run_attack()
    assert job is not None and MARK not in tab.goal_combo.styleSheet()
    assert tab.error_label.text() == ""
    _wait_joined(qtbot, job)
    assert job.outcome == "returned"


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def _bad_images(folder):
    from PIL import Image

    good = folder / "good.png"
    Image.new("L", (40, 40), 0).save(good)
    files = {
        "garbage.png": b"\x00\x01garbage" * 20,
        "truncated.png": good.read_bytes()[:40],
        "text.jpg": b"hello, not a picture\n",
        "bomb.png": b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(b"\0" * 100))
        + _chunk(b"IEND", b""),
    }
    for name, blob in files.items():
        (folder / name).write_bytes(blob)
    return [folder / n for n in files] + [good, folder / "missing.png"]  # good.png is blank


def test_big_picture_is_decoded_off_the_gui_thread(attack_tab, qtbot, tmp_path, mnist):
    from PIL import Image

    tab = attack_tab
    digit = (mnist.x_test[2].reshape(28, 28) * 255).astype(np.uint8)
    Image.fromarray(255 - digit).resize((2000, 1500)).save(tmp_path / "photo.png")
    tab.gallery.select_index(5)
    assert tab.import_image(tmp_path / "photo.png") is True
    job = tab.import_job
    assert job is not None and job.name == "attack-import-image"
    _wait_joined(qtbot, job)
    assert tab.source_index is None and tab.source_label == -1
    assert int(tab.state.current_model.predict(tab.source_x[None])[0]) == mnist.y_test[2]
    # A small picture is still read at once, with no job.
    Image.fromarray(255 - digit).resize((200, 200)).save(tmp_path / "small.png")
    tab.import_job = None
    assert tab.import_image(tmp_path / "small.png") is True and tab.import_job is None


def test_attack_tab_refuses_bad_image_files(attack_tab, tmp_path):
    tab = attack_tab
    tab.gallery.select_index(5)
    before = tab.source_x.copy()
    for path in _bad_images(tmp_path):
        assert tab.import_image(path) is False
        assert path.name in tab.error_label.text()
        np.testing.assert_array_equal(tab.source_x, before)  # the chosen image is kept
    assert tab.findChildren(QMessageBox) == []  # user errors: a message, not a crash dialog


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory):
    from advgui.core.tfimport import keras

    k = keras()
    d = tmp_path_factory.mktemp("bad_models")
    inp = k.Input((28, 28, 1))
    x = k.layers.Lambda(lambda t: t * 2.0)(k.layers.Flatten()(inp))
    k.Model(inp, k.layers.Dense(10)(x)).save(d / "lambda.keras")
    inp = k.Input((32, 32, 3))
    k.Model(inp, k.layers.Dense(10)(k.layers.Flatten()(inp))).save(d / "shape.keras")
    import zipfile

    with zipfile.ZipFile(d / "garbage.keras", "w") as zf:  # a zip, but not a model inside
        zf.writestr("config.json", "{not json")
        zf.writestr("model.weights.h5", b"\x00" * 64)
    (d / "text.keras").write_text("not a model")
    return {
        d / "lambda.keras": "Lambda",
        d / "shape.keras": "input shape",
        d / "garbage.keras": "cannot load",
        d / "text.keras": "not a Keras 3",
    }


def test_bad_model_files_in_attack_tab_and_model_list(attack_tab, training_tab, qtbot, bad_models):
    n_models = len(attack_tab.state.models)
    for path, why in bad_models.items():
        job = attack_tab.load_model_file(path)
        _wait_joined(qtbot, job)
        assert job.outcome == "errored"
        assert why.lower() in attack_tab.error_label.text().lower(), attack_tab.error_label.text()
    assert len(attack_tab.state.models) == n_models
    model_list = training_tab.model_list
    for path, why in bad_models.items():
        job = model_list.load(path)
        _wait_joined(qtbot, job)
        assert job.outcome == "errored"
        assert why.lower() in model_list.status.text().lower()
        assert MARK in model_list.status.styleSheet()
    assert attack_tab.findChildren(QMessageBox) == []
    assert model_list.findChildren(QMessageBox) == []


def test_square_on_one_image_shows_its_margin_by_queries_live(tab, qtbot):
    """Issue 16: a black-box attack in the Attack tab plots the first image's logit margin
    against the queries it has used, while it runs and after; the summary counts them."""
    tab.gallery.select_index(0)
    tab.goal_combo.setCurrentIndex(0)
    tab.method_combo.setCurrentText("square")
    tab.eps_spin.setValue(0.3)
    tab.controls.form.widgets["queries"].setValue(400)
    job = tab.run_attack()
    assert job is not None and not tab.cost.isHidden()  # named from the start of the run
    assert tab.cost.getAxis("bottom").labelText == "queries"
    live = []
    job.partial.connect(lambda p: live.append(p.trace))
    _wait(qtbot, job)
    res = tab.session.shown.result
    trace = np.asarray(res.details.trace)
    assert live and all(t for t in live)
    assert tab.cost.getAxis("bottom").labelText == "queries"
    assert "margin" in tab.cost.getAxis("left").labelText
    assert np.allclose(tab.cost.values, trace[:, 1])
    xs, _ = tab.cost.curve.getData()
    assert np.allclose(xs, trace[:, 0]) and xs[-1] <= res.details.queries[0]
    assert f"{int(res.details.queries[0])}&nbsp;queries" in tab.summary.text()
