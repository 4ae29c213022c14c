"""Fast, repeatable input gradients of a classifier's logits for the attacks' compiled loops.

Two things measured on this CPU (``benchmarks/bench_strong_attacks.py``) make a Keras model slow
to differentiate inside an attack loop:

- Inside a ``tf.while_loop`` (every multi-step attack), oneDNN's graph pass must pair each
  MaxPoolGrad with its forward MaxPool, and it visits the loop's nodes in an order that changes
  from trace to trace: about two traces in three miss the pairing, fall back to Eigen's
  MaxPoolGrad, and run the whole step 1.4x slower. :func:`kernel` compiles the gradient as a
  function of its own (not inlined into the loop), which has no cycle, so the pairing always
  holds.
- The input gradient of a convolution with one input channel (the first layer of an MNIST CNN)
  is a backward-data convolution with one output channel, which oneDNN runs poorly. As a
  depthwise convolution summed over the channels it is the same sum, computed 1.45x faster per
  PGD step; other stride-1 convolutions take theirs as a forward convolution with the flipped
  kernel (faster on one image). :func:`fast_logits` rebuilds a chain of layers with these
  gradients and checks it against the model before using it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from advgui.core import tuning
from advgui.core.tfimport import keras, tf

#: Agreement the rebuilt chain must show with the model (relative to the largest value).
_TOLERANCE = 1e-4


def kernel(fn: Callable[..., Any]) -> Any:
    """Compile ``fn`` as a function that stays a separate call when a loop calls it."""
    return tf().function(
        fn, autograph=False, reduce_retracing=True, experimental_attributes={"_noinline": True}
    )


def _rewritable_conv(layer: Any) -> bool:
    """A plain stride-1 2-D convolution whose input gradient we can rewrite exactly."""
    if type(layer).__name__ != "Conv2D" or layer.compute_dtype != "float32":
        return False
    kh, kw = layer.kernel_size
    padding = layer.padding.lower()
    return (
        layer.data_format == "channels_last"
        and tuple(layer.strides) == (1, 1)
        and tuple(layer.dilation_rate) == (1, 1)
        and getattr(layer, "groups", 1) == 1
        and (padding == "valid" or (padding == "same" and kh % 2 == 1 and kw % 2 == 1))
    )


def _conv_fast_grad(layer: Any, h: Any) -> Any:
    """``layer(h)`` with the input gradient taken as a depthwise convolution (input only: the
    kernel gets no gradient, which attacks never ask for).

    The gradient is recorded on the tape directly, the way ``tf.custom_gradient`` does inside,
    but without its per-trace entry in TensorFlow's global gradient registry: that entry is
    never removed and kept about 1 MB alive per traced model (measured: 1.1 MB per
    load-attack-drop cycle).
    """
    from tensorflow.python.eager import record  # tf.custom_gradient's own tape recorder

    t = tf()
    kern = t.convert_to_tensor(layer.kernel)
    kh, kw = layer.kernel_size
    padding = layer.padding.upper()
    single = int(kern.shape[2]) == 1

    def grad(dy: Any) -> list[Any]:
        # d(conv)/dx = sum over output channels of dy correlated with the flipped kernel.
        flipped = t.transpose(t.reverse(kern, [0, 1]), [0, 1, 3, 2])  # (kh, kw, out, in)
        pad = "SAME"
        if padding == "VALID":
            dy = t.pad(dy, [[0, 0], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]])
            pad = "VALID"
        if single:
            dx = t.nn.depthwise_conv2d(dy, flipped, [1, 1, 1, 1], pad)
            return [t.reduce_sum(dx, axis=-1, keepdims=True)]
        return [t.nn.conv2d(dy, flipped, 1, pad)]

    h = t.convert_to_tensor(h)
    y = t.nn.conv2d(t.stop_gradient(h), kern, 1, padding)
    record.record_operation("AdvguiConvInputGrad", [y], [h], grad)
    if layer.use_bias:
        y = t.nn.bias_add(y, layer.bias)
    return layer.activation(y)


def _chain(model: Any) -> list[Any] | None:
    """The model's layers in call order, nested models expanded; None if it has none."""
    k = keras()
    out: list[Any] = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        if isinstance(layer, k.Model):
            inner = _chain(layer)
            if inner is None:
                return None
            out.extend(inner)
        else:
            out.append(layer)
    return out or None


