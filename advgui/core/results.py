"""The results store: attack runs and defense comparisons, kept as they finish.

Each result is a folder ``<root>/<time>-<kind>-<id>/`` holding ``result.json`` (plain facts) and,
optionally, ``arrays.npz`` (images; read back with ``allow_pickle=False``). The folder is written
under a temporary name and renamed into place, so a reader (another instance of the app, or
this one after a crash) sees a whole result or none. A damaged entry is skipped with a warning.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import logging
import os
import shutil
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advgui.core import paths
from advgui.core.errors import AdvguiError, DataError, ExportError
from advgui.core.fileio import (
    atomic_write_bytes,
    describe_os_error,
    json_default,
    read_capped,
    sweep_stale,
    temp_name,
)

log = logging.getLogger(__name__)

RESULT_JSON = "result.json"
ARRAYS_NPZ = "arrays.npz"
#: The largest result the app writes is a comparison of a few MB; anything far beyond is not
#: one of its files.
MAX_RESULT_JSON = 16 << 20
MAX_ARRAYS_BYTES = 512 << 20


@dataclass
class ResultEntry:
    path: Path
    kind: str
    name: str
    created: str
    payload: dict[str, Any]

    def arrays(self) -> dict[str, np.ndarray]:
        """The stored arrays (empty if none); DataError if the file is damaged."""
        file = self.path / ARRAYS_NPZ
        if not file.is_file():
            return {}
        try:
            with zipfile.ZipFile(file) as zf:  # sizes from the directory, before inflating
                unpacked = sum(i.file_size for i in zf.infolist())
            if unpacked > MAX_ARRAYS_BYTES:
                raise DataError(
                    f"{file}: {unpacked / 2**20:,.0f} MB unpacked, more than a result holds"
                )
            with np.load(file, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
            raise DataError(f"{file}: damaged result arrays ({err})") from err


class ResultStore(paths.DatasetFolder):
    """Results kept in a folder (default: the active dataset's in the user's data folder as it
    was when the store was made; the dataset part follows the window's dataset chooser)."""

    _folder = staticmethod(paths.results_dir)

    def add(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        name: str = "",
        arrays: dict[str, np.ndarray] | None = None,
    ) -> ResultEntry:
        """Store one result atomically (a whole folder appears, or nothing)."""
        now = _dt.datetime.now(_dt.timezone.utc)
        created = now.isoformat(timespec="seconds")
        # Microseconds in the name: entries list in the order they were made, even within
        # one second (a batch of quick attacks).
        folder_name = f"{now:%Y%m%d-%H%M%S-%f}-{_safe(kind)}-{uuid.uuid4().hex[:8]}"
        from advgui.core.tuning import loaded_device

        record = {"kind": kind, "name": name or kind, "created": created, "payload": payload,
                  "device": loaded_device()}  # fmt: skip
        text = json.dumps(record, indent=1, default=json_default, allow_nan=True)
        tmp = temp_name(self.root / folder_name, "r")
        final = self.root / folder_name
        try:
            tmp.mkdir(parents=True)
            atomic_write_bytes(tmp / RESULT_JSON, text.encode())
            if arrays:
                buf = io.BytesIO()
                np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
                atomic_write_bytes(tmp / ARRAYS_NPZ, buf.getvalue())
            os.rename(tmp, final)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ExportError(describe_os_error(err, final)) from err
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return ResultEntry(final, kind, record["name"], created, payload)

    def entries(
        self, kind: str | None = None, warnings: list[str] | None = None
    ) -> list[ResultEntry]:
        """Stored results, oldest first; damaged or half-written entries are skipped."""
        if not self.root.is_dir():
            return []
        sweep_stale(self.root)  # folders half-written by a process that died
        found = []
        for folder in sorted(self.root.iterdir()):
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            try:
                record = json.loads(read_capped(folder / RESULT_JSON, MAX_RESULT_JSON))
                entry = ResultEntry(
                    folder,
                    str(record["kind"]),
                    str(record.get("name", record["kind"])),
                    str(record.get("created", "")),
                    dict(record["payload"]),
                )
            except (OSError, ValueError, KeyError, TypeError, RecursionError) as err:
                msg = f"skipped damaged result {folder.name}: {err}"
                log.warning("result store: %s", msg)
                if warnings is not None:
                    warnings.append(msg)
                continue
            if kind is None or entry.kind == kind:
                found.append(entry)
        return found

    def remove(self, entry: ResultEntry) -> None:
        if entry.path.parent.resolve() != self.root.resolve():
            raise AdvguiError(f"{entry.path} is not in the result store")
        shutil.rmtree(entry.path, ignore_errors=True)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:40] or "result"
