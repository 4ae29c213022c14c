"""Export adversarial images as 8-bit PNGs that are verified after writing.

Rounding to 8 bits can undo an attack (the last 1/255 often matters near the boundary), so each
export reads the PNG back as written, classifies it, and records *that* prediction in the JSON
sidecar (``png_pred``) next to the attack's own. A batch goes to one folder with a CSV index.
Every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from advgui.core.errors import ExportError, ImageFileError
from advgui.core.fileio import atomic_write_bytes, atomic_write_text

#: Enlargement of the preview copy (nearest neighbour, so pixels stay visible).
ENLARGE = 10
CSV_NAME = "index.csv"
CSV_FIELDS = (
    "file",
    "index",
    "source_label",
    "goal",
    "pred_before",
    "pred_after",
    "png_pred",
    "png_goal_confidence",
    "success",
    "png_success",
    "l0",
    "l2",
    "linf",
    "steps",
)
#: Class-index fields that get a ``<field>_name`` beside them when class names are given.
NAMED_FIELDS = ("source_label", "goal", "pred_before", "pred_after", "png_pred", "reference_label")


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(28, 28) uint8 from a float image in [0, 1], rounded as every PNG writer should."""
    arr = np.asarray(image, dtype=np.float32).reshape(28, 28)
    return np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)


