"""The sdist and wheel that `python -m build` makes hold what the app needs and run outside the
checkout; the version is written once (advgui/__init__.py) and every artefact agrees with it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import advgui
from advgui import resources

ROOT = Path(__file__).resolve().parents[2]
VERSION = advgui.__version__
#: The package data the app loads at run time (advgui/resources), as paths inside the package.
PACKAGE_DATA = [f"advgui/resources/{name}" for name in (resources.ICON, resources.ICON_64,
                resources.DESKTOP_ENTRY)]  # fmt: skip
#: What a clean clone has besides the sources (ignored outputs a developer may have lying around).
_NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "out", ".whl", ".gl", "*.egg-info", "__pycache__",
    ".pytest_cache", ".ruff_cache",
)  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """`python -m build` on a copy of the checkout (the build writes advgui.egg-info into its
    source): an sdist, then a wheel built from that sdist, each in an isolated environment that
    gets setuptools from the package index as `pip install` would."""
    tmp = tmp_path_factory.mktemp("build")
    src = tmp / "advgui-src"
    shutil.copytree(ROOT, src, ignore=_NOT_IN_A_CLONE)
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(tmp / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sdist,) = (tmp / "dist").glob("*.tar.gz")
    (wheel,) = (tmp / "dist").glob("*.whl")
    return {"sdist": sdist, "wheel": wheel, "tmp": tmp}


def test_sdist_holds_the_license_and_the_package_data(built):
    assert built["sdist"].name == f"advgui-{VERSION}.tar.gz"
    top = f"advgui-{VERSION}"
    with tarfile.open(built["sdist"]) as tar:
        names = set(tar.getnames())
        info = Parser().parsestr(tar.extractfile(f"{top}/PKG-INFO").read().decode())
        license_text = tar.extractfile(f"{top}/LICENSE").read()
    for name in ["LICENSE", "README.md", "pyproject.toml", *PACKAGE_DATA]:
        assert f"{top}/{name}" in names, name
    assert info["Version"] == VERSION
    assert info["License-Expression"] == "MIT" and info["License-File"] == "LICENSE"
    assert license_text == (ROOT / "LICENSE").read_bytes()
    assert b"MIT License" in license_text and b"advgui contributors" in license_text


def test_wheel_holds_the_package_data_and_the_version(built):
    assert built["wheel"].name == f"advgui-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(built["wheel"]) as whl:
        names = set(whl.namelist())
        meta = Parser().parsestr(whl.read(f"advgui-{VERSION}.dist-info/METADATA").decode())
        for name in PACKAGE_DATA:
            assert whl.read(name) == (ROOT / name).read_bytes(), name
    assert f"advgui-{VERSION}.dist-info/licenses/LICENSE" in names
    assert meta["Version"] == VERSION and meta["Name"] == "advgui"
    assert not [n for n in names if n.startswith(("tests/", "resources/", "benchmarks/"))]


#: Run by the fresh virtualenv's interpreter, from a folder outside the checkout.
_PROBE = """
import importlib.metadata as md, json, sys
from packaging.requirements import Requirement
import advgui
from advgui import resources
unmet = []
for line in md.requires("advgui") or []:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue  # an extra's requirement (test, bench, package)
    try:
        have = md.version(req.name)
    except md.PackageNotFoundError:
        unmet.append(f"{req} (not installed)")
        continue
    if not req.specifier.contains(have, prereleases=True):
        unmet.append(f"{req} (have {have})")
from PySide6.QtWidgets import QApplication
app = QApplication([])
from advgui.qt.main_window import window_icon
icon = window_icon()
json.dump({
    "file": advgui.__file__,
    "version": advgui.__version__,
    "dist_version": md.version("advgui"),
    "unmet": unmet,
    "icon": str(resources.resource(resources.ICON)),
    "icon_bytes": len(resources.read_bytes(resources.ICON)),
    "icon_sizes": [[s.width(), s.height()] for s in icon.availableSizes()],
    "desktop": resources.read_bytes(resources.DESKTOP_ENTRY).decode(),
}, sys.stdout)
"""


def test_installed_wheel_runs_selftest_outside_the_checkout(built, mnist_path, tmp_path):
    """Install the wheel into a fresh virtualenv and run the app from it.

    The virtualenv is made without --system-site-packages and gets the wheel with
    ``pip install --no-deps`` (so only the wheel's own files land in it). Its dependencies
    (TensorFlow, PySide6, ...: 2 GB and minutes from PyPI) come from this test environment's
    site-packages through a ``.pth`` line written *after* the install, appended to sys.path
    behind the venv's own folder: ``advgui`` is imported from the installed wheel (checked), and
    each of the wheel's declared requirements is checked to be met by what is importable. Runs
    from an empty folder without PYTHONPATH, so the checkout cannot stand in for the wheel.
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "-q", str(built["wheel"])],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "advgui-test-deps.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))

    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["QT_QPA_PLATFORM"] = "offscreen"

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)

    version = run(str(venv / "bin" / "advgui"), "--version")
    assert version.returncode == 0, version.stderr[-2000:]
    assert version.stdout.strip() == f"advgui {VERSION}"

    probe = run(str(python), "-c", _PROBE)
    assert probe.returncode == 0, probe.stderr[-3000:]
    found = json.loads(probe.stdout)
    assert Path(found["file"]).is_relative_to(site), found["file"]  # the wheel, not the checkout
    assert found["version"] == found["dist_version"] == VERSION
    assert found["unmet"] == []
    assert Path(found["icon"]).is_relative_to(site)
    assert found["icon_bytes"] == (ROOT / PACKAGE_DATA[0]).stat().st_size
    assert found["icon_sizes"] == [[256, 256]]
    assert "[Desktop Entry]" in found["desktop"] and "\nExec=advgui\n" in found["desktop"]

    out = tmp_path / "selftest"
    selftest = run(str(venv / "bin" / "advgui"), "--data", str(mnist_path), "selftest",
                   "--out", str(out))  # fmt: skip
    assert selftest.returncode == 0, selftest.stdout[-3000:] + selftest.stderr[-3000:]
    assert "selftest: PASSED" in selftest.stdout
    report = json.loads((out / "selftest.json").read_text())
    assert report["passed"] is True and report["version"] == VERSION
