"""Packaging checks that run in seconds: the spec's logic, the trim lists, the selftest.

The frozen build itself (PyInstaller + .deb + smoke test in a clean Debian root) takes many
minutes and is run by ``make package`` (packaging/build.sh), not here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from advgui import resources
from advgui.cli import COMMAND_MODULES, main
from advgui.commands import selftest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"


def _load_trim():
    spec = importlib.util.spec_from_file_location("advgui_trim", PACKAGING / "trim.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


trim = _load_trim()


# --------------------------------------------------------------------------- the spec


def _site_file(module: str, name: str) -> str:
    return str(Path(importlib.util.find_spec(module).origin).parent / name)


#: Real ELF files with symbol tables: one of TensorFlow's (to be stripped), one not.
_TF_ELF = _site_file("tensorflow", "python/_pywrap_sanitizers.so")
_OTHER_ELF = str(next(Path(_site_file("PIL", "")).glob("_imagingmorph*.so")))


class _Recorder:
    """Stands in for one PyInstaller build class, recording how the spec called it."""

    calls: list

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        type(self).calls.append(self)


def _run_spec(monkeypatch, env: dict[str, str], workpath: Path):
    classes = {
        name: type(name, (_Recorder,), {"calls": []})
        for name in ("Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE")
    }

    def analysis_init(self, *args, **kwargs):
        _Recorder.__init__(self, *args, **kwargs)
        # What PyInstaller's hooks would collect, to see the spec's filter at work.
        self.datas = [
            ("PySide6/Qt/translations/qtbase_de.qm", "/x", "DATA"),
            ("advgui/resources/icons/advgui.png", "/x", "DATA"),
            ("tensorflow/include/tensorflow/core/framework/tensor.h", "/x", "DATA"),
            *[
                (f"mnist/{Path(src).name}", src, "DATA")
                for src, d in kwargs["datas"]
                if d == "mnist"
            ],
        ]
        self.binaries = [
            ("PySide6/Qt/plugins/platforms/libqxcb.so", "/x", "BINARY"),
            ("PySide6/Qt/plugins/platforms/libqoffscreen.so", "/x", "BINARY"),
            ("PySide6/Qt/plugins/platformthemes/libqgtk3.so", "/x", "BINARY"),
            ("tensorflow/libtensorflow_cc.so.2", "/x", "BINARY"),
            ("libcairo.so.2", "/x", "BINARY"),
            ("tensorflow/python/_pywrap_sanitizers.so", _TF_ELF, "EXTENSION"),
            ("numpy.libs/libscipy_openblas64_-ab12.so", _OTHER_ELF, "BINARY"),
        ]
        self.pure, self.scripts = [], []

    classes["Analysis"].__init__ = analysis_init
    for key in ("ADVGUI_BUNDLE_MNIST", "ADVGUI_NO_TRIM"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the spec prepends to sys.path
    source = (PACKAGING / "advgui.spec").read_text()
    namespace = {
        "SPECPATH": str(PACKAGING),
        "workpath": str(workpath),
        "__name__": "__main__",
        **classes,
    }
    exec(compile(source, "advgui.spec", "exec"), namespace)
    return {name: cls.calls for name, cls in classes.items()}


def test_spec_trims_and_bundles_mnist(monkeypatch, mnist_path, tmp_path):
    calls = _run_spec(monkeypatch, {"ADVGUI_BUNDLE_MNIST": str(mnist_path)}, tmp_path)
    (analysis,) = calls["Analysis"]
    kw = analysis.kwargs
    assert kw["excludes"] == list(trim.EXCLUDES)
    # Every command the CLI imports by name is frozen (static analysis cannot see them).
    for name in COMMAND_MODULES:
        assert f"advgui.commands.{name}" in kw["hiddenimports"]
    assert "advgui.qt.main_window" in kw["hiddenimports"]
    assert kw["pathex"] == [str(ROOT)]
    assert kw["module_collection_mode"] == {"advgui": "py+pyz"}  # sources for AutoGraph
    # The package data, where importlib.resources looks for it in the bundle (and nothing else).
    package_data = {
        (str(ROOT / "advgui" / "resources" / name), str(Path("advgui/resources", name).parent))
        for name in (resources.ICON, resources.ICON_64, resources.DESKTOP_ENTRY)
    }
    assert {entry for entry in kw["datas"] if entry[1] != "mnist"} == package_data
    bundled = [Path(src).name for src, dest in kw["datas"] if dest == "mnist"]
    assert sorted(name.removesuffix(".gz") for name in bundled) == sorted(
        (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    )
    kept = [d for d, *_ in analysis.datas + analysis.binaries]
    assert "PySide6/Qt/translations/qtbase_de.qm" not in kept
    assert "tensorflow/include/tensorflow/core/framework/tensor.h" not in kept
    assert "PySide6/Qt/plugins/platformthemes/libqgtk3.so" not in kept
    for needed in (
        "advgui/resources/icons/advgui.png",
        "PySide6/Qt/plugins/platforms/libqxcb.so",
        "PySide6/Qt/plugins/platforms/libqoffscreen.so",
        "tensorflow/libtensorflow_cc.so.2",
    ):
        assert needed in kept
    assert any(d.startswith("mnist/") for d in kept)
    (coll,) = calls["COLLECT"]
    assert coll.kwargs["name"] == "advgui"
    assert [e.kwargs["name"] for e in calls["EXE"]] == ["advgui"]  # on Linux: one program
    assert "libcairo.so.2" not in kept  # GTK stack, only for the dropped GTK theme plugin
    # TensorFlow's libraries are stripped into the work folder; auditwheel-patched ones are not
    # (stripping them breaks loading), and PyInstaller's own strip stays off.
    srcs = {dest: src for dest, src, _ in analysis.binaries}
    stripped = Path(srcs["tensorflow/python/_pywrap_sanitizers.so"])
    assert stripped == tmp_path / "stripped" / "tensorflow/python/_pywrap_sanitizers.so"
    assert stripped.read_bytes()[:4] == b"\x7fELF"
    assert stripped.stat().st_size < Path(_TF_ELF).stat().st_size
    sections = subprocess.run(["readelf", "-S", str(stripped)], capture_output=True, text=True)
    assert ".symtab" not in sections.stdout and ".dynsym" in sections.stdout
    assert srcs["numpy.libs/libscipy_openblas64_-ab12.so"] == _OTHER_ELF
    assert calls["EXE"][0].kwargs["strip"] is False
    assert not calls["BUNDLE"]


def test_spec_reference_build_keeps_everything(monkeypatch, tmp_path):
    calls = _run_spec(monkeypatch, {"ADVGUI_NO_TRIM": "1"}, tmp_path)
    (analysis,) = calls["Analysis"]
    assert analysis.kwargs["excludes"] == ["tkinter"]
    assert len(analysis.datas) == 3 and len(analysis.binaries) == 7  # nothing filtered
    assert (
        dict((d, s) for d, s, _ in analysis.binaries)["tensorflow/python/_pywrap_sanitizers.so"]
        == _TF_ELF
    )
    assert calls["EXE"][0].kwargs["strip"] is False
    assert not [dest for _, dest in analysis.kwargs["datas"] if dest == "mnist"]


def test_spec_refuses_an_incomplete_mnist_folder(monkeypatch, tmp_path, mnist_gz):
    (tmp_path / "train-images-idx3-ubyte.gz").symlink_to(mnist_gz / "train-images-idx3-ubyte.gz")
    with pytest.raises(SystemExit, match="lacks train-labels-idx1-ubyte"):
        _run_spec(monkeypatch, {"ADVGUI_BUNDLE_MNIST": str(tmp_path)}, tmp_path)


def test_trim_lists_match_their_rules():
    assert trim.is_excluded_module("PySide6.QtQuick")
    assert trim.is_excluded_module("tensorflow.compiler.mlir.stablehlo.stablehlo_extension")
    assert not trim.is_excluded_module("PySide6.QtQuickX")  # prefix of a name is not a match
    assert not trim.is_excluded_module("tensorflow.compiler.mlir.lite")
    assert trim.keep_file("mnist/train-images-idx3-ubyte.gz")
    assert not trim.keep_file("PySide6\\Qt\\translations\\qt_fr.qm")  # Windows separators


def test_nothing_the_app_imports_is_trimmed(tmp_path, mnist_path):
    """Run the whole selftest and open the window in a fresh interpreter; none of the modules it
    loaded may be on the exclude list (the frozen app would fail only on a lab machine)."""
    script = f"""
