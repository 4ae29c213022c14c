"""The Training tab's session without Qt: what it refuses (and which field it names), a real
run from its progress lines to the stored model, Stop, which model is shown and said to be,
cached predictions and the stored models it lists."""

from __future__ import annotations

import numpy as np
import pytest

from advgui.core import training
from advgui.core.errors import ParameterError
from advgui.core.progress import CancelToken
from advgui.core.sessions import TrainingSession
from advgui.core.store import ModelStore

SMALL = {"arch": "mlp", "epochs": 1, "batch_size": 64, "lr": 1e-3, "schedule": "onecycle",
         "optimizer": "adam", "seed": 0, "n_train": 2000, "n_val": 500}  # fmt: skip


@pytest.fixture
def session(mnist, tmp_path):
    s = TrainingSession(ModelStore(tmp_path / "models"))
    s.mnist = mnist
    return s


def test_refusals_name_their_field_and_leave_nothing_pending(session):
    bare = TrainingSession(session.store)
    with pytest.raises(ParameterError, match="not loaded"):
        bare.prepare(**SMALL)
    assert bare.pending is None
    with pytest.raises(ParameterError, match="must not exceed") as err:
        session.prepare(**{**SMALL, "n_train": 58000, "n_val": 5000})
    assert err.value.field == "n_train" and session.pending is None
    with pytest.raises(ParameterError) as err:
        session.prepare(**{**SMALL, "epochs": 0})
    assert err.value.field == "epochs"
    # A failure is blamed on the learning rate only when it says so and is the user's.
    assert session.failed("learning rate too high: the loss became NaN", True) == "lr"
    assert session.failed("learning rate", False) is None
    assert session.failed("disk full", True) is None
    assert session.defaults("mlp").epochs == training.DEFAULTS["mlp"]["epochs"]


def test_a_run_is_described_stored_shown_and_its_predictions_kept(session, mnist):
    run = session.prepare(**SMALL)
    assert run.config.evals_per_epoch == 2  # the GUI's denser validation curve
    assert run.message == "Training MLP on 2,000 images for 1 epoch(s)."
    assert run.showing == "Showing the run in progress: MLP"
    views = []
    out = run.work(lambda u: views.append(session.progress(u)), CancelToken())
    epochs = [v for v in views if v.phase and v.phase.startswith("Epoch 1/1, batch")]
    assert epochs and all("images/s, ETA" in v.speed and "loss" in v.metrics for v in epochs)
    assert [v.bar for v in views] == sorted(v.bar for v in views) and views[-1].bar == 1000
    assert any(v.phase == "Testing on the 10,000 test images..." for v in views)
    assert any("validation" in v.metrics for v in epochs)  # a validation pass was shown
    # While the run is pending, choosing a model changes nothing.
    assert session.select(object()) is None
    view = session.finish(out)
    clf, res = view.model, out.result
    assert session.pending is None and session.last_run is clf and not view.stopped
    assert view.phase.startswith(f"Done ({clf.name}, the last run): test accuracy "
                                 f"{100 * res.test_accuracy:.2f}%")  # fmt: skip
    (entry,) = session.store.entries()
    assert entry.meta["name"] == clf.name and view.status.endswith(str(clf.meta["path"]))
    assert not view.error and view.showing.startswith(f"Showing the run just done: {clf.name}")
    # Choosing it again: no curves to replot, its predictions from the cache.
    again = session.select(clf)
    assert again.history is None and np.array_equal(again.predictions, res.test_predictions)
    pv = session.prediction_view(again.predictions)
    assert pv.confusion.sum() == 10000
    assert np.trace(pv.confusion) == round(res.test_accuracy * 10000)
    assert session.prediction_view(again.predictions[:10]) is None  # not this test set
    # Another model: its stored history is plotted, its predictions are still to compute.
    meta = {**clf.meta, "name": "other", "history": {"epoch": [1.0], "loss": [0.4]}}
    other = type(clf)(model=clf.model, meta=meta)
    shown = session.select(other)
    assert shown.history == {"epoch": [1.0], "loss": [0.4]} and shown.predictions is None
    assert shown.showing.startswith("Showing the model selected in the list: other (MLP")
    pred = session.predict_work(other)(None, CancelToken())
    assert session.predicted(other, pred, current=clf) is False  # chosen away meanwhile
    assert np.array_equal(session.select(other).predictions, pred)
    assert session.select(None).showing == "No model selected."


def test_stop_keeps_the_model_so_far_and_freezes_the_bar(session):
    run = session.prepare(**{**SMALL, "epochs": 5, "n_train": 5000})
    token, views, stopped_at = CancelToken(), [], []

    def progress(update):
        views.append(session.progress(update))
        if update.message == "training" and not token.cancelled:
            assert session.stop().startswith("Stopping")
            token.cancel()
            stopped_at.append(len(views))

    out = run.work(progress, token)
    view = session.finish(out)
    assert view.stopped and view.phase.startswith("Stopped")
    assert view.model.meta["cancelled"] is True and view.model.meta["epochs_completed"] < 5
    after = views[stopped_at[0] :]
    assert after and all(v.bar is None and v.speed is None for v in after)
    assert not session.stopping and session.store.entries()[0].meta["cancelled"] is True


def test_stored_models_are_listed_once_and_damaged_ones_named(session, mnist):
    out = session.prepare(**SMALL).work(lambda u: None, CancelToken())
    session.finish(out)
    (session.store.root / "broken.keras").write_bytes(b"junk")
    warnings: list[str] = []
    loaded = session.load_store_work(warnings)(None, CancelToken())
    assert len(loaded) == 1 and any("broken.keras" in w for w in warnings)
    fresh, note, error = session.stored_loaded(loaded, [], warnings)
    assert len(fresh) == 1 and error and note.startswith("1 stored model(s) loaded. ")
    fresh, note, error = session.stored_loaded(loaded, [out.result.classifier], [])
    assert fresh == [] and note is None and not error  # already listed: not twice
