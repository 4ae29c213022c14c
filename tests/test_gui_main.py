"""The main window offscreen: tabs, menus, dataset loading in the background."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("pytestqt")


@pytest.fixture
def window(qtbot, mnist_path):
    from advgui.qt.main_window import MainWindow

    win = MainWindow(data_path=str(mnist_path), preload_tf=False)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()


def test_window_has_three_tabs_and_menus(window):
    names = [window.tabs.tabText(i) for i in range(window.tabs.count())]
    assert names == ["Training", "Attack", "Defenses"]
    menus = [a.text().replace("&", "") for a in window.menuBar().actions()]
    assert menus == ["File", "Dataset", "Help"]
    assert window.import_action.text().replace("&", "") == "Import dataset..."
    # The icon comes from the package data (advgui/resources), whatever the install.
    assert [(s.width(), s.height()) for s in window.windowIcon().availableSizes()] == [(256, 256)]


def test_dataset_loads_in_background(window, qtbot):
    with qtbot.waitSignal(window.state.datasetChanged, timeout=20000):
        pass
    assert window.state.mnist is not None and len(window.state.mnist.y_test) == 10000
    assert "60000 train" in window.data_label.text()


def test_bad_dataset_path_reports_and_keeps_running(qtbot, tmp_path):
    from advgui.qt.main_window import MainWindow

    win = MainWindow(data_path=str(tmp_path / "nope"), preload_tf=False)
    qtbot.addWidget(win)
    qtbot.waitUntil(lambda: "not found" in win.data_label.text(), timeout=10000)
    assert win.state.mnist is None
    win.close()


def test_tensorflow_not_imported_to_show_window(tmp_path):
    import subprocess

    code = (
        "import sys; from advgui.qt.app import run_app; import os;"
        "os.environ['ADVGUI_QUIT_AFTER_SHOW']='1';"
        "from PySide6.QtWidgets import QApplication; app=QApplication([]);"
        "from advgui.qt.main_window import MainWindow; w=MainWindow(preload_tf=False); w.show();"
        "print('tensorflow' in sys.modules); w.close()"
    )
    env = {"QT_QPA_PLATFORM": "offscreen", "ADVGUI_HOME": str(tmp_path), "PATH": ""}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"


def test_small_or_scaled_screen_keeps_every_control_reachable(window, qtbot):
    """Issue 17.12: 1920x1080 at 2x scaling leaves 960x540; the window stays that small and
    each tab scrolls to any control instead of reaching past the screen."""
    from PySide6.QtWidgets import QScrollArea

    window.resize(960, 540)
    qtbot.wait(50)
    assert window.width() <= 960 and window.height() <= 540
    for i in range(window.tabs.count()):
        window.tabs.setCurrentIndex(i)
        area = window.tabs.widget(i)
        assert isinstance(area, QScrollArea) and area.widgetResizable()
        qtbot.wait(20)
        tab = area.widget()
        # Too big for the window: the tab keeps its own size and the area scrolls to it.
        if tab.minimumSizeHint().width() > area.viewport().width():
            assert area.horizontalScrollBar().maximum() > 0
        if tab.minimumSizeHint().height() > area.viewport().height():
            assert area.verticalScrollBar().maximum() > 0
    stop = window.attack_tab.stop_button
    window.tabs.setCurrentIndex(1)
    window.tabs.widget(1).ensureWidgetVisible(stop)
    qtbot.wait(20)
    corner = stop.mapTo(window, stop.rect().bottomRight())
    assert window.rect().contains(corner)  # scrolled into reach
