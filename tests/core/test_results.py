"""The results store: whole entries or none, damaged ones skipped, two writers never clash."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from advgui.core.errors import ExportError
from advgui.core.results import ResultStore


def test_roundtrip_with_arrays(mnist, tmp_path):
    store = ResultStore(tmp_path / "r")
    x = mnist.x_test[:3]
    entry = store.add("attack", {"success": [True, False, True]}, name="fgsm", arrays={"x": x})
    again = ResultStore(tmp_path / "r").entries()
    assert [e.name for e in again] == ["fgsm"] and again[0].payload["success"][1] is False
    assert np.array_equal(again[0].arrays()["x"], x)
    store.remove(entry)
    assert store.entries() == []


def test_damaged_entries_are_skipped_with_warning(tmp_path):
    store = ResultStore(tmp_path)
    good = store.add("compare", {"a": 1})
    bad = store.add("compare", {"b": 2})
    (bad.path / "result.json").write_text("{not json")
    (tmp_path / "stray-folder").mkdir()
    warnings: list[str] = []
    entries = store.entries(warnings=warnings)
    assert [e.path for e in entries] == [good.path]
    assert len(warnings) == 2 and any(bad.path.name in w for w in warnings)


def test_full_disk_leaves_nothing(tmp_path, monkeypatch):
    """A full disk surfaces at write or fsync time; simulate it at fsync, as filesystems with
    delayed allocation report it."""
    store = ResultStore(tmp_path)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ExportError, match="disk full"):
        store.add("attack", {"x": 1}, arrays={"a": np.zeros(10)})
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_concurrent_writers_never_clash(tmp_path):
    stores = [ResultStore(tmp_path) for _ in range(4)]
    errors = []

    def write(store, i):
        try:
            for j in range(10):
                store.add("attack", {"writer": i, "n": j})
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(s, i)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    entries = ResultStore(tmp_path).entries()
    assert len(entries) == 40
    assert sorted((e.payload["writer"], e.payload["n"]) for e in entries) == [
        (i, j) for i in range(4) for j in range(10)
    ]


def test_a_dead_writers_result_folder_is_swept(tmp_path):
    from advgui.core.fileio import temp_name
    from advgui.core.results import ResultStore

    store = ResultStore(tmp_path / "results")
    entry = store.add("attack", {"x": 1}, name="kept")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    half = temp_name(store.root / "20260101-000000-000000-attack-dead", "r")
    half = half.with_name(half.name.replace(f".{os.getpid()}-", f".{dead}-"))
    half.mkdir()
    (half / "result.json").write_text("{")
    assert [e.name for e in store.entries()] == ["kept"] and not half.exists()
    assert entry.path.is_dir()