import json, sys
from advgui.commands.selftest import run_selftest
report = run_selftest({str(tmp_path / "out")!r}, data={str(mnist_path)!r})
from PySide6.QtWidgets import QApplication
app = QApplication([])
import pyqtgraph
from advgui.qt.main_window import MainWindow
w = MainWindow(preload_tf=False)
w.show()
app.processEvents()
w.close()
json.dump({{"passed": report["passed"], "modules": sorted(sys.modules)}},
          open({str(tmp_path / "mods.json")!r}, "w"))
"""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", ADVGUI_HOME=str(tmp_path / "home"))
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads((tmp_path / "mods.json").read_text())
    assert found["passed"], proc.stdout
    mods = found["modules"]
    assert "tensorflow" in mods and "PySide6.QtWidgets" in mods and "pyqtgraph" in mods
    assert [m for m in mods if trim.is_excluded_module(m)] == []


# --------------------------------------------------------------------------- selftest


def test_selftest_passes_on_real_mnist(tmp_path, mnist_path, capsys):
    out = tmp_path / "out"
    assert main(["--data", str(mnist_path), "selftest", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "selftest: PASSED" in text
    report = json.loads((out / "selftest.json").read_text())
    assert report["passed"] is True and report["frozen"] is False
    steps = report["steps"]
    assert steps["data"]["train"] == 60000 and steps["data"]["test"] == 10000
    assert steps["train"]["test_accuracy"] >= selftest.MIN_TRAIN_ACCURACY
    assert steps["attack"]["robust_accuracy"] <= 0.5 * steps["attack"]["clean_accuracy"]
    assert steps["attack"]["linf"] <= 0.2 + 1e-5
    pgd = steps["attack"]["pgd"]
    assert pgd["robust_accuracy"] <= 0.5 * pgd["clean_accuracy"] and pgd["linf"] <= 0.2 + 1e-5
    # The CPU-specific choices are shown, each with its reason (core/tuning.py).
    chosen = report["tuning"]
    names = ("conv_rewrite", "strided_rewrite", "one_thread_max_batch", "bf16_available",
             "pool_override")  # fmt: skip
    for name in names:
        assert f"tuning: {name}={int(chosen[name])}: " in text
    assert chosen["cpu"]["cores"] >= 1 and chosen["reasons"]["bf16"]
    with Image.open(out / "selftest_fgsm.png") as img:
        assert (img.mode, img.size) == ("L", (28, 28))
    with Image.open(out / "selftest_fgsm_x10.png") as img:
        assert img.size == (280, 280)
    assert (
        steps["export"]["png_pred"]
        == json.loads((out / "selftest_fgsm.json").read_text())["png_pred"]
    )


def test_selftest_reports_a_broken_step(tmp_path, mnist_path, monkeypatch, capsys):
    """A wrong outcome (here: an attack that changes nothing) fails with exit 1 and says why."""
    from advgui.core.attacks import base

    real = base.make_attack

    def no_op_attack(name, **params):
        attack = real(name, **params)
        attack.run = lambda clf, x, task: base.Outcome(x)
        return attack

    monkeypatch.setattr("advgui.core.attacks.make_attack", no_op_attack)
    out = tmp_path / "out"
    code = main(["--data", str(mnist_path), "selftest", "--out", str(out)])
    assert code == 1
    assert "selftest: FAILED: FGSM barely changed the accuracy" in capsys.readouterr().out
    report = json.loads((out / "selftest.json").read_text())
    assert report["passed"] is False and "attack" in report["steps"]
    assert "export" not in report["steps"]


def test_selftest_user_errors_exit_2(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "missing"), "selftest", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file or folder" in err[0]
    assert main(["selftest", "--eps", "5", "--out", str(tmp_path)]) == 2
    assert "eps must be between" in capsys.readouterr().err


def test_bundled_mnist_is_found_and_made_the_default(tmp_path, mnist_path, monkeypatch):
    bundle = tmp_path / "_internal"
    (bundle / "mnist").mkdir(parents=True)
    for f in mnist_path.glob("*-ubyte*"):  # raw (the cache) or .gz (../shared)
        (bundle / "mnist" / f.name).symlink_to(f)
    assert selftest.bundled_mnist_dir(tmp_path / "elsewhere") is None
    monkeypatch.setattr(sys, "_MEIPASS", str(bundle), raising=False)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert selftest.bundled_mnist_dir() == bundle / "mnist"
    monkeypatch.setenv("ADVGUI_DATA", "/user/choice")
    selftest.frozen_data_default()
    assert os.environ["ADVGUI_DATA"] == "/user/choice"  # the user's choice wins
    monkeypatch.delenv("ADVGUI_DATA")
    selftest.frozen_data_default()
    assert os.environ["ADVGUI_DATA"] == str(bundle / "mnist")
    mnist = selftest._step_data({"steps": {}}, None)
    assert len(mnist.y_test) == 10000 and np.bincount(mnist.y_test).min() > 800


def test_smoke_test_script_passes_on_the_checkout(tmp_path, mnist_path):
    """packaging/smoke_test.sh against the source tree (a stand-in for the frozen app)."""
    app = tmp_path / "app"
    app.mkdir()
    exe = app / "advgui"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} -m advgui "$@"\n')
    exe.chmod(0o755)
    import PySide6

    (app / "plugins").symlink_to(Path(PySide6.__file__).parent / "Qt" / "plugins")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [
            "bash",
            str(PACKAGING / "smoke_test.sh"),
            "--no-bundled-mnist",
            "--data",
            str(mnist_path),
            str(exe),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "SMOKE TEST PASSED" in proc.stdout
    assert "startup: window shown after" in proc.stdout
    assert "advgui selftest: error:" in proc.stdout  # the one-line user error


def test_version_is_written_once_and_the_deb_takes_it_and_the_package_data(tmp_path):
    """build_deb.sh, run for real (dpkg-deb) on a copy of what it reads with the version bumped
    there: the .deb's Version follows advgui/__init__.py, its desktop entry and icons are the
    package data, its copyright holds the LICENSE."""
    import advgui

    version = subprocess.run(
        ["bash", str(PACKAGING / "version.sh")], capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == advgui.__version__
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb: Debian/Ubuntu only")
    root = tmp_path / "root"
    for name in ("packaging/version.sh", "packaging/linux/build_deb.sh", "LICENSE"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "advgui" / "resources", root / "advgui" / "resources")
    init = (ROOT / "advgui" / "__init__.py").read_text()
    (root / "advgui" / "__init__.py").write_text(init.replace(advgui.__version__, "9.8.7"))
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copy(shutil.which("true"), bundle / "advgui")  # a stand-in for the frozen program
    env = dict(os.environ, ADVGUI_DEB_COMPRESS="none")
    proc = subprocess.run(
        ["bash", str(root / "packaging/linux/build_deb.sh"), str(bundle), str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    deb = tmp_path / "out" / f"advgui_9.8.7_{subprocess.getoutput('dpkg --print-architecture')}.deb"
    field = subprocess.run(["dpkg-deb", "--field", str(deb), "Version"], capture_output=True,
                           text=True, check=True)  # fmt: skip
    assert field.stdout.strip() == "9.8.7"
    tree = tmp_path / "tree"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
    installed = {
        "usr/share/applications/advgui.desktop": resources.DESKTOP_ENTRY,
        "usr/share/icons/hicolor/256x256/apps/advgui.png": resources.ICON,
        "usr/share/icons/hicolor/64x64/apps/advgui.png": resources.ICON_64,
    }
    for path, name in installed.items():
        assert (tree / path).read_bytes() == resources.read_bytes(name), path
    copyright_text = (tree / "usr/share/doc/advgui/copyright").read_text()
    assert "License: MIT\n MIT License\n .\n Copyright (c) advgui contributors" in copyright_text


def test_build_scripts_are_valid_bash():
    scripts = [
        PACKAGING / "build.sh",
        PACKAGING / "smoke_test.sh",
        PACKAGING / "linux" / "build_deb.sh",
        PACKAGING / "linux" / "test_deb_in_chroot.sh",
        PACKAGING / "macos" / "build.sh",
    ]
    for script in scripts:
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{script}: {proc.stderr}"
    help_text = subprocess.run(
        ["bash", str(PACKAGING / "build.sh"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--mnist DIR" in help_text
    bad = subprocess.run(
        ["bash", str(PACKAGING / "build.sh"), "--bogus"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown option --bogus" in bad.stderr
