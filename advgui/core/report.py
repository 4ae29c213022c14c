"""The lab report: a student's stored work (models, attack runs, defense comparisons) as one
self-contained HTML file an instructor can open anywhere, or print to PDF through Qt.

Stored files are hostile input: every text taken from them is escaped, numbers are checked
before use, reads are bounded, and a damaged entry becomes a line in the report rather than a
crash. Images are PNG data URIs drawn with Pillow, so the file has no external references.
"""

from __future__ import annotations

import base64
import datetime as _dt
import getpass
import html
import io
import json
import math
import re
import zipfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from advgui import __version__
from advgui.core import evaluation, history, paths
from advgui.core.data import MNIST, DatasetSpec, get_spec, model_dataset, spec_for_sha256
from advgui.core.errors import DataError, ParameterError
from advgui.core.fileio import atomic_write_text
from advgui.core.progress import CancelToken, Progress, ProgressCallback, check
from advgui.core.results import ARRAYS_NPZ, ResultEntry, ResultStore
from advgui.core.store import ModelStore, StoreEntry

#: Entries of each kind put in one report (the rest are counted, not shown).
MAX_ENTRIES = 1000
#: Images shown per attack run (a batch run's first ones; its figures cover all).
MAX_IMAGES = 8
#: Uncompressed size of an attack's arrays.npz read at most (1,000 images take about 7 MB).
MAX_ARRAY_BYTES = 128 * 1024 * 1024
#: Rows of a comparison table, items of a parameter table, characters of one value.
MAX_ROWS = 400
MAX_ITEMS = 60
MAX_TEXT = 300
#: What a damaged stored entry raises while it is read or drawn.
_DAMAGED = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, DataError)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PALETTE = evaluation.PALETTE
_CSS = """
body { font-family: sans-serif; font-size: 10pt; color: #222; max-width: 62em; margin: 1em auto; }
h1 { font-size: 18pt; } h2 { font-size: 14pt; border-bottom: 1px solid #999; margin-top: 1.6em; }
h3 { font-size: 11pt; margin-top: 1.2em; }
table { border-collapse: collapse; margin: 0.3em 0; }
td, th { border: 1px solid #bbb; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background-color: #eee; }
.num { text-align: right; } .muted { color: #777; } .bad { color: #b00; }
img { image-rendering: pixelated; }
"""


@dataclass
class Report:
    """The rendered HTML and the names of what it holds."""

    html: str
    models: list[str] = field(default_factory=list)
    attacks: list[str] = field(default_factory=list)
    comparisons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def n(count: int, word: str) -> str:
            return f"{count} {word}{'' if count == 1 else 's'}"

        return (
            f"{n(len(self.models), 'model')}, {n(len(self.attacks), 'attack run')}, "
            f"{n(len(self.comparisons), 'defense comparison')}"
        )


def parse_since(text: str) -> _dt.date:
    """``YYYY-MM-DD`` as a date; :class:`ParameterError` otherwise."""
    text = str(text).strip()
    try:
        if not _DATE.fullmatch(text):
            raise ValueError
        return _dt.date.fromisoformat(text)
    except ValueError:
        raise ParameterError(f"not a date (YYYY-MM-DD): {text[:40]!r}", field="since") from None


