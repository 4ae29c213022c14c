"""Helpers shared by the subcommands: the dataset, progress, output options and paths, JSON,
numbers.

Every command keeps stdout for its final result (so it can be piped) and stderr for progress
and notes; ``--json -`` puts the record on stdout instead, and then nothing else goes there.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

from advgui.core.errors import ImageFileError, ParameterError
from advgui.core.fileio import atomic_write_text, describe_os_error, json_default
from advgui.core.progress import Progress

#: ``--json -``: the record goes to stdout.
STDOUT = "-"


class ProgressBar:
    """Progress on stderr, with rate and ETA like tqdm: a redrawn bar on a terminal, a line
    every few seconds otherwise (a log file gets a readable history, not thousands of lines).

    ``unit`` names what ``done`` counts; ``"B"`` is shown as kB/MB. A new phase (``total``
    changes or ``done`` goes back) restarts the rate, so a job's preparation does not skew it.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        width: int = 30,
        *,
        unit: str = "it",
        enabled: bool = True,
    ) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.unit = unit
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self._start = self._t0 = time.monotonic()
        self._done0 = 0.0
        self._total: float | None = None
        self._prev_done = 0.0
        self._last = -math.inf
        self._open = False

    def __call__(self, update: Progress) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if update.total != self._total or update.done < self._prev_done:
            if self._total is not None:  # a new phase: its rate starts now
                self._t0, self._done0 = now, float(update.done)
            self._total = update.total
        self._prev_done = float(update.done)
        final = update.done >= update.total
        if not final and now - self._last < (0.1 if self.tty else 5.0):
            return
        self._last = now
        line = self.format(update, now)
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
            self._open = not final
            if final:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def format(self, update: Progress, now: float) -> str:
        """``[####------]  40.0% 12/30 [00:04<00:06, 3 it/s] message key=value``."""
        filled = int(self.width * update.fraction)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = now - self._start
        span = now - self._t0
        rate = (update.done - self._done0) / span if span > 1e-3 else math.nan
        left = max(0.0, update.total - update.done)
        if left == 0:
            eta = "00:00"
        elif math.isfinite(rate) and rate > 0:
            eta = _clock(left / rate)
        else:
            eta = "?"
        extra = " ".join(f"{k}={_fmt(v)}" for k, v in update.info.items())
        if update.total <= 1:  # a phase without a count ("preparing", "npm pack"): no rate
            head = f"[{bar}] {100 * update.fraction:5.1f}% [{_clock(elapsed)}]"
            return f"{head} {update.message} {extra}".rstrip()
        count = f"{_amount(update.done, self.unit)}/{_amount(update.total, self.unit)}"
        unit = "" if self.unit == "B" else f" {self.unit}"
        speed = f"{_amount(rate, self.unit) if math.isfinite(rate) else '?'}{unit}/s"
        return (
            f"[{bar}] {100 * update.fraction:5.1f}% {count} [{_clock(elapsed)}<{eta}, {speed}] "
            f"{update.message} {extra}"
        ).rstrip()

    def close(self) -> None:
        if self._open and self.tty:
            self.stream.write("\n")
            self._open = False


