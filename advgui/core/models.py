"""MNIST classifiers: the deck's MLP and a small CNN, saved as Keras 3 files with metadata.

Every model here outputs *logits*: attacks must differentiate logits, because softmax
saturates and its gradients vanish. A user's own model that ends in softmax is accepted and
wrapped so that :attr:`Classifier.logits_model` still yields logits.

Model files are loaded with Keras ``safe_mode=True`` (a Lambda layer or unknown custom object is
refused, never executed) and checked to be MNIST classifiers before use.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from advgui.core.errors import ModelFileError, ParameterError
from advgui.core.fileio import atomic_writer, describe_os_error, json_default
from advgui.core.tfimport import keras

ARCHITECTURES = ("mlp", "cnn")
META_NAME = "advgui.json"
#: Metadata is a few kB (history, confusion matrix); a larger entry is refused unread.
MAX_META_BYTES = 4 * 1024 * 1024
#: Names of layers/ops a wrapper adds; kept stable so saved files stay loadable.
_INPUT_SHAPE = (28, 28, 1)


@dataclass
class Classifier:
    """A Keras model plus the metadata the app keeps about it.

    ``model`` is what gets saved; ``logits_model`` maps (N, 28, 28, 1) float32 in [0, 1] to
    (N, 10) logits and is what training and attacks differentiate.
    """

    model: Any
    meta: dict[str, Any] = field(default_factory=dict)
    logits_model: Any = None

    def __post_init__(self) -> None:
        if self.logits_model is None:
            self.logits_model = logits_view(self.model)

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.meta.get("architecture") or "model")

    def logits(self, x: np.ndarray, *, batch_size: int = 1000) -> np.ndarray:
        """Logits for a batch of images (N, 28, 28, 1) as float32 numpy."""
        x = np.asarray(x, dtype=np.float32).reshape(-1, *_INPUT_SHAPE)
        forward = self._compiled_forward()
        out = [np.asarray(forward(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, 10), np.float32)

    def _compiled_forward(self) -> Any:
        """``logits_model`` as one compiled graph, about twice as fast as eager calls (every
        attack classifies its inputs before and after); rebuilt if ``logits_model`` changes."""
        cached = self.__dict__.get("_advgui_forward")
        if cached is not None and cached[0] is self.logits_model:
            return cached[1]
        from advgui.core.tfimport import tf

        t = tf()
        model = self.logits_model

        def forward(x: Any) -> Any:
            return model(x, training=False)

        fn = t.function(forward, input_signature=[t.TensorSpec([None, *_INPUT_SHAPE], t.float32)])
        self.__dict__["_advgui_forward"] = (model, fn)
        return fn

    def predict_proba(self, x: np.ndarray, *, batch_size: int = 1000) -> np.ndarray:
        z = self.logits(x, batch_size=batch_size)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, x: np.ndarray, *, batch_size: int = 1000) -> np.ndarray:
        return self.logits(x, batch_size=batch_size).argmax(axis=1)

    def accuracy(self, x: np.ndarray, y: np.ndarray, *, batch_size: int = 1000) -> float:
        return float(np.mean(self.predict(x, batch_size=batch_size) == np.asarray(y)))


# --------------------------------------------------------------------------- architectures


def build_model(arch: str = "cnn", *, seed: int = 0, **options: Any) -> Any:
    """Build an untrained logits model: ``mlp`` (the deck's) or ``cnn`` (small, fast, ~99%)."""
    if arch not in ARCHITECTURES:
        raise ParameterError(f"unknown architecture {arch!r}; choose one of {ARCHITECTURES}")
    k = keras()
    k.utils.set_random_seed(int(seed))
    layers = k.layers
    inputs = k.Input(shape=_INPUT_SHAPE, name="image")
    if arch == "mlp":
        hidden = options.get("hidden", (256, 128))
        x = layers.Flatten()(inputs)
        for i, units in enumerate(hidden):
            x = layers.Dense(int(units), activation="relu", name=f"dense_{i}")(x)
    else:
        # LeNet-like: one 5x5 conv per block. Measured (benchmarks/bench_training.py) to reach
        # 99% in 1 epoch (one-cycle Adam, peak lr 8e-3) at ~3x the speed of 2 3x3 convs/block.
        filters = options.get("filters", (16, 32))
        kernel = int(options.get("kernel", 5))
        x = inputs
        for i, f in enumerate(filters):
            opts = {"padding": "same", "activation": "relu", "name": f"conv_{i}"}
            x = layers.Conv2D(int(f), kernel, **opts)(x)
            x = layers.MaxPooling2D(name=f"pool_{i}")(x)
        x = layers.Flatten()(x)
        x = layers.Dense(int(options.get("dense", 128)), activation="relu", name="dense")(x)
    outputs = layers.Dense(10, name="logits")(x)
    return k.Model(inputs, outputs, name=arch)


# --------------------------------------------------------------------------- logits


def _activation_name(layer: Any) -> str | None:
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", None) if act is not None else None


def ends_in_softmax(model: Any) -> bool:
    """True when the model outputs probabilities (a softmax last layer or activation)."""
    last = model.layers[-1]
    cls = type(last).__name__
    if cls == "Softmax":
        return True
    return _activation_name(last) == "softmax"


def logits_view(model: Any) -> Any:
    """A Keras model on (N, 28, 28, 1) that outputs logits, sharing ``model``'s weights.

    A softmax head is cut off: for ``Dense(activation='softmax')`` the same kernel and bias are
    applied linearly, for a separate ``Softmax``/``Activation`` layer its input is taken.
    """
    k = keras()
    in_shape = tuple(model.inputs[0].shape[1:])
    if not ends_in_softmax(model) and in_shape == _INPUT_SHAPE:
        return model
    inputs = k.Input(shape=_INPUT_SHAPE, name="image")
    x = inputs if in_shape == _INPUT_SHAPE else k.layers.Reshape(in_shape)(inputs)
    if not ends_in_softmax(model):
        return k.Model(inputs, model(x), name=f"{model.name}_logits")
    last = model.layers[-1]
    body = k.Model(model.inputs, last.input, name=f"{model.name}_body")
    h = body(x)
    out = h if type(last).__name__ in ("Softmax", "Activation") else _LinearOf(last)(h)
    return k.Model(inputs, out, name=f"{model.name}_logits")


def _linear_of_class() -> type:
    k = keras()

    class LinearOf(k.layers.Layer):
        """The pre-activation of a Dense layer, reusing (not copying) its variables."""

        def __init__(self, dense: Any, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.dense = dense

        def call(self, x: Any) -> Any:
            y = k.ops.matmul(x, self.dense.kernel)
            return y + self.dense.bias if self.dense.use_bias else y

    return LinearOf


def _LinearOf(dense: Any) -> Any:
    return _linear_of_class()(dense)


# --------------------------------------------------------------------------- files


def save_model(clf: Classifier, path: Path | str) -> Path:
    """Save as a ``.keras`` file with the metadata inside it, atomically."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ParameterError(f"{path}: model files must end in .keras", field="path")
    meta = json.dumps(clf.meta, default=json_default, indent=1).encode()
    fd, tmp = tempfile.mkstemp(suffix=".keras", prefix=".advgui-save-")
    os.close(fd)
    try:
        clf.model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as zf:
            zf.writestr(META_NAME, meta)
        with atomic_writer(path) as fh, open(tmp, "rb") as src:
            while chunk := src.read(1 << 20):
                fh.write(chunk)
    except OSError as err:
        raise ModelFileError(describe_os_error(err, path)) from err
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def read_meta(path: Path | str) -> dict[str, Any]:
    """The advgui metadata of a model file, without loading TensorFlow ({} if none)."""
    try:
        with zipfile.ZipFile(path) as zf:
            if META_NAME not in zf.namelist():
                return {}
            size = zf.getinfo(META_NAME).file_size
            if size > MAX_META_BYTES:
                raise ValueError(f"metadata too large ({size} bytes)")
            meta = json.loads(zf.read(META_NAME))
    except (OSError, zipfile.BadZipFile, ValueError, RecursionError) as err:
        raise ModelFileError(f"{path}: not a readable .keras model file ({err})") from err
    return meta if isinstance(meta, dict) else {}


def load_model(path: Path | str) -> Classifier:
    """Load a ``.keras`` MNIST classifier safely; a clear :class:`ModelFileError` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not a Keras 3 .keras file (not a zip archive)")
    meta = read_meta(path)
    k = keras()
    try:
        model = k.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # Keras raises many types; all mean "cannot use this file"
        raise ModelFileError(_explain_load_error(path, err)) from err
    check_mnist_classifier(model, path)
    meta.setdefault("name", path.stem)
    meta["path"] = str(path)
    meta["outputs"] = "probabilities" if ends_in_softmax(model) else "logits"
    return Classifier(model=model, meta=meta)


def _explain_load_error(path: Path, err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    low = str(err).lower()
    if "lambda" in low and ("safe" in low or "deserializ" in low):
        return (
            f"{path}: refused: the model contains a Lambda layer, whose code would run on "
            "loading; safe mode forbids that (rebuild the model without Lambda layers)"
        )
    if "unknown" in low or "could not locate" in low or "custom" in low:
        return (
            f"{path}: refused: the model uses custom objects advgui does not know "
            f"({text}); only built-in Keras layers can be loaded safely"
        )
    return f"{path}: cannot load model: {text}"


def check_mnist_classifier(model: Any, origin: Path | str = "model") -> None:
    """Refuse models that do not take one 28x28(x1) or 784 image and return 10 scores."""
    try:
        ins = [tuple(t.shape[1:]) for t in model.inputs]
        outs = [tuple(t.shape[1:]) for t in model.outputs]
    except (AttributeError, ValueError) as err:
        raise ModelFileError(f"{origin}: model has no defined inputs/outputs") from err
    if len(ins) != 1 or ins[0] not in (_INPUT_SHAPE, (784,), (28, 28)):
        raise ModelFileError(
            f"{origin}: not an MNIST classifier: input shape {ins}, expected (28, 28, 1) or (784,)"
        )
    if len(outs) != 1 or outs[0] != (10,):
        raise ModelFileError(
            f"{origin}: not an MNIST classifier: output shape {outs}, expected 10 classes"
        )


def count_params(model: Any) -> int:
    return int(sum(int(np.prod(v.shape)) for v in model.weights))
