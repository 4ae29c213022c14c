"""The headless commands: exit codes and one-line errors."""

from __future__ import annotations

import subprocess
import sys

from advgui.cli import main


def test_data_info_on_real_files(mnist_path, capsys):
    assert main(["--data", str(mnist_path), "data", "info", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"train": 60000' in out and "5923" in out


def test_import_then_info_uses_cache(mnist_path, capsys, monkeypatch):
    monkeypatch.delenv("ADVGUI_DATA", raising=False)
    assert main(["data", "import", str(mnist_path)]) == 0
    assert main(["data", "info"]) == 0
    assert "source:  cache" in capsys.readouterr().out


def test_missing_source_exits_2_with_one_line(tmp_path):
    env = {"ADVGUI_HOME": str(tmp_path), "PATH": "", "ADVGUI_DATA": str(tmp_path / "none")}
    proc = subprocess.run(
        [sys.executable, "-m", "advgui", "data", "fetch", "--no-download"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "MNIST not found" in lines[0] and "Traceback" not in proc.stderr


def test_bad_arguments_exit_2(capsys):
    import pytest

    with pytest.raises(SystemExit) as info:
        main(["data", "import"])
    assert info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_help_for_each_command():
    for args in (["--help"], ["data", "--help"], ["data", "fetch", "--help"], ["predict", "-h"]):
        proc = subprocess.run([sys.executable, "-m", "advgui", *args], capture_output=True)
        assert proc.returncode == 0 and b"usage" in proc.stdout