def _clock(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    return (
        f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
        if hours
        else f"{rest // 60:02d}:{rest % 60:02d}"
    )


def _amount(value: float, unit: str) -> str:
    """A count: bytes scaled to kB/MB/GB with the unit, anything else a short number."""
    if unit == "B":
        for prefix in ("", "k", "M"):
            if abs(value) < 1000:
                return f"{value:.0f} B" if not prefix else f"{value:.1f} {prefix}B"
            value /= 1000
        return f"{value:.1f} GB"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# ---------------------------------------------------------------------------- dataset

#: Record keys holding a class index; :func:`with_names` adds ``<key>_name`` beside each.
LABEL_KEYS = (
    "source_label",
    "goal",
    "target",
    "pred_before",
    "pred_after",
    "png_pred",
    "reference_label",
    "class",
)


def dataset_spec(args: argparse.Namespace) -> Any:
    """The spec of the dataset the command works on (``--dataset``, default MNIST)."""
    from advgui.core import data

    return data.get_spec(getattr(args, "dataset", None))


def load_data(args: argparse.Namespace) -> Any:
    """The command's dataset from ``--data`` or the offline sources (never the network: that
    is ``advgui data fetch``'s job)."""
    from advgui.core import data

    return data.load_dataset(
        dataset_spec(args), getattr(args, "data", None), use_download=False, use_npm=False
    )


def model_store(args: argparse.Namespace) -> Any:
    """The model store of the command's dataset (each dataset keeps its own)."""
    from advgui.core import paths
    from advgui.core.store import ModelStore

    return ModelStore(paths.store_dir(dataset_spec(args).name))


def with_names(record: dict[str, Any], spec: Any) -> dict[str, Any]:
    """``record`` with ``<key>_name`` (the class name) after every class index it holds:
    JSON records carry both, whatever the dataset."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        out[key] = value
        if key in LABEL_KEYS and isinstance(value, int) and not isinstance(value, bool):
            out[f"{key}_name"] = spec.class_name(value) if value >= 0 else None
    return out


def eps_help(what: str = "attack budget") -> str:
    from advgui.core import data

    return f"{what} (default {data.eps_defaults_text()})"


# ---------------------------------------------------------------------------- options


def add_output_options(p: argparse.ArgumentParser, *, json_help: str | None = None) -> None:
    """``--quiet`` and (given ``json_help``) ``--json PATH|-``, the same for every command."""
    p.add_argument(
        "-q",
        "--quiet",
        action=_Quiet,
        nargs=0,
        default=False,
        help="nothing on stderr but errors: no progress, notes or TensorFlow start-up lines",
    )
    if json_help is not None:
        p.add_argument(
            "--json", metavar="PATH|-", help=f"{json_help}; '-' writes it to stdout instead of "
            "the summary (which then goes to stderr, unless --quiet)"
        )  # fmt: skip


class _Quiet(argparse.Action):
    """``--quiet``: also silences TensorFlow's start-up, which happens before any command code
    could ask (loading the model imports it)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        from advgui.core import tfimport

        tfimport.quiet_start()
        setattr(namespace, self.dest, True)


def progress_bar(args: argparse.Namespace, *, unit: str = "it") -> ProgressBar:
    return ProgressBar(unit=unit, enabled=not getattr(args, "quiet", False))


def note(args: argparse.Namespace, text: str) -> None:
    """A line for the person watching (skipped files, hints): stderr, silenced by --quiet."""
    if not getattr(args, "quiet", False):
        print(text, file=sys.stderr)


def finish(args: argparse.Namespace, payload: Any, text: str) -> None:
    """The final result: ``text`` on stdout and the record in ``--json PATH``; with
    ``--json -`` the record is stdout's only content and ``text`` goes to stderr."""
    target = getattr(args, "json", None)
    if target == STDOUT:
        sys.stdout.write(dumps_json(payload))
        sys.stdout.flush()
        note(args, text)
        return
    if target:
        write_json(target, payload)
    print(text)


def dumps_json(payload: Any) -> str:
    """Strict JSON (NaN and infinities become null, so any JSON reader accepts it). A record
    (a dict) says which device ran it (``device``: null when no model was loaded)."""
    if isinstance(payload, dict) and "device" not in payload:
        from advgui.core.tuning import loaded_device

        payload = {**payload, "device": loaded_device()}
    return json.dumps(_finite(payload), indent=2, default=json_default, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "dtype") and hasattr(value, "tolist"):  # numpy scalars and arrays
        return _finite(value.tolist())
    return value


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    atomic_write_text(path, dumps_json(payload))


# ---------------------------------------------------------------------------- output paths


def add_model_outputs(p: argparse.ArgumentParser, *, json_help: str) -> None:
    """A training command's outputs: ``--out MODEL.keras``, ``--quiet``/``--json`` and
    ``--no-store`` (the same for ``advgui train`` and ``advgui defend``)."""
    p.add_argument("--out", required=True, metavar="MODEL.keras", help="where to save the model")
    add_output_options(p, json_help=json_help)
    p.add_argument("--no-store", action="store_true", help="do not add it to the model store")


def add_precision_option(p: argparse.ArgumentParser, *, what: str) -> None:
    """``--precision float32|mixed`` (training and attacks alike; core/precision.py)."""
    from advgui.core.precision import PRECISIONS

    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help=f"arithmetic of {what}: float32 (default) or mixed, Keras's mixed_float16 on a "
        "GPU and mixed_bfloat16 on a CPU with bf16/AMX instructions (refused elsewhere: "
        "slower there)",
    )


def precision_policy(args: argparse.Namespace) -> str:
    """The dtype policy of ``--precision`` here (loads TensorFlow); a one-line error (exit 2)
    where mixed is refused, before any data or model is loaded."""
    from advgui.core.precision import policy

    return policy(getattr(args, "precision", "float32"))


def train_with_bar(
    args: argparse.Namespace,
    train: Callable[[Callable[[Progress], None]], Any],
    brief: Callable[[dict[str, Any]], dict[str, Any]],
) -> Any:
    """Run ``train(progress)`` under the terminal progress bar, which shows ``brief(info)``:
    only the figures a person watches, not every plot value."""
    bar = progress_bar(args, unit="batch")

    def progress(update: Progress) -> None:
        bar(Progress(update.done, update.total, update.message, brief(update.info)))

    try:
        return train(progress)
    finally:
        bar.close()


