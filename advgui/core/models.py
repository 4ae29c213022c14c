"""MNIST classifiers: the deck's MLP and a small CNN, saved as Keras 3 files with metadata.

Every model here outputs *logits*: attacks must differentiate logits, because softmax
saturates and its gradients vanish. A user's own model that ends in softmax is accepted and
wrapped so that :attr:`Classifier.logits_model` still yields logits.

Model files are loaded with Keras ``safe_mode=True`` (a Lambda layer or unknown custom object is
refused, never executed) and checked to be MNIST classifiers before use.
"""

from __future__ import annotations

import json
import logging
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from advgui.core.errors import ModelFileError, ParameterError
from advgui.core.fileio import atomic_writer, describe_os_error, json_default, scratch_path
from advgui.core.tfimport import keras

log = logging.getLogger(__name__)

ARCHITECTURES = ("mlp", "cnn")
META_NAME = "advgui.json"
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
    #: Compiled functions of this model (:class:`advgui.core.attacks.engine.CompileCache`).
    cache: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.logits_model is None:
            info = analyse_outputs(self.model)
            self.logits_model = info.logits_model
            self.meta.update(outputs=info.kind, outputs_how=info.how)

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
        attack classifies its inputs before and after); kept in the compile cache, rebuilt if
        ``logits_model`` changes."""
        from advgui.core.attacks.engine import compiled, image_spec

        model = self.logits_model

        def build() -> Any:
            from advgui.core.tfimport import tf

            def forward(x: Any) -> Any:
                return model(x, training=False)

            return tf().function(forward, input_signature=[image_spec()])

        return compiled(self, ("forward", id(model)), build)

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


#: Layers that leave a softmax's output as it is at inference: a softmax followed by these
#: still makes the model output probabilities.
_INFERENCE_IDENTITY = {
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
    "Identity",
    "Reshape",
    "Flatten",
}
#: Below this a probability is treated as 0 when logits have to be taken as log-probabilities.
_TINY = 1e-37


@dataclass
class OutputInfo:
    """What a model outputs, decided from what it computes, and the logits model built for it."""

    kind: str  # "logits", "probabilities" or "log-probabilities"
    how: str  # how the logits are obtained, for the model's info
    logits_model: Any


def _activation_name(layer: Any) -> str | None:
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", None) if act is not None else None


def _is_softmax(layer: Any) -> bool:
    return type(layer).__name__ == "Softmax" or _activation_name(layer) == "softmax"


def final_softmax(model: Any) -> Any | None:
    """The layer applying the model's last softmax, looking through nested models and layers
    that are the identity at inference (Dropout, Reshape, linear Activation...); else None."""
    try:
        tensor = model.outputs[0]
        for _ in range(10_000):  # a bound on hostile graphs; real ones end far sooner
            history = tensor._keras_history
            op = history.operation
            if hasattr(op, "outputs") and hasattr(op, "layers"):  # a nested model
                if len(op.outputs) != 1:
                    return None
                tensor = op.outputs[0]
                continue
            if _is_softmax(op):
                return op
            name = type(op).__name__
            linear = name == "Activation" and _activation_name(op) == "linear"
            if name not in _INFERENCE_IDENTITY and not linear:
                return None
            inputs = op._inbound_nodes[history.node_index].input_tensors
            if len(inputs) != 1:
                return None
            tensor = inputs[0]
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    return None


def ends_in_softmax(model: Any) -> bool:
    """Structural hint only: a softmax at the end, possibly nested or followed by no-ops."""
    return final_softmax(model) is not None


def _probe_images() -> np.ndarray:
    """Inputs to watch the model on: blank, noise and blobs (a softmax row sums to 1 on any)."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[:28, :28]
    blobs = [np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / 18.0) for cy, cx in ((14, 14), (8, 20))]
    batch = [np.zeros((28, 28)), np.ones((28, 28)), *blobs, *rng.random((12, 28, 28))]
    return np.stack(batch).astype(np.float32)[..., None]


def _classify_rows(out: np.ndarray) -> str:
    if not np.isfinite(out).all():
        return "logits"
    if out.min() >= -1e-6 and np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
        return "probabilities"
    if out.max() <= 1e-5:
        lse = np.log(np.exp(out.astype(np.float64)).sum(axis=1))
        if np.allclose(lse, 0.0, atol=1e-3):
            return "log-probabilities"
    return "logits"


