"""The attacks' gradient path (core/attacks/engine.py): same logits and input gradients as the
Keras model, a rewrite only where it is exact, and the model itself for anything else."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from advgui.core import tuning
from advgui.core.attacks.engine import fast_logits, kernel
from advgui.core.models import Classifier
from advgui.core.tfimport import keras, tf


def _grads(fn, x, w):
    t = tf()
    x = t.constant(x)
    with t.GradientTape() as tape:
        tape.watch(x)
        z = fn(x)
        s = t.reduce_sum(z * w)
    return z.numpy(), tape.gradient(s, x).numpy()


def _check_same(fn, model, x):
    w = np.random.default_rng(1).standard_normal((len(x), 10)).astype(np.float32)
    z_ref, g_ref = _grads(lambda v: model(v, training=False), x, w)
    z, g = _grads(fn, x, w)
    np.testing.assert_allclose(z, z_ref, atol=1e-4 * (1 + np.abs(z_ref).max()))
    np.testing.assert_allclose(g, g_ref, atol=1e-4 * (1 + np.abs(g_ref).max()))
    assert np.abs(g_ref).max() > 0  # a real gradient, not zeros on both sides


def _fresh(model):
    """A rebuilt copy with the same weights, so that the cache on ``model`` is not reused."""
    copy = keras().models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def test_trained_cnn_gets_the_rewrite_and_the_same_numbers(trained_cnn, mnist):
    with tuning.overridden(conv_rewrite=True):  # the rewrite itself, whatever this CPU chose
        fn = fast_logits(_fresh(trained_cnn.logits_model))
    assert fn.rewritten == ["conv_0", "conv_1"]
    _check_same(fn, trained_cnn.logits_model, mnist.x_test[:16])


def test_valid_padding_dropout_and_softmax_head():
    k = keras()
    k.utils.set_random_seed(3)
    inputs = k.Input((28, 28, 1))
    h = k.layers.Conv2D(8, 3, padding="valid", activation="relu")(inputs)
    h = k.layers.Conv2D(4, 5, padding="same", activation="tanh")(h)
    h = k.layers.Dropout(0.5)(h)
    h = k.layers.Flatten()(h)
    outputs = k.layers.Dense(10, activation="softmax")(h)
    clf = Classifier(k.Model(inputs, outputs))  # softmax head: attacks see the logits view
    with tuning.overridden(conv_rewrite=True):
        fn = fast_logits(clf.logits_model)
    assert len(fn.rewritten) == 2
    x = np.random.default_rng(0).uniform(0, 1, (5, 28, 28, 1)).astype(np.float32)
    _check_same(fn, clf.logits_model, x)


@pytest.mark.parametrize(
    ("kernel_size", "stride", "padding", "size"),
    [(4, 2, "same", 28), (4, 2, "valid", 28), (6, 3, "same", 28), (4, 2, "same", 27),
     (2, 2, "valid", 28), (4, 2, "valid", 27)],
)  # fmt: skip
def test_strided_image_conv_as_space_to_depth(mnist, kernel_size, stride, padding, size):
    """The defended CNNs' first layer (4x4, stride 2, one channel) through space-to-depth:
    the same logits and input gradient for every padding and odd sizes (27: after a 2x2
    valid conv, where SAME pads unevenly and VALID leaves a row unread); a strided conv on
    many channels stays as it is."""
    k = keras()
    k.utils.set_random_seed(5)
    inputs = k.Input((28, 28, 1))
    h = inputs if size == 28 else k.layers.Conv2D(2, 2, padding="valid")(inputs)
    strided = k.layers.Conv2D(8, kernel_size, strides=stride, padding=padding, activation="relu")
    h = strided(h)
    h = k.layers.Conv2D(6, 4, strides=2, padding="same", activation="relu")(h)
    outputs = k.layers.Dense(10)(k.layers.Flatten()(h))
    model = k.Model(inputs, outputs)
    with tuning.overridden(strided_rewrite=True, conv_rewrite=True):
        fn = fast_logits(model)
    assert fn.rewritten[-1:] == [strided.name] and len(fn.rewritten) == 1 + (size == 27)
    _check_same(fn, model, mnist.x_test[:4])
    with tuning.overridden(strided_rewrite=False, conv_rewrite=False):
        assert fast_logits(_fresh(model)).rewritten == []


def test_defended_cnn_gets_the_strided_rewrite(mnist):
    from advgui.core.defenses.adversarial import build_defense_model

    model = build_defense_model("cnn-s2", seed=0)
    with tuning.overridden(strided_rewrite=True):
        fn = fast_logits(model)
    assert fn.rewritten == ["conv_0"]
    _check_same(fn, model, mnist.x_test[:8])


def test_branching_model_is_called_as_it_is(mnist):
    k = keras()
    k.utils.set_random_seed(4)
    inputs = k.Input((28, 28, 1))
    a = k.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    b = k.layers.Conv2D(4, 3, padding="same")(a)
    h = k.layers.Add()([a, b])  # a skip connection: not a chain
    outputs = k.layers.Dense(10)(k.layers.Flatten()(h))
    model = k.Model(inputs, outputs)
    fn = fast_logits(model)
    assert fn.rewritten == []
    _check_same(fn, model, mnist.x_test[:4])


def test_even_kernel_with_same_padding_is_left_alone(mnist):
    k = keras()
    k.utils.set_random_seed(5)
    model = k.Sequential(
        [k.Input((28, 28, 1)), k.layers.Conv2D(4, 4, padding="same"), k.layers.Flatten(),
         k.layers.Dense(10)]
    )  # fmt: skip
    fn = fast_logits(model)
    assert fn.rewritten == []
    _check_same(fn, model, mnist.x_test[:4])


@pytest.mark.parametrize("steps", [1, 7])
def test_kernel_in_a_loop_matches_the_inline_gradient(trained_cnn, mnist, steps):
    t = tf()
    fn = fast_logits(trained_cnn.logits_model)
    x0 = t.constant(mnist.x_test[:8])
    y = t.constant(mnist.y_test[:8].astype(np.int64))

    def grad(x):
        with t.GradientTape() as tape:
            tape.watch(x)
            loss = t.reduce_sum(
                t.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=fn(x))
            )
        return tape.gradient(loss, x)

    grad_kernel = kernel(grad)

    @t.function
    def loop(x):
        for _ in t.range(steps):
            x = t.clip_by_value(x + 0.01 * t.sign(grad_kernel(x)), 0.0, 1.0)
        return x

    x = x0
    for _ in range(steps):
        x = t.clip_by_value(x + 0.01 * t.sign(grad(x)), 0.0, 1.0)
    out = loop(x0).numpy()
    assert np.mean(out == x.numpy()) > 0.999
    assert np.abs(out - mnist.x_test[:8]).max() > 0.009  # it moved


def _same_path(a, b):
    diff = np.abs(a - b)
    return bool(np.mean(diff <= 2e-3) >= 0.95 and diff.max() <= 0.05)


def test_one_thread_runner_matches_and_follows_the_weights(trained_cnn, mnist):
    from advgui.core.attacks import make_attack
    from advgui.core.attacks.deck import _build_chunk
    from advgui.core.attacks.engine import OneThread, one_thread, weights_digest

    clf = Classifier(_fresh(trained_cnn.logits_model), {"name": "copy"})
    x = mnist.x_test[:1]
    atk = make_attack("targeted", lam=0.05, steps=60)
    args = (clf, x, x, np.array([2]), np.array([0.05]))
    with tuning.overridden(one_thread_max_batch=8):  # the runner itself, whatever was measured
        x_one, costs_one = atk.descend(*args, atk.params, report=lambda *a: None, cancel=None)
    key = ("deck", "ce", "adam")
    ((digest, runner),) = clf.cache.get(("one-thread", *key), dict).items()
    assert isinstance(runner, OneThread) and digest == weights_digest(clf.logits_model)
    # The same descent through the compiled function on the shared pool.
    chunk = _build_chunk(clf, "ce", "adam")
    zeros = np.zeros_like(x)
    out = chunk(x, x, np.eye(10, dtype=np.float32)[[2]], np.array([0.05], np.float32), 2.0,
                zeros, zeros, 0.0, 60, 0.01, 60.0)  # fmt: skip
    # Same arithmetic, other summation order: Adam's normalised steps let pixels whose gradient
    # is about zero wander apart, so the paths agree closely, not bit for bit.
    assert _same_path(x_one, out[0].numpy())
    np.testing.assert_allclose(costs_one[:, 0], out[4].numpy()[:, 0], rtol=2e-2)
    # Changed weights: the frozen copy is rebuilt, never reused stale.
    clf.logits_model.set_weights([w * 0.5 for w in clf.logits_model.get_weights()])
    with tuning.overridden(one_thread_max_batch=8):
        assert one_thread(clf, key, chunk, 1) is not runner
        x_new, _ = atk.descend(*args, atk.params, report=lambda *a: None, cancel=None)
    out = chunk(x, x, np.eye(10, dtype=np.float32)[[2]], np.array([0.05], np.float32), 2.0,
                zeros, zeros, 0.0, 60, 0.01, 60.0)  # fmt: skip
    assert _same_path(x_new, out[0].numpy())
    assert not _same_path(x_new, x_one)


def test_sessions_get_their_own_thread_pool():
    import os

    tf()  # configures the environment before TensorFlow loads
    # "1" unless this machine's cached measurement found one thread no faster (core/tuning.py)
    assert os.environ["TF_OVERRIDE_GLOBAL_THREADPOOL"] == tuning.pool_override_env() == "1"


def test_attacking_new_models_keeps_nothing_in_tensorflows_global_registries(trained_cnn, mnist):
    """tf.custom_gradient adds a never-removed gradient per trace (about 1 MB a model held for
    good); the rewritten gradient must leave TF's global gradient registry as it was."""
    from tensorflow.python.framework import ops

    from advgui.core.attacks import make_attack

    def fresh() -> Classifier:
        net = keras().models.clone_model(trained_cnn.model)
        net.set_weights(trained_cnn.model.get_weights())
        return Classifier(model=net)

    x, y = mnist.x_test[:4], mnist.y_test[:4]
    with tuning.overridden(conv_rewrite=True):
        make_attack("fgsm")(fresh(), x, labels=y)  # warm every code path once
        before = len(ops._gradient_registry.list())
        for _ in range(3):
            clf = fresh()  # a new model: every attack traces anew
            for name in ("fgsm", "pgd", "deepfool"):
                make_attack(name, **({"steps": 5} if name != "fgsm" else {}))(clf, x, labels=y)
            assert fast_logits(clf.logits_model).rewritten  # the rewritten gradient did run
    assert len(ops._gradient_registry.list()) == before