def _agrees(fast: Callable[[Any], Any], model: Any) -> bool:
    """Same logits and input gradients as ``model`` on a probe batch (catches branches, skips
    and anything else a plain chain does not reproduce)."""
    t = tf()
    rng = np.random.default_rng(0)
    probe = rng.uniform(0.0, 1.0, (3, 28, 28, 1)).astype(np.float32)
    probe[0] = (probe[0] > 0.7).astype(np.float32)  # a sparse, MNIST-like image
    x = t.constant(probe)
    weights = t.constant(rng.standard_normal((3, 10)).astype(np.float32))
    with t.GradientTape(persistent=True) as tape:
        tape.watch(x)
        z_ref = t.cast(model(x, training=False), t.float32)
        z_fast = t.cast(fast(x), t.float32)
        s_ref = t.reduce_sum(z_ref * weights)
        s_fast = t.reduce_sum(z_fast * weights)
    g_ref, g_fast = tape.gradient(s_ref, x), tape.gradient(s_fast, x)
    if g_ref is None or g_fast is None or z_ref.shape != z_fast.shape:
        return False

    def close(a: Any, b: Any) -> bool:
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        limit = _TOLERANCE * (1.0 + np.max(np.abs(a)))
        return bool(np.all(np.isfinite(b)) and np.max(np.abs(a - b)) <= limit)

    return close(z_ref, z_fast) and close(g_ref, g_fast)


def fast_logits(model: Any) -> Callable[[Any], Any]:
    """``model``'s logits as a callable for attacks: the same numbers, a faster input gradient.

    Built once per model and kept on it. A model that is not a plain chain of layers, or whose
    rebuilt chain disagrees with it, is called as it is.
    """
    cached = model.__dict__.get("_advgui_fast_logits")
    if cached is not None:
        return cached

    def plain(x: Any) -> Any:
        return model(x, training=False)

    if not tf().executing_eagerly():  # asked while tracing: no eager check possible here
        return plain
    fn = plain
    layers = _chain(model)
    rewrite = tuning.settings().conv_rewrite  # measured per CPU (core/tuning.py)
    if rewrite and layers is not None and any(_rewritable_conv(layer) for layer in layers):

        @tf().autograph.experimental.do_not_convert
        def chained(x: Any) -> Any:
            h = x
            for layer in layers:
                if _rewritable_conv(layer):
                    h = _conv_fast_grad(layer, h)
                else:
                    h = layer(h, training=False)
            return h

        try:
            ok = _agrees(chained, model)
        except Exception:  # any layer Keras cannot call on its own: keep the model
            ok = False
        if ok:
            fn = chained
    #: Names of the layers whose input gradient was rewritten (empty: the model is called).
    fn.rewritten = (
        [ly.name for ly in layers or [] if _rewritable_conv(ly)] if fn is not plain else []
    )
    model.__dict__["_advgui_fast_logits"] = fn
    return fn


# --------------------------------------------------------------------------- one thread

#: Batches up to this size run through :class:`OneThread` (measured: one thread wins up to
#: about 8 images; from 16 the shared two-thread pool is faster).
ONE_THREAD_MAX_BATCH = 8


class OneThread:
    """A compiled function, frozen with the model's weights, run by a session whose thread pool
    has one thread.

    On a few images each op of a small CNN is so short that oneDNN's hand-offs between the two
    threads of the shared pool cost more than the work: 500 deck steps on one image took 0.33 s
    there and 0.13 s here, with the same arithmetic. A session owns its pool only when
    ``TF_OVERRIDE_GLOBAL_THREADPOOL`` was set before TensorFlow loaded (``tfimport`` does);
    otherwise this still runs, on the shared pool.
    """

    def __init__(self, fn: Any) -> None:
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2,
        )

        t = tf()
        frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
        graph = t.Graph()
        with graph.as_default():
            t.graph_util.import_graph_def(frozen.graph.as_graph_def(), name="")
        config = t.compat.v1.ConfigProto(
            intra_op_parallelism_threads=1, inter_op_parallelism_threads=1
        )
        self._session = t.compat.v1.Session(graph=graph, config=config)
        self._inputs = [x.name for x in frozen.inputs]
        self._outputs = [y.name for y in frozen.outputs]

    def __call__(self, *args: Any) -> list[np.ndarray]:
        return self._session.run(self._outputs, dict(zip(self._inputs, args, strict=True)))


def weights_digest(model: Any) -> str:
    """A digest of the model's current weights: a frozen copy must never attack stale ones."""
    digest = hashlib.blake2b(digest_size=16)
    for weight in model.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()


def one_thread(owner: Any, key: tuple, fn: Any, model: Any) -> OneThread | None:
    """The :class:`OneThread` runner of ``fn`` for ``model``'s current weights, kept on
    ``owner`` (one per key, rebuilt when the weights change); None if the graph cannot be
    frozen (the caller then runs ``fn`` itself)."""
    cache = owner.__dict__.setdefault("_advgui_one_thread", {})
    digest = weights_digest(model)
    entry = cache.get(key)
    if entry is not None and entry[0] == digest:
        return entry[1]
    # A replaced runner is not closed here: another thread may still be running it; its
    # session closes when the last reference goes.
    try:
        runner: OneThread | None = OneThread(fn)
    except Exception:  # e.g. a layer holding resources TF cannot freeze: keep the shared pool
        runner = None
    cache[key] = (digest, runner)
    return runner
