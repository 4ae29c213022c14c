"""Sessions survive: attack runs and comparisons are kept in the results store as they finish,
come back whole, and a damaged entry is skipped with a warning instead of breaking the list."""

from __future__ import annotations

import json

import numpy as np
import pytest

from advgui.core import history
from advgui.core.errors import DataError
from advgui.core.results import ResultStore


def _same(a, b):
    assert a.method == b.method and a.params == b.params and len(a) == len(b)
    for k in ("x", "x_adv", "labels", "probs_before", "probs_after", "success", "l2", "steps"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert (a.goals is None) == (b.goals is None)
    if a.goals is not None:
        np.testing.assert_array_equal(a.goals, b.goals)
    assert (a.cost_history is None) == (b.cost_history is None)
    for i in range(len(a)):
        assert a.record(i) == b.record(i)
    assert json.dumps(a.summary()) == json.dumps(b.summary())


def test_attack_runs_come_back_whole(runs, tmp_path):
    store = ResultStore(tmp_path)
    targeted, fgsm = runs
    history.save_attack(store, targeted, model="test-cnn", indices=None, inputs=targeted.x + 0.5)
    history.save_attack(store, fgsm, model="test-cnn", indices=[0, 1, 2, 3])
    again = ResultStore(tmp_path).entries(history.ATTACK_KIND)
    assert [e.payload["method"] for e in again] == ["targeted", "fgsm"]
    first, payload = history.load_attack(again[0])
    _same(first, targeted)
    assert payload["model"] == "test-cnn" and payload["indices"] is None
    np.testing.assert_array_equal(payload["inputs"], targeted.x + 0.5)
    second, payload = history.load_attack(again[1])
    _same(second, fgsm)
    assert payload["indices"] == [0, 1, 2, 3]
    np.testing.assert_array_equal(payload["inputs"], fgsm.x)  # none stored: the images
    assert "fooled" in again[1].name


def test_damaged_attack_entries(runs, tmp_path):
    store = ResultStore(tmp_path)
    targeted, fgsm = runs
    good = history.save_attack(store, fgsm, model="m")
    bad_json = history.save_attack(store, targeted, model="m")
    bad_arrays = history.save_attack(store, targeted, model="m")
    missing = history.save_attack(store, targeted, model="m")
    (bad_json.path / "result.json").write_text("{ truncated")
    blob = (bad_arrays.path / "arrays.npz").read_bytes()
    (bad_arrays.path / "arrays.npz").write_bytes(blob[: len(blob) // 3])
    import io

    with np.load(missing.path / "arrays.npz", allow_pickle=False) as npz:
        kept = {k: npz[k] for k in npz.files if k != "probs_after"}
    buf = io.BytesIO()
    np.savez(buf, **kept)
    (missing.path / "arrays.npz").write_bytes(buf.getvalue())

    warnings: list[str] = []
    entries = store.entries(history.ATTACK_KIND, warnings)
    assert len(entries) == 3 and len(warnings) == 1 and bad_json.path.name in warnings[0]
    loaded = []
    for e in entries:
        try:
            loaded.append(history.load_attack(e)[0])
        except DataError as err:
            assert e.path.name in str(err)
    assert len(loaded) == 1
    _same(loaded[0], fgsm)
    assert good.path.name == entries[0].path.name


def test_comparisons_round_trip_and_damage(tmp_path):
    store = ResultStore(tmp_path)
    result = {
        "eps": [0.0, 0.1],
        "n": 20,
        "seconds": 1.5,
        "results": [{"label": "cnn", "clean_accuracy": 0.95, "attacks": {}, "notes": []}],
    }
    entry = history.save_comparison(store, result)
    assert "cnn" in entry.name
    (again,) = ResultStore(tmp_path).entries(history.COMPARISON_KIND)
    assert history.load_comparison(again) == result
    broken = history.save_comparison(store, {"results": "nope", "eps": []})
    e = next(x for x in store.entries(history.COMPARISON_KIND) if x.path == broken.path)
    with pytest.raises(DataError):
        history.load_comparison(e)


def test_a_stored_trace_is_kept_only_as_pairs_of_finite_numbers():
    """A black-box attack's trace read back from a history file (hostile until proven
    otherwise): pairs of finite numbers, at most MAX_TRACE of them, else dropped."""
    from advgui.core.attacks.base import MAX_TRACE, Details

    good = [[1, 0.5], [20, -0.25]]
    assert Details.from_dict({"trace": good}).trace == [[1.0, 0.5], [20.0, -0.25]]
    for bad in ("x", [[1, 2, 3]], [[1, "a"]], [[1, float("nan")]], [1, 2], {"a": 1},
                [[0, 0]] * (MAX_TRACE + 1)):  # fmt: skip
        assert Details.from_dict({"trace": bad, "queries": [3]}).trace is None, bad
    assert Details.from_dict({"trace": [[1, 2, 3]], "queries": [3]}).queries.tolist() == [3]
