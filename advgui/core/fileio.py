"""Atomic file writes: a reader never sees a half-written file, a failure leaves none behind."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from advgui.core.errors import ExportError


def describe_os_error(err: OSError, path: Path | str) -> str:
    """One line a user can act on, for the usual ways a write fails."""
    if err.errno == errno.ENOSPC:
        return f"disk full while writing {path}"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission to write {path} (choose another folder)"
    if err.errno == errno.ENOENT:
        return f"folder does not exist: {Path(path).parent}"
    return f"cannot write {path}: {err.strerror or err}"


def _umask() -> int:
    """The process's umask, read without changing it where the OS allows (os.umask would
    briefly change it for every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def temp_name(path: Path, tag: str = "") -> Path:
    """A temporary name beside ``path`` that :func:`sweep_stale` removes once its owner died."""
    return path.parent / f"{_temp_prefix(path)}{tag or secrets.token_hex(6)}.part"


def _temp_prefix(path: Path) -> str:
    # The owner's pid in the name lets sweep_stale tell an abandoned temporary from a live one.
    return f".{path.name}.{os.getpid()}-"


#: Temporaries and locks made by atomic_writer, scratch_path and the model store.
_TEMP = re.compile(r"^\..+\.(\d+)-[A-Za-z0-9_]+\.part(\.keras)?$")
_LOCK = re.compile(r"^\..+\.lock$")
#: A lock without a readable owner (older versions wrote none) is stale after this long.
LEGACY_LOCK_AGE_S = 3600.0


@contextlib.contextmanager
def atomic_writer(path: Path | str, *, private: bool = False) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` only if the block finishes without error.

    The file gets the permissions of the user's umask, as any program's output would
    (``private``: owner only).
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".part")
    except OSError as err:
        raise ExportError(describe_os_error(err, path)) from err
    try:
        os.fchmod(fd, 0o600 if private else 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        _unlink_quietly(tmp)
        raise ExportError(describe_os_error(err, path)) from err
    except BaseException:
        _unlink_quietly(tmp)
        raise


@contextlib.contextmanager
def scratch_path(path: Path | str, suffix: str = "") -> Iterator[Path]:
    """A temporary name beside ``path`` for a library that writes a file itself (Keras),
    removed afterwards; beside, not in /tmp, so that a killed process leaves it where
    :func:`sweep_stale` finds it."""
    path = Path(path)
    tmp = temp_name(path).with_name(temp_name(path).name + suffix)
    try:
        yield tmp
    finally:
        _unlink_quietly(tmp)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def write_lock(path: Path) -> None:
    """Create ``path`` exclusively, holding this process's pid (FileExistsError if taken)."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)


def sweep_stale(folder: Path | str) -> list[Path]:
    """Remove temporaries and locks left by processes that died mid-write; return them."""
    folder = Path(folder)
    removed = []
    try:
        names = [p for p in folder.iterdir() if p.name.startswith(".")]
    except OSError:
        return removed
    for p in names:
        match = _TEMP.match(p.name)
        if match:
            stale = not _alive(int(match.group(1)))
        elif _LOCK.match(p.name):
            try:
                owner = p.read_text(encoding="ascii", errors="replace")[:32].strip()
                stale = (
                    not _alive(int(owner))
                    if owner.isdigit()
                    else (time.time() - p.stat().st_mtime > LEGACY_LOCK_AGE_S)
                )
            except OSError:
                continue
        else:
            continue
        if stale:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                _unlink_quietly(p)
            removed.append(p)
    return removed


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_writer(path) as fh:
        fh.write(data)


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _unlink_quietly(path: str | Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def read_capped(path: Path | str, limit: int) -> bytes:
    """A file's bytes, refused from its size (nothing read) when over ``limit``."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise ValueError(f"too large: {size:,} bytes (at most {limit:,})")
        return fh.read(limit + 1)


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for what results carry: numpy scalars and arrays, paths."""
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
