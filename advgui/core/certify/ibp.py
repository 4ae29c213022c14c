"""Interval bound propagation (Gowal et al. 2019): verified L-inf robustness and its training.

An L-inf box around each image is pushed through the network as a centre and a radius (the
form of DeepMind's ``interval-bound-propagation``): an affine layer maps the centre by its
weights and the radius by their absolute values, a monotone one (ReLU, max pooling) maps the
box's two corners. The last Dense layer is not bounded on its own: its weights are folded into
the specification "true logit minus every other logit" (the elision trick), so the bound is
taken on the logit differences directly and is tighter than bounding the logits one by one.

An image is *verified* at eps when the lower bound of ``z_y - z_j`` is above 0 for every other
class ``j``: no input in the box (clipped to [0, 1]) changes the prediction. That makes the
verified accuracy a lower bound of any attack's robust accuracy on the same model.

Only chains of Dense, Conv2D, ReLU, Flatten, max or average pooling (and layers that are the
identity at inference: Dropout, InputLayer) are verifiable; anything else is refused with the
layer's name (:class:`NotVerifiable`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from advgui.core.errors import ParameterError
from advgui.core.progress import CancelToken, Progress, ProgressCallback, check
from advgui.core.tfimport import keras, tf

#: Layers that are the identity at inference (and in IBP training: their noise is left out).
_IDENTITY = {"InputLayer", "Dropout", "SpatialDropout2D", "Identity", "ActivityRegularization"}
#: Agreement of the rebuilt chain's centre with the model's logits (relative to the largest).
_TOLERANCE = 1e-4


class NotVerifiable(ParameterError):
    """The model has a layer interval bounds are not implemented for (or is not a chain)."""


def _activation(layer: Any) -> str:
    act = getattr(layer, "activation", None)
    name = getattr(act, "__name__", None) or type(act).__name__
    if name in ("linear", "relu"):
        return name
    raise NotVerifiable(
        f"not verifiable: layer {layer.name} ({type(layer).__name__}) has activation {name}; "
        "IBP supports relu and linear",
        field="certify",
    )


def _flatten_layers(model: Any) -> list[Any]:
    k = keras()
    out: list[Any] = []
    for layer in model.layers:
        if isinstance(layer, k.Model):
            out.extend(_flatten_layers(layer))
        else:
            out.append(layer)
    return out


@dataclass(frozen=True)
class Step:
    """One layer as IBP sees it: ``kind`` in dense/conv/relu/flatten/maxpool/avgpool."""

    kind: str
    layer: Any
    relu_after: bool = False


def chain(model: Any) -> list[Step]:
    """The model as IBP steps, or :class:`NotVerifiable` naming the first layer that stops it.

    The last step is the logits' Dense layer (linear), which the bounds fold into the margin.
    """
    steps: list[Step] = []
    for layer in _flatten_layers(model):
        kind = type(layer).__name__
        if kind in _IDENTITY:
            continue
        if kind == "Dense":
            steps.append(Step("dense", layer, _activation(layer) == "relu"))
        elif kind == "Conv2D":
            if tuple(getattr(layer, "dilation_rate", (1, 1))) != (1, 1) or layer.groups != 1:
                raise NotVerifiable(
                    f"not verifiable: layer {layer.name} (Conv2D with dilation or groups)",
                    field="certify",
                )
            steps.append(Step("conv", layer, _activation(layer) == "relu"))
        elif kind == "ReLU" or (kind == "Activation" and _activation(layer) == "relu"):
            if kind == "ReLU" and (
                layer.max_value is not None or float(layer.negative_slope) != 0.0
                or float(layer.threshold) != 0.0
            ):  # fmt: skip
                raise NotVerifiable(
                    f"not verifiable: layer {layer.name} (ReLU with a cap, slope or threshold)",
                    field="certify",
                )
            steps.append(Step("relu", layer))
        elif kind == "Activation":  # linear
            continue
        elif kind == "Flatten":
            steps.append(Step("flatten", layer))
        elif kind == "MaxPooling2D":
            steps.append(Step("maxpool", layer))
        elif kind == "AveragePooling2D":
            if layer.padding != "valid":
                raise NotVerifiable(
                    f"not verifiable: layer {layer.name} (AveragePooling2D with same padding)",
                    field="certify",
                )
            steps.append(Step("avgpool", layer))
        else:
            raise NotVerifiable(
                f"not verifiable: layer {layer.name} ({kind}); IBP supports Dense, Conv2D, "
                "ReLU, Flatten and pooling",
                field="certify",
            )
    if not steps or steps[-1].kind != "dense" or steps[-1].relu_after:
        raise NotVerifiable(
            "not verifiable: the model does not end in a linear Dense layer (the logits)",
            field="certify",
        )
    return steps


def _pool(layer: Any, x: Any, op: str) -> Any:
    t = tf()
    fn = t.nn.max_pool2d if op == "max" else t.nn.avg_pool2d
    return fn(x, layer.pool_size, layer.strides, layer.padding.upper())


def _conv(layer: Any, x: Any, kernel: Any) -> Any:
    t = tf()
    return t.nn.conv2d(x, kernel, list(layer.strides), layer.padding.upper())


def _affine(step: Step, c: Any, r: Any) -> tuple[Any, Any]:
    t = tf()
    layer = step.layer
    w = layer.kernel
    if step.kind == "dense":
        c2, r2 = t.matmul(c, w), t.matmul(r, t.abs(w))
    else:
        c2, r2 = _conv(layer, c, w), _conv(layer, r, t.abs(w))
    if layer.use_bias:
        c2 = c2 + layer.bias
    return c2, r2


def _relu(c: Any, r: Any) -> tuple[Any, Any]:
    t = tf()
    lo, hi = t.nn.relu(c - r), t.nn.relu(c + r)
    return (hi + lo) / 2, (hi - lo) / 2


def hidden_bounds(steps: list[Step], lo: Any, hi: Any) -> tuple[Any, Any]:
    """Centre and radius of the interval of the last layer's input, for inputs in [lo, hi]."""
    t = tf()
    c, r = (hi + lo) / 2, (hi - lo) / 2
    for step in steps[:-1]:
        if step.kind in ("dense", "conv"):
            c, r = _affine(step, c, r)
            if step.relu_after:
                c, r = _relu(c, r)
        elif step.kind == "relu":
            c, r = _relu(c, r)
        elif step.kind == "flatten":
            c = t.reshape(c, [t.shape(c)[0], -1])
            r = t.reshape(r, [t.shape(r)[0], -1])
        elif step.kind == "maxpool":
            lo_, hi_ = _pool(step.layer, c - r, "max"), _pool(step.layer, c + r, "max")
            c, r = (hi_ + lo_) / 2, (hi_ - lo_) / 2
        elif step.kind == "avgpool":
            c, r = _pool(step.layer, c, "avg"), _pool(step.layer, r, "avg")
    return c, r


