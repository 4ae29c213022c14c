"""Every command on Fashion-MNIST: --dataset, class names in the output, and refusals of
the other dataset's models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from advgui.cli import main
from advgui.core import data, paths

FASHION = data.FASHION_MNIST

NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip


@pytest.fixture(scope="module")
def fashion_model(fashion_cnn, tmp_path_factory):
    from advgui.core import models

    return models.save_model(fashion_cnn, tmp_path_factory.mktemp("fashion") / "f.keras")


@pytest.fixture(scope="module")
def mnist_model(trained_cnn, tmp_path_factory):
    from advgui.core import models

    return models.save_model(trained_cnn, tmp_path_factory.mktemp("mnist") / "m.keras")


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


def test_short_fashion_training_records_its_dataset_and_scores_above_80(
    fashion_path, tmp_path, capsys, isolated_home
):
    out = tmp_path / "f.keras"
    code, text, _ = _run(
        ["--data", str(fashion_path), "--dataset", "fashion-mnist", "train", "--arch", "cnn",
         "--epochs", "1", "--n-train", "20000", "--n-val", "0", "--batch-size", "64",
         "--out", str(out), "--json", str(tmp_path / "m.json"), "-q"],
        capsys,
    )  # fmt: skip
    assert code == 0, text
    record = json.loads((tmp_path / "m.json").read_text())
    assert record["test_accuracy"] > 0.80, record["test_accuracy"]
    assert record["dataset"] == "fashion-mnist" and record["classes"] == NAMES
    from advgui.core import models

    meta = models.read_meta(out)
    assert meta["dataset"] == "fashion-mnist" and meta["dataset_sha256"] == FASHION.sha256
    # Kept in Fashion-MNIST's store, not MNIST's.
    stored = list(paths.store_dir("fashion-mnist").glob("*.keras"))
    assert len(stored) == 1 and str(stored[0]) == record["stored"]
    assert not paths.store_dir("mnist").exists()


@pytest.mark.parametrize(
    ("which", "argv"),
    [
        ("fashion", ["attack", "--method", "fgsm", "--index", "0"]),
        ("fashion", ["evaluate", "--attack", "fgsm", "--n", "10"]),
        ("mnist", ["--dataset", "fashion-mnist", "attack", "--method", "pgd", "--n", "10"]),
        ("mnist", ["evaluate", "--dataset", "fashion-mnist", "--n", "10"]),
    ],
)
def test_cli_refuses_a_model_of_the_other_dataset_with_one_line(
    which, argv, request, capsys, tmp_path
):
    model = request.getfixturevalue(f"{which}_model")
    code, out, err = _run(
        [*argv, "--model", str(model), "--json", str(tmp_path / "r.json")], capsys
    )
    assert code == 2 and out == ""
    assert len(err) == 1, err
    trained, asked = (
        ("Fashion-MNIST", "MNIST") if which == "fashion" else ("MNIST", "Fashion-MNIST")
    )
    assert f"was trained on {trained}, not {asked}: refused; use --dataset" in err[0]
    assert not (tmp_path / "r.json").exists()


def test_predict_refuses_the_other_dataset_and_names_classes(
    fashion, fashion_model, capsys, tmp_path
):
    from PIL import Image

    png = tmp_path / "boot.png"  # test image 0, an ankle boot, as a photo would show it:
    big = np.kron(1.0 - fashion.x_test[0, ..., 0], np.ones((5, 5)))  # dark on light, 140x140
    canvas = np.ones((180, 220))
    canvas[20:160, 40:180] = big
    Image.fromarray(np.round(canvas * 255).astype(np.uint8)).save(png)
    code, _, err = _run(["predict", "--model", str(fashion_model), "--image", str(png)], capsys)
    assert code == 2 and len(err) == 1 and "use --dataset fashion-mnist" in err[0]
    code, text, _ = _run(
        ["--dataset", "fashion-mnist", "predict", "--model", str(fashion_model), "--image",
         str(png), "--json", str(tmp_path / "p.json")],
        capsys,
    )  # fmt: skip
    assert code == 0
    record = json.loads((tmp_path / "p.json").read_text())
    assert record["dataset"] == "fashion-mnist" and record["classes"] == NAMES
    (row,) = record["images"]
    assert row["class"] == 9 and row["class_name"] == "Ankle boot"
    assert "9 Ankle boot" in text.splitlines()[1] and "(classes: 0 T-shirt/top, 1 Trouser" in text


def test_data_commands_take_dataset_before_or_after(fashion_path, capsys, monkeypatch):
    monkeypatch.delenv("ADVGUI_FASHION_DATA", raising=False)
    code, text, _ = _run(
        ["data", "import", "--dataset", "fashion-mnist", str(fashion_path)], capsys
    )
    cache = paths.dataset_cache_dir("fashion-mnist")
    assert code == 0 and str(cache) in text and "Fashion-MNIST" in text
    code, text, _ = _run(["--dataset", "fashion-mnist", "data", "info"], capsys)
    assert code == 0 and f"source:  cache {cache}" in text
    assert "per class [1000, 1000, 1000" in text
    assert "classes: 0 T-shirt/top, 1 Trouser, 2 Pullover" in text and "9 Ankle boot" in text
    code, text, _ = _run(["data", "info", "--json", "--dataset", "fashion-mnist"], capsys)
    info = json.loads(text)
    assert info["classes"] == NAMES and info["sha256"] == FASHION.sha256
    assert info["default_eps"] == 0.1
    # MNIST's cache was not touched: its info finds no cached MNIST there.
    assert not paths.mnist_cache_dir().exists()


def test_help_shows_the_per_dataset_defaults():
    import argparse

    from advgui.cli import build_parser

    def flat(text: str) -> str:  # argparse wraps lines, at hyphens too
        return "".join(text.split())

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("attack", "defend", "train"):
        text = flat(sub.choices[command].format_help())
        assert flat("0.3 for mnist, 0.1 for fashion-mnist") in text, command
        assert flat("--dataset {mnist,fashion-mnist}") in text
    assert flat("default: the architecture's, 2; cnn on fashion-mnist: 8") in flat(
        sub.choices["train"].format_help()
    )
    text = flat(sub.choices["evaluate"].format_help())
    assert flat("0,0.1,0.2,0.3 for mnist, 0,0.05,0.1 for fashion-mnist") in text


def test_fashion_attack_end_to_end_with_names_and_its_default_eps(
    fashion_model, fashion_path, capsys, tmp_path
):
    png = tmp_path / "adv.png"
    code, text, _ = _run(
        ["--data", str(fashion_path), "--dataset", "fashion-mnist", "attack", "--model",
         str(fashion_model), "--method", "pgd", "--index", "0", "--target", "7", "--out",
         str(png), "--json", str(tmp_path / "r.json"), "-q"],
        capsys,
    )  # fmt: skip
    assert code == 0
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["params"]["eps"] == 0.1  # Fashion-MNIST's default L-inf budget
    assert record["linf"] <= 0.1 + 1e-6 and record["dataset"] == "fashion-mnist"
    assert record["source_label"] == 9 and record["source_label_name"] == "Ankle boot"
    assert record["goal"] == 7 and record["goal_name"] == "Sneaker"
    assert record["pred_before_name"] == NAMES[record["pred_before"]]
    assert record["png_pred_name"] == NAMES[record["png_pred"]]
    assert text.startswith("pgd on test image 0 (label 9 Ankle boot) goal 7 Sneaker: ")
    assert f"PNG classified {record['png_pred']} {NAMES[record['png_pred']]}" in text
    sidecar = json.loads(png.with_suffix(".json").read_text())
    assert sidecar["classes"] == NAMES and sidecar["goal_name"] == "Sneaker"
    assert sidecar["model"]["dataset"] == "fashion-mnist"
    # A batch: robust accuracy under the default budget falls well below the clean one.
    code, text, _ = _run(
        ["--dataset", "fashion-mnist", "attack", "--model", str(fashion_model), "--method",
         "pgd", "--n", "100", "--steps", "10", "--json", str(tmp_path / "b.json"), "-q"],
        capsys,
    )  # fmt: skip
    assert code == 0 and text.startswith("pgd on 100 Fashion-MNIST test images: ")
    summary = json.loads((tmp_path / "b.json").read_text())
    assert summary["dataset"] == "fashion-mnist" and summary["params"]["eps"] == 0.1
    assert summary["clean_accuracy"] > 0.7 and summary["robust_accuracy"] < 0.5 * summary[
        "clean_accuracy"
    ]  # fmt: skip


def test_fashion_evaluation_end_to_end(fashion_model, capsys, tmp_path):
    code, text, err = _run(
        ["evaluate", "--dataset", "fashion-mnist", "--model", str(fashion_model), "--attack",
         "fgsm", "--attack", "pgd", "--steps", "10", "--n", "200", "--naive-only",
         "--json", str(tmp_path / "e.json"), "--csv", str(tmp_path / "e.csv"), "-q"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["dataset"] == "fashion-mnist" and result["eps"] == [0.0, 0.05, 0.1]
    (entry,) = result["results"]
    for attack in ("fgsm", "pgd"):
        acc = entry["attacks"][attack]["robust_accuracy"]
        assert acc[0] > 0.7 and acc[0] > acc[1] > acc[2], (attack, acc)
    assert entry["attacks"]["pgd"]["robust_accuracy"][2] <= entry["attacks"]["fgsm"][
        "robust_accuracy"
    ][2]  # fmt: skip
    assert "robust accuracy on 200 test images" in text


def test_selftest_on_fashion_mnist(fashion_path, tmp_path, capsys, trained_cnn):
    out = tmp_path / "out"
    argv = ["--dataset", "fashion-mnist", "--data", str(fashion_path), "selftest", "--out"]
    assert main([*argv, str(out)]) == 0
    text = capsys.readouterr().out
    assert "data: Fashion-MNIST, 60000 train / 10000 test images" in text
    report = json.loads((out / "selftest.json").read_text())
    assert report["passed"] and report["dataset"] == "fashion-mnist"
    export = report["steps"]["export"]
    assert export["label_name"] == NAMES[export["label"]]
    assert export["png_pred_name"] == NAMES[export["png_pred"]]
    assert trained_cnn.meta["dataset"] == "mnist"  # MNIST models name theirs too


def test_train_takes_the_datasets_own_default_epochs(fashion_path, mnist_path, tmp_path, capsys):
    """The CNN's 2 epochs stop at 90% on Fashion-MNIST; its default there is 8 (92%, see
    benchmarks/bench_fashion.py), MNIST's stays 2, and --epochs still wins."""
    for dataset, folder, given, expect in (
        ("fashion-mnist", fashion_path, [], 8),
        ("mnist", mnist_path, [], 2),
        ("fashion-mnist", fashion_path, ["--epochs", "3"], 3),
    ):
        out = tmp_path / f"{dataset}-{expect}.json"
        argv = ["--dataset", dataset, "--data", str(folder), "train", "--n-train", "128",
                "--n-val", "0", "--no-store", "--out", str(out.with_suffix(".keras")),
                "--json", str(out), "-q", *given]  # fmt: skip
        assert main(argv) == 0
        record = json.loads(out.read_text())
        assert record["config"]["epochs"] == expect and record["dataset"] == dataset
    capsys.readouterr()
