"""The comparison view inside the Attack tab: it follows the chosen image, batch and model."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

pytestmark = pytest.mark.gui


@pytest.fixture
def tab(qtbot, mnist, trained_cnn):
    from advgui.qt.attack_tab import AttackTab
    from advgui.qt.state import AppState

    state = AppState()
    widget = AttackTab(state)
    qtbot.addWidget(widget)
    widget.show()
    state.set_dataset(mnist)
    state.add_model(trained_cnn)
    yield widget
    widget.shutdown()


def test_compare_tab_attacks_the_selected_images(tab, qtbot, mnist, trained_cnn):
    tab.gallery.select_index(3)
    tab.batch_spin.setValue(4)
    assert tab.compare.x is None  # inputs are handed over only when the view is shown
    tab.results_tabs.setCurrentWidget(tab.compare)
    assert tab.compare.clf is trained_cnn
    x, _, idx = tab._batch()
    assert len(x) == 4 and idx[0] == 3
    np.testing.assert_array_equal(tab.compare.x, x)
    np.testing.assert_array_equal(tab.compare.labels, mnist.y_test[idx])

    params = {"fgsm": "eps=0.3", "pgd": "eps=0.3, step=0.05, steps=10"}
    tab.compare.set_methods(["fgsm", "pgd"], params)
    with qtbot.waitSignal(tab.compare.resultsReady, timeout=120000) as blocker:
        tab.compare.run()
    results = blocker.args[0]
    assert set(results) == {"fgsm", "pgd"}
    assert tab.compare.table.rowCount() == 2
    # PGD at the same budget is at least as strong as FGSM on the same images
    assert results["pgd"].success.sum() >= results["fgsm"].success.sum()

    tab.gallery.select_index(10)  # a new image replaces the inputs and clears old rows
    assert tab.compare.table.rowCount() == 0
    assert tab._batch()[2][0] == 10
    np.testing.assert_array_equal(tab.compare.x, tab._batch()[0])