def png_bytes(image: np.ndarray, *, scale: int = 1) -> bytes:
    """An 8-bit grayscale PNG of a 28x28 image, enlarged ``scale`` times (nearest neighbour)."""
    from PIL import Image

    img = Image.fromarray(to_uint8(image))  # 2-D uint8: mode "L"
    if scale > 1:
        img = img.resize((28 * scale, 28 * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def read_png(path: Path | str) -> np.ndarray:
    """Read an exported 28x28 grayscale PNG back as float32 (28, 28, 1) in [0, 1]."""
    from advgui.core.images import open_image, to_gray

    with open_image(path, max_pixels=28 * 28) as img:
        img.load()
        arr = to_gray(img) * np.float32(255.0)
    if arr.shape != (28, 28):
        raise ImageFileError(f"{path}: expected a 28x28 image, got {arr.shape[1]}x{arr.shape[0]}")
    return (arr / 255.0).reshape(28, 28, 1)


def _clean(value: Any) -> Any:
    """JSON-ready copy: numpy scalars and arrays to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        return _clean(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _model_info(clf: Any) -> dict[str, Any]:
    meta = getattr(clf, "meta", {}) or {}
    keys = ("name", "architecture", "path", "test_accuracy", "created", "dataset")
    return {"name": getattr(clf, "name", "model"), **{k: meta[k] for k in keys if k in meta}}


def export_image(
    result: Any,
    i: int,
    clf: Any,
    path: Path | str,
    *,
    index: int | None = None,
    extra: dict[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Write input ``i`` of ``result`` as ``path`` (PNG), ``<stem>_x10.png`` and ``<stem>.json``.

    The PNG is read back from disk and classified; the sidecar holds the attack's record plus
    ``png``, ``png_pred``, ``png_probs``, ``png_goal_confidence`` and ``png_success``, and,
    given the dataset's ``class_names``, ``<field>_name`` beside every class index.
    Returns the sidecar's content.
    """
    path, large, sidecar = export_paths(path)
    if not path.parent.is_dir():
        raise ExportError(f"folder does not exist: {path.parent}")
    atomic_write_bytes(path, png_bytes(result.x_adv[i]))
    atomic_write_bytes(large, png_bytes(result.x_adv[i], scale=ENLARGE))
    record = result.record(i)
    back = read_png(path)
    probs = clf.predict_proba(back[None])[0]
    png_pred = int(probs.argmax())
    goal = record["goal"]
    # Untargeted success moves away from the true label, or, where it is unknown (a user's
    # own picture), from the model's clean prediction: the same rule as the attacks'.
    reference = record["source_label"] if record["source_label"] >= 0 else record["pred_before"]
    png_success = png_pred == goal if goal is not None else png_pred != reference
    record.update(
        {
            "index": index,
            "reference_label": reference,
            "model": _model_info(clf),
            "png": path.name,
            "png_large": large.name,
            "png_pred": png_pred,
            "png_probs": [float(p) for p in probs],
            "png_goal_confidence": float(probs[goal if goal is not None else png_pred]),
            "png_success": bool(png_success),
            "png_max_abs_error": float(np.abs(back - result.x_adv[i]).max()),
        }
    )
    if result.cost_history is not None:
        record["cost_history"] = [float(c) for c in np.asarray(result.cost_history)[:, i]]
    if extra:
        record.update(extra)
    if class_names is not None:
        record["classes"] = list(class_names)
        for key in NAMED_FIELDS:
            value = record.get(key)
            if isinstance(value, (int, np.integer)) and 0 <= int(value) < len(class_names):
                record[f"{key}_name"] = class_names[int(value)]
            elif key in record:
                record[f"{key}_name"] = None
    from advgui.core.tuning import loaded_device

    record.setdefault("device", loaded_device())
    record = _clean(record)
    atomic_write_text(sidecar, json.dumps(record, indent=1) + "\n")
    return record


def export_paths(path: Path | str) -> tuple[Path, Path, Path]:
    """The three files :func:`export_image` writes for ``path``: PNG, enlarged PNG, sidecar
    (so a caller can check them all before any work)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_suffix(".png")
    return path, path.with_name(f"{path.stem}_x{ENLARGE}.png"), path.with_suffix(".json")


def png_prediction(clf: Any, image: np.ndarray) -> int:
    """The class of ``image`` after the 8-bit rounding of a PNG export (nothing written)."""
    return int(clf.predict((to_uint8(image).astype(np.float32) / 255.0)[None, :, :, None])[0])


def png_predictions(clf: Any, images: np.ndarray) -> np.ndarray:
    """The classes of a batch of images after the 8-bit rounding of a PNG export, in one
    forward pass (what :func:`png_prediction` gives one at a time)."""
    x = np.asarray(images, np.float32).reshape(-1, 28, 28)
    rounded = np.round(np.clip(np.nan_to_num(x), 0.0, 1.0) * 255.0).astype(np.float32) / 255.0
    return np.asarray(clf.predict(rounded[..., None]), np.int64)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "adv"


def export_batch(
    result: Any,
    clf: Any,
    folder: Path | str,
    *,
    indices: Sequence[int] | None = None,
    prefix: str | None = None,
    sources: Sequence[Path | str] | None = None,
    class_names: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Export every input of ``result`` into ``folder`` plus one ``index.csv``.

    ``indices`` are the test-set indices of the inputs (named in files and the CSV), if known;
    ``sources`` the files a user's own images came from (named in the file names, in each
    sidecar as ``source_file`` and in a ``source_file`` CSV column); ``class_names`` add the
    classes' names to the sidecars and ``<field>_name`` columns to the CSV.
    """
    folder = Path(folder)
    n = len(result)
    if indices is not None and len(indices) != n:
        raise ExportError(f"{len(indices)} indices for {n} images")
    if sources is not None and len(sources) != n:
        raise ExportError(f"{len(sources)} source files for {n} images")
    goals = None if result.goals is None else [int(g) for g in result.goals]
    names = batch_names(prefix or result.method, n, indices=indices, goals=goals, sources=sources)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ExportError(f"cannot create folder {folder}: {err.strerror or err}") from err
    records = []
    for i in range(n):
        idx = None if indices is None else int(indices[i])
        extra = None if sources is None else {"source_file": str(sources[i])}
        records.append(
            export_image(
                result, i, clf, folder / names[i], index=idx, extra=extra, class_names=class_names
            )
        )
    fields = CSV_FIELDS
    if class_names is not None:
        fields = (*fields, *(f"{k}_name" for k in NAMED_FIELDS if k != "reference_label"))
    if sources is not None:
        fields = (*fields, "source_file")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for rec in records:
        row = {k: rec.get(k) for k in fields}
        row["file"] = rec["png"]
        row["png_goal_confidence"] = f"{rec['png_goal_confidence']:.6f}"
        for key in ("l2", "linf"):
            row[key] = f"{rec[key]:.6f}"
        writer.writerow(row)
    atomic_write_text(folder / CSV_NAME, buf.getvalue())
    return records


def batch_names(
    prefix: str,
    n: int,
    *,
    indices: Sequence[int] | None = None,
    goals: Sequence[int] | None = None,
    sources: Sequence[Path | str] | None = None,
) -> list[str]:
    """The PNG names :func:`export_batch` gives its ``n`` images (each also gets
    ``<stem>_x10.png`` and ``<stem>.json``; the folder also gets ``index.csv``)."""
    prefix = _safe(prefix)
    names = []
    for i in range(n):
        name = f"{prefix}_{i:04d}"
        name += f"_idx{int(indices[i])}" if indices is not None else ""
        name += f"_{_safe(Path(sources[i]).stem)}" if sources is not None else ""
        name += f"_to{int(goals[i])}" if goals is not None else ""
        names.append(f"{name}.png")
    return names
