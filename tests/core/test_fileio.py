"""Atomic writes and their leftovers: outputs follow the umask, the sweep removes only what a
dead writer of ours left."""

from __future__ import annotations

import json
import os

import pytest

from advgui.cli import main
from advgui.core.fileio import atomic_write_text, sweep_stale


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_follow_the_umask(tmp_path, umask, mode, tiny_model, mnist_path):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "out.json", json.dumps({"a": 1}))
        assert (tmp_path / "out.json").stat().st_mode & 0o777 == mode
        code = main(["--data", str(mnist_path), "attack", "--model", str(tiny_model),
                     "--method", "fgsm", "--index", "1", "--out", str(tmp_path / "a.png"),
                     "--json", str(tmp_path / "r.json")])  # fmt: skip
        assert code == 0
        for name in ("a.png", "a.json", "r.json"):
            assert (tmp_path / name).stat().st_mode & 0o777 == mode, name
    finally:
        os.umask(old)


def test_sweep_ignores_what_is_not_ours(tmp_path):
    for name in ("notes.txt", ".hidden", ".x.part", ".y.12.part"):
        (tmp_path / name).write_text("keep")
    assert sweep_stale(tmp_path) == []
    assert len(list(tmp_path.iterdir())) == 4
