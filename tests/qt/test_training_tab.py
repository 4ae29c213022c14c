"""The Training tab offscreen: train on a small subset, live plots and progress, Stop, the
shared model list (store, Save as, Load), predictions and confusion matrix, clean shutdown."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
from PySide6.QtCore import Qt
from qt_helpers import (
    MARK,
    _check_bug_report,
    _no_partial_files,
    _type,
    _wait,
)

from advgui.core import models
from advgui.core.store import ModelStore

pytest.importorskip("pytestqt")


pytestmark = pytest.mark.gui


@pytest.fixture
def tab(training_tab):
    return training_tab


def _small_run(tab, *, arch="mlp", epochs=1, n_train=3000, n_val=500, batch=64):
    tab.arch_combo.setCurrentIndex(tab.arch_combo.findData(arch))
    tab.epochs_spin.setValue(epochs)
    tab.n_train_spin.setValue(n_train)
    tab.n_val_spin.setValue(n_val)
    tab.batch_spin.setValue(batch)


def test_start_see_progress_stop_and_model_kept(qtbot, tab, state):
    _small_run(tab, arch="mlp", epochs=20, n_train=20000, n_val=1000, batch=32)
    assert tab.start_button.isEnabled() and not tab.stop_button.isEnabled()
    qtbot.mouseClick(tab.start_button, qtbot_button())
    assert not tab.start_button.isEnabled() and tab.stop_button.isEnabled()
    assert not tab.form_box.isEnabled()
    # The plot receives points and the progress moves while training runs.
    qtbot.waitUntil(lambda: tab.plots.point_count("loss") >= 3, timeout=30000)
    first = tab.progress_bar.value()
    qtbot.waitUntil(lambda: tab.progress_bar.value() > first, timeout=10000)
    assert "images/s" in tab.speed_label.text() and "ETA" in tab.speed_label.text()
    assert "loss" in tab.metrics_label.text()
    xs, ys = tab.plots.series["loss"].x, tab.plots.series["loss"].y
    assert xs == sorted(xs) and all(0 < y < 3 for y in ys)
    # Stop: the controls come back and the (partly trained) model appears in the list.
    pressed = time.monotonic()
    qtbot.mouseClick(tab.stop_button, qtbot_button())
    assert not tab.stop_button.isEnabled()
    qtbot.waitUntil(lambda: tab.start_button.isEnabled(), timeout=15000)
    stopped_after = time.monotonic() - pressed
    assert tab.form_box.isEnabled() and not tab.stop_button.isEnabled()
    assert len(state.models) == 1
    clf = state.current_model
    assert clf.meta["cancelled"] is True and clf.meta["epochs_completed"] < 20
    assert tab.model_list.list.count() == 1
    assert "stopped" in tab.model_list.list.item(0).text()
    assert "Stopped" in tab.phase_label.text()
    # The bar stays where Stop caught it and says so; no stale ETA (issue 17.8).
    assert tab.progress_bar.format().startswith("stopped at")
    assert tab.progress_bar.value() < 1000 and "ETA" not in tab.speed_label.text()
    assert tab.progress_bar.text() == f"stopped at {tab.progress_bar.value() // 10}%"
    # It is in the store already, and the grid and confusion matrix show it.
    stored = ModelStore().entries()
    assert [e.meta["name"] for e in stored] == [clf.name]
    assert tab.confusion.matrix is not None and tab.confusion.matrix.sum() == 10000
    # Stopping took effect long before the 20 epochs would have ended.
    assert stopped_after < 15


def qtbot_button():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def test_full_run_shows_predictions_and_confusion(qtbot, tab, state, mnist):
    _small_run(tab, arch="mlp", epochs=1, n_train=4000, n_val=500)
    qtbot.wait(10)
    size, plots_size = tab.size(), tab.plots.size()
    with qtbot.waitSignal(state.modelsChanged, timeout=60000):
        tab.start()
    qtbot.waitUntil(lambda: tab.start_button.isEnabled(), timeout=10000)
    qtbot.wait(10)
    # Showing the results re-lays out nothing: the window keeps its width (the grid once
    # pushed 1200 px to 1368 px) and the plots their size (a re-layout stalled the GUI).
    assert tab.size() == size and tab.plots.size() == plots_size
    clf = state.current_model
    acc = clf.meta["test_accuracy"]
    assert acc > 0.85 and not clf.meta["cancelled"]
    assert f"{100 * acc:.2f}%" in tab.phase_label.text()
    # Which model the results show is said, and is this run (issue 17.7).
    assert tab.showing_label.text().startswith(f"Showing the run just done: {clf.name} (MLP")
    assert clf.name in tab.phase_label.text() and "last run" in tab.phase_label.text()
    cm = tab.confusion.matrix
    assert cm.sum() == 10000 and np.trace(cm) == round(acc * 10000)
    grid = tab.grid
    assert len(grid.correct_grid.captions) == grid.per_page
    for cap in grid.correct_grid.captions:
        pred, actual = cap.split("/")
        assert pred == actual
    assert len(grid.wrong_idx) == 10000 - np.trace(cm)
    for cap in grid.wrong_grid.captions:
        pred, actual = cap.split("/")
        assert pred != actual
    # Paging through the wrong ones.
    if grid.pages() > 1:
        qtbot.mouseClick(grid.next_button, qtbot_button())
        assert grid.page == 1 and "page 2 of" in grid.wrong_label.text()
    # Validation points reached the plot (2 passes per epoch in the GUI).
    assert tab.plots.point_count("val_accuracy") == 2
    assert tab.plots.point_count("loss") > 2  # live points, kept after training
    # Selecting another model shows its per-epoch history; coming back shows this one's.
    other = models.Classifier(
        model=clf.model,
        meta={**clf.meta, "name": "other-model",
              "history": {"epoch": [1.0, 2.0], "loss": [0.5, 0.3]}},
    )  # fmt: skip
    state.add_model(other)
    assert tab.plots.series["loss"].y == [0.5, 0.3]
    assert tab.showing_label.text().startswith("Showing the model selected in the list: other")
    state.set_current_model(clf)
    assert tab.plots.series["loss"].y == clf.meta["history"]["loss"]
    assert tab.showing_label.text().startswith("Showing the run just done")


def test_refuses_to_start_without_dataset(qtbot):
    from advgui.qt.state import AppState
    from advgui.qt.training_tab import TrainingTab

    widget = TrainingTab(AppState())
    qtbot.addWidget(widget)
    assert widget.start() is None
    assert "not loaded" in widget.status_label.text()
    assert widget.start_button.isEnabled()


def test_bad_combination_names_the_field(qtbot, tab):
    tab.n_train_spin.setValue(58000)
    tab.n_val_spin.setValue(5000)
    assert tab.start() is None
    assert "must not exceed" in tab.status_label.text()
    assert "b00020" in tab.n_train_spin.styleSheet()


def test_arch_change_applies_its_defaults(tab):
    from advgui.core.training import DEFAULTS

    tab.arch_combo.setCurrentIndex(tab.arch_combo.findData("mlp"))
    assert tab.epochs_spin.value() == DEFAULTS["mlp"]["epochs"]
    assert tab.lr_spin.value() == pytest.approx(DEFAULTS["mlp"]["lr"])
    assert tab.config().arch == "mlp"


def test_stored_models_listed_on_restart_and_save_load(qtbot, state, mnist, tmp_path):
    from advgui.core import training
    from advgui.qt.training_tab import TrainingTab

    cfg = training.TrainConfig(arch="mlp", epochs=1, n_train=2000, n_val=0)
    trained = training.train(cfg, mnist).classifier
    ModelStore().add(trained)
    (ModelStore().root / "broken.keras").write_bytes(b"junk")
    tab = TrainingTab(state)
    qtbot.addWidget(tab)
    qtbot.waitUntil(lambda: len(state.models) == 1, timeout=30000)
    assert state.current_model.meta["name"] == trained.name
    assert "broken.keras" in tab.status_label.text()  # the damaged entry is named, skipped
    # Predictions for a loaded model are computed in the background and shown.
    qtbot.waitUntil(lambda: tab.confusion.matrix is not None, timeout=30000)
    assert np.trace(tab.confusion.matrix) == round(trained.meta["test_accuracy"] * 10000)
    # Save as, then Load: a second entry with identical predictions.
    out = tmp_path / "copy.keras"
    with qtbot.waitSignal(tab.model_list.save(state.current_model, out).finished, timeout=30000):
        pass
    assert out.is_file() and "saved" in tab.model_list.status.text()
    with qtbot.waitSignal(tab.model_list.load(out).finished, timeout=30000):
        pass
    assert len(state.models) == 2 and tab.model_list.list.count() == 2
    assert "[stored]" in tab.model_list.list.item(0).text()
    assert "[file]" in tab.model_list.list.item(1).text()  # a Save as copy is not the store's
    x = mnist.x_test[:200]
    assert np.array_equal(state.models[1].predict(x), state.models[0].predict(x))
    # A file that is not a model is reported under the list; nothing is lost.
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"nope")
    with qtbot.waitSignal(tab.model_list.load(bad).finished, timeout=30000):
        pass
    assert "not a Keras 3 .keras file" in tab.model_list.status.text()
    assert len(state.models) == 2
    # Remove (with its stored file).
    first = state.models[0]
    tab.model_list.remove(first, delete_stored=True)
    assert len(state.models) == 1 and ModelStore().entries() == []
    tab.shutdown()


def test_shutdown_mid_training_cancels_joins_and_keeps_model(qtbot, tab, state):
    from advgui.qt.workers import Job

    _small_run(tab, arch="mlp", epochs=20, n_train=20000, n_val=0, batch=32)
    job = tab.start()
    qtbot.waitUntil(lambda: tab.plots.point_count("loss") >= 1, timeout=30000)
    t0 = time.monotonic()
    tab.shutdown()
    assert not job.is_running() and time.monotonic() - t0 < 15
    assert job not in Job.live or not job.is_running()
    entries = ModelStore().entries()
    assert len(entries) == 1 and entries[0].meta["cancelled"] is True
    assert isinstance(models.read_meta(entries[0].path)["history"], dict)


def test_closing_the_window_mid_training_joins_and_keeps_the_model(qtbot, mnist_path):
    from advgui.qt.main_window import MainWindow
    from advgui.qt.workers import Job

    win = MainWindow(data_path=str(mnist_path), preload_tf=False)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.state.mnist is not None, timeout=20000)
    tab = win.training_tab
    _small_run(tab, arch="mlp", epochs=20, n_train=20000, n_val=0, batch=32)
    job = tab.start()
    qtbot.waitUntil(lambda: tab.plots.point_count("loss") >= 1, timeout=30000)
    win.close()
    assert not job.is_running() and not any(j.is_running() for j in Job.live)
    (entry,) = ModelStore().entries()
    assert entry.meta["cancelled"] is True and entry.meta["epochs_completed"] < 20


def test_live_plot_axes_stay_put_while_points_arrive(qtbot):
    from advgui.core.fit import BatchProgress
    from advgui.qt.widgets.training_plots import TrainingPlots

    plots = TrainingPlots()
    qtbot.addWidget(plots)
    plots.clear(epochs=3)
    box = plots.loss_plot.getViewBox()
    x_range = box.viewRange()[0]
    tops = []
    for i, loss in enumerate([2.3, 1.1, 0.6, 2.9, 0.3]):
        plots.add_update(
            BatchProgress(1, i + 1, epoch_progress=0.5 * (i + 1), loss=loss, accuracy=0.5)
        )
        assert box.viewRange()[0] == x_range  # x fixed to the whole run
        tops.append(box.viewRange()[1][1])
    assert x_range[0] <= 0.0 and x_range[1] >= 3.0
    assert tops == sorted(tops) and tops[-1] >= 2.9  # the loss axis grows, never shrinks
    assert len(set(tops)) == 2  # grew once for 2.3 and once for 2.9, not on every point
    plots.clear()  # no run length (a loaded model's history): auto-range again
    assert all(box.autoRangeEnabled())


def test_cached_grid_axes_repaint_when_the_range_changes(qtbot):
    """The grid's axes are blitted from a cache; a new range or size must still redraw them,
    pixel for pixel as an uncached plot does."""
    import pyqtgraph as pg
    from PySide6.QtGui import QImage

    from advgui.qt.widgets.plot_grid import show_grid

    def pixels(widget) -> np.ndarray:
        img = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
        return np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), -1).copy()

    cached, plain = pg.PlotWidget(background="w"), pg.PlotWidget(background="w")
    show_grid(cached)
    plain.showGrid(x=True, y=True, alpha=0.3)
    frames = []
    for plot in (cached, plain):
        qtbot.addWidget(plot)
        plot.resize(400, 300)
        plot.show()
        plot.plot([0, 1, 2], [0.5, 0.2, 0.1])
        plot.setXRange(0, 2, padding=0)
        plot.setYRange(0, 1, padding=0)
    frames.append((pixels(cached), pixels(plain)))
    for plot in (cached, plain):
        plot.setYRange(0, 7, padding=0)
    frames.append((pixels(cached), pixels(plain)))
    for plot in (cached, plain):
        plot.resize(500, 260)
    qtbot.wait(10)
    frames.append((pixels(cached), pixels(plain)))
    for got, want in frames:
        assert got.shape == want.shape and np.array_equal(got, want)
    assert not np.array_equal(frames[0][0], frames[1][0])  # the y axis did change


def test_defended_accuracy_range_holds_the_pgd_curve(qtbot):
    """Issue 17.1: the held-out PGD curve (far below the clean one) must be in view."""
    from advgui.core.fit import BatchProgress, EpochRecord
    from advgui.qt.widgets.training_plots import TrainingPlots

    plots = TrainingPlots(defended=True)
    qtbot.addWidget(plots)
    plots.clear()
    box = plots.acc_plot.getViewBox()
    for i in range(10):
        plots.add(BatchProgress(0, i, epoch_progress=i / 10, loss=0.6, accuracy=0.4))
    for epoch, clean, robust in [(1, 0.95, 0.02), (2, 0.97, 0.4), (3, 0.99, 0.85)]:
        record = EpochRecord(
            stage="fast-at", epoch=epoch, epoch_progress=epoch, loss=0.3, accuracy=0.9,
            clean_loss=None, clean_accuracy=clean, robust_accuracy=robust, lr=0.1,
            seconds=1.0, elapsed=1.0, images_per_second=1.0, complete=True,
        )  # fmt: skip
        plots.add(record)
        low, high = box.viewRange()[1]
        for curve in plots.acc_plot.getPlotItem().listDataItems():
            ys = curve.getData()[1]
            if ys is not None and len(ys):
                assert low <= min(ys) and max(ys) <= high
    assert low <= 0.02 and plots.point_count("robust_accuracy") == 3


def test_stored_models_are_listed_at_once_marked_loading(qtbot, mnist, trained_cnn):
    from advgui.core.models import Classifier
    from advgui.core.store import ModelStore
    from advgui.qt.state import AppState
    from advgui.qt.training_tab import TrainingTab

    store = ModelStore()
    for name in ("first", "second"):
        store.add(Classifier(trained_cnn.model, {**trained_cnn.meta, "name": name}))
    state = AppState()
    state.set_dataset(mnist)
    tab = TrainingTab(state)
    qtbot.addWidget(tab)
    job = tab.load_store()
    rows = tab.model_list.list
    texts = [rows.item(i).text() for i in range(rows.count())]
    assert len(texts) == 2 and all("[loading...]" in t for t in texts)  # before TF is ready
    assert {t.split()[0] for t in texts} == {"first", "second"}
    assert all(rows.item(i).flags() == Qt.ItemFlag.NoItemFlags for i in range(2))
    qtbot.waitUntil(lambda: not job.is_running(), timeout=60000)
    qtbot.waitUntil(lambda: len(state.models) == 2 and not state.pending, timeout=10000)
    texts = [rows.item(i).text() for i in range(rows.count())]
    assert len(texts) == 2 and not any("loading" in t for t in texts)
    tab.shutdown()  # the current model's prediction grid job, too


def test_stop_training_at_random_moments(training_tab, qtbot):
    from advgui.core.store import ModelStore

    tab = training_tab
    rng = random.Random(0)
    tab.arch_combo.setCurrentIndex(tab.arch_combo.findData("mlp"))
    tab.epochs_spin.setValue(2)
    tab.n_train_spin.setValue(4000)
    tab.n_val_spin.setValue(500)
    tab.batch_spin.setValue(32)
    kept = 0
    for _ in range(3):
        job = tab.start()
        assert job is not None and not tab.start_button.isEnabled()
        qtbot.wait(rng.randint(0, 2500))
        tab.stop()
        _wait(qtbot, job)
        assert job.outcome in ("returned", "cancelled")
        kept += job.outcome == "returned"
        assert tab.start_button.isEnabled() and tab.form_box.isEnabled()
        _no_partial_files(tab.store.root)
    warnings: list[str] = []
    entries = ModelStore().entries(warnings)
    assert not warnings and len(entries) == kept
    # Still usable: a run that is left alone finishes.
    tab.epochs_spin.setValue(1)
    tab.n_train_spin.setValue(1000)
    job = tab.start()
    _wait(qtbot, job)
    assert job.outcome == "returned" and "Done" in tab.phase_label.text()


def test_bug_in_training_worker(training_tab, qtbot, monkeypatch, log_file):
    from advgui.core import training

    tab = training_tab
    real = training.train

    def broken(*args, **kwargs):
        raise RuntimeError("injected training failure")

    monkeypatch.setattr(training, "train", broken)
    job = tab.start()
    _wait(qtbot, job)
    assert job.outcome == "errored"
    _check_bug_report(tab, log_file, "injected training failure")
    assert "Training failed" in tab.phase_label.text() and tab.start_button.isEnabled()
    # The app goes on: the next run works.
    monkeypatch.setattr(training, "train", real)
    tab.arch_combo.setCurrentIndex(tab.arch_combo.findData("mlp"))
    tab.epochs_spin.setValue(1)
    tab.n_train_spin.setValue(1000)
    tab.n_val_spin.setValue(0)
    job = tab.start()
    _wait(qtbot, job)
    assert job.outcome == "returned"


GARBAGE = ["nan", "inf", "-inf", "-5", "0", "1e99", "99999999999", "abc", "--1", ""]


def test_training_fields_refuse_typed_garbage(training_tab, qtbot):
    from advgui.core import training

    tab = training_tab
    for name in ("epochs", "batch_size", "lr", "n_train", "n_val", "seed"):
        spin = tab.fields[name]
        for text in GARBAGE:
            before = spin.value()
            _type(qtbot, spin, text)
            value = spin.value()
            lo, hi = training.RANGES[name]
            assert np.isfinite(value) and spin.minimum() <= value <= spin.maximum(), (name, text)
            assert lo <= value <= hi or (name == "lr" and value >= spin.minimum())
            if text in ("nan", "inf", "abc", ""):
                assert value == before, (name, text)  # nothing a number could be read from
    # Whatever was typed, the form still makes a valid configuration.
    tab.fields["n_val"].setValue(0)
    tab.fields["n_train"].setValue(1000)
    assert tab.config().n_train == 1000


def test_training_form_marks_and_explains_a_bad_combination(training_tab, qtbot, mnist):
    tab = training_tab
    tab.n_train_spin.setValue(60000)
    tab.n_val_spin.setValue(5000)
    assert tab.start() is None and tab.job is None
    assert "must not exceed" in tab.status_label.text()
    assert MARK in tab.n_train_spin.styleSheet() and MARK in tab.status_label.styleSheet()
    assert tab.n_val_spin.styleSheet() == ""
    # Correcting it clears the mark on the next Start (which is then cancelled at once).
    tab.n_train_spin.setValue(1000)
    tab.n_val_spin.setValue(0)
    tab.epochs_spin.setValue(1)
    job = tab.start()
    assert job is not None and tab.n_train_spin.styleSheet() == ""
    tab.stop()
    _wait(qtbot, job)


def test_training_without_dataset_explains(qtbot):
    from advgui.qt.state import AppState
    from advgui.qt.training_tab import TrainingTab

    tab = TrainingTab(AppState())
    qtbot.addWidget(tab)
    assert tab.start() is None and "MNIST is not loaded" in tab.status_label.text()


def test_plot_text_reads_against_white(qtbot):
    """Issue 17.11: titles, axes and legends of the live plots in dark text (pyqtgraph's
    default grey on white is 3:1, too faint for small text)."""
    import pyqtgraph as pg
    from PySide6.QtGui import QColor

    from advgui.qt.widgets.training_plots import TrainingPlots

    plots = TrainingPlots(defended=True)
    qtbot.addWidget(plots)

    def luminance(c: QColor) -> float:
        def lin(v: float) -> float:
            return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

        return 0.2126 * lin(c.redF()) + 0.7152 * lin(c.greenF()) + 0.0722 * lin(c.blueF())

    def contrast(c: QColor) -> float:  # against the white background (WCAG)
        return 1.05 / (luminance(c) + 0.05)

    for plot in (plots.loss_plot, plots.acc_plot):
        item = plot.getPlotItem()
        assert contrast(item.getAxis("left").textPen().color()) >= 4.5
        assert contrast(item.getAxis("bottom").textPen().color()) >= 4.5
        legend = item.legend
        assert legend is not None and legend.items
        for _, label in legend.items:
            color = pg.mkColor(label.opts.get("color") or pg.getConfigOption("foreground"))
            assert contrast(color) >= 4.5, label.text