def keep_model(args: argparse.Namespace, clf: Any, out: Path) -> Path | None:
    """Keep a trained model in the model store (unless ``--no-store``), then save it to
    ``--out`` (a copy, not marked as the store's); the stored file's path or None."""
    from advgui.core import models

    stored = None
    if not args.no_store:
        stored = model_store(args).add(clf)
        clf.meta.pop("stored", None)
    models.save_model(clf, out)
    return stored


def finish_training(
    args: argparse.Namespace, payload: dict[str, Any], text: str, stored: Path | None
) -> int:
    """Report a training command's result (with where the store keeps it)."""
    if stored is not None:
        payload["stored"] = str(stored)
        text += f"\nkept in the model store: {stored}"
    finish(args, payload, text)
    return 0


def check_model_outputs(args: argparse.Namespace) -> Path:
    """``--out MODEL.keras`` (and ``--json``) of a training command, checked before any work."""
    out = Path(args.out)
    if out.suffix != ".keras":
        raise ParameterError(f"--out {out}: model files must end in .keras", field="out")
    check_outputs([("--out", out), ("--json", args.json)])
    return out


def check_outputs(
    files: Iterable[tuple[str, str | Path | None]],
    *,
    folders: Iterable[tuple[str, str | Path | None]] = (),
    inputs: Iterable[tuple[str, str | Path | None]] = (),
) -> None:
    """Refuse, before any work, every output a command could not write or should not.

    ``files`` are ``(what, path)`` pairs (``what`` names the option in the message; a path of
    None or ``-`` is skipped): each must not be a folder, its folder must exist and accept a
    file, and no two may be the same file, nor any be one of the ``inputs``. ``folders`` are
    output folders: existing and writable, or to be created in an existing folder. Raises
    :class:`ParameterError` with one line; nothing is written (the write probe is removed).
    """
    seen: dict[str, str] = {}
    for what, path in inputs:
        if path is not None and path != STDOUT:
            seen.setdefault(_key(path), f"the input {what} ({path})")
    probed: set[str] = set()
    made: set[str] = set()  # output folders, maybe still to be created: their files are new
    for what, path in folders:
        if path is None:
            continue
        folder = Path(path)
        made.add(_key(folder))
        if folder.exists() and not folder.is_dir():
            raise ParameterError(f"{what} {folder}: exists and is not a folder", field="out")
        where = folder if folder.is_dir() else folder.parent
        if not where.is_dir():
            raise ParameterError(f"{what} {folder}: folder {where} does not exist", field="out")
        _probe(what, where, probed)
    for what, path in files:
        if path is None or path == STDOUT:
            continue
        p = Path(path)
        if p.is_dir():
            raise ParameterError(f"{what} {p}: is a folder, not a file name", field="out")
        if not p.parent.is_dir() and _key(p.parent) not in made:
            raise ParameterError(f"{what} {p}: folder {p.parent} does not exist", field="out")
        key = _key(p)
        if key in seen:
            raise ParameterError(
                f"{what} {p} is the same file as {seen[key]}; choose another name", field="out"
            )
        seen[key] = f"{what} ({p})"
        if p.parent.is_dir():
            _probe(what, p.parent, probed)


def _key(path: str | Path) -> str:
    return os.path.normcase(str(Path(path).expanduser().resolve()))


def _probe(what: str, folder: Path, done: set[str]) -> None:
    """Create and remove a file where the atomic writer will: permissions, read-only disks."""
    key = _key(folder)
    if key in done:
        return
    done.add(key)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".advgui-probe-")
    except OSError as err:
        raise ParameterError(f"{what}: {describe_os_error(err, folder)}", field="out") from err
    os.close(fd)
    os.unlink(tmp)


# ---------------------------------------------------------------------------- user images

#: More files than this in an --images folder is refused before any is read: a lab tool's
#: batch is a handful to a few thousand digits, not a whole photo library.
MAX_FOLDER_FILES = 10_000


def add_image_options(group: argparse._ActionsContainer) -> None:
    """``--image FILE`` and ``--images DIR`` (the user's own pictures)."""
    group.add_argument(
        "--image", metavar="FILE", help="a PNG/JPG (any size; converted like the GUI import: "
        "grayscale, inverted if dark on light; MNIST: the digit centred by mass in 20x20 of "
        "28x28; Fashion-MNIST: the whole picture fitted into 28x28 and centred, no digit-style "
        "centring)"
    )  # fmt: skip
    group.add_argument(
        "--images", metavar="DIR", help="every image file in folder DIR (not its subfolders; "
        f"files that are not images are skipped and named; at most {MAX_FOLDER_FILES} files)"
    )  # fmt: skip


