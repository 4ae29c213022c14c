"""The lab report: one self-contained HTML file (and a PDF through Qt) of the stored work.

The store holds real work: a small MLP trained on real MNIST, real attack runs and a real
defense comparison, plus an older model file without curves or confusion matrix and an attack
run dated 2020 (for --since).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from advgui.core import report
from advgui.core.errors import ParameterError

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = "<script>alert(1)</script>"


@dataclass
class Lab:
    home: Path
    models: Path
    results: Path
    clf: object
    model_names: list[str]
    attack_names: list[str]
    comparison_names: list[str]
    png_pred: list[int]
    notes: list[str]

    def names(self) -> list[str]:
        return self.model_names + self.attack_names + self.comparison_names


@pytest.fixture(scope="module")
def lab(mnist, tmp_path_factory) -> Lab:
    from advgui.core import evaluation, export, history, models, training
    from advgui.core.attacks import make_attack
    from advgui.core.results import ResultStore
    from advgui.core.store import ModelStore

    home = tmp_path_factory.mktemp("lab") / "home"
    model_root, result_root = home / "data" / "models", home / "data" / "results"
    cfg = training.TrainConfig(arch="mlp", epochs=2, n_train=2000, n_val=500, batch_size=64)
    clf = training.train(cfg, mnist).classifier
    clf.meta["name"] = "report-mlp"
    store = ModelStore(model_root)
    store.add(clf)
    # A file from before the confusion matrix was recorded: no history, no matrix.
    legacy_meta = {
        "name": "legacy-mlp",
        "architecture": "mlp",
        "trained_at": "2020-01-05T12:00:00+00:00",
    }
    store.add(models.Classifier(model=clf.model, meta=legacy_meta))

    results = ResultStore(result_root)
    x, y = mnist.x_test[:3], mnist.y_test[:3]
    fgsm = make_attack("fgsm", eps=0.25)(clf, x, labels=y)
    png = export.png_predictions(clf, fgsm.x_adv)
    first = history.save_attack(
        results, fgsm, model=clf.name, indices=[0, 1, 2], inputs=x, png_pred=png
    )
    pgd = make_attack("pgd", eps=0.2, steps=10)(
        clf, mnist.x_test[3:5], labels=mnist.y_test[3:5], goals=7
    )
    # Stored before PNG predictions were recorded, by a model with a hostile name, in 2020.
    old = history.save_attack(results, pgd, model=HOSTILE, indices=[3, 4], inputs=mnist.x_test[3:5])
    record = json.loads((old.path / "result.json").read_text())
    record["created"] = "2020-01-06T12:00:00+00:00"
    (old.path / "result.json").write_text(json.dumps(record))
    comparison = evaluation.evaluate(
        [clf],
        mnist,
        evaluation.EvalConfig(attacks=("fgsm",), eps=(0.0, 0.1, 0.2), n=64),
        transforms=("none", "squeeze-bits:1"),
    )
    cmp_entry = history.save_comparison(results, comparison)
    notes = [n for e in comparison["results"] for n in e["notes"]]
    assert notes, "squeeze-bits should show naive vs adaptive disagreeing (BPDA)"
    return Lab(
        home=home,
        models=model_root,
        results=result_root,
        clf=clf,
        model_names=["legacy-mlp", "report-mlp"],
        attack_names=[first.name, old.name],
        comparison_names=[cmp_entry.name],
        png_pred=[int(p) for p in png],
        notes=notes,
    )


class Page(HTMLParser):
    """Tags, attributes, text per section (the h3 id above it) and the confusion table."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.ids: set[str] = set()
        self.text: list[str] = []
        self.section_text: dict[str, list[str]] = {}
        self.section_imgs: dict[str, int] = {}
        self.confusion: dict[str, list[str]] = {}
        self.section = ""
        self._in_confusion = False
        self._in_td = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "h3":
            self.section = attrs.get("id", "")
        if tag == "img":
            self.srcs.append(attrs.get("src") or "")
            self.section_imgs[self.section] = self.section_imgs.get(self.section, 0) + 1
        for key in ("href", "src", "action", "data", "background"):
            if key in attrs and tag != "img":
                self.hrefs.append(attrs[key] or "")
        if tag == "table" and attrs.get("class") == "confusion":
            self._in_confusion = True
            self.confusion[self.section] = []
        self._in_td = tag == "td"

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_confusion = False
        if tag == "td":
            self._in_td = False

    def handle_data(self, data):
        self.text.append(data)
        self.section_text.setdefault(self.section, []).append(data)
        if self._in_confusion and self._in_td and data.strip():
            self.confusion[self.section].append(data.strip())

    def words(self, section: str | None = None) -> str:
        parts = self.text if section is None else self.section_text.get(section, [])
        return " ".join(" ".join(parts).split())


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def test_report_is_one_self_contained_html_file(lab, mnist):
    from PIL import Image

    from advgui.core import training
    from advgui.core.store import ModelStore

    rep = report.build_report(models_root=lab.models, results_root=lab.results)
    page = parse(rep.html)
    text = page.words()
    assert (rep.models, rep.attacks, rep.comparisons) == (
        lab.model_names,
        lab.attack_names,
        lab.comparison_names,
    )
    for name in lab.names():
        assert name in text, name
    # Text from files is escaped: the hostile model name is text, never markup.
    assert HOSTILE in text and "<script" not in rep.html.lower()
    assert not {"script", "link", "iframe", "object", "embed", "base"} & set(page.tags)
    # Images inline as PNG data URIs; links only to anchors of this page.
    assert page.srcs
    for src in page.srcs:
        assert src.startswith("data:image/png;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True)))
        assert img.format == "PNG"
    assert page.hrefs and all(h.startswith("#") and h[1:] in page.ids for h in page.hrefs)
    assert "http" not in " ".join(page.srcs + page.hrefs)
    # original, adversarial and perturbation for every image of every attack run
    assert page.section_imgs["attack-1"] >= 3 * 3 and page.section_imgs["attack-2"] >= 3 * 2
    assert page.section_imgs["comparison-1"] >= 1 and page.section_imgs["model-2"] == 2

    # The new model's confusion matrix is the real one on the test set; the old file has none.
    meta = next(e.meta for e in ModelStore(lab.models).entries() if e.name == "report-mlp")
    expected = training.confusion_matrix(mnist.y_test, lab.clf.predict(mnist.x_test))
    assert np.array_equal(meta["confusion_matrix"], expected)
    shown = np.array([int(v) for v in page.confusion["model-2"]]).reshape(10, 10)
    assert np.array_equal(shown, expected) and shown.sum() == 10000
    assert f"test accuracy {100 * meta['test_accuracy']:.1f}%" in page.words("model-2")
    legacy = page.words("model-1")
    assert "model-1" not in page.confusion
    assert "Training curves not recorded" in legacy and "Confusion matrix" in legacy
    assert "test accuracy not recorded" in legacy

    # The exported PNG's own prediction, where the run recorded it.
    shown_png = re.findall(r"exported PNG predicted (\d)\b", page.words("attack-1"))
    assert [int(p) for p in shown_png] == lab.png_pred
    assert re.search(
        r"exported PNG predicted (not recorded|\d \(the image is exactly 8-bit)",
        page.words("attack-2"),
    )
    # Naive-vs-adaptive notes of the comparison, in full.
    for note in lab.notes:
        assert " ".join(note.split()) in page.words("comparison-1")


def test_since_keeps_only_work_from_that_day_on(lab):
    rep = report.build_report(
        since=dt.date(2021, 1, 1), models_root=lab.models, results_root=lab.results
    )
    assert rep.models == ["report-mlp"]
    assert rep.attacks == lab.attack_names[:1] and rep.comparisons == lab.comparison_names
    assert lab.attack_names[1] not in parse(rep.html).words()
    same_day = report.build_report(
        since=dt.date(2020, 1, 6), models_root=lab.models, results_root=lab.results
    )
    assert same_day.attacks == lab.attack_names and same_day.models == ["report-mlp"]
    tomorrow = dt.date.today() + dt.timedelta(days=2)
    empty = report.build_report(since=tomorrow, models_root=lab.models, results_root=lab.results)
    assert (empty.models, empty.attacks, empty.comparisons) == ([], [], [])
    assert "None stored." in parse(empty.html).words()


@pytest.mark.parametrize(
    "text", ["2024-13-01", "2024-02-30", "yesterday", "2024-1-1", "", "2024-01-01T00:00"]
)
def test_since_must_be_an_iso_date(text):
    with pytest.raises(ParameterError, match="YYYY-MM-DD"):
        report.parse_since(text)


def test_since_accepts_iso_dates():
    assert report.parse_since(" 2024-02-29 ") == dt.date(2024, 2, 29)


def _pdftotext() -> str:
    exe = shutil.which("pdftotext")
    if exe is None:
        pytest.fail("pdftotext not found: install poppler-utils (tools/system-deps.sh does)")
    return exe


def test_cli_writes_html_and_pdf_without_a_display(lab, tmp_path):
    out, pdf = tmp_path / "lab.html", tmp_path / "lab.pdf"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }
    env["ADVGUI_HOME"] = str(lab.home)
    proc = subprocess.run(
        [sys.executable, "-m", "advgui", "report", "--out", str(out), "--pdf", str(pdf)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"{out} and {pdf}: 2 models, 2 attack runs, 1 defense comparison"
    ]
    assert "report ready" in proc.stderr  # progress goes to stderr
    text = parse(out.read_text(encoding="utf-8")).words()
    assert all(name in text for name in lab.names())
    assert pdf.read_bytes().startswith(b"%PDF-")
    pdf_text = subprocess.run(
        [_pdftotext(), str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    pdf_words = " ".join(pdf_text.split())
    for name in lab.names():
        assert name in pdf_words, name


def test_report_reads_no_tensorflow(lab, tmp_path):
    code = (
        "import sys; from advgui.core import report;"
        f"r = report.build_report(models_root={str(lab.models)!r},"
        f" results_root={str(lab.results)!r});"
        "print(len(r.models), len(r.attacks), 'tensorflow' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2", "2", "False"]


@pytest.mark.parametrize(
    "args",
    [
        ["--since", "2024-13-01"],
        ["--out", "{tmp}/missing/r.html"],
        ["--out", "{tmp}/file.txt/r.html"],
        ["--out", "{tmp}/r.txt"],
        ["--out", "{tmp}/r.html", "--pdf", "{tmp}/missing/r.pdf"],
        ["--out", "{tmp}/r.html", "--pdf", "{tmp}/r.html"],
    ],
)
def test_cli_bad_input_exits_2_with_one_line(args, tmp_path, capsys):
    from advgui import cli

    (tmp_path / "file.txt").write_text("x")
    argv = ["report", *[a.format(tmp=tmp_path) for a in args]]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "r.html")]
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists()  # checked before any work


def test_bounded_reads_and_damaged_entries_become_lines(lab, tmp_path, monkeypatch):
    from advgui.core import models, results

    home = tmp_path / "copy"
    shutil.copytree(lab.home, home)
    roots = {"models_root": home / "data" / "models", "results_root": home / "data" / "results"}
    monkeypatch.setattr(report, "MAX_ARRAY_BYTES", 1000)
    rep = report.build_report(**roots)
    assert rep.attacks == lab.attack_names  # still listed by name
    assert sum("too large" in w for w in rep.warnings) == 2
    assert parse(rep.html).words("attack-1").startswith(f"{lab.attack_names[0]} Damaged entry")
    monkeypatch.undo()

    arrays = sorted((home / "data" / "results").glob("*-attack-*/arrays.npz"))[0]
    arrays.write_bytes(b"not a zip file")
    nested = home / "data" / "results" / "20990101-000000-000000-attack-deadbeef"
    nested.mkdir()
    (nested / "result.json").write_text("[" * 100_000)  # json.loads: RecursionError
    rep = report.build_report(**roots)
    assert len(rep.attacks) == 2 and any("damaged attack" in w for w in rep.warnings)
    assert any(nested.name in w for w in rep.warnings)
    assert "Damaged entry" in parse(rep.html).words("attack-1")

    monkeypatch.setattr(results, "MAX_RESULT_JSON", 200)
    monkeypatch.setattr(models, "MAX_META_BYTES", 100)
    rep = report.build_report(**roots)
    assert (rep.models, rep.attacks, rep.comparisons) == ([], [], [])
    assert sum("too large" in w for w in rep.warnings) == 6
    assert "Left out or damaged" in parse(rep.html).words()


def test_gui_export_report_writes_html_and_pdf(qtbot, lab, monkeypatch, tmp_path, mnist_path):
    pytest.importorskip("pytestqt")
    from PySide6.QtWidgets import QFileDialog

    from advgui.qt.main_window import MainWindow

    chosen: list[tuple[str, str]] = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: chosen.pop(0)))
    win = MainWindow(data_path=str(mnist_path), preload_tf=False)
    qtbot.addWidget(win)
    win.show()
    # The window started on an empty store (nothing loads in the background); the report
    # reads the store when asked, so it finds the lab's work.
    monkeypatch.setenv("ADVGUI_HOME", str(lab.home))
    try:
        bar = win.statusBar()
        # No suffix typed: the chosen filter decides.
        chosen.append((str(tmp_path / "lab"), "HTML report (*.html)"))
        win.report_action.trigger()
        qtbot.waitUntil(lambda: "Report written" in bar.currentMessage(), timeout=30000)
        html_file = tmp_path / "lab.html"
        assert str(html_file) in bar.currentMessage()
        assert all(name in parse(html_file.read_text("utf-8")).words() for name in lab.names())

        chosen.append((str(tmp_path / "lab.pdf"), "PDF (*.pdf)"))
        win.report_action.trigger()
        qtbot.waitUntil(lambda: "lab.pdf" in bar.currentMessage(), timeout=30000)
        assert (tmp_path / "lab.pdf").read_bytes().startswith(b"%PDF-")
        pdf_text = subprocess.run(
            [_pdftotext(), str(tmp_path / "lab.pdf"), "-"], capture_output=True, text=True
        ).stdout
        assert all(name in " ".join(pdf_text.split()) for name in lab.names())

        chosen.append((str(tmp_path / "missing" / "lab.html"), "HTML report (*.html)"))
        win.report_action.trigger()
        qtbot.waitUntil(lambda: "Report not written" in bar.currentMessage(), timeout=30000)
        assert "folder does not exist" in bar.currentMessage()
    finally:
        win.close()


