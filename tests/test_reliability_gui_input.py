"""The GUI under odd input: typed garbage is refused by the fields, bad values and combinations
are marked and explained, bad image and model files are refused with a message."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QMessageBox
from reliability_qt import (
    MARK,
    _type,
    _wait,
    attack_tab,
    defense_tab,
    state,
    training_tab,
)

pytestmark = pytest.mark.gui

__all__ = ["attack_tab", "defense_tab", "state", "training_tab"]  # fixtures, used by name

GARBAGE = ["nan", "inf", "-inf", "-5", "0", "1e99", "99999999999", "abc", "--1", ""]


def test_training_fields_refuse_typed_garbage(training_tab, qtbot):
    from advgui.core import training

    tab = training_tab
    for name in ("epochs", "batch_size", "lr", "n_train", "n_val", "seed"):
        spin = tab.fields[name]
        for text in GARBAGE:
            before = spin.value()
            _type(qtbot, spin, text)
            value = spin.value()
            lo, hi = training.RANGES[name]
            assert np.isfinite(value) and spin.minimum() <= value <= spin.maximum(), (name, text)
            assert lo <= value <= hi or (name == "lr" and value >= spin.minimum())
            if text in ("nan", "inf", "abc", ""):
                assert value == before, (name, text)  # nothing a number could be read from
    # Whatever was typed, the form still makes a valid configuration.
    tab.fields["n_val"].setValue(0)
    tab.fields["n_train"].setValue(1000)
    assert tab.config().n_train == 1000


def test_training_form_marks_and_explains_a_bad_combination(training_tab, qtbot, mnist):
    tab = training_tab
    tab.n_train_spin.setValue(60000)
    tab.n_val_spin.setValue(5000)
    assert tab.start() is None and tab.job is None
    assert "must not exceed" in tab.status_label.text()
    assert MARK in tab.n_train_spin.styleSheet() and MARK in tab.status_label.styleSheet()
    assert tab.n_val_spin.styleSheet() == ""
    # Correcting it clears the mark on the next Start (which is then cancelled at once).
    tab.n_train_spin.setValue(1000)
    tab.n_val_spin.setValue(0)
    tab.epochs_spin.setValue(1)
    job = tab.start()
    assert job is not None and tab.n_train_spin.styleSheet() == ""
    tab.stop()
    _wait(qtbot, job)


def test_training_without_dataset_explains(qtbot):
    from advgui.qt.state import AppState
    from advgui.qt.training_tab import TrainingTab

    tab = TrainingTab(AppState())
    qtbot.addWidget(tab)
    assert tab.start() is None and "MNIST is not loaded" in tab.status_label.text()


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
    _wait(qtbot, job)
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
    _wait(qtbot, job)
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
        _wait(qtbot, job)
        assert job.outcome == "errored"
        assert why.lower() in attack_tab.error_label.text().lower(), attack_tab.error_label.text()
    assert len(attack_tab.state.models) == n_models
    model_list = training_tab.model_list
    for path, why in bad_models.items():
        job = model_list.load(path)
        _wait(qtbot, job)
        assert job.outcome == "errored"
        assert why.lower() in model_list.status.text().lower()
        assert MARK in model_list.status.styleSheet()
    assert attack_tab.findChildren(QMessageBox) == []
    assert model_list.findChildren(QMessageBox) == []


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