def build_report(
    *,
    since: _dt.date | None = None,
    models_root: Path | str | None = None,
    results_root: Path | str | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    dataset: str | DatasetSpec | None = None,
) -> Report:
    """Gather the stored work (made on or after ``since``, local time) and render it.

    ``dataset`` (default MNIST) chooses the stores (each dataset keeps its own) and how classes
    are named. Reads only files (no TensorFlow, no Qt): model metadata, result JSON and arrays.
    """
    spec = get_spec(dataset)
    warnings: list[str] = []
    cutoff = None if since is None else _dt.datetime.combine(since, _dt.time.min).astimezone()
    model_store = ModelStore(models_root if models_root is not None else paths.store_dir(spec.name))
    result_store = ResultStore(
        results_root if results_root is not None else paths.results_dir(spec.name)
    )
    models = model_store.entries(warnings)
    results = result_store.entries(warnings=warnings)
    models = [m for m in models if _keep(_when(m.meta.get("trained_at"), m.path), cutoff)]
    results = [r for r in results if _keep(_when(r.created, r.path), cutoff)]
    attacks = [r for r in results if r.kind == history.ATTACK_KIND]
    comparisons = [r for r in results if r.kind == history.COMPARISON_KIND]
    others = len(results) - len(attacks) - len(comparisons)
    if others:
        warnings.append(f"{others} stored result(s) of unknown kind left out")
    report = Report("")
    groups = {"model": models, "attack": attacks, "comparison": comparisons}
    for kind, found in groups.items():
        if len(found) > MAX_ENTRIES:
            warnings.append(f"only the first {MAX_ENTRIES} of {len(found)} {kind} entries shown")
            del found[MAX_ENTRIES:]
    total = len(models) + len(attacks) + len(comparisons)
    done = 0
    sections: dict[str, list[str]] = {k: [] for k in groups}
    renderers = {
        "model": partial(_model_section, spec=spec),
        "attack": partial(_attack_section, spec=spec),
        "comparison": _cmp_section,
    }
    names = {"model": report.models, "attack": report.attacks, "comparison": report.comparisons}
    for kind, found in groups.items():
        for i, entry in enumerate(found, 1):
            check(cancel)
            name = entry.name
            if progress is not None:
                progress(Progress(done, total, f"{kind}: {name[:60]}"))
            anchor = f"{kind}-{i}"
            try:
                body = renderers[kind](entry)
            except _DAMAGED as err:
                where = entry.path.name
                warnings.append(f"damaged {kind} {where}: {_short(err)}")
                body = f"<p class='bad'>Damaged entry ({_e(where)}), not shown: {_e(err)}</p>"
            sections[kind].append(f"<h3 id='{anchor}'>{_e(name)}</h3>\n{body}")
            names[kind].append(name)
            done += 1
    report.warnings = warnings
    report.html = _page(report, sections, since, (model_store.root, result_store.root), spec)
    if progress is not None:
        progress(Progress(total, total, "report ready"))
    return report


def write_html(report: Report, path: Path | str) -> None:
    atomic_write_text(path, report.html)


# --------------------------------------------------------------------------- page


def _page(
    report: Report,
    sections: dict[str, list[str]],
    since: _dt.date | None,
    roots: tuple[Path, Path],
    spec: DatasetSpec = MNIST,
) -> str:
    now = _dt.datetime.now().astimezone()
    try:
        user = getpass.getuser()
    except (OSError, KeyError, ImportError):
        user = "unknown"
    scope = f"work stored since {since.isoformat()}" if since else "all stored work"
    head = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>advgui lab report: {_e(user)}, {now:%Y-%m-%d}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>advgui lab report</h1>",
        "<table border='1' cellspacing='0' cellpadding='3'>",
        _row("user", user),
        _row("generated", now.isoformat(timespec="seconds")),
        _row("advgui", __version__),
        _row("contents", f"{report.summary()} ({scope})"),
        _row("dataset", f"{spec.title} ({spec.name})"),
        _row("model store", str(roots[0])),
        _row("results", str(roots[1])),
        "</table>",
    ]
    if report.warnings:
        items = "".join(f"<li>{_e(w)}</li>" for w in report.warnings[:MAX_ROWS])
        head.append(f"<p class='bad'>Left out or damaged:</p><ul>{items}</ul>")
    toc = ["<h2>Contents</h2>"]
    titles = {"model": "Models", "attack": "Attack runs", "comparison": "Defense comparisons"}
    lists = {"model": report.models, "attack": report.attacks, "comparison": report.comparisons}
    for kind, title in titles.items():
        links = "".join(
            f"<li><a href='#{kind}-{i}'>{_e(name)}</a></li>"
            for i, name in enumerate(lists[kind], 1)
        )
        toc.append(f"<p><b>{title}</b> ({len(lists[kind])})</p><ol>{links}</ol>")
    body = []
    for kind, title in titles.items():
        body.append(f"<h2>{title}</h2>")
        body.extend(sections[kind] or ["<p class='muted'>None stored.</p>"])
    return "\n".join([*head, *toc, *body, "</body></html>\n"])