def test_attack_tab_records_the_png_prediction_the_report_shows(qtbot, lab, mnist, tmp_path):
    from qt_helpers import _wait

    from advgui.core import export, history
    from advgui.qt.attack_tab import AttackTab
    from advgui.qt.state import AppState

    state = AppState()
    state.set_dataset(mnist)
    state.add_model(lab.clf)
    tab = AttackTab(state)
    qtbot.addWidget(tab)
    tab.show()
    try:
        tab.gallery.select_index(20)
        tab.method_combo.setCurrentText("fgsm")
        tab.goal_combo.setCurrentIndex(0)  # untargeted
        tab.batch_spin.setValue(4)
        _wait(qtbot, tab.run_attack())
    finally:
        tab.shutdown()
    (entry,) = tab.results_store.entries(history.ATTACK_KIND)
    stored = entry.arrays()["png_pred"]
    np.testing.assert_array_equal(stored, export.png_predictions(lab.clf, tab.result.x_adv))
    # each one is what the exported PNG, read back from disk, is classified as
    for i in range(len(stored)):
        sidecar = export.export_image(tab.result, i, lab.clf, tmp_path / f"adv{i}.png")
        assert stored[i] == sidecar["png_pred"]
    page = parse(report.build_report().html)
    shown = re.findall(r"exported PNG predicted (\d)\b", page.words("attack-1"))
    assert [int(p) for p in shown] == stored.tolist()
    history.load_attack(entry)  # the History still reopens it
