"""The Attack tab's session without Qt: which images a run attacks, what it refuses (and which
field it names), a run from start to history and back, what the view shows, export."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from advgui.core.errors import AdvguiError, ParameterError
from advgui.core.progress import CancelToken, Partial
from advgui.core.results import ResultStore
from advgui.core.sessions import AttackSession


@pytest.fixture
def session(mnist, tmp_path):
    s = AttackSession(ResultStore(tmp_path / "results"))
    s.mnist = mnist
    return s


def test_sessions_import_neither_qt_nor_tensorflow():
    code = (
        "import sys, advgui.core.sessions; "
        "print(sorted(m for m in ('PySide6', 'tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_batch_is_the_source_and_the_next_images_in_gallery_order(session, mnist):
    src = session.choose_test_image(3)
    assert src.label == mnist.y_test[3] and src.caption == f"test image 3, label {src.label}"
    x, labels, idx = session.batch(4)
    assert idx == [3, 4, 5, 6] and x.shape == (4, 28, 28, 1)
    np.testing.assert_array_equal(labels, mnist.y_test[[3, 4, 5, 6]])
    # The gallery filtered to the 7s: the batch is the next 7s from the chosen one.
    sevens = np.flatnonzero(mnist.y_test == 7)
    session.choose_test_image(int(sevens[2]))
    _, labels, idx = session.batch(3, sevens)
    assert idx == [int(i) for i in sevens[2:5]] and set(labels) == {7}
    # Near the end of the order the batch is shorter, never empty.
    session.choose_test_image(int(sevens[-1]))
    assert session.batch(5, sevens).indices == [int(sevens[-1])]
    # A drawing is one image of unknown label, whatever the batch size.
    drawing = np.zeros((28, 28), np.float32)
    drawing[5:23, 13:15] = 1.0
    src = session.set_source(drawing)
    assert src.caption == "your image"
    x, labels, idx = session.batch(10)
    assert idx is None and labels.tolist() == [-1] and x.shape == (1, 28, 28, 1)


def test_refusals_name_their_field_and_leave_nothing_pending(session, trained_cnn):
    with pytest.raises(ParameterError) as err:
        session.prepare("fgsm", {}, None)
    assert err.value.field == "model" and "No model" in str(err.value)
    session.model = trained_cnn
    with pytest.raises(ParameterError) as err:
        session.prepare("fgsm", {}, None)
    assert err.value.field == "image"
    session.choose_test_image(0)
    cases = [
        ("noise", {}, None, "goal", "needs a target digit"),
        ("deepfool", {}, 3, "goal", "cannot aim"),
        ("fgsm", {"eps": 5.0}, None, "eps", "eps"),
        ("pgd", {"restarts": 2, "random_start": False}, None, "restarts", "random start"),
        ("targeted", {"lam": "often"}, 2, "lam", "lam"),
        ("fgsm", {"steps": 3}, None, "steps", "does not take"),
    ]
    for method, params, goal, field, words in cases:
        with pytest.raises(ParameterError) as err:
            session.prepare(method, params, goal)
        assert err.value.field == field and words in str(err.value), (method, str(err.value))
        assert session.pending is None


def test_run_is_kept_shown_listed_and_reopened(session, trained_cnn, mnist, tmp_path):
    session.model = trained_cnn
    session.choose_test_image(10)
    run = session.prepare("fgsm", {"eps": 0.25}, None, n=3)
    assert run.message == "Running fgsm on 3 image(s)..." and session.pending is run
    output = run.work(lambda update: None, CancelToken())
    assert output.entry is not None and output.store_error is None
    text = session.finish(output)
    res = output.result
    assert session.pending is None and session.shown.result is res
    assert text.startswith(f"Done: fgsm succeeded on {int(res.success.sum())}/3")
    assert "accuracy" in text  # a batch of labelled images reports accuracy before/after
    view = session.view(1)
    assert view.original_caption.startswith(f"test image 11, label {mnist.y_test[11]}")
    np.testing.assert_array_equal(view.adversarial, res.x_adv[1])
    np.testing.assert_allclose(view.delta, res.x_adv[1] - res.x[1])
    assert ("Success" if res.success[1] else "Failed") in view.summary
    text = view.summary.replace("&nbsp;", " ")  # a figure never wraps inside itself
    assert f"L2 {res.l2[1]:.3f}" in text and view.curve is None  # FGSM: one step
    assert "1 step," in text  # not "1 steps" (issue 17.17)
    assert view.curve_axis is None  # so the tab hides the cost plot
    assert session.view(3) is None
    assert session.export_name(1) == "fgsm_idx11.png"

    # The next session (the app opened again) lists the run and reopens it whole.
    again = AttackSession(session.store)
    (entry,) = again.entries()
    assert "fgsm" in entry.name
    assert "load model test-cnn to export it" in again.reopen(entry)
    assert not again.can_export()
    with pytest.raises(AdvguiError):
        again.export_batch_work(tmp_path / "out")
    assert again.reopen(entry, [trained_cnn]).startswith("Reopened")
    assert again.can_export() and again.shown.indices == [10, 11, 12]
    np.testing.assert_array_equal(again.shown.result.x_adv, res.x_adv)
    assert again.view(1).summary == view.summary

    # Export: PNGs read back and classified, and the status line says so.
    records = again.export_batch_work(tmp_path / "out")(lambda u: None, CancelToken())
    message = again.exported(records, "out")
    assert again.last_export == records and message.startswith("Exported 3 PNG(s) to out")
    assert [r["index"] for r in records] == [10, 11, 12]
    side = json.loads((tmp_path / "out" / records[0]["png"]).with_suffix(".json").read_text())
    assert side["png_pred"] == records[0]["png_pred"]


def test_a_mixed_precision_run_is_judged_in_float32(session, trained_cnn):
    """The status bar's precision reaches the run: the attack runs on the mixed clone, the
    result is the float32 model's verdict, the status line says whether they agree."""
    from advgui.core import tuning

    session.model = trained_cnn
    session.choose_test_image(0)
    with pytest.raises(ParameterError, match="precision"):
        session.prepare("fgsm", {}, None, precision="half")
    assert session.pending is None
    here = {} if tuning.detect_cpu().bf16_hardware else {"mixed_policy": "mixed_bfloat16"}
    with tuning.overridden(**here):
        run = session.prepare("fgsm", {"eps": 0.15}, None, n=40, precision="mixed")
        output = run.work(lambda update: None, CancelToken())
    check, res = output.precision_check, output.result
    assert check["policy"] == "mixed_bfloat16" and output.entry is not None
    np.testing.assert_array_equal(res.pred_after, trained_cnn.predict(res.x_adv))
    text = session.finish(output)
    assert ("float32 re-check agrees" in text) == check["agree"]
    assert ("DISAGREES" in text) == (not check["agree"])


