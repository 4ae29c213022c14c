"""Input transformations as a wrapper around any Classifier, with naive and adaptive gradients.

A transformation defense (feature squeezing, JPEG, Gaussian noise) changes the input before the
network sees it. Its forward pass is what gets deployed; what an attacker differentiates decides
whether the defense *looks* robust. Two views of the same wrapped model are offered:

- ``naive``: the true gradient of the pipeline. Quantisation and JPEG are flat almost everywhere
  (or have no gradient at all), so the attacker gets zeros: gradient masking.
- ``adaptive``: BPDA (Athalye et al. 2018): the forward pass is the transformation, the backward
  pass the identity; for random transformations EOT averages the logits (hence the gradients)
  over several draws.

Both are ordinary :class:`~advgui.core.models.Classifier` objects, so every attack works on them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from advgui.core.errors import ParameterError
from advgui.core.models import Classifier
from advgui.core.tfimport import keras, tf

#: kind -> (parameter meaning, default, low, high, whole number?)
TRANSFORM_KINDS: dict[str, tuple[str, float, float, float, bool]] = {
    "squeeze-bits": ("bit depth", 1, 1, 8, True),
    "median": ("window size in pixels", 2, 2, 5, True),
    "jpeg": ("JPEG quality", 75, 5, 100, True),
    "noise": ("Gaussian noise standard deviation", 0.3, 0.0, 1.0, False),
}
MODES = ("deployed", "naive", "adaptive")


@dataclass(frozen=True)
class TransformSpec:
    """One transformation step, e.g. ``squeeze-bits:1`` or ``median:2``."""

    kind: str
    param: float

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.param:g}"

    @property
    def random(self) -> bool:
        return self.kind == "noise"


def parse_transform(text: str) -> tuple[TransformSpec, ...]:
    """Parse ``kind[:param]``, chained with ``+`` (``squeeze-bits:1+median:2``)."""
    text = str(text).strip()
    if not text or text == "none":
        return ()
    specs = []
    for part in text.split("+"):
        kind, _, value = part.strip().partition(":")
        if kind not in TRANSFORM_KINDS:
            raise ParameterError(
                f"unknown transformation {kind!r}; choose one of {sorted(TRANSFORM_KINDS)} "
                "(e.g. squeeze-bits:1, median:2, jpeg:75, noise:0.3)",
                field="transform",
            )
        meaning, default, lo, hi, whole = TRANSFORM_KINDS[kind]
        try:
            num = float(value) if value else float(default)
        except ValueError:
            raise ParameterError(
                f"{kind}: {meaning} must be a number, got {value!r}", field="transform"
            ) from None
        if not math.isfinite(num) or not lo <= num <= hi or (whole and num != int(num)):
            kind_of = "a whole number" if whole else "a number"
            raise ParameterError(
                f"{kind}: {meaning} must be {kind_of} between {lo:g} and {hi:g}, got {value}",
                field="transform",
            )
        specs.append(TransformSpec(kind, num))
    return tuple(specs)


def transform_label(specs: Sequence[TransformSpec]) -> str:
    return "+".join(s.label for s in specs) if specs else "none"


# --------------------------------------------------------------------------- the operations


def apply_transforms(x: Any, specs: Sequence[TransformSpec]) -> Any:
    """The forward pass of the pipeline on a (N, 28, 28, 1) float tensor in [0, 1]."""
    for spec in specs:
        x = _forward(spec, x)
    return x


def _forward(spec: TransformSpec, x: Any) -> Any:
    t = tf()
    if spec.kind == "squeeze-bits":
        levels = 2 ** int(spec.param) - 1
        return t.round(x * levels) / levels
    if spec.kind == "median":
        return _median(x, int(spec.param))
    if spec.kind == "jpeg":
        quality = int(spec.param)
        return t.map_fn(
            lambda im: t.image.adjust_jpeg_quality(im, quality),
            x,
            fn_output_signature=t.float32,
        )
    if spec.kind == "noise":
        return t.clip_by_value(x + t.random.normal(t.shape(x), stddev=spec.param), 0.0, 1.0)
    raise ParameterError(f"unknown transformation {spec.kind!r}", field="transform")


def _median(x: Any, k: int) -> Any:
    """k x k median filter with symmetric padding (rank k*k//2, as scipy's median_filter)."""
    t = tf()
    before, after = (k - 1) // 2, k // 2
    padded = t.pad(x, [[0, 0], [before, after], [before, after], [0, 0]], mode="SYMMETRIC")
    patches = t.image.extract_patches(
        padded, sizes=[1, k, k, 1], strides=[1, 1, 1, 1], rates=[1, 1, 1, 1], padding="VALID"
    )  # (N, 28, 28, k*k)
    # top_k is differentiable: the gradient flows to the pixel that is the median.
    top = t.math.top_k(patches, k=k * k - k * k // 2).values
    return top[..., -1:]


def _differentiable(spec: TransformSpec) -> bool:
    """Whether TensorFlow's own gradient of the operation is meaningful (not zero or absent)."""
    return spec.kind in ("median", "noise")


def _naive(spec: TransformSpec, x: Any) -> Any:
    """True gradient: zero for the staircase of quantisation and for JPEG (no gradient)."""
    t = tf()
    if _differentiable(spec):
        return _forward(spec, x)
    # 0 * x keeps the output connected to x, so the gradient is 0 rather than None.
    return t.stop_gradient(_forward(spec, x)) + 0.0 * x


def _bpda(spec: TransformSpec, x: Any) -> Any:
    """Forward: the transformation; backward: the identity (BPDA)."""
    t = tf()
    return x + t.stop_gradient(_forward(spec, x) - x)


# --------------------------------------------------------------------------- the wrapper


def _wrapper_class() -> type:
    k = keras()

    class InputTransform(k.layers.Layer):
        """Transform the input, run the inner logits model, EOT-average for random steps."""

        def __init__(self, inner: Any, specs: Sequence[TransformSpec], mode: str, eot: int):
            super().__init__(name="input_transform")
            self.inner = inner
            self.specs = tuple(specs)
            self.mode = mode
            self.eot = eot

        def _one(self, x: Any) -> Any:
            if self.mode == "deployed":
                return apply_transforms(x, self.specs)
            step = _naive if self.mode == "naive" else _bpda
            for spec in self.specs:
                x = step(spec, x)
            return x

        def call(self, x: Any) -> Any:
            t = tf()
            samples = self.eot if self.mode == "adaptive" else 1
            if samples <= 1 or not any(s.random for s in self.specs):
                return self.inner(self._one(x), training=False)
            n = t.shape(x)[0]
            tiled = t.tile(x, [samples, 1, 1, 1])
            z = self.inner(self._one(tiled), training=False)
            return t.reduce_mean(t.reshape(z, [samples, n, z.shape[-1]]), axis=0)

        def compute_output_shape(self, input_shape: Any) -> tuple:
            return (input_shape[0], 10)

    return InputTransform


def wrap(
    clf: Classifier,
    transform: str | Sequence[TransformSpec],
    *,
    mode: str = "deployed",
    eot_samples: int = 8,
) -> Classifier:
    """A Classifier that applies ``transform`` before ``clf``.

    ``deployed`` is the defense as used (one random draw per call); ``naive`` and ``adaptive``
    are the views an attacker differentiates (see the module docstring). The wrapped model is
    not saved as such: the transformation is re-applied from its label in the metadata.
    """
    if mode not in MODES:
        raise ParameterError(f"mode must be one of {MODES}, got {mode!r}", field="mode")
    if int(eot_samples) < 1:
        raise ParameterError("EOT samples must be at least 1", field="eot_samples")
    specs = parse_transform(transform) if isinstance(transform, str) else tuple(transform)
    if not specs:
        return clf
    k = keras()
    inputs = k.Input(shape=(28, 28, 1), name="image")
    layer = _wrapper_class()(clf.logits_model, specs, mode, int(eot_samples))
    logits = k.Model(inputs, layer(inputs), name=f"{clf.logits_model.name}_transformed")
    meta = dict(clf.meta)
    label = transform_label(specs)
    meta["name"] = f"{clf.name}+{label}"
    meta["transform"] = label
    meta["transform_mode"] = mode
    return Classifier(model=clf.model, meta=meta, logits_model=logits)