# --------------------------------------------------------------------------- models


def _model_section(entry: StoreEntry, spec: DatasetSpec = MNIST) -> str:
    m = entry.meta
    sha = m.get("dataset_sha256")
    known = spec_for_sha256(sha)
    sha_text = (
        None
        if sha is None
        else f"{_text(sha)}" + (f" (the standard {known.title})" if known is not None else "")
    )
    spec = model_dataset(m) or spec  # its classes, whichever store it sits in
    facts = [
        ("file", entry.path.name),
        ("architecture", m.get("architecture")),
        ("defense", m.get("defense")),
        ("trained at", m.get("trained_at")),
        ("dataset SHA-256", sha_text),
        ("weights", m.get("num_weights")),
        ("test accuracy", _pct(m.get("test_accuracy"))),
        ("epochs completed", m.get("epochs_completed")),
        ("stopped early", m.get("cancelled")),
        ("training time", _seconds(m.get("seconds"))),
    ]
    facts = [(k, v) for k, v in facts if v is not None or k in ("test accuracy", "dataset SHA-256")]
    out = [_table(facts)]
    params = m.get("params") if isinstance(m.get("params"), dict) else m.get("defense_config")
    out.append("<p><b>Parameters</b></p>")
    out.append(_table(_items(params)) if isinstance(params, dict) else _not_recorded())
    out.append("<p><b>Training curves</b></p>")
    charts = _history_charts(m.get("history"))
    out.append(f"<p>{' '.join(_img(c, 330) for c in charts)}</p>" if charts else _not_recorded())
    what = "digit" if spec.digits else "class"
    out.append(
        f"<p><b>Confusion matrix</b> (test set; rows: actual {what}, columns: predicted)</p>"
    )
    out.append(_confusion(m.get("confusion_matrix"), spec))
    return "\n".join(out)


def _history_charts(hist: Any) -> list[bytes]:
    """Loss and accuracy per epoch: a plain training's dict of lists, or a defended
    training's list of per-epoch records (held-out clean and PGD accuracy)."""
    if isinstance(hist, dict):
        xs = _floats(hist.get("epoch"))
        if xs is None or not len(xs):
            return []
        pairs = (("loss", ("loss", "val_loss")), ("accuracy", ("accuracy", "val_accuracy")))
    elif isinstance(hist, list) and hist and all(isinstance(r, dict) for r in hist[:10000]):
        records = hist[:10000]
        xs = np.arange(1, len(records) + 1, dtype=np.float64)
        hist = {
            k: [r.get(k) for r in records] for k in ("loss", "clean_accuracy", "robust_accuracy")
        }
        pairs = (("loss", ("loss",)), ("held-out accuracy", ("clean_accuracy", "robust_accuracy")))
    else:
        return []
    charts = []
    for title, keys in pairs:
        series = []
        for key in keys:
            ys = _floats(hist.get(key))
            if ys is not None and len(ys) == len(xs):
                series.append((key.replace("_", " "), xs, ys))
        if series:
            acc = "accuracy" in title
            charts.append(
                line_chart(
                    series, title=title, x_label="epoch", y_range=(0.0, 1.0) if acc else None
                )
            )
    return charts


def _confusion(value: Any, spec: DatasetSpec = MNIST) -> str:
    try:
        cm = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        cm = None
    if cm is None or cm.shape != (10, 10) or not np.isfinite(cm).all() or (cm < 0).any():
        return _not_recorded()
    cm = cm.astype(np.int64)
    rows = ["<table class='confusion' border='1' cellspacing='0' cellpadding='2'><tr><th></th>"]
    rows += [f"<th class='num'>{j}</th>" for j in range(10)]
    rows.append("</tr>")
    for i in range(10):
        total = max(int(cm[i].sum()), 1)
        cells = []
        for j in range(10):
            share = cm[i, j] / total
            if i == j:
                color = _mix((255, 255, 255), (120, 200, 120), share)
            else:
                color = _mix((255, 255, 255), (230, 90, 90), min(1.0, share * 10))
            cells.append(f"<td class='num' style='background-color:{color}'>{cm[i, j]}</td>")
        rows.append(f"<tr><th class='num'>{_e(spec.label(i))}</th>{''.join(cells)}</tr>")
    rows.append("</table>")
    return "".join(rows)


