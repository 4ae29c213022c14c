"""Training core on real MNIST: accuracy, progress, cancellation, reproducibility, model files,
and the ``advgui train`` command."""

from __future__ import annotations

import itertools
import json
import math
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advgui.cli import main
from advgui.core import models, training
from advgui.core.errors import ModelFileError, ParameterError
from advgui.core.progress import CancelToken

INFO_KEYS = {"batch", "epoch", "loss", "accuracy", "val_accuracy", "images_per_second", "eta_s"}


@pytest.fixture(scope="module")
def cnn_run(mnist):
    """A CNN trained one epoch on 10,000 real images, with every progress update recorded."""
    updates = []
    cfg = training.TrainConfig(
        arch="cnn", epochs=1, n_train=10000, n_val=1000, batch_size=64, seed=3
    )
    result = training.train(cfg, mnist, progress=updates.append)
    return result, updates


def test_cnn_one_epoch_on_10k_scores_above_95(cnn_run, mnist):
    result, _ = cnn_run
    assert not result.cancelled
    assert result.test_accuracy > 0.95
    clf = result.classifier
    # The reported figure is the classifier's own accuracy on the full test set.
    assert clf.accuracy(mnist.x_test, mnist.y_test) == pytest.approx(result.test_accuracy)
    assert np.array_equal(result.test_predictions, clf.predict(mnist.x_test))
    meta = clf.meta
    assert meta["architecture"] == "cnn" and meta["seed"] == 3
    assert meta["dataset_sha256"] == mnist.sha256
    assert meta["params"]["n_train"] == 10000 and meta["num_weights"] > 10000
    assert meta["cancelled"] is False and meta["epochs_completed"] == 1.0
    assert result.history["epoch"] == [1.0]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"):
        assert len(result.history[key]) == 1
        assert type(result.history[key][0]) is float
    assert 0.9 < result.history["val_accuracy"][0] <= 1.0


def test_progress_is_plain_throttled_and_complete(cnn_run):
    _, updates = cnn_run
    steps = math.ceil(10000 / 64)
    training_updates = [u for u in updates if u.message == "training"]
    assert training_updates, "no progress while training"
    # Throttled: far fewer updates than batches (forced ones: first, validation, the end).
    assert len(training_updates) < steps
    for u in training_updates:
        assert set(u.info) >= INFO_KEYS
        assert all(type(v) is float for v in u.info.values())
    dones = [u.done for u in training_updates]
    assert dones == sorted(dones) and training_updates[-1].done == steps
    last = training_updates[-1].info
    assert last["images_per_second"] > 0 and last["eta_s"] == 0.0
    assert 0 < last["loss"] < 2.3 and 0.5 < last["accuracy"] <= 1
    assert last["val_accuracy"] > 0.9 and last["val_count"] == 1.0
    assert updates[-1].message == "done" and updates[-1].fraction == 1.0


def test_save_and_load_keep_predictions_identical(cnn_run, mnist, tmp_path):
    clf = cnn_run[0].classifier
    path = models.save_model(clf, tmp_path / "m.keras")
    loaded = models.load_model(path)
    x = mnist.x_test[:500]
    assert np.array_equal(loaded.predict(x), clf.predict(x))
    np.testing.assert_allclose(loaded.logits(x), clf.logits(x), rtol=1e-5, atol=1e-5)
    assert loaded.meta["history"] == clf.meta["history"]
    assert loaded.meta["test_accuracy"] == clf.meta["test_accuracy"]
    assert loaded.meta["outputs"] == "logits"


def test_cancel_mid_epoch_leaves_a_model_that_predicts(mnist):
    token = CancelToken()
    seen = []

    def progress(update):
        seen.append(update)
        if update.info.get("batch", 0) >= 3:
            token.cancel()

    cfg = training.TrainConfig(arch="mlp", epochs=2, n_train=20000, n_val=500, batch_size=64)
    result = training.train(cfg, mnist, progress=progress, cancel=token)
    assert result.cancelled and result.classifier.meta["cancelled"] is True
    steps = [u.done for u in seen if u.message == "training"]
    assert max(steps) < math.ceil(20000 / 64)  # stopped within the first epoch
    assert 0 < result.classifier.meta["epochs_completed"] < 1
    pred = result.classifier.predict(mnist.x_test[:1000])
    assert pred.shape == (1000,) and set(np.unique(pred)) <= set(range(10))
    # A few batches of training already beat chance (10%) by far.
    assert result.test_accuracy > 0.3
    assert seen[-1].message == "stopped"


