"""PNG export verified by re-classification, batch export with a CSV index, and the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from advgui.core import export
from advgui.core.attacks import make_attack
from advgui.core.errors import ExportError


def _classify_png(clf, path):
    with Image.open(path) as img:
        assert img.mode == "L" and img.size == (28, 28)
        arr = np.asarray(img, dtype=np.float32) / 255.0
    return int(clf.predict(arr.reshape(1, 28, 28, 1))[0])


@pytest.fixture(scope="module")
def fgsm_result(trained_cnn, mnist):
    # Not quantised: rounding may change a prediction, and the sidecar must say so honestly.
    return make_attack("fgsm", eps=0.15)(trained_cnn, mnist.x_test[:12], labels=mnist.y_test[:12])


def test_batch_export_pngs_are_classified_as_their_sidecars_say(trained_cnn, fgsm_result, tmp_path):
    folder = tmp_path / "batch"
    records = export.export_batch(fgsm_result, trained_cnn, folder, indices=range(100, 112))
    assert len(records) == 12
    with open(folder / export.CSV_NAME, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["file"] for r in rows] == [r["png"] for r in records]
    for row in rows:
        png = folder / row["file"]
        sidecar = json.loads(png.with_suffix(".json").read_text())
        assert _classify_png(trained_cnn, png) == sidecar["png_pred"] == int(row["png_pred"])
        assert len(sidecar["probs_after"]) == 10 and len(sidecar["png_probs"]) == 10
        assert sidecar["method"] == "fgsm" and sidecar["params"]["eps"] == 0.15
        assert sidecar["model"]["name"] == trained_cnn.name
        assert sidecar["png_max_abs_error"] <= 0.5 / 255 + 1e-6
        with Image.open(folder / sidecar["png_large"]) as big:
            assert big.size == (280, 280)
            # The enlarged copy is the same pixels, each a 10x10 block.
            small = np.asarray(Image.open(png))
            np.testing.assert_array_equal(np.asarray(big)[::10, ::10], small)
    assert [int(r["index"]) for r in rows] == list(range(100, 112))
    assert not list(folder.glob("*.part")) and not list(folder.glob(".*"))


def test_quantised_targeted_export_keeps_the_adversarial_label(trained_cnn, mnist, tmp_path):
    idx = np.flatnonzero(mnist.y_test == 4)[:3]
    res = make_attack("targeted", lam=0.05, steps=200)(
        trained_cnn, mnist.x_test[idx], labels=4, goals=np.array([2, 6, 8])
    )
    assert res.success.all()
    for i in range(3):
        rec = export.export_image(res, i, trained_cnn, tmp_path / f"adv{i}.png", index=int(idx[i]))
        assert rec["png_pred"] == rec["pred_after"] == rec["goal"]
        assert _classify_png(trained_cnn, tmp_path / f"adv{i}.png") == rec["goal"]
        assert len(rec["cost_history"]) == 200
        assert export.png_prediction(trained_cnn, res.x_adv[i]) == rec["goal"]


def test_export_refuses_a_missing_folder_and_leaves_nothing(trained_cnn, fgsm_result, tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        export.export_image(fgsm_result, 0, trained_cnn, tmp_path / "nope" / "a.png")
    assert not (tmp_path / "nope").exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportError):
        export.export_batch(fgsm_result, trained_cnn, blocker / "sub")


def test_to_uint8_rounds_instead_of_truncating():
    x = np.full((28, 28, 1), 0.5 / 255 + 1e-4, np.float32)
    assert export.to_uint8(x).max() == 1
    assert export.to_uint8(np.full((28, 28), 1.2)).max() == 255


# --------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def model_file(trained_cnn, tmp_path_factory):
    from advgui.core import models

    return models.save_model(trained_cnn, tmp_path_factory.mktemp("m") / "cnn.keras")


def _cli(argv):
    """Run the CLI in-process; argparse's own errors exit through SystemExit."""
    from advgui import cli

    try:
        return cli.main(argv)
    except SystemExit as stop:
        return stop.code


def test_cli_attack_writes_verified_png_and_json(
    trained_cnn, model_file, mnist_path, tmp_path, capsys
):
    out, js = tmp_path / "adv.png", tmp_path / "result.json"
    code = _cli(
        [
            "--data", str(mnist_path), "attack", "--model", str(model_file),
            "--method", "targeted", "--index", "4", "--target", "2", "--lam", "0.05",
            "--steps", "150", "--out", str(out), "--json", str(js),
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rec = json.loads(js.read_text())
    for key in (
        "method", "params", "index", "source_label", "goal", "pred_before", "pred_after",
        "probs_after", "goal_confidence", "success", "l2", "linf", "seconds", "png", "png_pred",
    ):  # fmt: skip
        assert key in rec, key
    assert rec["index"] == 4 and rec["source_label"] == 4 and rec["goal"] == 2
    assert len(rec["probs_after"]) == 10 and rec["params"]["lam"] == 0.05
    assert rec["png_pred"] == _classify_png(trained_cnn, out)
    assert (tmp_path / "adv.json").is_file() and (tmp_path / "adv_x10.png").is_file()
    assert "PNG classified" in capsys.readouterr().out


def test_cli_noise_attack_without_out_still_reports_the_png_prediction(
    model_file, mnist_path, tmp_path
):
    js = tmp_path / "r.json"
    argv = ["--data", str(mnist_path), "attack", "--model", str(model_file), "--method", "noise",
            "--index", "0", "--target", "5", "--steps", "100", "--optimizer", "adam",
            "--json", str(js)]  # fmt: skip
    assert _cli(argv) == 0
    rec = json.loads(js.read_text())
    assert rec["png"] is None and rec["png_pred"] == rec["pred_after"] == 5 and rec["success"]


def test_cli_attack_methods_come_from_the_registry():
    from advgui import cli
    from advgui.core.attacks import ATTACKS

    parser = cli.build_parser()
    action = next(a for a in parser._subparsers._group_actions[0].choices["attack"]._actions
                  if a.dest == "method")  # fmt: skip
    assert set(action.choices) == set(ATTACKS) >= {"fgsm", "noise", "targeted"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "fgsm", "--index", "10000"], "--index must be 0-9999"),
        (["--method", "fgsm", "--index", "1", "--steps", "5"], "fgsm does not take steps"),
        (["--method", "targeted", "--index", "1", "--lam", "-1"], "lambda must be >= 0"),
        (["--method", "targeted", "--index", "1", "--target", "12"], "--target must be 0-9"),
        (["--method", "fgsm", "--index", "1", "--eps", "nan"], "finite"),
    ],
)
def test_cli_attack_user_errors_exit_2_with_one_line(
    model_file, mnist_path, capsys, extra, message
):
    code = _cli(["--data", str(mnist_path), "attack", "--model", str(model_file), *extra])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
