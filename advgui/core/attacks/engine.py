"""The one engine every gradient attack runs on: differentiable logits, the compile cache,
the stepped loop, the shared pieces of the updates (logit margin, Adam, projections), and the
one-thread runner for a few images.

Attacks supply what differs (their start, one step, their finish) as compiled functions built
here; this module owns how they are compiled, cached, driven and sped up.

Two things measured on CPUs (``benchmarks/bench_strong_attacks.py``) make a Keras model slow
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

Every fallback from a fast path to the plain model is logged once, with its reason.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from advgui.core import tuning
from advgui.core.progress import (
    CancelToken,
    Partial,
    Progress,
    ProgressCallback,
    Throttle,
    check,
)
from advgui.core.tfimport import keras, tf

log = logging.getLogger(__name__)
_logged: set[str] = set()


def log_once(key: str, message: str, *args: Any) -> None:
    """Log a fallback or a choice once per process (not once per attack run)."""
    if key not in _logged:
        _logged.add(key)
        log.info(message, *args)


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


def _strided_image_conv(layer: Any) -> bool:
    """A strided 2-D convolution on few channels (the image itself) whose kernel the stride
    divides: computed as a stride-1 convolution of space-to-depth blocks."""
    if type(layer).__name__ != "Conv2D" or layer.compute_dtype != "float32":
        return False
    kh, kw = layer.kernel_size
    sh, sw = layer.strides
    return (
        layer.data_format == "channels_last"
        and sh == sw > 1
        and kh % sh == 0
        and kw % sw == 0
        and tuple(layer.dilation_rate) == (1, 1)
        and getattr(layer, "groups", 1) == 1
        and int(layer.kernel.shape[2]) <= 3
        and layer.padding.lower() in ("same", "valid")
    )


def space_to_depth_conv(h: Any, kernel: Any, stride: int, padding: str) -> Any:
    """``conv2d(h, kernel, stride, padding)`` as a stride-1 convolution over ``stride`` x
    ``stride`` blocks: output pixel i reads padded rows [s i, s i + k), i.e. blocks i .. i +
    k/s - 1, so the kernel splits into k/s x k/s taps of s*s*C channels. Same numbers (up to
    float rounding); the input gradient becomes a stride-1 backward convolution, which
    TensorFlow runs several times faster than the strided one onto one channel."""
    t = tf()
    s = stride
    kh, kw, c, o = (int(d) for d in kernel.shape)
    pads = []
    for size, k in ((int(h.shape[1]), kh), (int(h.shape[2]), kw)):
        if padding.upper() == "SAME":
            out = -(-size // s)
            before = max((out - 1) * s + k - size, 0) // 2
        else:
            out, before = (size - k) // s + 1, 0
        pads.append((before, (out - 1) * s + k - size - before))  # after: < 0 crops
    (top, bottom), (left, right) = pads
    h = t.pad(h, [[0, 0], [top, max(bottom, 0)], [left, max(right, 0)], [0, 0]])
    if bottom < 0 or right < 0:
        h = h[:, : int(h.shape[1]) + min(bottom, 0), : int(h.shape[2]) + min(right, 0), :]
    blocks = t.nn.space_to_depth(h, s)
    taps = t.reshape(kernel, [kh // s, s, kw // s, s, c, o])
    taps = t.reshape(t.transpose(taps, [0, 2, 1, 3, 4, 5]), [kh // s, kw // s, s * s * c, o])
    return t.nn.conv2d(blocks, taps, 1, "VALID")


def _strided_conv(layer: Any, h: Any) -> Any:
    """``layer(h)`` through :func:`space_to_depth_conv`, from the layer's live weights."""
    t = tf()
    y = space_to_depth_conv(
        t.convert_to_tensor(h), t.convert_to_tensor(layer.kernel), layer.strides[0], layer.padding
    )
    if layer.use_bias:
        y = t.nn.bias_add(y, layer.bias)
    return layer.activation(y)


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


def fast_logits(source: Any) -> Callable[[Any], Any]:
    """The logits of a classifier (or a Keras model) as a callable for attacks: the same
    numbers, a faster input gradient.

    Kept in a classifier's cache (built once per model). A model that is not a plain chain of
    layers, or whose rebuilt chain disagrees with it, is called as it is (logged once).
    """
    if hasattr(source, "logits_model"):
        model = source.logits_model
        return compiled(source, ("fast-logits", id(model)), lambda: _fast_logits(model))
    return _fast_logits(source)