def test_same_seed_same_test_accuracy(mnist):
    cfg = training.TrainConfig(arch="mlp", epochs=1, n_train=6000, n_val=0, seed=7)
    a = training.train(cfg, mnist)
    b = training.train(cfg, mnist)
    c = training.train(training.TrainConfig(**{**cfg.to_dict(), "seed": 8}), mnist)
    assert abs(a.test_accuracy - b.test_accuracy) <= 0.001
    assert a.test_accuracy > 0.85
    # A different seed is a different run (different weights), not a constant result.
    assert not np.array_equal(
        a.classifier.logits(mnist.x_test[:50]), c.classifier.logits(mnist.x_test[:50])
    )


def test_continue_training_a_classifier_improves_it(mnist):
    cfg = training.TrainConfig(arch="mlp", epochs=1, n_train=2000, n_val=0, lr=1e-3)
    first = training.train(cfg, mnist)
    second = training.train(
        training.TrainConfig(**{**cfg.to_dict(), "n_train": 20000}),
        mnist,
        model=first.classifier,
    )
    assert second.classifier.model is first.classifier.model
    assert second.test_accuracy > first.test_accuracy


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"lr": float("nan")}, "lr", "finite"),
        ({"lr": 5.0}, "lr", "between"),
        ({"epochs": 0}, "epochs", "between"),
        ({"batch_size": 12.5}, "batch_size", "whole"),
        ({"n_train": 58000, "n_val": 5000}, "n_train", "must not exceed"),
        ({"schedule": "exp"}, "schedule", "onecycle"),
        ({"optimizer": "rmsprop"}, "optimizer", "adam"),
        ({"arch": "resnet"}, "arch", "mlp"),
    ],
)
def test_bad_parameters_are_refused_clearly(changes, field, words):
    with pytest.raises(ParameterError) as err:
        training.TrainConfig(**changes).validate()
    assert err.value.field == field and words in str(err.value)


def test_learning_rate_schedules():
    total = 100
    one = [training.learning_rate("onecycle", 0.01, s, total) for s in range(total)]
    peak = int(np.argmax(one))
    assert 20 <= peak <= 30 and one[peak] == pytest.approx(0.01, rel=0.02)
    assert one[0] == pytest.approx(0.01 / 25) and one[-1] == pytest.approx(0.01 / 1000)
    cos = [training.learning_rate("cosine", 0.01, s, total) for s in range(total)]
    assert cos[0] == pytest.approx(0.01) and all(a >= b for a, b in itertools.pairwise(cos))
    assert {training.learning_rate("constant", 0.01, s, total) for s in range(total)} == {0.01}


def test_confusion_matrix_counts():
    y = np.array([0, 1, 2, 2, 9])
    p = np.array([0, 2, 2, 2, 1])
    cm = training.confusion_matrix(y, p)
    assert cm.shape == (10, 10) and cm.sum() == 5
    assert cm[2, 2] == 2 and cm[1, 2] == 1 and cm[9, 1] == 1 and np.trace(cm) == 3


# --------------------------------------------------------------------------- model files


def test_corrupt_model_file_is_refused(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match="not a zip"):
        models.load_model(bad)
    half = tmp_path / "half.keras"
    with zipfile.ZipFile(half, "w") as zf:
        zf.writestr("config.json", "{broken")
    with pytest.raises(ModelFileError, match=r"cannot load|refused"):
        models.load_model(half)


def test_lambda_layer_model_is_refused_unsafe(tmp_path):
    from advgui.core.tfimport import keras

    k = keras()
    inp = k.Input((28, 28, 1))
    x = k.layers.Flatten()(inp)
    x = k.layers.Lambda(lambda t: t * 2.0)(x)
    net = k.Model(inp, k.layers.Dense(10)(x))
    path = tmp_path / "lambda.keras"
    net.save(path)
    with pytest.raises(ModelFileError, match="Lambda"):
        models.load_model(path)