# --------------------------------------------------------------------------- attacks


def _attack_section(entry: ResultEntry, spec: DatasetSpec = MNIST) -> str:
    _check_arrays(entry.path / ARRAYS_NPZ)
    res, payload = history.load_attack(entry)
    n = len(res)
    png_pred = _png_pred(entry, n)
    s = res.summary()
    facts = [
        ("stored", entry.created),
        ("model", payload.get("model")),
        ("method", res.method),
        ("images", n),
        ("success rate", _pct(s["success_rate"])),
        (
            "accuracy clean / under attack",
            f"{_pct(s['clean_accuracy'])} / {_pct(s['robust_accuracy'])}",
        ),
        (
            "mean L0 / L2 / Linf (successes)",
            " / ".join(_num(s[f"mean_{k}"]) for k in ("l0", "l2", "linf")),
        ),
        ("time", _seconds(res.seconds)),
    ]
    note = res.details.stall_note
    if note:
        facts.append(("note", note))
    out = [_table(facts), "<p><b>Parameters</b></p>", _table(_items(res.params))]
    indices = payload.get("indices")
    inputs = payload["inputs"]
    lam = res.details.lam
    for i in range(min(n, MAX_IMAGES)):
        out.append(_attack_image(res, i, indices, inputs, png_pred, lam, spec))
    if n > MAX_IMAGES:
        out.append(
            f"<p class='muted'>The first {MAX_IMAGES} of {n} images are shown; the "
            "figures above cover all of them.</p>"
        )
    if res.cost_history is not None and np.asarray(res.cost_history).dtype.kind in "fiu":
        cost = np.asarray(res.cost_history, np.float64)
        if cost.ndim == 2 and cost.shape[1] == n and len(cost) > 1:
            xs = np.arange(1, len(cost) + 1, dtype=np.float64)
            series = [(f"image {i + 1}", xs, cost[:, i]) for i in range(min(n, MAX_IMAGES))]
            chart = line_chart(series, title="cost per step", x_label="step")
            out.append(f"<p>{_img(chart, 330)}</p>")
    return "\n".join(out)


def _attack_image(
    res: Any,
    i: int,
    indices: Any,
    inputs: np.ndarray,
    png_pred: Any,
    lam: Any,
    spec: DatasetSpec = MNIST,
) -> str:
    rec = res.record(i)
    x, adv = _finite(res.x[i]), _finite(res.x_adv[i])
    where = "random start (noise)" if not np.array_equal(res.x[i], inputs[i]) else "original"
    if isinstance(indices, list) and i < len(indices):
        where += f", test image {_text(indices[i])}"
    name = spec.label
    label = "unknown" if rec["source_label"] < 0 else name(rec["source_label"])
    if png_pred is not None:
        png = name(int(png_pred[i]))
    elif np.array_equal(adv, np.round(np.clip(adv, 0, 1) * 255) / 255):
        png = (
            f"{name(rec['pred_after'])} (the image is exactly 8-bit: its PNG holds the same pixels)"
        )
    else:
        png = None
    before, after = rec["pred_before"], rec["pred_after"]
    facts = [
        ("label", label),
        ("goal", "any other class" if rec["goal"] is None else name(rec["goal"])),
        ("predicted before", f"{name(before)} ({_pct(rec['probs_before'][before])})"),
        ("predicted after", f"{name(after)} ({_pct(rec['probs_after'][after])})"),
        ("exported PNG predicted", png),
        ("success", rec["success"]),
        ("L0 / L2 / Linf", f"{rec['l0']} / {_num(rec['l2'])} / {_num(rec['linf'])}"),
        ("steps", rec["steps"]),
    ]
    if isinstance(lam, list) and i < len(lam):
        facts.append(("lambda", _num(lam[i])))
    pics = (
        f"<table border='0' cellpadding='4'><tr>"
        f"<td>{_img(_digit_png(x), 112)}<br>{_e(where)}</td>"
        f"<td>{_img(_digit_png(adv), 112)}<br>adversarial</td>"
        f"<td>{_img(_delta_png(adv - x), 112)}<br>perturbation (red +, blue -)</td>"
        f"</tr></table>"
    )
    probs = ["<table border='1' cellspacing='0' cellpadding='2'><tr><th>class</th>"]
    probs += [f"<th class='num'>{_e(spec.label(d))}</th>" for d in range(10)]
    for name, p in (("before", rec["probs_before"]), ("after", rec["probs_after"])):
        top = int(np.argmax(p))
        cells = "".join(
            f"<td class='num'>{'<b>' if d == top else ''}{100 * v:.1f}{'</b>' if d == top else ''}"
            "</td>"
            for d, v in enumerate(p)
        )
        probs.append(f"</tr><tr><th>{name} (%)</th>{cells}")
    probs.append("</tr></table>")
    return f"<p><b>Image {i + 1}</b></p>{pics}{_table(facts)}{''.join(probs)}"


