"""The model store: every trained model is saved in the user data folder the moment training
ends, so closing the app (or a crash) loses nothing; the store is listed again on restart.

One ``.keras`` file per model (metadata inside, see :mod:`advgui.core.models`). Listing reads
only the metadata (no TensorFlow); a damaged file is skipped with a warning, never fatal.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advgui.core import models, paths
from advgui.core.errors import AdvguiError, ModelFileError
from advgui.core.fileio import describe_os_error, sweep_stale, write_lock
from advgui.core.progress import CancelToken, Progress, ProgressCallback, check

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_stem(name: str) -> str:
    """A model's name as a file name a user can still read: "cnn 99.22% 07:54" becomes
    "cnn-99.22pct-07-54" (no characters a file system or a shell treats specially)."""
    text = name.replace("%", "pct")
    text = re.sub(r"-{2,}", "-", _UNSAFE.sub("-", text))
    return text.strip("._-")[:120] or "model"


@dataclass
class StoreEntry:
    """One stored model file and its metadata (read without loading the model)."""

    path: Path
    meta: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.path.stem)


class ModelStore(paths.DatasetFolder):
    """Models kept in a folder (default: the active dataset's in the user's data folder as it
    was when the store was made; the dataset part is looked up on each use, so the window's
    stores follow its dataset chooser)."""

    _folder = staticmethod(paths.store_dir)

    def _reserve_path(self, name: str) -> tuple[Path, Path]:
        """A new file name nobody else is writing, and the lock file that reserves it.

        The lock is created exclusively (O_CREAT|O_EXCL), so two processes (a second instance
        of the app, a CLI run) saving a model of the same name at once never pick the same file.
        """
        stem = file_stem(name)
        i = 1
        while True:
            path = self.root / (f"{stem}.keras" if i == 1 else f"{stem}-{i}.keras")
            lock = self.root / f".{path.name}.lock"
            i += 1
            try:
                write_lock(lock)  # holds our pid: a lock whose owner died is swept later
            except FileExistsError:
                continue
            except OSError as err:
                raise ModelFileError(describe_os_error(err, lock)) from err
            if path.exists():  # taken and finished before we looked
                lock.unlink(missing_ok=True)
                continue
            return path, lock

    def add(self, clf: models.Classifier) -> Path:
        """Save ``clf`` into the store under a new file name; records the path in its meta."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ModelFileError(describe_os_error(err, self.root)) from err
        path, lock = self._reserve_path(clf.name)
        clf.meta["stored"] = True
        clf.meta["path"] = str(path)
        try:
            models.save_model(clf, path)  # atomic: the file appears whole or not at all
        except BaseException:
            clf.meta.pop("stored", None)
            clf.meta.pop("path", None)
            raise
        finally:
            lock.unlink(missing_ok=True)
        return path

    def contains(self, clf: models.Classifier) -> bool:
        path = clf.meta.get("path")
        return bool(path) and Path(path).parent.resolve() == self.root.resolve()

    def remove(self, clf_or_path: models.Classifier | Path | str) -> bool:
        """Delete a stored file; True if one was deleted. Files outside the store are kept."""
        if isinstance(clf_or_path, models.Classifier):
            if not self.contains(clf_or_path):
                return False
            path = Path(clf_or_path.meta["path"])
            clf_or_path.meta.pop("stored", None)
        else:
            path = Path(clf_or_path)
        if path.parent.resolve() != self.root.resolve():
            return False
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as err:
            raise ModelFileError(describe_os_error(err, path)) from err
        return True

    def entries(self, warnings: list[str] | None = None) -> list[StoreEntry]:
        """Stored models, oldest first; unreadable files are skipped (and named in
        ``warnings``)."""
        if not self.root.is_dir():
            return []
        for stale in sweep_stale(self.root):
            log.info("model store: removed %s, left by a process that died mid-save", stale.name)
        found = []
        for path in sorted(self.root.glob("*.keras")):
            try:
                meta = models.read_meta(path)
            except AdvguiError as err:
                _warn(warnings, f"skipped damaged model file {path.name}: {err}")
                continue
            found.append(StoreEntry(path, meta))
        found.sort(key=lambda e: (str(e.meta.get("trained_at", "")), e.path.name))
        return found

    def load_all(
        self,
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        warnings: list[str] | None = None,
    ) -> list[models.Classifier]:
        """Load every stored model (imports TensorFlow); damaged ones are skipped with a
        warning so one bad file never hides the others."""
        entries = self.entries(warnings)
        loaded = []
        for i, entry in enumerate(entries):
            check(cancel)
            if progress is not None:
                progress(Progress(i, len(entries), f"loading {entry.name}"))
            try:
                clf = models.load_model(entry.path)
            except AdvguiError as err:
                _warn(warnings, f"skipped damaged model file {entry.path.name}: {err}")
                continue
            clf.meta["stored"] = True
            loaded.append(clf)
        if progress is not None:
            progress(Progress(len(entries), len(entries), "models loaded"))
        return loaded


def _warn(warnings: list[str] | None, message: str) -> None:
    log.warning("model store: %s", message)
    if warnings is not None:
        warnings.append(message)
