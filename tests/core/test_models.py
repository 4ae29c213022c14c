"""Logits or probabilities is decided from what a model computes, not from its last layer:
a softmax nested in sub-models or followed by no-op layers is found and cut out, and every
variant of one network gives the attacks the same logits and the same results."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from advgui.cli import main
from advgui.core import models
from advgui.core.attacks import make_attack
from advgui.core.errors import ModelFileError


@pytest.fixture(scope="module")
def base(mnist):
    """A small MLP on real MNIST whose last Dense outputs logits."""
    from advgui.core import training

    cfg = training.TrainConfig(arch="mlp", epochs=1, n_train=12000, n_val=0)
    return training.train(cfg, mnist).classifier


def _variants(base_model):
    """The same network (same weights) with its softmax in each place a user may put it."""
    from advgui.core.tfimport import keras

    k = keras()
    L = k.layers
    dense = [layer for layer in base_model.layers if isinstance(layer, L.Dense)]

    def body(x, softmax_in_dense=False):
        h = L.Flatten()(x)
        for d in dense[:-1]:
            h = L.Dense(d.units, activation="relu")(h)
        return L.Dense(10, activation="softmax" if softmax_in_dense else None)(h)

    def copy_weights(model):
        new = [layer for layer in _all_layers(model) if isinstance(layer, L.Dense)]
        for src, dst in zip(dense, new, strict=True):
            dst.set_weights(src.get_weights())
        return model

    def functional(make_out, name):
        inp = k.Input((28, 28, 1))
        return copy_weights(k.Model(inp, make_out(inp), name=name))

    def nested(levels):
        inp = k.Input((28, 28, 1))
        inner = k.Model(inp, body(inp, softmax_in_dense=True), name="level0")
        for i in range(1, levels):
            outer_in = k.Input((28, 28, 1))
            inner = k.Model(outer_in, inner(outer_in), name=f"level{i}")
        return copy_weights(inner)

    return {
        "logits": ("logits", functional(body, "plain")),
        "flat softmax": ("probabilities", functional(lambda x: body(x, True), "flat")),
        "nested 1": ("probabilities", nested(2)),
        "nested 2": ("probabilities", nested(3)),
        "softmax + dropout": (
            "probabilities",
            functional(lambda x: L.Dropout(0.3)(body(x, True)), "drop"),
        ),
        "softmax + reshape": (
            "probabilities",
            functional(lambda x: L.Reshape((10,))(body(x, True)), "reshape"),
        ),
        "Activation softmax": (
            "probabilities",
            functional(lambda x: L.Activation("softmax")(body(x)), "act"),
        ),
        "log-softmax": (
            "log-probabilities",
            functional(lambda x: L.Activation("log_softmax")(body(x)), "logsm"),
        ),
    }


def _all_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
        else:
            yield layer


def test_each_softmax_placement_gives_the_flat_models_logits_and_attack_results(
    base, mnist, tmp_path
):
    x = mnist.x_test[:64]
    idx = np.flatnonzero(base.predict(x) == mnist.y_test[:64])[:4]
    xs, goals = x[idx], (mnist.y_test[idx] + 3) % 10
    ref_logits = base.logits(x)
    reference = None
    for name, (kind, net) in _variants(base.model).items():
        path = tmp_path / f"{name.replace(' ', '_')}.keras"
        net.save(path)
        clf = models.load_model(path, probe=x)
        assert clf.meta["outputs"] == kind, name
        z = clf.logits(x)
        # Logits up to one constant per row (what log-softmax leaves), exactly otherwise.
        shift = (z - ref_logits).mean(axis=1, keepdims=True) if kind != "logits" else 0
        np.testing.assert_allclose(z - shift, ref_logits, atol=2e-3, err_msg=name)
        if kind == "probabilities":
            np.testing.assert_allclose(clf.predict_proba(x), np.asarray(net(x)), atol=1e-5)
            assert "softmax removed" in clf.meta["outputs_how"], name
        targeted = make_attack("targeted")(clf, xs, labels=mnist.y_test[idx], goals=goals)
        pgd = make_attack("pgd", eps=0.1, steps=10)(clf, xs, labels=mnist.y_test[idx])
        outcome = (targeted.success, targeted.l2, targeted.pred_after, pgd.success, pgd.l2)
        if reference is None:
            reference = outcome
            assert targeted.success.all()  # a 4-image targeted attack on an MLP succeeds
            continue
        for got, want in zip(outcome, reference, strict=True):
            np.testing.assert_allclose(got, want, rtol=0.02, atol=0.02, err_msg=name)


def test_softmax_without_a_removable_layer_uses_log_probabilities(base, mnist, tmp_path):
    """A softmax the structure cannot show (here: followed by an identity-initialised Dense)
    is still found from the outputs, and attacked through log p."""
    from advgui.core.tfimport import keras

    k = keras()
    inp = k.Input((28, 28, 1))
    z = base.model(inp)
    p = k.layers.Softmax()(z)
    out = k.layers.Dense(10, use_bias=False, kernel_initializer="identity")(p)
    net = k.Model(inp, out)
    net.save(tmp_path / "odd.keras")
    clf = models.load_model(tmp_path / "odd.keras")  # no probe given: synthetic inputs
    assert clf.meta["outputs"] == "probabilities"
    assert "log of the probabilities" in clf.meta["outputs_how"]
    x = mnist.x_test[:32]
    assert (clf.predict(x) == base.predict(x)).all()
    res = make_attack("pgd", eps=0.15, steps=20)(clf, x[:8], labels=mnist.y_test[:8])
    ref = make_attack("pgd", eps=0.15, steps=20)(base, x[:8], labels=mnist.y_test[:8])
    assert abs(res.success.mean() - ref.success.mean()) <= 0.125


def test_output_kind_is_shown_in_the_cli_and_json(base, mnist_path, tmp_path, capsys):

    from advgui.cli import main

    inp_model = _variants(base.model)["nested 1"][1]
    inp_model.save(tmp_path / "nested.keras")
    code = main(
        [
            "--data",
            str(mnist_path),
            "attack",
            "--model",
            str(tmp_path / "nested.keras"),
            "--method",
            "fgsm",
            "--index",
            "0",
            "--eps",
            "0.2",
            "--out",
            str(tmp_path / "a.png"),
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    assert code == 0
    out = capsys.readouterr()
    assert "probabilities" in out.out + out.err
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["model_outputs"] == "probabilities"


def padded_model(src: Path, dst: Path, member: str, size: int) -> Path:
    """A copy of a real .keras file with ``member`` padded to ``size`` bytes (deflated)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            blob = zin.read(info.filename)
            if info.filename == member:
                blob = blob + b" " * (size - len(blob))
            zout.writestr(info.filename, blob)
        if member not in zin.namelist():
            zout.writestr(member, b"{}" + b" " * size)
    return dst