def test_deck_attack_sends_typed_partials_and_the_noise_start_is_shown(session, trained_cnn):
    session.model = trained_cnn
    session.choose_test_image(4)
    run = session.prepare("targeted", {"steps": 40, "lam": 0.05}, 2)
    updates = []
    output = run.work(updates.append, CancelToken())
    partials = [u.partial for u in updates if u.partial is not None]
    assert partials and all(isinstance(p, Partial) for p in partials)
    assert "curve" not in updates[-1].info and "image" not in updates[-1].info
    assert len(partials[-1].curve) == 40
    image, delta = session.live_delta(partials[-1])
    np.testing.assert_allclose(delta, image - session.source.x)
    assert session.live_delta(Partial(curve=partials[-1].curve)) is None  # no image in it
    session.finish(output)
    view = session.view(0)
    assert view.curve.shape == (40,) and "lambda&nbsp;0.05" in view.summary
    assert "40&nbsp;steps" in view.summary
    assert view.curve_axis == ("cost minimised", "cross-entropy + lambda L2^2")  # issue 17.6
    # The deck's noise attack starts from noise: that is the original the view shows.
    run = session.prepare("noise", {"steps": 30}, 5)
    session.finish(run.work(lambda u: None, CancelToken()))
    assert session.view(0).original_caption.startswith("random start (noise)")


def test_a_stopped_run_changes_nothing(session, trained_cnn):
    from advgui.core.progress import Cancelled

    session.model = trained_cnn
    session.choose_test_image(1)
    session.finish(session.prepare("fgsm", {}, None).work(lambda u: None, CancelToken()))
    shown = session.shown
    run = session.prepare("pgd", {"steps": 1000}, None, n=20)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        run.work(lambda u: None, token)
    session.abandon()
    assert session.pending is None and session.shown is shown
    (entry,) = session.entries()  # only the finished run is kept
    assert entry.payload["method"] == "fgsm"
    session.prepare("fgsm", {}, None)  # while a run is pending, reopening waits for it
    with pytest.raises(AdvguiError, match="Stop the running attack first"):
        session.reopen(entry)


def test_a_new_input_drops_the_old_result_and_is_predicted_at_once(session, trained_cnn, mnist):
    """Issue 17.4/17.5: the shown result belongs to its input; the prediction to the input."""
    session.choose_test_image(3)
    assert session.prediction() is None  # no model yet
    assert "Choose a model" in session.source_view().summary
    session.model = trained_cnn
    probs = session.prediction()
    np.testing.assert_allclose(probs, trained_cnn.predict_proba(mnist.x_test[3:4])[0], rtol=1e-5)
    view = session.source_view()
    assert view.probs_before is probs and f"predicts {int(probs.argmax())}" in view.summary
    session.finish(session.prepare("fgsm", {}, None).work(lambda u: None, CancelToken()))
    session.choose_test_image(3)  # the same image again: its result stays
    assert session.shown is not None
    session.set_source(np.zeros((28, 28)))  # a drawing: the old result is not of it
    assert session.shown is None and not session.can_export()
    assert session.prediction() is not probs