def _check_arrays(path: Path) -> None:
    """Refuse an arrays file whose content would unpack beyond :data:`MAX_ARRAY_BYTES`."""
    if not path.is_file():
        return
    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(info.file_size for info in zf.infolist())
    except (OSError, zipfile.BadZipFile) as err:
        raise DataError(f"{path.parent.name}: damaged result arrays ({err})") from err
    if total > MAX_ARRAY_BYTES:
        raise DataError(f"{path.parent.name}: result arrays too large ({total} bytes unpacked)")


def _png_pred(entry: ResultEntry, n: int) -> np.ndarray | None:
    """The recorded classes of the exported PNGs (runs stored before they were: None)."""
    try:
        with np.load(entry.path / ARRAYS_NPZ, allow_pickle=False) as npz:
            if "png_pred" not in npz.files:
                return None
            pred = np.asarray(npz["png_pred"])
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None
    if pred.shape != (n,) or pred.dtype.kind not in "iu":
        return None
    return pred.astype(np.int64)


# --------------------------------------------------------------------------- comparisons


def _cmp_section(entry: ResultEntry) -> str:
    result = history.load_comparison(entry)
    cfg = result.get("config") if isinstance(result.get("config"), dict) else {}
    facts = [
        ("stored", entry.created),
        ("images", result.get("n")),
        ("attacks", _join(result.get("attacks"))),
        ("epsilon (L-inf)", ", ".join(_num(e) for e in result["eps"][:MAX_ITEMS])),
        ("input transformations", _join(result.get("transforms"))),
        ("PGD steps / restarts", f"{_text(cfg.get('pgd_steps'))} / {_text(cfg.get('restarts'))}"),
        ("time", _seconds(result.get("seconds"))),
    ]
    out = [_table(facts)]
    if len(result["eps"]) <= MAX_ITEMS and len(result["results"]) <= MAX_ITEMS:
        out.append(f"<p>{_img(evaluation.render_png(result), 600)}</p>")
    else:
        out.append("<p class='muted'>Too many curves to plot; the table has the figures.</p>")
    rows = evaluation.rows(result)
    head = (
        "model",
        "transform",
        "defense",
        "attack",
        "eps",
        "clean",
        "robust",
        "naive",
        "adaptive",
    )
    table = ["<table border='1' cellspacing='0' cellpadding='2' width='100%'><tr>"]
    table += [f"<th>{h}</th>" for h in head]
    for r in rows[:MAX_ROWS]:
        cells = [_text(r["model"]), _text(r["transform"]), _text(r["defense"]), _text(r["attack"])]
        cells = [f"<td>{html.escape(c)}</td>" for c in cells] + [
            f"<td class='num'>{_num(r['eps'])}</td>"
        ]
        cells += [
            f"<td class='num'>{'n/a' if r[k] is None else _pct(r[k])}</td>"
            for k in ("clean_accuracy", "robust_accuracy", "naive", "adaptive")
        ]
        table.append(f"</tr><tr>{''.join(cells)}")
    table.append("</tr></table>")
    out.append("".join(table))
    if len(rows) > MAX_ROWS:
        out.append(f"<p class='muted'>The first {MAX_ROWS} of {len(rows)} rows are shown.</p>")
    out.append(
        "<p><b>Naive and adaptive attacks</b>: each attack ran on the defended model as it "
        "presents itself (naive) and through a view built against gradient masking "
        "(adaptive: logits divided by the distillation temperature, BPDA, EOT). The robust "
        "column counts an image only if it survived both.</p>"
    )
    notes = [
        _text(note, 2000)
        for e in result["results"]
        if isinstance(e, dict)
        for note in (e.get("notes") or [])[:MAX_ITEMS]
    ]
    if notes:
        out.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    else:
        out.append(
            "<p class='muted'>Naive and adaptive figures agree within "
            f"{100 * evaluation.MASKING_GAP:.0f} points everywhere (or no adaptive view "
            "applied): no sign of gradient masking.</p>"
        )
    return "\n".join(out)


