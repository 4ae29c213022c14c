"""Logits or probabilities is decided from what a model computes, not from its last layer:
a softmax nested in sub-models or followed by no-op layers is found and cut out, and every
variant of one network gives the attacks the same logits and the same results."""

from __future__ import annotations

import numpy as np
import pytest

from advgui.core import models
from advgui.core.attacks import make_attack


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
    import json

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