def margin_upper(steps: list[Step], lo: Any, hi: Any, y: Any) -> Any:
    """Upper bounds (N, classes) of ``z_j - z_y`` over the box (0 in the true class's column):
    the last layer's weights folded into the difference of logits (elision)."""
    t = tf()
    c, r = hidden_bounds(steps, lo, hi)
    last = steps[-1].layer
    w = last.kernel  # (d, classes)
    w_y = t.transpose(t.gather(w, y, axis=1))  # (N, d)
    diff = w[None, :, :] - w_y[:, :, None]  # (N, d, classes)
    up = t.einsum("nd,ndk->nk", c, diff) + t.einsum("nd,ndk->nk", r, t.abs(diff))
    if last.use_bias:
        b = last.bias
        up = up + (b[None, :] - t.gather(b, y)[:, None])
    # The true class's own difference is 0 exactly (rounding may leave a tiny number).
    return up * (1.0 - t.one_hot(y, t.shape(up)[1], dtype=up.dtype))


def logit_bounds(steps: list[Step], lo: Any, hi: Any) -> tuple[Any, Any]:
    """Lower and upper bounds of each logit over the box (no elision: for soundness checks)."""
    c, r = hidden_bounds(steps, lo, hi)
    c, r = _affine(steps[-1], c, r)
    return c - r, c + r


def box(x: Any, eps: Any) -> tuple[Any, Any]:
    """The L-inf ball of radius ``eps`` around ``x``, clipped to the pixel range [0, 1]."""
    t = tf()
    return t.clip_by_value(x - eps, 0.0, 1.0), t.clip_by_value(x + eps, 0.0, 1.0)


