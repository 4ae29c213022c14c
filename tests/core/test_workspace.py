"""Each dataset keeps its own models, results and work (core/workspace.py, the stores)."""

from __future__ import annotations

import pytest

from advgui.core import data, paths

FASHION = data.FASHION_MNIST


def test_stores_are_kept_apart_per_dataset(isolated_home):
    # MNIST keeps the folders it always had; Fashion-MNIST's work lives beside them.
    assert paths.store_dir() == paths.store_dir("mnist") == isolated_home / "data" / "models"
    assert paths.results_dir("mnist") == isolated_home / "data" / "results"
    assert paths.store_dir("fashion-mnist") == isolated_home / "data" / "fashion-mnist" / "models"
    assert paths.results_dir("fashion-mnist") == (
        isolated_home / "data" / "fashion-mnist" / "results"
    )
    with pytest.raises(ValueError):
        paths.store_dir("../elsewhere")


def test_workspace_keeps_each_datasets_work_and_stores_apart(
    isolated_home, fashion_cnn, trained_cnn
):
    """The window's datasets without Qt: shelves, the stores that follow the active one, the
    refusal while work runs and the one-line reason a model of the other dataset is refused."""
    from advgui.core import workspace
    from advgui.core.results import ResultStore
    from advgui.core.store import ModelStore

    ws = workspace.Workspace()
    store, results = ModelStore(), ResultStore()
    assert ws.spec is data.MNIST and store.root == isolated_home / "data" / "models"
    ws.active.models.append(trained_cnn)
    fashion_shelf = ws.switch("fashion-mnist")
    assert paths.active_dataset() == "fashion-mnist" and fashion_shelf.models == []
    assert store.root == isolated_home / "data" / "fashion-mnist" / "models"
    assert results.root == isolated_home / "data" / "fashion-mnist" / "results"
    assert ModelStore(isolated_home / "elsewhere").root == isolated_home / "elsewhere"
    ws.switch("mnist")
    assert ws.active.models == [trained_cnn] and store.root == isolated_home / "data" / "models"

    assert workspace.switch_refusal(FASHION, []) is None
    refusal = workspace.switch_refusal(FASHION, ["a training", "an attack"])
    assert refusal.startswith("A training and an attack are running: stop them before switching")
    assert workspace.model_problem(trained_cnn, data.MNIST) is None
    problem = workspace.model_problem(trained_cnn, FASHION)
    assert "trained on MNIST, not Fashion-MNIST: refused" in problem
    assert problem.endswith("choose MNIST in the Dataset menu") and "--dataset" not in problem
    assert "trained on Fashion-MNIST" in workspace.model_problem(fashion_cnn, "mnist")
