"""The one training loop (advgui.core.fit) on real MNIST: the schedule's two shapes, typed epoch
records for plain and defended training, Stop keeping the best model so far, and ``advgui
defend`` = ``advgui train --defense``."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advgui.cli import main
from advgui.core import fit, models, training
from advgui.core.fit import BatchProgress, EpochRecord
from advgui.core.progress import CancelToken

# --------------------------------------------------------------------------- schedule


def test_one_cycle_shapes_plain_and_defended():
    total, peak = 201, 0.01
    plain = [fit.Schedule("onecycle", peak)(s, total) for s in range(total)]
    # Plain: linear warm-up from peak/25 over the first 25%, a half cosine down to peak/1000.
    assert plain[0] == pytest.approx(peak / 25) and plain[50] == pytest.approx(peak)
    assert int(np.argmax(plain)) == 50 and plain[-1] == pytest.approx(peak / 1000)
    assert np.allclose(np.diff(plain[:51]), (peak - peak / 25) / 50)  # a straight line up
    # Halfway down a cosine is halfway between its ends, and its slope is steepest there.
    assert plain[125] == pytest.approx((peak + peak / 1000) / 2)
    drops = -np.diff(plain[50:])
    assert all(d >= 0 for d in drops) and 70 <= int(np.argmax(drops)) <= 80
    # It is the Training tab's "onecycle" (the benchmarked 99% CNN recipe), number for number.
    assert plain == [training.learning_rate("onecycle", peak, s, total) for s in range(total)]

    defended = [
        fit.Schedule("onecycle", peak, **fit.DEFENDED_ONE_CYCLE)(s, total) for s in range(total)
    ]
    # Defended: linear from 0 to the peak over the first 40%, then linearly back to 0.
    assert defended[0] == 0.0 and defended[-1] == pytest.approx(0.0, abs=1e-12)
    assert int(np.argmax(defended)) == 80 and defended[80] == pytest.approx(peak)
    assert np.allclose(np.diff(defended[:81]), peak / 80)
    assert np.allclose(np.diff(defended[80:]), -peak / 120)
    # The two shapes really differ (which is why the schedule has parameters).
    assert abs(defended[40] - plain[40]) > 0.2 * peak


@settings(max_examples=200, deadline=None)
@given(
    warmup=st.floats(0.0, 0.95),
    start=st.floats(0.0, 1.0),
    end=st.floats(0.0, 1.0),
    anneal=st.sampled_from(["cos", "linear"]),
    total=st.integers(2, 5000),
)
def test_one_cycle_peaks_once_and_stays_between_its_ends(warmup, start, end, anneal, total):
    sched = fit.Schedule("onecycle", 1.0, warmup=warmup, start=start, end=end, anneal=anneal)
    lrs = [sched(s, total) for s in range(total)]
    assert min(start, end) - 1e-9 <= min(lrs) and max(lrs) <= 1.0 + 1e-9
    top = int(np.argmax(lrs))
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(lrs[: top + 1]))
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(lrs[top:]))


def test_schedule_and_optimizer_refuse_unknown_names():
    from advgui.core.errors import ParameterError

    with pytest.raises(ParameterError) as err:
        fit.Schedule("exp", 0.1)
    assert err.value.field == "schedule"
    with pytest.raises(ParameterError) as err:
        fit.make_optimizer("rmsprop", 0.1, [])
    assert err.value.field == "optimizer"


# --------------------------------------------------------------------------- records


def test_plain_training_emits_epoch_records_without_robust_accuracy(mnist):
    seen = []
    cfg = training.TrainConfig(arch="mlp", epochs=2, n_train=3000, n_val=500, seed=1)
    result = training.train(cfg, mnist, progress=seen.append)
    records = [u.record for u in seen if isinstance(u.record, EpochRecord)]
    assert [r.epoch for r in records] == [1.0, 2.0]
    assert all(r.complete and r.checked and r.stage == "training" for r in records)
    assert all(r.robust_accuracy is None for r in records)  # plain training attacks nothing
    for r in records:
        assert 0 < r.loss < 2.5 and 0.5 < r.accuracy <= 1 and 0 < r.clean_loss < 2.5
        assert r.lr > 0 and r.seconds > 0 and r.elapsed >= r.seconds and r.images_per_second > 0
    # The records are the stored history, and their figures are the model's own: the last
    # check's validation accuracy is the trained classifier's on those 500 images.
    assert result.history["val_accuracy"] == [r.clean_accuracy for r in records]
    assert result.history["loss"] == [r.loss for r in records]
    x_val, y_val = mnist.x_train[-500:], mnist.y_train[-500:]
    assert records[-1].clean_accuracy == pytest.approx(result.classifier.accuracy(x_val, y_val))
    # Batch updates are typed too, and the terminal's figures are theirs.
    batches = [u for u in seen if isinstance(u.record, BatchProgress)]
    assert batches and all(u.info == u.record.info() for u in batches)
    xs = [u.record.epoch_progress for u in batches]
    assert xs == sorted(xs) and xs[-1] == 2.0


def test_defended_training_emits_robust_accuracy(mnist):
    from advgui.core.defenses import DefenseConfig, train_defended

    seen = []
    cfg = DefenseConfig(
        method="pgd-at", arch="cnn-s2", epochs=2, n_train=3000, steps=3, check_n=200,
        check_steps=5,
    )  # fmt: skip
    result = train_defended(cfg, mnist, progress=seen.append)
    records = [u.record for u in seen if isinstance(u.record, EpochRecord)]
    assert [(r.stage, r.epoch, r.complete) for r in records] == [
        ("pgd-at", 1.0, True),
        ("pgd-at", 2.0, True),
    ]
    for r in records:
        assert isinstance(r.robust_accuracy, float) and 0 <= r.robust_accuracy <= 1
        # PGD at eps 0.3 on a barely trained net: far below its clean accuracy.
        assert r.robust_accuracy < r.clean_accuracy - 0.1
        assert r.images_per_second > 0
    # The learning rate of each epoch's last step: one-cycle, down to 0 at the very end.
    assert records[0].lr > 0 and records[-1].lr == pytest.approx(0.0, abs=1e-12)
    assert [h["robust_accuracy"] for h in result.history] == [r.robust_accuracy for r in records]
    hx, hy = mnist.x_train[59000:59200], mnist.y_train[59000:59200]  # the held-out check set
    assert records[-1].clean_accuracy == pytest.approx(
        result.classifier.accuracy(hx, hy), abs=0.006
    )
    # Defended models are now tested like plain ones.
    assert result.test_accuracy == pytest.approx(
        result.classifier.accuracy(mnist.x_test, mnist.y_test)
    )
    assert result.classifier.meta["cancelled"] is False
    assert np.asarray(result.classifier.meta["confusion_matrix"]).sum() == 10000


# --------------------------------------------------------------------------- Stop


def test_stopped_fast_at_keeps_its_best_checked_weights(mnist, isolated_home):
    from advgui.core.defenses import DefenseConfig, train_defended
    from advgui.core.store import ModelStore

    per_epoch = 150
    cfg = DefenseConfig(
        method="fast-at", arch="cnn-s2", epochs=4, n_train=per_epoch * 100, check_n=200,
        check_steps=5,
    )  # fmt: skip
    token, seen = CancelToken(), []

    def progress(update):
        seen.append(update)
        if update.done > 2 * per_epoch and update.done % per_epoch:  # inside the third epoch
            token.cancel()

    result = train_defended(cfg, mnist, progress=progress, cancel=token)
    clf = result.classifier
    assert result.cancelled and clf.meta["cancelled"] is True
    assert 2 < clf.meta["epochs_completed"] < 3
    assert seen[-1].message == "stopped"
    # Two whole epochs and the stopped one, each with real held-out figures (the weights Stop
    # left were checked too).
    epochs = [h["epoch"] for h in result.history]
    assert epochs[:2] == [1, 2] and 2 < epochs[2] < 3 and len(epochs) == 3
    stopped = [u for u in seen if isinstance(u.record, EpochRecord) and not u.record.complete]
    assert len(stopped) == 1 and "stopped in epoch 3/4" in stopped[0].message
    robust = [h["robust_accuracy"] for h in result.history]
    assert all(isinstance(r, float) for r in robust)
    # The best check's weights are kept (later ties win), as at the end of a whole run.
    best = max(range(3), key=lambda i: (robust[i], i))
    assert result.best_epoch == best + 1
    kept = result.kept_record()
    assert kept is result.history[best]
    hx, hy = mnist.x_train[59000:59200], mnist.y_train[59000:59200]
    assert clf.accuracy(hx, hy) == pytest.approx(kept["clean_accuracy"], abs=0.006)
    assert clf.meta["test_accuracy"] == pytest.approx(clf.accuracy(mnist.x_test, mnist.y_test))
    # It is a model like any other: stored, listed as stopped, and it loads back the same.
    path = ModelStore().add(clf)
    (entry,) = ModelStore().entries()
    assert entry.meta["cancelled"] is True and entry.meta["defense"] == "fast-at"
    x = mnist.x_test[:300]
    assert np.array_equal(models.load_model(path).predict(x), clf.predict(x))


def test_distillation_stopped_during_the_teacher_keeps_the_teacher(mnist):
    from advgui.core.defenses import DefenseConfig, train_defended

    cfg = DefenseConfig(method="distill", arch="cnn-s2", epochs=3, n_train=3000, check_n=200)
    token = CancelToken()

    def progress(update):
        if isinstance(update.record, EpochRecord):
            token.cancel()  # after the teacher's first epoch

    result = train_defended(cfg, mnist, progress=progress, cancel=token)
    clf = result.classifier
    assert result.cancelled and clf.meta["cancelled"] is True
    assert clf.meta["distill_stage"] == "teacher" and clf.name == "distill-T100-teacher"
    assert clf.meta["temperature"] == 100  # an adaptive attack still divides the logits by T
    assert [h["stage"] for h in result.history] == ["distill teacher"]
    assert clf.meta["test_accuracy"] == pytest.approx(clf.accuracy(mnist.x_test, mnist.y_test))
    assert clf.meta["test_accuracy"] > 0.3  # a trained teacher, not the untrained student


# --------------------------------------------------------------------------- commands


def test_defend_and_train_defense_are_one_command(mnist_path, tmp_path, capsys):
    common = ["--defense", "fgsm-at", "--defense-arch", "cnn-s2", "--epochs", "1"]
    common += ["--n-train", "1500", "--seed", "3", "--no-store"]
    runs = {}
    for spelling in (["defend"], ["train"]):
        out, js = tmp_path / f"{spelling[0]}.keras", tmp_path / f"{spelling[0]}.json"
        argv = ["--data", str(mnist_path), *spelling, *common, "--out", str(out), "--json", str(js)]
        assert main(argv) == 0
        runs[spelling[0]] = (models.load_model(out), json.loads(js.read_text()))
    capsys.readouterr()
    (a, ja), (b, jb) = runs["defend"], runs["train"]
    assert ja["config"] == jb["config"] and ja["config"]["seed"] == 3
    assert ja["test_accuracy"] == jb["test_accuracy"] > 0.5
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in ja["history"]] == [
        {k: v for k, v in h.items() if k != "seconds"} for h in jb["history"]
    ]
    from advgui.core.data import load_mnist

    test = load_mnist(mnist_path).x_test[:500]
    np.testing.assert_allclose(a.logits(test), b.logits(test), rtol=1e-5, atol=1e-5)
    # One is documented as the other's alias.
    for argv, words in ((["defend", "--help"], "alias"), (["train", "--help"], "alias of")):
        with pytest.raises(SystemExit):
            main(argv)
        assert words in capsys.readouterr().out