def verifiable(model: Any, probe: np.ndarray | None = None) -> list[Step]:
    """:func:`chain`, checked: the rebuilt chain's centre at eps 0 must equal the model's logits
    on a probe batch (a branch or skip connection the layer list hides is refused)."""
    t = tf()
    steps = chain(model)
    rng = np.random.default_rng(0)
    x = probe if probe is not None else rng.random((8, 28, 28, 1), dtype=np.float32)
    x = t.constant(np.asarray(x, np.float32))
    lo, hi = logit_bounds(steps, x, x)
    want = np.asarray(model(x, training=False))
    got = np.asarray((lo + hi) / 2)
    scale = max(float(np.abs(want).max()), 1.0)
    if got.shape != want.shape or float(np.abs(got - want).max()) > _TOLERANCE * scale:
        raise NotVerifiable(
            "not verifiable: the model is not a plain chain of its layers (a branch or a "
            "skip connection?)",
            field="certify",
        )
    return steps


@dataclass(frozen=True)
class IBPResult:
    """Verified accuracy per eps (L-inf), with what each image got."""

    eps: tuple[float, ...]
    verified_accuracy: tuple[float, ...]
    #: (len(eps), N) booleans: verified (and correctly classified) at each eps.
    verified: np.ndarray
    clean_correct: np.ndarray
    seconds: float

    def record(self) -> dict[str, Any]:
        """The JSON figures (per-image flags as lists of 0/1)."""
        return {
            "method": "ibp",
            "norm": "linf",
            "eps": list(self.eps),
            "verified_accuracy": list(self.verified_accuracy),
            "clean_accuracy": float(self.clean_correct.mean()),
            "verified": [[int(v) for v in row] for row in self.verified],
            "seconds": self.seconds,
        }


def _verify_fn(steps: list[Step]) -> Callable[..., Any]:
    t = tf()

    @t.function(
        input_signature=[
            t.TensorSpec([None, 28, 28, 1], t.float32),
            t.TensorSpec([None], t.int32),
            t.TensorSpec([], t.float32),
        ],
        autograph=False,
    )
    def verify(x: Any, y: Any, eps: Any) -> Any:
        lo, hi = box(x, eps)
        up = margin_upper(steps, lo, hi, y)
        others = up - 1e30 * t.one_hot(y, t.shape(up)[1], dtype=up.dtype)
        return t.reduce_max(others, axis=1) < 0.0

    return verify


def verified_accuracy(
    clf: Any,
    x: np.ndarray,
    y: np.ndarray,
    eps: float | tuple[float, ...] | list[float],
    *,
    batch_size: int = 500,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> IBPResult:
    """IBP-verified accuracy of ``clf`` (a :class:`~advgui.core.models.Classifier`) at each
    L-inf ``eps``; raises :class:`NotVerifiable` for a model IBP cannot bound."""
    import time

    t0 = time.perf_counter()
    eps_list = tuple(float(e) for e in (eps if isinstance(eps, (list, tuple)) else [eps]))
    for e in eps_list:
        if not 0.0 <= e <= 1.0:
            raise ParameterError(f"epsilon must be between 0 and 1, got {e}", field="eps")
    x = np.asarray(x, np.float32).reshape(-1, 28, 28, 1)
    y = np.asarray(y, np.int64)
    steps = verifiable(clf.logits_model, x[:8])
    verify = _verify_fn(steps)
    clean = clf.predict(x) == y
    out = np.zeros((len(eps_list), len(x)), bool)
    total = len(eps_list) * max(1, -(-len(x) // batch_size))
    done = 0
    for i, e in enumerate(eps_list):
        for lo in range(0, len(x), batch_size):
            check(cancel)
            xb, yb = x[lo : lo + batch_size], y[lo : lo + batch_size].astype(np.int32)
            ok = np.asarray(verify(xb, yb, np.float32(e)))
            out[i, lo : lo + batch_size] = ok & clean[lo : lo + batch_size]
            done += 1
            if progress is not None:
                progress(Progress(done, total, f"IBP at eps {e:g}"))
    acc = tuple(float(row.mean()) if len(row) else float("nan") for row in out)
    return IBPResult(eps_list, acc, out, clean, time.perf_counter() - t0)