def _fast_logits(model: Any) -> Callable[[Any], Any]:
    def plain(x: Any) -> Any:
        return model(x, training=False)

    plain.rewritten = []  # type: ignore[attr-defined]
    if not tf().executing_eagerly():  # asked while tracing: no eager check possible here
        return plain
    chosen = tuning.settings()  # each rewrite is on where it measured faster (core/tuning.py)
    if not chosen.conv_rewrite:
        log_once("conv-rewrite-off", "conv input-gradient rewrite off on this CPU (tuning)")
    if not chosen.strided_rewrite:
        log_once("strided-rewrite-off", "strided conv rewrite off on this CPU (tuning)")

    def how(layer: Any) -> Callable[[Any, Any], Any] | None:
        if chosen.conv_rewrite and _rewritable_conv(layer):
            return _conv_fast_grad
        if chosen.strided_rewrite and _strided_image_conv(layer):
            return _strided_conv
        return None

    layers = _chain(model)
    if layers is None or not any(how(layer) for layer in layers):
        return plain
    ways = [how(layer) for layer in layers]

    @tf().autograph.experimental.do_not_convert
    def chained(x: Any) -> Any:
        h = x
        for layer, way in zip(layers, ways, strict=True):
            h = way(layer, h) if way is not None else layer(h, training=False)
        return h

    try:
        ok = _agrees(chained, model)
        reason = "its rebuilt chain of layers disagrees with it"
    except Exception as err:  # any layer Keras cannot call on its own: keep the model
        ok, reason = False, f"a layer cannot be called on its own ({type(err).__name__}: {err})"
    if not ok:
        log_once(f"fast-logits-{model.name}", "model %s: plain input gradient (%s)", model.name,
                 reason)  # fmt: skip
        return plain
    #: Names of the layers whose input gradient was rewritten (empty: the model is called).
    chained.rewritten = [ly.name for ly, w in zip(layers, ways, strict=True) if w]  # type: ignore[attr-defined]
    return chained


# --------------------------------------------------------------------------- compile cache

#: Compiled functions kept per classifier; beyond this the least recently used is dropped (a
#: user sweeping settings must not grow memory without bound).
MAX_COMPILED = 32


class CompileCache:
    """Compiled functions of one classifier, least recently used dropped first.

    Held by the :class:`~advgui.core.models.Classifier` (so it dies with the model). Keys are
    an attack's name and the settings its graph bakes in; everything else (epsilon, step
    size, lambda...) is passed in as tensors, so a sweep reuses one trace.
    """

    def __init__(self, limit: int = MAX_COMPILED) -> None:
        self.limit = limit
        self._items: dict[Any, Any] = {}

    def get(self, key: Any, build: Callable[[], Any]) -> Any:
        if key in self._items:
            self._items[key] = self._items.pop(key)  # most recently used last
            return self._items[key]
        value = build()
        while len(self._items) >= self.limit:
            self._items.pop(next(iter(self._items)))
        self._items[key] = value
        return value

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Any) -> bool:
        return key in self._items


def compiled(clf: Any, key: tuple, build: Callable[[], Any]) -> Any:
    """``build()`` once per classifier and ``key``; tracing costs far more than a run."""
    cache = getattr(clf, "cache", None)
    if cache is None:
        cache = clf.cache = CompileCache()
    return cache.get(key, build)


def image_spec() -> Any:
    t = tf()
    return t.TensorSpec([None, 28, 28, 1], t.float32)


# --------------------------------------------------------------------------- update pieces


def margin(t: Any, z: Any, cls: Any, targeted: bool) -> Any:
    """Logit margin, positive exactly when the attack succeeded (the usual "strength").

    Targeted: z_goal - max_other; untargeted: max_other - z_label. ``t`` is the tensorflow
    module (passed in so that traced code never calls :func:`tf`).
    """
    return onehot_margin(t, z, t.one_hot(cls, z.shape[-1], dtype=z.dtype), targeted)


def onehot_margin(t: Any, z: Any, onehot: Any, targeted: bool) -> Any:
    """:func:`margin` for classes given one-hot (as the deck's and C&W's loops carry them)."""
    z_cls = t.reduce_sum(z * onehot, axis=1)
    z_other = t.reduce_max(z - 1e9 * onehot, axis=1)
    return z_cls - z_other if targeted else z_other - z_cls


