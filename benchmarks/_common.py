"""What several benchmarks share: the reference CNN they attack and ART's view of a model."""

from __future__ import annotations

from typing import Any

from advgui.core import models
from advgui.core.tfimport import keras


def bench_cnn(mnist: Any) -> models.Classifier:
    """The CNN the attack benchmarks attack when no --model is given: one epoch with
    ``model.fit`` on 20,000 images (about 98%), the same in every benchmark and run."""
    k = keras()
    net = models.build_model("cnn", seed=0)
    net.compile(
        optimizer=k.optimizers.Adam(2e-3),
        loss=k.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    net.fit(mnist.x_train[:20000], mnist.y_train[:20000], batch_size=128, epochs=1, verbose=0)
    return models.Classifier(net, {"name": "bench-cnn"})


def art_classifier(clf: models.Classifier) -> Any:
    """ART 1.20's estimator on the same logits (raises ImportError without ART)."""
    from art.estimators.classification import TensorFlowV2Classifier

    return TensorFlowV2Classifier(
        clf.logits_model,
        nb_classes=10,
        input_shape=(28, 28, 1),
        loss_object=keras().losses.SparseCategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0),
    )
