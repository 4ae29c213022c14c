"""The Defense tab's session without Qt: what it refuses, a real comparison whose partial
results fill the view as they come, the history, the notes, exports and reading them back."""

from __future__ import annotations

import csv
import json

import pytest

from advgui.core import history
from advgui.core.errors import AdvguiError
from advgui.core.evaluation import EvalConfig
from advgui.core.progress import CancelToken
from advgui.core.results import ResultStore
from advgui.core.sessions import DefenseSession


@pytest.fixture
def session(mnist, tmp_path):
    s = DefenseSession(ResultStore(tmp_path / "results"))
    s.mnist = mnist
    return s


def _config(n=100):
    return EvalConfig(attacks=("fgsm",), eps=(0.0, 0.1, 0.3), n=n).validate()


def test_refusals_leave_nothing_pending(session, trained_cnn):
    bare = DefenseSession(session.store)
    with pytest.raises(AdvguiError, match="not loaded"):
        bare.prepare([trained_cnn], _config(), ["none"])
    with pytest.raises(AdvguiError, match="at least one model"):
        session.prepare([], _config(), ["none"])
    assert session.pending is None and bare.pending is None
    with pytest.raises(AdvguiError, match="run a comparison first"):
        session.export("csv", session.store.root / "r.csv")


def test_comparison_partials_history_notes_and_exports(session, trained_cnn, mnist, tmp_path):
    run = session.prepare([trained_cnn], _config(), ["none", "squeeze-bits:1"])
    assert run.message == "comparing 1 model(s) x 2 input(s)..."
    assert session.shown is None
    with pytest.raises(AdvguiError, match="stop the running comparison"):
        session.reopen(None)  # refused before the entry is even looked at
    shown = []

    def progress(update):
        if update.partial is not None and session.partial(update.partial):
            shown.append([e["label"] for e in session.shown["results"]])
            assert session.shown["eps"] == [0.0, 0.1, 0.3] and session.shown["n"] == 100

    out = run.work(progress, CancelToken())
    assert shown and len(shown[-1]) == 2 and len(shown[0]) < len(shown[-1])
    text = session.finish(out)
    assert text == f"done in {out.result['seconds']:.0f} s on 100 test images"
    assert session.pending is None and session.result is out.result is session.shown
    clean = trained_cnn.accuracy(mnist.x_test[:100], mnist.y_test[:100])
    assert session.result["results"][0]["clean_accuracy"] == pytest.approx(clean)
    # Squeezing's naive FGSM is masked: the notes say so.
    assert "Gradient masking" in session.notes(session.shown)
    assert session.notes(None) == ""
    # Kept in the history the moment it finished, and reopened from there.
    (entry,) = session.store.entries(history.COMPARISON_KIND)
    assert entry.path == out.entry.path
    session.clear()
    assert session.reopen(entry).startswith(f"reopened {entry.name} (")
    assert [e["label"] for e in session.shown["results"]] == shown[-1]
    # Exports, and the JSON read back.
    for kind in ("csv", "json", "png"):
        session.export(kind, tmp_path / f"r.{kind}", "fgsm")
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert len(rows) == 6 and {r["transform"] for r in rows} == {"none", "squeeze-bits:1"}
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = session.read(tmp_path / "r.json")
    assert back["results"][1]["attacks"]["fgsm"]["eps"] == [0.0, 0.1, 0.3]


def test_damaged_files_and_entries_are_refused(session, tmp_path):
    (tmp_path / "junk.json").write_text("not json")
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    for name in ("junk.json", "list.json", "missing.json"):
        with pytest.raises(AdvguiError, match="cannot read comparison"):
            session.read(tmp_path / name)
    old = {"results": [], "seconds": 1.0, "n": 5}
    (tmp_path / "old.json").write_text(json.dumps({"results": []}))
    assert session.read(tmp_path / "old.json") == {**old, "seconds": 0.0, "n": 0}
    session.show(old)
    damaged = history.save_comparison(session.store, {"results": []})  # no eps
    with pytest.raises(AdvguiError, match="cannot reopen"):
        session.reopen(damaged)
    assert session.shown is None and session.result is None


def test_stop_during_certification_marks_it_stopped(session, trained_cnn):
    """A real comparison stopped while certifying: the attack's figures stay shown, the
    certification is marked stopped with no figure (never a partial one), the status says so."""
    from advgui.core.evaluation import rows
    from advgui.core.progress import Cancelled

    cfg = EvalConfig(attacks=("fgsm",), eps=(0.0, 0.1), n=100, certify="ibp").validate()
    run = session.prepare([trained_cnn], cfg, ["none"])
    token = CancelToken()
    steps = []

    def progress(update):
        if update.partial is not None:
            session.partial(update.partial)
        if update.message.startswith("Certifying"):
            steps.append(update.message)
            token.cancel()

    with pytest.raises(Cancelled):
        run.work(progress, token)
    assert steps == [f"Certifying {trained_cnn.name}: 0/100 images"]
    cut = session.abandon(stopped=True)
    assert cut == [trained_cnn.name] and session.pending is None and session.result is None
    assert "stopped while certifying" in session.stopped_text(cut)
    (entry,) = session.shown["results"]
    assert entry["certified"] == {"method": "ibp", "status": "stopped"}
    table = rows(session.shown)
    assert [r["attack"] for r in table] == ["fgsm", "fgsm", "certified:ibp"]
    assert all(r["certified"] is None for r in table)
    assert table[1]["robust_accuracy"] == entry["attacks"]["fgsm"]["robust_accuracy"][1]
    assert table[2]["flags"] == "stopped" and table[2]["robust_accuracy"] is None
    assert session.stopped_text([]).startswith("stopped: the curves")