def lp_norm(t: Any, v: Any, norm: str) -> Any:
    """Per-image norm of a batch (N, 28, 28, 1), shaped (N, 1, 1, 1) to broadcast."""
    if norm == "linf":
        return t.reduce_max(t.abs(v), axis=[1, 2, 3], keepdims=True)
    return t.sqrt(t.reduce_sum(v * v, axis=[1, 2, 3], keepdims=True))


def normalized(t: Any, v: Any, norm: str) -> Any:
    """``v`` scaled to norm 1 per image (a zero image stays zero)."""
    return v / (lp_norm(t, v, norm) + 1e-12)


def project(t: Any, x: Any, x0: Any, eps: Any, norm: str) -> Any:
    """``x`` moved into the ``eps`` ball around ``x0`` (L-inf: clipped; L2: scaled) and [0, 1].

    ``eps`` is a scalar or one value per image, shaped (N, 1, 1, 1).
    """
    delta = x - x0
    if norm == "linf":
        delta = t.clip_by_value(delta, -eps, eps)
    else:
        delta = delta * t.minimum(1.0, eps / (lp_norm(t, delta, norm) + 1e-12))
    return t.clip_by_value(x0 + delta, 0.0, 1.0)


def project_np(x: np.ndarray, x_adv: np.ndarray, eps: float, norm: str) -> np.ndarray:
    """:func:`project` in NumPy, for judging a minimum-norm attack's result at a budget."""
    delta = (np.asarray(x_adv, np.float32) - x).astype(np.float32)
    if norm == "linf":
        delta = np.clip(delta, -eps, eps)
    else:
        l2 = np.sqrt((delta.astype(np.float64) ** 2).reshape(len(delta), -1).sum(axis=1))
        scale = np.minimum(1.0, eps / np.maximum(l2, 1e-12)).astype(np.float32)
        delta = delta * scale.reshape(-1, *([1] * (delta.ndim - 1)))
    return np.clip(x + delta, 0.0, 1.0).astype(np.float32)


def stateless_seed(t: Any, seed: Any, counter: Any, salt: int) -> Any:
    """A seed for TensorFlow's stateless random ops: the run's seed, the step, a salt per use.

    Draws then depend only on the seed and the step, not on how the loop was cut into chunks.
    """
    return t.stack([t.cast(seed, t.int64), t.cast(counter, t.int64) * 16 + salt])


ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8


def adam(t: Any, g: Any, m: Any, v: Any, count: Any) -> tuple[Any, Any, Any, Any]:
    """One Adam moment update (Kingma & Ba); returns (m, v, count, direction), the step being
    ``-lr * direction``. The bias corrections are folded into two scalars (section 2 of the
    paper): the same update with two fewer image-sized ops per step."""
    count = count + 1.0
    m = ADAM_B1 * m + (1.0 - ADAM_B1) * g
    v = ADAM_B2 * v + (1.0 - ADAM_B2) * t.square(g)
    c1 = 1.0 - t.pow(ADAM_B1, count)
    c2 = t.sqrt(1.0 - t.pow(ADAM_B2, count))
    return m, v, count, (c2 / c1) * m / (t.sqrt(v) + ADAM_EPS * c2)


# --------------------------------------------------------------------------- stepped loop

#: Seconds of compiled work between two cancel checks.
CHUNK_SECONDS = 0.15


def run_steps(
    step_fn: Callable[[Any, int], Any],
    state: Any,
    total: int,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    message: str = "",
    offset: int = 0,
    grand_total: int | None = None,
    info: Callable[[Any], dict[str, Any]] | None = None,
    stop: Callable[[Any, int], bool] | None = None,
    boundary: int = 0,
    chunk_seconds: float = CHUNK_SECONDS,
    first: int = 1,
    partial: Callable[[Any], Partial | None] | None = None,
) -> tuple[Any, int]:
    """Advance ``state`` by ``total`` steps through ``step_fn(state, k)`` (k steps per call).

    ``k`` adapts to the measured time per step so that the cancel token is checked (and
    progress reported) about every ``chunk_seconds``, however fast a step is: one Python call
    per step would waste time on small batches, one call for all steps would make Stop
    unresponsive. The first call (which may trace) runs ``first`` steps. ``stop(state, done)``
    may end the loop early; it is asked at multiples of ``boundary`` steps (chunks never
    cross one) or after every chunk when ``boundary`` is 0. Returns the state and the number
    of steps run. Progress reports ``offset + done`` of ``grand_total``; ``partial(state)``,
    asked after every chunk, is what a live view shows of it (sent with the progress).
    """
    throttle = Throttle(progress, interval=0.2)
    grand = grand_total if grand_total is not None else total
    done, k = 0, first
    while done < total:
        check(cancel)
        k = min(k, total - done)
        if boundary:
            k = min(k, boundary - done % boundary)
        t0 = time.perf_counter()
        state = step_fn(state, k)
        per_step = (time.perf_counter() - t0) / k
        done += k
        live = partial(state) if partial is not None else None
        throttle(
            Progress(offset + done, grand, message, info(state) if info else {}, partial=live),
            force=done == total,
        )
        k = max(1, min(1000, int(chunk_seconds / max(per_step, 1e-6))))
        if stop is not None and (not boundary or done % boundary == 0) and stop(state, done):
            break
    check(cancel)
    return state, done


