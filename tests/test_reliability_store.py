"""Two writers, one model store: a second instance of the app (or a CLI run) saving models of
the same name at the same moment must never overwrite or corrupt the other's file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from advgui.core import models
from advgui.core.store import ModelStore


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
