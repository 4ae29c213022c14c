"""Time from process start to the main window being shown, and TensorFlow import time.

Target (issue 2): the window appears in under 1 s; TensorFlow (imported in the background
afterwards) is not needed for that. Reference in the same run: a bare QApplication + QMainWindow.

    .venv/bin/python benchmarks/bench_startup.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

import harness

BARE = (
    "from PySide6.QtWidgets import QApplication, QMainWindow; from PySide6.QtCore import QTimer;"
    "app=QApplication([]); w=QMainWindow(); w.show();"
    "QTimer.singleShot(0, lambda: (print('shown', flush=True), app.quit())); app.exec()"
)


def _time_until_shown(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "shown" in line:
            elapsed = time.perf_counter() - t0
            break
    else:
        raise RuntimeError(f"{cmd} never showed its window")
    proc.wait(timeout=120)
    return elapsed


def main() -> None:
    harness.print_machine(light=True)  # TensorFlow's import is timed below: not loaded here
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    with tempfile.TemporaryDirectory() as home:
        env.update(ADVGUI_HOME=home, ADVGUI_STARTUP_TIMING="1", ADVGUI_QUIT_AFTER_SHOW="1")
        app = [_time_until_shown([sys.executable, "-m", "advgui"], env) for _ in range(5)]
        bare = [_time_until_shown([sys.executable, "-c", BARE], env) for _ in range(5)]
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import tensorflow, keras"], env=env, check=True, capture_output=True
    )
    tf_s = time.perf_counter() - t0
    print(
        f"advgui window shown after   median {statistics.median(app):.3f} s (best {min(app):.3f})"
    )
    print(f"bare QMainWindow shown after median {statistics.median(bare):.3f} s")
    print(f"advgui / bare Qt: {statistics.median(app) / statistics.median(bare):.2f}x")
    print(f"python -c 'import tensorflow, keras': {tf_s:.2f} s (done in a background thread)")
    print(f"target < 1 s: {'met' if statistics.median(app) < 1.0 else 'MISSED'}")


if __name__ == "__main__":
    main()
