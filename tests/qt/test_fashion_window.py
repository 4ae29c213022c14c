"""The window on two datasets (real MNIST and Fashion-MNIST): the dataset chooser switches the
models, runs, gallery, target chooser and bars, and back; a model of the other dataset is
marked, never used; switching while an attack runs is refused with a reason."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

pytestmark = pytest.mark.gui

NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]  # fmt: skip


@pytest.fixture
def window(qtbot, mnist_path, fashion_path, monkeypatch):
    from advgui.qt.main_window import MainWindow

    monkeypatch.setenv("ADVGUI_FASHION_DATA", str(fashion_path))  # found as a user's would be
    win = MainWindow(data_path=str(mnist_path), preload_tf=False)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.state.mnist is not None, timeout=30000)
    yield win
    win.close()


def _switch(win, qtbot, name):
    assert win.switch_dataset(name)
    qtbot.waitUntil(
        lambda: win.state.mnist is not None and win.state.mnist.name == name, timeout=30000
    )
    qtbot.waitUntil(lambda: not win.training_tab.store_slot.is_running(), timeout=30000)


def _gallery_text(win, row):
    from PySide6.QtCore import Qt

    model = win.attack_tab.gallery.model
    return model.data(model.index(row), Qt.ItemDataRole.DisplayRole)


def _gallery_tip(win, row):
    from PySide6.QtCore import Qt

    model = win.attack_tab.gallery.model
    return model.data(model.index(row), Qt.ItemDataRole.ToolTipRole)


def test_switching_datasets_swaps_models_names_runs_and_back(
    window, qtbot, mnist, fashion, trained_cnn, fashion_cnn
):
    from advgui.core import models, paths

    win, tab = window, window.attack_tab
    # A Fashion model already in Fashion's store, none in MNIST's.
    paths.store_dir("fashion-mnist").mkdir(parents=True)
    stored = models.save_model(fashion_cnn, paths.store_dir("fashion-mnist") / "f.keras")
    win.state.add_model(trained_cnn)
    assert win.dataset_combo.currentData() == "mnist"
    assert win.dataset_actions["mnist"].isChecked()
    assert _gallery_text(win, 0) == f"#0: {mnist.y_test[0]}"  # MNIST keeps its digits
    assert _gallery_tip(win, 0) == f"test image 0, label {mnist.y_test[0]}"
    assert tab.goal_combo.itemText(8) == "7" and tab.controls.goal_label.text() == "Target digit"
    assert tab.bars.tick_labels() == [str(d) for d in range(10)] and not tab.bars.horizontal
    tab.method_combo.setCurrentText("pgd")
    assert tab.eps_spin.value() == pytest.approx(0.3)
    win.defense_tab.train_panel.eps_spin.setValue(0.3)
    train = win.defense_tab.train_panel
    assert train.method_combo.currentText() == "pgd-at" and train.epochs_spin.value() == 6

    _switch(win, qtbot, "fashion-mnist")
    # The recipe that held best there is offered first (with its epochs).
    assert train.method_combo.currentText() == "fast-at" and train.epochs_spin.value() == 10
    # Its own defaults, shown as defaults: L-inf 0.1, the comparison's grid 0-0.1.
    assert tab.eps_spin.value() == pytest.approx(0.1) and "0.1 on Fashion-MNIST" in (
        tab.eps_spin.toolTip()
    )
    assert win.defense_tab.setup.eps_edit.text() == "0,0.05,0.1"
    assert win.defense_tab.train_panel.eps_spin.value() == pytest.approx(0.1)
    assert "Fashion-MNIST" in win.windowTitle() and "Fashion-MNIST: 60000 train" in (
        win.data_label.text()
    )
    assert win.dataset_combo.currentData() == "fashion-mnist"
    assert win.dataset_actions["fashion-mnist"].isChecked()
    # Its own models: the stored Fashion one, not MNIST's.
    qtbot.waitUntil(lambda: len(win.state.models) == 1, timeout=30000)
    assert win.state.models[0].meta["path"] == str(stored)
    assert trained_cnn not in win.state.models
    assert win.training_tab.model_list.list.count() == 1
    label0 = int(fashion.y_test[0])
    assert _gallery_text(win, 0) == f"#0: {fashion.spec.short_names[label0]}"  # "Boot"
    assert _gallery_tip(win, 0) == f"test image 0, label {label0} {NAMES[label0]}"
    gallery = tab.gallery
    assert gallery.filter.itemText(8) == "only 7 Sneaker"
    assert gallery.filter.itemText(0) == "any class"
    assert [tab.goal_combo.itemText(i + 1) for i in range(10)] == [
        f"{i} {n}" for i, n in enumerate(NAMES)
    ]
    assert tab.controls.goal_label.text() == "Target class"
    assert tab.bars.tick_labels() == NAMES and tab.bars.horizontal
    assert win.training_tab.confusion.spec.name == "fashion-mnist"

    # A test image and the Fashion model: the bars and captions speak in class names.
    gallery.select_index(0)
    assert tab.source_label == label0
    probs = np.asarray(win.state.current_model.predict_proba(fashion.x_test[:1]))[0]
    np.testing.assert_allclose(tab.bars.before, probs, rtol=1e-5)
    pred = int(np.argmax(probs))
    caption = tab.original_view.caption.text()
    assert f"label {label0} {NAMES[label0]}" in caption and f"predicted {pred} {NAMES[pred]}" in (
        caption
    )
    # A finished run lands in Fashion's history only.
    tab.method_combo.setCurrentText("fgsm")
    tab.eps_spin.setValue(0.1)
    job = tab.run_attack()
    qtbot.waitUntil(lambda: not job.is_running() and job.outcome is not None, timeout=60000)
    assert job.outcome == "returned" and len(tab.history.entries) == 1
    after = int(tab.result.pred_after[0])
    assert f"predicted {after} {NAMES[after]}" in tab.adversarial_view.caption.text()

    win.defense_tab.setup.eps_edit.setText("0,0.2")  # the user's own: kept on a switch
    _switch(win, qtbot, "mnist")
    assert win.state.models == [trained_cnn] and win.state.current_model is trained_cnn
    assert tab.eps_spin.value() == pytest.approx(0.3)  # fgsm was left at Fashion's default
    assert win.defense_tab.setup.eps_edit.text() == "0,0.2"
    assert tab.history.entries == [] and tab.result is None
    assert _gallery_text(win, 0) == f"#0: {mnist.y_test[0]}"
    assert tab.goal_combo.itemText(8) == "7" and not tab.bars.horizontal
    assert tab.gallery.filter.itemText(8) == "only 7s"
    assert tab.bars.tick_labels() == [str(d) for d in range(10)]

    # And back: the same Fashion data, model and run, not read again.
    kept = win.state.workspace.shelf("fashion-mnist")
    assert win.switch_dataset("fashion-mnist")
    assert win.state.mnist is kept.data and win.state.models == kept.models
    assert len(win.state.models) == 1 and len(tab.history.entries) == 1
    assert not win.data_slot.is_running() and not win.training_tab.store_slot.is_running()


def test_a_model_of_the_other_dataset_is_marked_and_never_run(
    window, qtbot, fashion, trained_cnn, fashion_cnn
):
    from advgui.qt.widgets.param_form import MARK_STYLE

    win, tab = window, window.attack_tab
    _switch(win, qtbot, "fashion-mnist")
    tab.gallery.select_index(0)
    win.state.add_model(trained_cnn)  # an MNIST model, chosen on Fashion-MNIST
    assert tab.model_combo.styleSheet() == MARK_STYLE
    problem = tab.error_label.text()
    assert "trained on MNIST, not Fashion-MNIST" in problem and "Dataset menu" in problem
    assert "trained on MNIST" in tab.model_combo.toolTip()
    assert not tab.run_button.isEnabled()
    assert tab.run_attack() is None  # refused before any thread starts
    assert not tab.bars.before.any()  # no prediction from the wrong model
    assert "(other dataset)" in win.training_tab.model_list.list.item(0).text()
    training = win.training_tab  # no predictions of it on these images
    assert "trained on MNIST" in training.showing_label.text() and training.grid.x is None
    # The Defenses tab lists it marked and refuses to compare it on Fashion-MNIST.
    defenses = win.defense_tab
    assert defenses.setup.model_list.item(0).text().endswith("(other dataset)")
    defenses.start()
    assert defenses.job is None and "trained on MNIST" in defenses.status.text()
    assert defenses.setup.model_list.styleSheet() == MARK_STYLE
    # Its own dataset's model: the mark goes.
    win.state.add_model(fashion_cnn)
    assert tab.model_combo.styleSheet() == "" and tab.error_label.text() == ""
    assert tab.run_button.isEnabled() and tab.bars.before.sum() == pytest.approx(1, abs=1e-4)


def test_switching_while_an_attack_runs_is_refused_with_the_reason(window, qtbot, fashion_cnn):
    win, tab = window, window.attack_tab
    _switch(win, qtbot, "fashion-mnist")
    win.state.add_model(fashion_cnn)
    tab.gallery.select_index(0)
    tab.method_combo.setCurrentText("pgd")
    tab.steps_spin.setValue(2000)
    job = tab.run_attack()
    assert job is not None and job.is_running()
    assert not win.switch_dataset("mnist")
    assert win.state.spec.name == "fashion-mnist"
    assert win.dataset_combo.currentData() == "fashion-mnist"  # the chooser did not move
    message = win.statusBar().currentMessage()
    assert message.startswith("An attack is running: stop it before switching to MNIST")
    tab.stop()
    qtbot.waitUntil(lambda: not job.is_running(), timeout=30000)
    assert win.switch_dataset("mnist") and win.state.spec.name == "mnist"