# --------------------------------------------------------------------------- images


def line_chart(
    series: list[tuple[str, np.ndarray, np.ndarray]],
    *,
    title: str,
    x_label: str,
    y_range: tuple[float, float] | None = None,
    size: tuple[int, int] = (420, 260),
) -> bytes:
    """A small line chart as PNG (Pillow; matplotlib would be a heavy dependency for this)."""
    from PIL import Image, ImageDraw

    w, h = size
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    d.font = _font()
    left, right, top, bottom = 52, w - 12, 28, h - 36
    pts = [
        (float(x), float(y))
        for _, xs, ys in series
        for x, y in zip(xs, ys, strict=False)
        if math.isfinite(x) and math.isfinite(y)
    ]
    d.text((left, 8), title[:60], fill="black")
    if not pts:
        d.text((left, h // 2), "no finite values", fill=(120, 120, 120))
        return _png(img)
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = y_range or (min(p[1] for p in pts), max(p[1] for p in pts))
    if x1 - x0 < 1e-12:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def px(x: float, y: float) -> tuple[float, float]:
        y = min(max(y, y0), y1)
        return (
            left + (right - left) * (x - x0) / (x1 - x0),
            bottom - (bottom - top) * (y - y0) / (y1 - y0),
        )

    d.rectangle([left, top, right, bottom], outline="black")
    for k in range(5):
        v = y0 + (y1 - y0) * k / 4
        yy = px(x0, v)[1]
        d.line([left, yy, right, yy], fill=(228, 228, 228))
        d.text((4, yy - 7), f"{v:.3g}", fill="black")
    for v in (x0, (x0 + x1) / 2, x1):
        xx = px(v, y0)[0]
        d.text((xx - 8, bottom + 4), f"{v:.3g}", fill="black")
    d.text(((left + right) // 2 - 15, bottom + 18), x_label, fill="black")
    for k, (label, xs, ys) in enumerate(series):
        color = _PALETTE[k % len(_PALETTE)]
        line = [
            px(float(x), float(y))
            for x, y in zip(xs, ys, strict=False)
            if math.isfinite(x) and math.isfinite(y)
        ]
        if len(line) > 1:
            d.line(line, fill=color, width=2)
        if len(line) <= 30:
            for p in line:
                d.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=color)
        ly = top + 6 + 16 * k
        d.line([right - 120, ly + 6, right - 100, ly + 6], fill=color, width=3)
        d.text((right - 95, ly), label[:18], fill="black")
    return _png(img)


def _font() -> Any:
    """Pillow's scalable default font at a readable size (its old bitmap font otherwise)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=13)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or no FreeType
        return ImageFont.load_default()


def _digit_png(image: np.ndarray, scale: int = 4) -> bytes:
    from PIL import Image

    arr = np.round(np.clip(image.reshape(28, 28), 0, 1) * 255).astype(np.uint8)
    return _png(Image.fromarray(arr).resize((28 * scale, 28 * scale), Image.Resampling.NEAREST))


def _delta_png(delta: np.ndarray, scale: int = 4) -> bytes:
    """Red where pixels brightened, blue where they darkened, white unchanged."""
    from PIL import Image

    dd = delta.reshape(28, 28).astype(np.float64)
    peak = float(np.abs(dd).max()) or 1.0
    v = np.clip(dd / peak, -1, 1)
    rgb = np.full((28, 28, 3), 255.0)
    rgb[..., 1] -= 255 * np.abs(v)
    rgb[..., 2] -= 255 * np.clip(v, 0, 1)
    rgb[..., 0] -= 255 * np.clip(-v, 0, 1)
    img = Image.fromarray(rgb.round().astype(np.uint8))
    return _png(img.resize((28 * scale, 28 * scale), Image.Resampling.NEAREST))


def _png(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _img(png: bytes, width: int) -> str:
    return (
        f"<img width='{width}' alt='' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
    )


# --------------------------------------------------------------------------- text


def _keep(when: _dt.datetime | None, cutoff: _dt.datetime | None) -> bool:
    return cutoff is None or (when is not None and when >= cutoff)


def _when(text: Any, path: Path) -> _dt.datetime | None:
    """When an entry was made: its recorded time, else its file's modification time."""
    if isinstance(text, str) and text:
        try:
            t = _dt.datetime.fromisoformat(text[:40])
            return t if t.tzinfo else t.astimezone()
        except ValueError:
            pass
    try:
        return _dt.datetime.fromtimestamp(path.stat().st_mtime).astimezone()
    except (OSError, ValueError, OverflowError):
        return None


def _text(value: Any, limit: int = MAX_TEXT) -> str:
    """A bounded one-line rendering of any stored value (still to be escaped)."""
    if isinstance(value, float):
        text = _num(value)
    elif isinstance(value, (str, int, bool)) or value is None:
        text = str(value)
    else:
        try:
            text = json.dumps(value, default=str)[: limit + 1]
        except (TypeError, ValueError, RecursionError):
            text = type(value).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _e(value: Any) -> str:
    return html.escape(_text(value) if not isinstance(value, BaseException) else _short(value))


def _short(err: BaseException) -> str:
    return (str(err) or type(err).__name__)[:MAX_TEXT]


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return "n/a" if value is None else _text(value)
    return f"{float(value):.4g}" if math.isfinite(float(value)) else "n/a"


def _pct(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return "not recorded"
    return f"{100 * float(value):.1f}%" if math.isfinite(float(value)) else "n/a"


def _seconds(value: Any) -> str | None:
    n = _num(value)
    return None if value is None else (f"{n} s" if n != "n/a" else n)


def _floats(value: Any) -> np.ndarray | None:
    if not isinstance(value, list):
        return None
    try:
        arr = np.asarray([np.nan if v is None else v for v in value[:100000]], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.ndim == 1 else None


def _finite(image: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(image, np.float64), nan=0.0, posinf=1.0, neginf=0.0)


def _items(params: Any) -> list[tuple[str, Any]]:
    if not isinstance(params, dict):
        return []
    items = [(str(k), v) for k, v in list(params.items())[:MAX_ITEMS]]
    if len(params) > MAX_ITEMS:
        items.append(("...", f"{len(params) - MAX_ITEMS} more"))
    return items


def _join(values: Any) -> str:
    if not isinstance(values, list):
        return _text(values)
    return ", ".join(_text(v) for v in values[:MAX_ITEMS])


def _row(key: str, value: Any) -> str:
    return f"<tr><th>{_e(key)}</th><td>{_e(value)}</td></tr>"


def _table(items: list[tuple[str, Any]]) -> str:
    if not items:
        return "<p class='muted'>none</p>"
    body = "".join(_row(k, "not recorded" if v is None else v) for k, v in items)
    return f"<table border='1' cellspacing='0' cellpadding='3'>{body}</table>"


def _not_recorded() -> str:
    return "<p class='muted'>not recorded</p>"


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> str:
    t = min(max(float(t), 0.0), 1.0)
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b, strict=True))