def run_cli(argv: list[str], capsys) -> tuple[int, list[str]]:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return code, [line for line in err if "advgui" in line]


@pytest.mark.parametrize(
    ("member", "expect"),
    [
        ("advgui.json", "advgui.json too large (64 MB"),
        ("config.json", "config.json too large (64 MB"),
    ],
)
def test_padded_model_members_are_refused_from_the_zip_directory(
    tiny_model, tmp_path, capsys, member, expect, mnist_path
):
    bad = padded_model(tiny_model, tmp_path / "padded.keras", member, 64 << 20)
    assert bad.stat().st_size < 1 << 20
    with pytest.raises(ModelFileError, match=re.escape(expect)):
        models.read_meta(bad)
    argv = ["--data", str(mnist_path), "attack", "--model", str(bad), "--method", "fgsm"]
    code, lines = run_cli([*argv, "--index", "0"], capsys)
    assert code == 2 and len(lines) == 1 and expect in lines[0]
    # In the store: skipped with a warning naming it; the good model is still listed.
    from advgui.core.store import ModelStore

    store = ModelStore(tmp_path / "store")
    store.root.mkdir()
    (store.root / "good.keras").write_bytes(tiny_model.read_bytes())
    (store.root / "padded.keras").write_bytes(bad.read_bytes())
    warnings: list[str] = []
    assert [e.path.name for e in store.entries(warnings)] == ["good.keras"]
    assert len(warnings) == 1 and "padded.keras" in warnings[0] and expect in warnings[0]


def test_legacy_hdf5_and_mismatched_weights_say_why_in_one_line(tiny_model, tmp_path):
    from advgui.core.tfimport import keras

    k = keras()
    net = k.Sequential([k.Input((784,)), k.layers.Dense(10)])
    net.save(tmp_path / "legacy.h5")
    with pytest.raises(ModelFileError, match="legacy HDF5") as info:
        models.load_model(tmp_path / "legacy.h5")
    assert "\n" not in str(info.value)
    # Weights of another shape inside a valid archive: Keras's reason, on one line.
    other = k.Sequential([k.Input((784,)), k.layers.Dense(20), k.layers.Dense(10)])
    other.save(tmp_path / "other.keras")
    with zipfile.ZipFile(tmp_path / "other.keras") as zf:
        weights = zf.read("model.weights.h5")
    with zipfile.ZipFile(tiny_model) as zin, zipfile.ZipFile(tmp_path / "mixed.keras", "w") as zout:
        for info in zin.infolist():
            blob = weights if info.filename == "model.weights.h5" else zin.read(info.filename)
            zout.writestr(info.filename, blob)
    with pytest.raises(ModelFileError) as info:
        models.load_model(tmp_path / "mixed.keras")
    message = str(info.value)
    assert "\n" not in message and len(message) < 500
    assert "weights do not fit" in message and "shape" in message
    assert "Example error message" not in message and "Target variable" not in message