def test_wrong_shape_model_is_refused(tmp_path):
    from advgui.core.tfimport import keras

    k = keras()
    inp = k.Input((32, 32, 3))
    net = k.Model(inp, k.layers.Dense(10)(k.layers.Flatten()(inp)))
    net.save(tmp_path / "cifar.keras")
    with pytest.raises(ModelFileError, match="not an MNIST classifier"):
        models.load_model(tmp_path / "cifar.keras")
    inp = k.Input((784,))
    net = k.Model(inp, k.layers.Dense(5)(inp))
    net.save(tmp_path / "five.keras")
    with pytest.raises(ModelFileError, match="10 classes"):
        models.load_model(tmp_path / "five.keras")


def test_users_softmax_model_is_accepted_with_logits(mnist, tmp_path):
    from advgui.core.tfimport import keras

    k = keras()
    inp = k.Input((784,))
    net = k.Model(inp, k.layers.Dense(10, activation="softmax")(inp))
    net.save(tmp_path / "user.keras")
    clf = models.load_model(tmp_path / "user.keras")
    assert clf.meta["outputs"] == "probabilities"
    x = mnist.x_test[:20]
    probs = np.asarray(net(x.reshape(-1, 784)))
    np.testing.assert_allclose(clf.predict_proba(x), probs, atol=1e-5)
    # Training a user's softmax model trains it through its logits view.
    cfg = training.TrainConfig(arch="mlp", epochs=1, n_train=12000, n_val=0)
    result = training.train(cfg, mnist, model=clf)
    assert result.test_accuracy > 0.85 and result.classifier.meta["outputs"] == "probabilities"


# --------------------------------------------------------------------------- CLI


def test_cli_train_writes_model_json_and_store(mnist_path, tmp_path, capsys, isolated_home):
    out = tmp_path / "mlp.keras"
    metrics = tmp_path / "metrics.json"
    argv = ["--data", str(mnist_path), "train", "--arch", "mlp", "--epochs", "1"]
    argv += ["--n-train", "4000", "--n-val", "500", "--batch-size", "100", "--lr", "0.003"]
    argv += ["--seed", "2", "--out", str(out), "--json", str(metrics)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    payload = json.loads(metrics.read_text())
    assert {"test_accuracy", "epochs", "seconds", "history"} <= set(payload)
    assert payload["epochs"] == 1 and payload["config"]["batch_size"] == 100
    assert f"{100 * payload['test_accuracy']:.2f}%" in text
    clf = models.load_model(out)
    assert clf.meta["test_accuracy"] == payload["test_accuracy"] > 0.85
    stored = list((isolated_home / "data" / "models").glob("*.keras"))
    assert len(stored) == 1


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--out", "model.h5"], "must end in .keras"),
        (["--out", "nowhere/m.keras"], "does not exist"),
        (["--out", "m.keras", "--lr", "nan"], "finite"),
        (["--out", "m.keras", "--n-train", "59000"], "must not exceed"),
    ],
)
def test_cli_train_bad_input_one_line_exit_2(extra, words, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        code = main(["train", "--arch", "mlp", *extra])
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err


@settings(max_examples=200, deadline=None)
@given(
    schedule=st.sampled_from(training.SCHEDULES),
    base=st.floats(1e-6, 1.0),
    total=st.integers(1, 10000),
    frac=st.floats(0, 1),
)
def test_learning_rate_stays_within_zero_and_peak(schedule, base, total, frac):
    step = int(frac * (total - 1))
    lr = training.learning_rate(schedule, base, step, total)
    assert 0 <= lr <= base * (1 + 1e-9)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), max_size=200))
def test_confusion_matrix_matches_counting(pairs):
    y = np.array([a for a, _ in pairs], dtype=np.int64)
    p = np.array([b for _, b in pairs], dtype=np.int64)
    cm = training.confusion_matrix(y, p)
    assert cm.sum() == len(pairs) and np.trace(cm) == int(np.sum(y == p))
    assert (cm.sum(axis=1) == np.bincount(y, minlength=10)).all()