# --------------------------------------------------------------------------- one thread

#: Batches up to this size run through :class:`OneThread` (measured: one thread wins up to
#: about 8 images; from 16 the shared two-thread pool is faster).
ONE_THREAD_MAX_BATCH = 8


def one_thread_enabled() -> bool:
    """The one setting behind the one-thread runner: on where it measured faster (a CPU and
    a few images), off when TensorFlow sees a GPU or ``ADVGUI_ONE_THREAD=0``."""
    import os

    if os.environ.get("ADVGUI_ONE_THREAD", "1").strip() == "0":
        log_once("one-thread-env", "one-thread runner off (ADVGUI_ONE_THREAD=0)")
        return False
    if tf().config.list_logical_devices("GPU"):
        log_once("one-thread-gpu", "one-thread runner off: TensorFlow uses a GPU")
        return False
    return True


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


def one_thread(clf: Any, key: tuple, fn: Any, batch: int) -> OneThread | None:
    """The :class:`OneThread` runner of ``fn`` for the classifier's current weights, kept in
    its cache (one per key, rebuilt when the weights change); None where it does not apply
    (a batch too big, a device or CPU where it measured slower, a graph that cannot be
    frozen): the caller then runs ``fn`` itself."""
    # Up to the batch where one thread measured faster on this CPU (core/tuning.py).
    if batch > min(ONE_THREAD_MAX_BATCH, tuning.settings().one_thread_max_batch):
        return None
    if not one_thread_enabled():
        return None
    model = clf.logits_model
    slot = compiled(clf, ("one-thread", *key), dict)  # digest -> runner, latest only
    digest = weights_digest(model)
    if digest in slot:
        return slot[digest]
    # A replaced runner is not closed here: another thread may still be running it; its
    # session closes when the last reference goes.
    try:
        runner: OneThread | None = OneThread(fn)
    except Exception as err:  # e.g. a layer holding resources TF cannot freeze
        log_once(f"one-thread-{model.name}", "model %s: shared thread pool (cannot freeze: %s)",
                 model.name, err)  # fmt: skip
        runner = None
    slot.clear()
    slot[digest] = runner
    return runner


#: Arithmetic of the gradient computation; the result is always judged in float32.
PRECISIONS = ("float32", "bfloat16")


def bfloat16_view(clf: Any) -> Any:
    """A bfloat16-compute copy of the classifier's logits model with its current weights
    (None if it cannot be cloned, e.g. a custom layer): the mixed-precision clone of
    :mod:`advgui.core.precision` under ``mixed_bfloat16``.

    On CPUs with AMX or AVX512-BF16 oneDNN runs bfloat16 convolutions several times faster;
    a gradient's sign barely changes.
    """
    from advgui.core.precision import mixed_view

    return mixed_view(clf, "mixed_bfloat16")


class GradView:
    """What an attack differentiates: the classifier's logits, or its bfloat16 copy's, with the
    fast input gradient of either (one cache entry per view)."""

    def __init__(self, clf: Any, precision: str = "float32") -> None:
        bf16 = precision == "bfloat16" and tuning.settings().bf16_available  # the CPU has it
        copy = bfloat16_view(clf) if bf16 else None
        self.precision = "bfloat16" if copy is not None else "float32"
        model = copy if copy is not None else clf.logits_model
        self.model = model
        self.logits = compiled(clf, ("fast-logits", id(model)), lambda: _fast_logits(model))
