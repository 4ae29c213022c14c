"""The model store: models saved on arrival, listed and loaded again, damaged files skipped."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from advgui.core import models
from advgui.core.store import ModelStore


@pytest.fixture(scope="module")
def small_clf(mnist):
    """An MLP briefly fitted on real images (enough for predictions that differ per image)."""
    from advgui.core import training

    cfg = training.TrainConfig(arch="mlp", epochs=1, n_train=2000, n_val=0, seed=5)
    return training.train(cfg, mnist).classifier


def _copy(clf: models.Classifier, **meta) -> models.Classifier:
    return models.Classifier(model=clf.model, meta={**clf.meta, **meta})


def test_store_keeps_and_reloads_models(small_clf, mnist, isolated_home):
    store = ModelStore()
    assert store.root == isolated_home / "data" / "models"
    assert store.entries() == []  # no folder yet: empty, no error
    clf = _copy(small_clf)
    path = store.add(clf)
    assert path.parent == store.root and path.suffix == ".keras"
    assert clf.meta["path"] == str(path) and store.contains(clf)
    entries = store.entries()
    assert [e.path for e in entries] == [path]
    assert entries[0].meta["test_accuracy"] == small_clf.meta["test_accuracy"]
    (loaded,) = ModelStore().load_all()
    x = mnist.x_test[:300]
    assert np.array_equal(loaded.predict(x), small_clf.predict(x))
    assert loaded.meta["stored"] is True and loaded.meta["history"] == small_clf.meta["history"]


def test_same_name_never_overwrites(small_clf, tmp_path):
    store = ModelStore(tmp_path / "store")
    a = store.add(_copy(small_clf, name="same/name"))
    b = store.add(_copy(small_clf, name="same/name"))
    assert a != b and a.is_file() and b.is_file()
    assert "/" not in a.name.removesuffix(".keras")


def test_damaged_entries_are_skipped_with_a_warning(small_clf, mnist, tmp_path):
    store = ModelStore(tmp_path / "store")
    good = store.add(_copy(small_clf, name="good", trained_at="2026-01-01T00:00:00"))
    (store.root / "garbage.keras").write_bytes(b"\x00" * 100)
    # A truncated copy of a real model: a zip whose contents are cut off.
    (store.root / "truncated.keras").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    warnings: list[str] = []
    entries = store.entries(warnings)
    assert [e.path for e in entries] == [good]
    warnings.clear()
    loaded = store.load_all(warnings=warnings)
    assert [c.meta["path"] for c in loaded] == [str(good)]
    assert len(warnings) == 2
    assert any("garbage.keras" in w for w in warnings)
    assert any("truncated.keras" in w for w in warnings)


def test_entries_sorted_by_training_time_and_removal(small_clf, tmp_path):
    store = ModelStore(tmp_path / "store")
    late = _copy(small_clf, name="b-late", trained_at="2026-02-01T00:00:00")
    early = _copy(small_clf, name="a-early", trained_at="2026-01-01T00:00:00")
    store.add(late)
    store.add(early)
    assert [e.name for e in store.entries()] == ["a-early", "b-late"]
    assert store.remove(early) is True
    assert [e.name for e in store.entries()] == ["b-late"]
    assert store.remove(early) is False
    # A file outside the store is never deleted through it.
    outside = models.save_model(_copy(small_clf), tmp_path / "mine.keras")
    assert store.remove(outside) is False and outside.is_file()


def test_stored_file_names_stay_readable(tmp_path):
    from advgui.core.store import file_stem

    assert file_stem("cnn-99.22%-075427") == "cnn-99.22pct-075427"
    assert file_stem("my model: 7 vs 1 / test") == "my-model-7-vs-1-test"
    assert file_stem("../../etc/passwd") == "etc-passwd"  # no way out of the store
    assert file_stem("%%%") == "pctpctpct" and file_stem("///") == "model"


def _tiny(seed: int) -> models.Classifier:
    model = models.build_model("mlp", hidden=(4,), seed=seed)
    return models.Classifier(model, {"name": "same-name", "seed": seed})


def test_threads_saving_same_name_get_distinct_files(isolated_home):
    store = ModelStore()
    clfs = [_tiny(seed) for seed in range(6)]
    barrier = threading.Barrier(len(clfs))
    paths: dict[int, object] = {}
    errors: list[BaseException] = []

    def add(clf):
        try:
            barrier.wait()
            paths[clf.meta["seed"]] = store.add(clf)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=add, args=(c,)) for c in clfs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(set(paths.values())) == len(clfs)
    entries = store.entries(warnings := [])
    assert not warnings and len(entries) == len(clfs)
    assert not list(store.root.glob(".*")), "reservations or temporaries left behind"
    # Every file holds the model that was saved into it (none overwritten by another thread).
    x = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    for seed, path in paths.items():
        loaded = models.load_model(path)
        assert loaded.meta["seed"] == seed
        np.testing.assert_allclose(loaded.logits(x), clfs[seed].logits(x), atol=1e-6)


SCRIPT = textwrap.dedent(
    """
    import sys, time
    from advgui.core import models
    from advgui.core.store import ModelStore
    start = float(sys.argv[1])
    clfs = [models.Classifier(models.build_model("mlp", hidden=(4,), seed=s),
                              {"name": "lab-model", "writer": sys.argv[2], "k": s})
            for s in range(4)]
    while time.time() < start:
        time.sleep(0.005)
    for clf in clfs:
        print(ModelStore().add(clf), flush=True)
    """
)


def test_two_processes_share_the_store(isolated_home, tmp_path):
    import os
    import time

    script = tmp_path / "writer.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "ADVGUI_HOME": str(isolated_home), "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.time() + 25  # both have imported TensorFlow and built their models by then
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(start), name],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    written = [line for out, _ in outs for line in out.split()]
    assert len(written) == 8 and len(set(written)) == 8
    store = ModelStore()
    entries = store.entries(warnings := [])
    assert not warnings
    seen = {(e.meta["writer"], e.meta["k"]) for e in entries}
    assert seen == {(w, k) for w in "ab" for k in range(4)}
    assert not list(store.root.glob(".*"))


def test_failed_save_releases_its_name(isolated_home, monkeypatch):
    import errno
    import os

    store = ModelStore()

    def full(*_a):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    from advgui.core.errors import AdvguiError

    with pytest.raises(AdvguiError, match="disk full"):
        store.add(_tiny(0))
    monkeypatch.undo()
    assert not any(store.root.iterdir())  # no model, no reservation, no temporary
    assert store.add(_tiny(1)).name == "same-name.keras"


_KILLED_SAVE = """
import os, sys
from advgui.core import models, store
clf = models.load_model(sys.argv[1])
os.fsync = lambda fd: os._exit(9)   # die in the middle of the store's write
store.ModelStore(sys.argv[2]).add(clf)
"""


def test_a_killed_store_write_leaves_nothing_after_the_next_start(tiny_model, tmp_path):
    root = tmp_path / "store"
    tmp_before = set(Path("/tmp").glob(".advgui-save-*"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_SAVE, str(tiny_model), str(root)], env=env, timeout=300
    )
    assert proc.returncode == 9
    left = sorted(p.name for p in root.iterdir())
    assert any(n.endswith(".lock") for n in left) and any(".part" in n for n in left), left
    assert set(Path("/tmp").glob(".advgui-save-*")) == tmp_before  # nothing written to /tmp
    # A live writer's lock and temporary are left alone; a legacy empty lock only when old.
    from advgui.core.fileio import temp_name, write_lock

    write_lock(root / ".live.keras.lock")
    live_tmp = temp_name(root / "live.keras")
    live_tmp.write_bytes(b"x")
    (root / ".legacy.keras.lock").touch()
    old = root / ".old.keras.lock"
    old.touch()
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    from advgui.core.store import ModelStore

    assert ModelStore(root).entries() == []
    remaining = sorted(p.name for p in root.iterdir())
    assert remaining == sorted([".legacy.keras.lock", ".live.keras.lock", live_tmp.name])