def analyse_outputs(model: Any, probe: np.ndarray | None = None) -> OutputInfo:
    """Decide logits vs probabilities from what ``model`` computes on ``probe`` (real images
    where the caller has them), and build a logits model sharing its weights.

    The structure (where the softmax is) is only a hint: a softmax nested in a sub-model or
    followed by Dropout is still a softmax. Where it can be found, it is cut out, giving the
    exact logits; where it cannot, the logits are taken as log-probabilities, which attacks
    treat the same (they shift every logit of a row alike) until a probability underflows.
    """
    k = keras()
    in_shape = tuple(model.inputs[0].shape[1:])
    x = _probe_images() if probe is None else np.asarray(probe, np.float32)[:32]
    out = np.asarray(model(x.reshape(-1, *in_shape), training=False), dtype=np.float64)
    kind = _classify_rows(out.reshape(len(x), -1))
    core, how = model, "the model's outputs"
    if kind == "probabilities":
        softmax = final_softmax(model)
        if softmax is not None and type(softmax).__name__ in ("Softmax", "Activation", "Dense"):
            core = _without(model, softmax)
            how = f"softmax removed at layer {softmax.name!r}"
        else:
            core = k.Model(model.inputs, _LogOf()(model.outputs[0]), name=f"{model.name}_log")
            how = "log of the probabilities (no removable softmax layer found)"
            log.info("%s: %s", model.name, how)
    elif kind == "log-probabilities":
        how = "the model's log-probabilities (logits up to a constant)"
    if core is model and in_shape == _INPUT_SHAPE:
        return OutputInfo(kind, how, model)
    inputs = k.Input(shape=_INPUT_SHAPE, name="image")
    h = inputs if in_shape == _INPUT_SHAPE else k.layers.Reshape(in_shape)(inputs)
    return OutputInfo(kind, how, k.Model(inputs, core(h), name=f"{model.name}_logits"))


def logits_view(model: Any, probe: np.ndarray | None = None) -> Any:
    """A Keras model on (N, 28, 28, 1) that outputs logits, sharing ``model``'s weights."""
    return analyse_outputs(model, probe).logits_model


def _without(model: Any, softmax: Any) -> Any:
    """``model`` with its final softmax made linear; every other layer (and weight) shared."""
    k = keras()

    def clone(layer: Any) -> Any:
        if layer is not softmax:
            return layer
        if type(layer).__name__ == "Dense":
            return _LinearOf(layer)
        return k.layers.Identity(name=f"{layer.name}_removed")

    return k.models.clone_model(model, clone_function=clone, recursive=True)


def _log_of_class() -> type:
    k = keras()

    class LogOf(k.layers.Layer):
        def call(self, p: Any) -> Any:
            return k.ops.log(k.ops.maximum(p, _TINY))

    return LogOf