def image_files(folder: str | Path) -> list[Path]:
    """The files of ``folder`` (sorted, no subfolders); an empty or absurd folder is refused."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "no such folder" if not folder.exists() else "not a folder"
        raise ImageFileError(f"--images {folder}: {what}")
    files = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_file():
                    files.append(Path(entry.path))
                    if len(files) > MAX_FOLDER_FILES:
                        raise ImageFileError(
                            f"--images {folder}: more than {MAX_FOLDER_FILES} files; "
                            "split them into smaller folders"
                        )
    except OSError as err:
        raise ImageFileError(f"--images {folder}: {err.strerror or err}") from err
    if not files:
        raise ImageFileError(f"--images {folder}: the folder has no files")
    return sorted(files)


def load_user_images(
    image: str | None,
    folder: str | None,
    *,
    progress: Callable[[Progress], None] | None = None,
    skipped: Callable[[str], None] | None = None,
    style: str = "digit",
) -> tuple[Any, list[Path], list[dict[str, str]]]:
    """Read ``--image`` or every image of ``--images`` as the dataset's images (``style``:
    MNIST-style digits or Fashion-MNIST-style objects, see :mod:`advgui.core.images`).

    Returns the (N, 28, 28, 1) array, the files it came from and the skipped files with the
    reason. A bad ``--image`` is an error; in a folder, files that are not usable images are
    skipped (reported through ``skipped``), and a folder without any image is an error.
    """
    import numpy as np

    from advgui.core.images import load_image

    if image is not None:
        return load_image(image, style=style)[None], [Path(image)], []
    assert folder is not None
    files = image_files(folder)
    digits, used, left = [], [], []
    for i, path in enumerate(files):
        try:
            digits.append(load_image(path, style=style))
            used.append(path)
        except ImageFileError as err:
            reason = str(err).removeprefix(f"{path}: ")
            left.append({"file": str(path), "reason": reason})
        if progress is not None:
            progress(Progress(i + 1, len(files), "reading images"))
    if not digits:  # one line, as for every refused input
        first = left[0]
        raise ImageFileError(
            f"--images {folder}: none of its {len(files)} files is a usable image "
            f"({Path(first['file']).name}: {first['reason']})"
        )
    for entry in left:
        if skipped is not None:
            skipped(f"skipped {Path(entry['file']).name}: {entry['reason']}")
    return np.stack(digits), used, left


def add_certify_options(
    p: argparse.ArgumentParser, *, certify_help: str, sigma_help: str, radius: str
) -> None:
    """``--certify smoothing|ibp`` and smoothing's own options, the same for ``evaluate`` and
    ``leaderboard``; ``radius`` is ``radii`` (evaluate: a list) or ``radius`` (leaderboard:
    the one radius its column shows)."""
    from advgui.core.evaluation import CERTIFY_METHODS

    p.add_argument("--certify", choices=CERTIFY_METHODS, help=certify_help)
    p.add_argument("--sigma", type=finite_float, help=sigma_help)
    p.add_argument(
        "--n-samples", type=positive_int, help="smoothing: noise samples "
        "per image for the bound (default 100000)",
    )  # fmt: skip
    p.add_argument(
        "--n0", type=positive_int, help="smoothing: samples to pick the class (default 100)"
    )
    p.add_argument(
        "--alpha", type=finite_float, help="smoothing: failure probability (default 0.001)"
    )
    if radius == "radii":
        p.add_argument(
            "--radii",
            help="smoothing: L2 radii to report certified accuracy at (default 0,0.25,...,2)",
        )
    else:
        p.add_argument(
            "--radius",
            type=finite_float,
            help="smoothing: the L2 radius whose certified accuracy is shown (default 0.5)",
        )


def certify_options(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields of :func:`add_certify_options` that were given (``certify``,
    ``sigma``, ``n_samples``, ``n0``, ``alpha``, ``radii`` or ``radius``, and evaluate's
    ``smoothing_attack`` options); a smoothing option
    without ``--certify smoothing`` is refused. Ranges are the config's to check."""
    smoothing_only = {
        "--sigma": "sigma",
        "--n-samples": "n_samples",
        "--n0": "n0",
        "--alpha": "alpha",
        "--radii": "radii",
        "--radius": "radius",
        "--smoothing-attack": "smoothing_attack",
        "--smoothing-attack-samples": "smoothing_attack_samples",
    }
    given = {
        name: getattr(args, name)
        for name in smoothing_only.values()
        if getattr(args, name, None) is not None
    }
    for option, name in smoothing_only.items():
        if name in given and args.certify != "smoothing":
            raise ParameterError(f"{option} needs --certify smoothing", field="certify")
    if args.certify is None:
        return {}
    if "radii" in given:
        from advgui.core.certify import parse_radii

        given["radii"] = parse_radii(given["radii"])
    return {"certify": args.certify, **given}


# ---------------------------------------------------------------------------- numbers


def finite_float(text: str) -> float:
    """argparse type: a finite float (NaN and infinities are refused with a clear message)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """argparse type: a whole number, 0 allowed (0 turns a step off)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value
