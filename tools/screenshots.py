"""Retake the README's screenshots from the real window: tools/screenshots.sh runs this under Xvfb.

It drives the app as a student would, at 1280x800: a training run, a targeted attack (a 4 the
network should call 2), a defense comparison, and a defended training caught mid-run; after
each it saves the window as Qt draws it on the X server. Models and results go to a throwaway
ADVGUI_HOME, so the user's own are never touched.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "resources"), help="folder for the PNGs")
    parser.add_argument("--size", default="1280x800", help="window size, WIDTHxHEIGHT")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the training run")
    args = parser.parse_args()
    os.environ.setdefault("ADVGUI_HOME", tempfile.mkdtemp(prefix="advgui-shots-"))
    width, height = (int(v) for v in args.size.split("x"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv)
    from advgui.qt.main_window import MainWindow

    win = MainWindow(data_path=os.environ.get("ADVGUI_DATA"))
    win.resize(width, height)
    win.show()

    def wait_until(cond, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not cond():
            app.processEvents()
            if time.monotonic() > end:
                raise SystemExit(f"screenshots: timed out waiting for {what}")
            time.sleep(0.02)

    def settle(seconds: float = 1.0) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.02)

    def shot(name: str) -> None:
        settle()
        path = out / name
        if not win.grab().save(str(path)):
            raise SystemExit(f"screenshots: could not write {path}")
        print(f"wrote {path}", flush=True)

    wait_until(lambda: win.state.mnist is not None, 120, "the dataset")

    # Training: the default CNN for a few epochs.
    win.tabs.setCurrentIndex(0)
    tab = win.training_tab
    tab.arch_combo.setCurrentIndex(tab.arch_combo.findData("cnn"))
    tab.epochs_spin.setValue(args.epochs)
    settle(0.5)
    n_models = len(win.state.models)
    wait_until(lambda: tab.start_button.isEnabled(), 120, "TensorFlow")
    tab.start()
    wait_until(lambda: len(win.state.models) > n_models and tab.start_button.isEnabled(),
               1800, "the training run")  # fmt: skip
    wait_until(lambda: tab.confusion.matrix is not None, 120, "the confusion matrix")
    shot("screenshot.png")

    # Attack: the deck's targeted attack, a 4 towards 2.
    win.tabs.setCurrentIndex(1)
    at = win.attack_tab
    at.gallery.filter.setCurrentIndex(at.gallery.filter.findData(4))
    settle(0.5)
    at.gallery.select_index(int(at.gallery.visible_indices()[0]))
    at.method_combo.setCurrentText("targeted")
    at.goal_combo.setCurrentIndex(at.goal_combo.findData(2))
    job = at.run_attack()
    if job is None:
        raise SystemExit(f"screenshots: the attack did not start: {at.status.text()}")
    wait_until(lambda: not job.is_running() and job.outcome is not None, 600, "the attack")
    shot("screenshot-attack.png")

    # Defenses: the comparison with its defaults, on 500 images.
    win.tabs.setCurrentIndex(2)
    dt = win.defense_tab
    dt.pages.setCurrentIndex(0)
    dt.setup.n_spin.setValue(500)
    dt.run_button.click()
    if dt.job is None:
        raise SystemExit(f"screenshots: the comparison did not start: {dt.status.text()}")
    wait_until(lambda: not dt.job.is_running() and dt.job.outcome is not None, 1800,
               "the comparison")  # fmt: skip
    shot("screenshot-defenses.png")

    # Defended training, mid-run: after its second held-out check.
    p = dt.train_panel
    dt.pages.setCurrentWidget(p)
    p.method_combo.setCurrentText("fast-at")
    p.arch_combo.setCurrentText("cnn-s2")
    p.epochs_spin.setValue(6)
    p.train_button.click()
    wait_until(lambda: len(p.history) >= 2, 1800, "two epochs of defended training")
    shot("screenshot-defended-training.png")
    p.stop_button.click()
    wait_until(lambda: p.job is None or not p.job.is_running(), 300, "the stop")
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
