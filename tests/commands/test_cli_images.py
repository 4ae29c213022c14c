"""The user's own pictures on the command line (attack --image/--images, predict), the
progress line (rate, ETA), --quiet and --json - (the record alone on stdout)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from advgui.cli import main
from advgui.core.images import load_image

#: "[00:04<00:06, 3.01 step/s]": elapsed<ETA, rate with its unit.
RATE_ETA = re.compile(r"\[\d\d:\d\d<(\d\d:\d\d|\?), (\d[\d.]*|\?) [a-z]+/s\]")


@pytest.fixture(scope="module")
def model_file(trained_cnn, tmp_path_factory):
    from advgui.core import models

    return models.save_model(trained_cnn, tmp_path_factory.mktemp("model") / "cnn.keras")


@pytest.fixture(scope="module")
def confident(mnist, trained_cnn):
    """Test digits the model classifies with at least 95% (so a few grey levels of PNG or
    JPEG rounding cannot move them), with the class the model gives the original array."""
    probs = trained_cnn.predict_proba(mnist.x_test[:200])
    idx = [int(i) for i in np.flatnonzero(probs.max(axis=1) > 0.95)[:6]]
    return idx, [int(probs[i].argmax()) for i in idx]


def _png(digit: np.ndarray, path: Path) -> Path:
    Image.fromarray(np.round(digit.reshape(28, 28) * 255).astype(np.uint8)).save(path)
    return path


def _dark_jpeg(digit: np.ndarray, path: Path) -> Path:
    """The digit as a person would photograph it: dark ink on light paper, larger, off-centre."""
    big = Image.fromarray(np.round(digit.reshape(28, 28) * 255).astype(np.uint8))
    paper = np.zeros((160, 180), np.uint8)
    paper[10:122, 50:162] = np.asarray(big.resize((112, 112), Image.Resampling.BILINEAR))
    Image.fromarray(255 - paper).convert("RGB").save(path, quality=95)
    return path


@pytest.fixture
def folder(tmp_path, mnist, confident):
    """Three test digits as PNGs, one as a dark-on-light JPEG, and a text file."""
    d = tmp_path / "pictures"
    d.mkdir()
    idx, _ = confident
    for k, i in enumerate(idx[:3]):
        _png(mnist.x_test[i], d / f"digit{k}.png")
    _dark_jpeg(mnist.x_test[idx[3]], d / "photo.jpg")
    (d / "notes.txt").write_text("not a picture\n")
    return d


def _run(argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as stop:  # argparse errors
        rc = stop.code
    out, err = capsys.readouterr()
    return rc, out, err


def _files(d: Path) -> set[Path]:
    return {p for p in d.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------- predict


def test_predict_gives_the_models_class_of_the_original_digits(
    model_file, folder, mnist, confident, trained_cnn, capsys
):
    _, classes = confident
    rc, out, err = _run(["predict", "--model", str(model_file), "--images", str(folder),
                         "--json", "-"], capsys)  # fmt: skip
    assert rc == 0, err
    payload = json.loads(out)  # stdout holds the record and nothing else
    rows = {Path(r["file"]).name: r for r in payload["images"]}
    assert sorted(rows) == ["digit0.png", "digit1.png", "digit2.png", "photo.jpg"]
    for k in range(3):
        assert rows[f"digit{k}.png"]["class"] == classes[k]
    assert rows["photo.jpg"]["class"] == classes[3]  # inverted and re-centred, like the GUI
    for name, row in rows.items():
        # The probabilities are the model's on the GUI import's conversion of the file.
        expected = trained_cnn.predict_proba(load_image(folder / name)[None])[0]
        np.testing.assert_allclose(row["probs"], expected, atol=1e-5)
        assert abs(sum(row["probs"]) - 1) < 1e-4 and row["confidence"] == max(row["probs"])
    assert [Path(s["file"]).name for s in payload["skipped"]] == ["notes.txt"]
    # The summary table went to stderr (stdout was the JSON), with the skipped file named.
    assert "skipped notes.txt" in err and "photo.jpg" in err


def test_predict_table_on_stdout(model_file, folder, confident, capsys):
    _, classes = confident
    image = folder / "digit0.png"
    rc, out, err = _run(["predict", "--model", str(model_file), "--image", str(image)], capsys)
    assert rc == 0, err
    head, row = out.strip().splitlines()
    assert head.split()[:3] == ["file", "class", "conf"] and head.split()[3:] == list("0123456789")
    cells = row.split()
    assert cells[0] == "digit0.png" and int(cells[1]) == classes[0]
    probs = [float(c) for c in cells[3:]]
    assert len(probs) == 10 and abs(sum(probs) - 100) < 0.6 and max(probs) == probs[classes[0]]


# ---------------------------------------------------------------------------- attack


def test_attack_image_untargeted_uses_the_clean_prediction_as_reference(
    model_file, folder, confident, trained_cnn, tmp_path, capsys
):
    _, classes = confident
    image, out = folder / "photo.jpg", tmp_path / "out" / "adv.png"
    out.parent.mkdir()
    argv = ["attack", "--model", str(model_file), "--method", "fgsm", "--eps", "0.3",
            "--image", str(image), "--out", str(out), "--json", "-"]  # fmt: skip
    rc, stdout, err = _run(argv, capsys)
    assert rc == 0, err
    rec = json.loads(stdout)
    assert rec["source_file"] == str(image) and rec["source_label"] == -1
    assert rec["pred_before"] == rec["reference_label"] == classes[3]
    assert rec["success"] == (rec["pred_after"] != rec["pred_before"])
    assert 0.29 < rec["linf"] <= 0.3 + 1e-6
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["source_file"] == str(image) and side["reference_label"] == classes[3]
    back = np.asarray(Image.open(out), np.float32)[None, :, :, None] / 255.0
    assert side["png_pred"] == int(trained_cnn.predict(back)[0]) == rec["png_pred"]
    assert side["png_success"] == (side["png_pred"] != classes[3])
    assert _files(tmp_path / "out") == {
        out,
        out.with_suffix(".json"),
        tmp_path / "out" / "adv_x10.png",
    }


def test_attack_image_targeted_reaches_the_goal(model_file, folder, confident, tmp_path, capsys):
    _, classes = confident
    goal = (classes[0] + 1) % 10
    js = tmp_path / "r.json"
    argv = ["attack", "--model", str(model_file), "--method", "pgd", "--target", str(goal),
            "--eps", "0.3", "--steps", "30", "--image", str(folder / "digit0.png"),
            "--json", str(js)]  # fmt: skip
    rc, out, err = _run(argv, capsys)
    assert rc == 0, err
    rec = json.loads(js.read_text())
    assert rec["goal"] == goal and rec["pred_before"] == classes[0]
    assert rec["success"] == (rec["pred_after"] == goal) and rec["success"]
    assert out.count("\n") == 1 and "goal" in out and "success" in out  # one result line


# Every method of the registry, with few steps: each one must accept a user's picture.
METHODS = {
    "fgsm": ["--eps", "0.3"],
    "bim": ["--steps", "5"],
    "pgd": ["--steps", "5"],
    "mifgsm": ["--steps", "5"],
    "cw": ["--steps", "20", "--param", "search_steps=2"],
    "deepfool": ["--steps", "10"],
    "jsma": [],
    "targeted": ["--steps", "30", "--lam", "0.05", "--target", "3"],
    "noise": ["--steps", "30", "--target", "3"],
    "apgd-ce": ["--steps", "5"],
    "apgd-dlr": ["--steps", "5"],
    "apgd-t": ["--steps", "5"],
    "fab": ["--steps", "5"],
    "fab-t": ["--steps", "5"],
    "square": ["--queries", "100"],
    "hsj": ["--steps", "2", "--max-evals", "500"],
    "autoattack": ["--steps", "5", "--queries", "100"],
}


def test_every_registered_method_is_covered():
    from advgui.core.attacks import ATTACKS

    assert set(METHODS) == set(ATTACKS)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_attack_image_with_every_method(method, model_file, folder, tmp_path, capsys):
    argv = ["attack", "--model", str(model_file), "--method", method, *METHODS[method],
            "--image", str(folder / "digit1.png"), "--out", str(tmp_path / "a.png"),
            "--json", str(tmp_path / "r.json"), "--quiet"]  # fmt: skip
    rc, _, err = _run(argv, capsys)
    assert rc == 0, err
    assert err == ""  # --quiet
    rec = json.loads((tmp_path / "r.json").read_text())
    assert rec["method"] == method and rec["source_file"] == str(folder / "digit1.png")
    if rec["goal"] is None:
        assert rec["success"] == (rec["pred_after"] != rec["reference_label"])
    else:
        assert rec["success"] == (rec["pred_after"] == rec["goal"] == 3)
    assert (tmp_path / "a.png").is_file() and (tmp_path / "a.json").is_file()


def test_attack_images_folder_writes_one_png_and_json_each_and_a_csv(
    model_file, folder, confident, tmp_path, capsys
):
    _, classes = confident
    out = tmp_path / "results"  # created by the command
    argv = [
        "attack",
        "--model",
        str(model_file),
        "--method",
        "pgd",
        "--steps",
        "10",
        "--images",
        str(folder),
        "--out",
        str(out),
        "--json",
        str(tmp_path / "r.json"),
    ]
    before = _files(folder)
    rc, stdout, err = _run(argv, capsys)
    assert rc == 0, err
    assert _files(folder) == before  # the input folder is left as it was
    with open(out / "index.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    sources = sorted(Path(r["source_file"]).name for r in rows)
    assert sources == ["digit0.png", "digit1.png", "digit2.png", "photo.jpg"]
    pngs = {p.name for p in out.glob("*.png") if not p.stem.endswith("_x10")}
    assert pngs == {r["file"] for r in rows} and len(list(out.glob("*_x10.png"))) == 4
    for r in rows:
        side = json.loads((out / r["file"]).with_suffix(".json").read_text())
        assert side["source_file"] == r["source_file"] and side["source_label"] == -1
        assert side["png_pred"] == int(r["png_pred"])
    by_name = {Path(r["source_file"]).name: r for r in rows}
    for k in range(3):
        assert int(by_name[f"digit{k}.png"]["pred_before"]) == classes[k]
    summary = json.loads((tmp_path / "r.json").read_text())
    assert summary["n"] == 4 and [Path(s["file"]).name for s in summary["skipped"]] == ["notes.txt"]
    assert "robust_accuracy" not in summary  # needs true labels, which a picture lacks
    assert summary["success_rate"] == np.mean([r["success"] == "True" for r in rows])
    assert len(stdout.strip().splitlines()) == 5 and "success rate" in stdout
    assert "skipped notes.txt" in err


# ---------------------------------------------------------------------------- progress


def test_progress_bar_rate_and_eta(monkeypatch):
    from advgui.commands import common
    from advgui.core.progress import Progress

    clock = [100.0]
    monkeypatch.setattr(common.time, "monotonic", lambda: clock[0])
    stream = io.StringIO()
    bar = common.ProgressBar(stream, width=10, unit="step")
    clock[0] = 105.0
    bar(Progress(25, 100, "attacking", {"cost": 0.5}))
    clock[0] = 115.0
    bar(Progress(75, 100, "attacking"))
    clock[0] = 116.0
    bar(Progress(100, 100, "done"))
    lines = stream.getvalue().splitlines()
    # 25 steps in 5 s: 5 steps/s, 75 left: 15 s; 75 in 15 s; the end shows no time left.
    assert lines[0] == "[##--------]  25.0% 25/100 [00:05<00:15, 5 step/s] attacking cost=0.5"
    assert lines[1].startswith("[#######---]  75.0% 75/100 [00:15<00:05, 5 step/s]")
    assert "100/100 [00:16<00:00, 6.25 step/s] done" in lines[2]
    # A new phase (another total) measures its own rate; bytes are scaled.
    stream.truncate(0)
    stream.seek(0)
    bar = common.ProgressBar(stream, width=10, unit="B")
    bar(Progress(0, 2_000_000))
    clock[0] = 118.0
    bar(Progress(2_000_000, 2_000_000))
    assert "2.0 MB/2.0 MB [00:02<00:00, 1.0 MB/s]" in stream.getvalue()


def test_progress_on_stderr_with_rate_and_eta_and_result_alone_on_stdout(
    model_file, mnist_path, capsys
):
    argv = ["--data", str(mnist_path), "attack", "--model", str(model_file), "--method", "pgd",
            "--n", "20", "--batch-size", "10", "--steps", "5"]  # fmt: skip
    rc, out, err = _run(argv, capsys)
    assert rc == 0, err
    assert len(out.splitlines()) == 1 and out.startswith("pgd on 20 test images")
    bars = [line for line in err.splitlines() if line.startswith("[")]
    assert bars and all(RATE_ETA.search(line) for line in bars), bars
    assert "20/20 [" in bars[-1] and "<00:00" in bars[-1]


def test_quiet_train_with_json_to_stdout(mnist_path, tmp_path, capsys):
    argv = ["--data", str(mnist_path), "train", "--arch", "mlp", "--epochs", "1",
            "--n-train", "500", "--n-val", "0", "--out", str(tmp_path / "m.keras"),
            "--no-store", "--json", "-", "--quiet"]  # fmt: skip
    rc, out, err = _run(argv, capsys)
    assert rc == 0 and err == ""
    payload = json.loads(out)
    assert payload["model"] == str(tmp_path / "m.keras") and payload["epochs"] == 1
    assert _files(tmp_path) == {tmp_path / "m.keras"}


def test_quiet_json_stdout_in_a_real_process(model_file, folder, tmp_path):
    """A fresh process: TensorFlow's start-up lines must not reach stderr either."""
    env = {**os.environ, "ADVGUI_HOME": str(tmp_path / "home")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    argv = [sys.executable, "-m", "advgui", "attack", "--model", str(model_file), "--method",
            "fgsm", "--image", str(folder / "digit2.png"), "--json", "-", "--quiet"]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    rec = json.loads(proc.stdout)
    assert rec["method"] == "fgsm" and rec["source_file"] == str(folder / "digit2.png")


def test_a_folder_with_too_many_files_is_refused_before_reading(folder, model_file, monkeypatch,
                                                                capsys):  # fmt: skip
    from advgui.commands import common

    monkeypatch.setattr(common, "MAX_FOLDER_FILES", 4)  # the folder holds 5 files
    read = []
    monkeypatch.setattr("advgui.core.images.load_image", lambda p: read.append(p))
    rc, out, err = _run(["predict", "--model", str(model_file), "--images", str(folder)], capsys)
    assert rc == 2 and out == "" and not read
    assert err.strip() == f"advgui predict: error: --images {folder}: more than 4 files; " \
        "split them into smaller folders"  # fmt: skip
    monkeypatch.undo()
    rc, out, err = _run(["predict", "--model", str(model_file), "--images", str(folder)], capsys)
    assert rc == 0 and len(out.strip().splitlines()) == 6  # header, 4 pictures, footer
