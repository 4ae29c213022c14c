"""The trained fixture models are cached between runs, keyed by the code, the data and the
fixture's own source: a change to any of them trains anew."""

from __future__ import annotations

import conftest
import numpy as np


def test_fixture_models_are_trained_once_per_code_and_data(mnist, tmp_path, monkeypatch):
    from advgui.core import training

    monkeypatch.setattr(conftest, "MODEL_CACHE", str(tmp_path / "cache"))
    runs = []

    def train():
        runs.append(1)
        cfg = training.TrainConfig(arch="mlp", epochs=1, n_train=300, n_val=0, batch_size=100)
        return training.train(cfg, mnist).classifier

    first = conftest.cached_model("tiny", mnist, train)
    again = conftest.cached_model("tiny", mnist, train)
    assert len(runs) == 1 and again.name == "tiny"
    x = mnist.x_test[:50]
    np.testing.assert_allclose(again.logits(x), first.logits(x), atol=1e-5)
    monkeypatch.setattr(conftest, "_code_digest", lambda: "other code")
    conftest.cached_model("tiny", mnist, train)
    assert len(runs) == 2  # new code: trained again, and the stale file is gone
    assert len(list((tmp_path / "cache").glob("tiny-*.keras"))) == 1
    (next((tmp_path / "cache").glob("tiny-*.keras"))).write_bytes(b"damaged")
    conftest.cached_model("tiny", mnist, train)
    assert len(runs) == 3  # a damaged cache file is replaced, never trusted