RUNS = [
    ("fgsm", {"eps": 0.2}, None),
    ("pgd", {"eps": 0.2, "steps": 3}, None),
    ("bim", {"eps": 0.1, "steps": 3}, None),
    ("targeted", {"steps": 5, "lam": 0.05}, 3),
    ("deepfool", {"steps": 3}, None),
    ("cw", {"steps": 3, "search_steps": 1}, 2),
    ("jsma", {}, 5),
]


@pytest.fixture
def traces(monkeypatch):
    from advgui.core.tfimport import tf

    tf()
    from tensorflow.python.eager.polymorphic_function import polymorphic_function as pf

    counts: collections.Counter[str] = collections.Counter()
    original = pf.Function.__call__

    def call(self, *args, **kwargs):
        before = self.experimental_get_tracing_count()
        try:
            return original(self, *args, **kwargs)
        finally:
            counts[self._name] += self.experimental_get_tracing_count() - before

    monkeypatch.setattr(pf.Function, "__call__", call)
    return counts


def test_fresh_attack_objects_do_not_retrace(trained_cnn, mnist, traces):
    from advgui.core.attacks import ATTACKS, make_attack

    runs = [r for r in RUNS if r[0] in ATTACKS]
    x, y = mnist.x_test[:2], mnist.y_test[:2]
    for name, params, goal in runs:  # warm-up: each compiles (at most) once
        make_attack(name, **params)(trained_cnn, x, labels=y, goals=goal)
    warm = sum(traces.values())
    for round_ in range(3):
        for name, params, goal in runs:
            k = 2 * round_ + 2
            xb, yb = mnist.x_test[k : k + 2], mnist.y_test[k : k + 2]
            make_attack(name, **params)(trained_cnn, xb, labels=yb, goals=goal)
    assert sum(traces.values()) == warm, dict(traces)


def test_compiled_cache_is_bounded_per_model_and_keyed_by_settings():
    from advgui.core.attacks.engine import MAX_COMPILED, compiled

    class Model:  # stands in for a Classifier: the cache lives on the object
        cache = None

    model, builds = Model(), []

    def get(eps):
        return compiled(model, ("attack", eps), lambda: builds.append(eps) or f"fn{eps}")

    assert get(0.1) == "fn0.1" and get(0.1) == "fn0.1" and builds == [0.1]  # same key: reused
    for i in range(MAX_COMPILED + 4):
        get(i)
    assert len(model.cache) == MAX_COMPILED
    n = len(builds)
    get(MAX_COMPILED + 3)  # most recent: kept
    assert len(builds) == n
    get(0)  # oldest: evicted, built again
    assert len(builds) == n + 1