def _LogOf() -> Any:
    return _log_of_class()()


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
    """Save as a ``.keras`` file with the metadata inside it, atomically.

    Keras writes the archive itself, so it goes to a scratch name beside the target (never
    /tmp, where a killed save would leave it forever; the store sweeps these), gets the
    metadata appended, and is copied into place by an atomic write.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ParameterError(f"{path}: model files must end in .keras", field="path")
    meta = json.dumps(clf.meta, default=json_default, indent=1).encode()
    try:
        with scratch_path(path, ".keras") as tmp:
            clf.model.save(tmp)
            with zipfile.ZipFile(tmp, "a") as zf:
                zf.writestr(META_NAME, meta)
            with atomic_writer(path) as fh, open(tmp, "rb") as src:
                while chunk := src.read(1 << 20):
                    fh.write(chunk)
    except OSError as err:
        raise ModelFileError(describe_os_error(err, path)) from err
    return path


#: Size caps for the members of a model archive, checked from its zip directory before
#: anything is decompressed: advgui's models are about 1 MB, and the config of any Keras
#: classifier of MNIST is a few KB.
MAX_META_BYTES = 4 << 20  # history and confusion matrix: a few KB
MAX_CONFIG_BYTES = 8 << 20
MAX_MODEL_BYTES = 512 << 20
MAX_MEMBERS = 1000
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def check_archive(path: Path | str) -> None:
    """Refuse a model file from its zip directory alone: what is not a Keras 3 archive, and
    members larger than a classifier of 28x28 images can need (a padded config or metadata
    would otherwise be decompressed whole into memory)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except FileNotFoundError as err:
        raise ModelFileError(f"{path}: no such model file") from err
    except IsADirectoryError as err:
        raise ModelFileError(f"{path}: is a folder, not a model file") from err
    except OSError as err:
        raise ModelFileError(f"{path}: cannot read: {err.strerror or err}") from err
    if head == HDF5_MAGIC:
        raise ModelFileError(
            f"{path}: refused: a legacy HDF5 (.h5) Keras model; that format cannot be "
            "loaded in safe mode. Re-save it with Keras 3 as .keras (model.save('m.keras'))"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (OSError, zipfile.BadZipFile, ValueError) as err:
        raise ModelFileError(f"{path}: not a Keras 3 .keras file (not a zip archive)") from err
    if len(infos) > MAX_MEMBERS:
        raise ModelFileError(f"{path}: refused: {len(infos)} files inside, not a Keras model")
    total = 0
    for info in infos:
        cap = {META_NAME: MAX_META_BYTES, "config.json": MAX_CONFIG_BYTES}.get(
            info.filename, MAX_CONFIG_BYTES if info.filename.endswith(".json") else None
        )
        if cap is not None and info.file_size > cap:
            raise ModelFileError(
                f"{path}: refused: {info.filename} too large ({info.file_size / 2**20:,.0f} MB "
                f"declared, at most {cap >> 20} MB); not a model advgui can use"
            )
        total += info.file_size
    if total > MAX_MODEL_BYTES:
        raise ModelFileError(
            f"{path}: refused: {total / 2**20:,.0f} MB when unpacked (at most "
            f"{MAX_MODEL_BYTES >> 20} MB for an MNIST classifier)"
        )


def read_meta(path: Path | str) -> dict[str, Any]:
    """The advgui metadata of a model file, without loading TensorFlow ({} if none)."""
    check_archive(path)
    try:
        with zipfile.ZipFile(path) as zf:
            if META_NAME not in zf.namelist():
                return {}
            meta = json.loads(zf.read(META_NAME))
    except (OSError, zipfile.BadZipFile, ValueError, RecursionError) as err:
        raise ModelFileError(f"{path}: not a readable .keras model file ({err})") from err
    return meta if isinstance(meta, dict) else {}


def load_model(path: Path | str, probe: np.ndarray | None = None) -> Classifier:
    """Load a ``.keras`` MNIST classifier safely; a clear :class:`ModelFileError` otherwise.

    ``probe``: a few real images on which to tell logits from probabilities (see
    :func:`analyse_outputs`)."""
    path = Path(path)
    meta = read_meta(path)  # checks the archive before TensorFlow is even imported
    k = keras()
    try:
        model = k.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # Keras raises many types; all mean "cannot use this file"
        raise ModelFileError(_explain_load_error(path, err)) from err
    check_mnist_classifier(model, path)
    meta.setdefault("name", path.stem)
    meta["path"] = str(path)
    info = analyse_outputs(model, probe)
    meta.update(outputs=info.kind, outputs_how=info.how)  # measured: the file's claim is ignored
    return Classifier(model=model, meta=meta, logits_model=info.logits_model)


def load_model_bytes(data: bytes, name: str, probe: np.ndarray | None = None) -> Classifier:
    """A model sent as bytes (a cluster worker's copy, a file read once and vetted), loaded
    exactly as :func:`load_model` loads a file: archive checks, Keras safe mode, MNIST shape.

    The bytes go to a private scratch folder (Keras reads archives from paths) that is removed
    afterwards; ``name`` is what messages and the metadata call the model."""
    import tempfile

    if len(data) > MAX_MODEL_BYTES:
        raise ModelFileError(
            f"{name}: refused: {len(data) / 2**20:,.0f} MB (at most {MAX_MODEL_BYTES >> 20} MB)"
        )
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(name).stem)[:80] or "model"
    with tempfile.TemporaryDirectory(prefix="advgui-model-") as folder:
        path = Path(folder) / f"{safe}.keras"
        path.write_bytes(data)
        try:
            clf = load_model(path, probe)
        except ModelFileError as err:
            raise ModelFileError(str(err).replace(str(path), name)) from err
    clf.meta["name"] = clf.meta.get("name") if clf.meta.get("name") != safe else Path(name).stem
    clf.meta["path"] = name
    return clf


def _one_line(err: Exception, limit: int = 300) -> str:
    """Keras's message as one line: its reason kept, tensor dumps and object lists dropped."""
    text = str(err).split("List of objects that could not be loaded")[0]
    text = re.sub(r"Target variable: <.*", "", text, flags=re.S)
    text = " ".join(text.split()).rstrip(":; ")
    text = text.replace("Example error message for object", "for")
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text or type(err).__name__


def _explain_load_error(path: Path, err: Exception) -> str:
    text = _one_line(err)
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
    if "could not be loaded" in low or "h5" in low or "file signature" in low:
        return f"{path}: refused: its weights do not fit its layers or are damaged: {text}"
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
