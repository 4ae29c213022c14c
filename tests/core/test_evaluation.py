"""Evaluation on real MNIST: structure and honesty of the figures, cancel, CLI."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from advgui.core.errors import ParameterError


@pytest.fixture(scope="module")
def models_pair(mnist, plain_s2):
    """A normally trained small CNN and a distilled one (T=100)."""
    from conftest import cached_model

    from advgui.core.defenses import DefenseConfig, train_defended

    def distill():
        cfg = DefenseConfig(method="distill", arch="cnn-s2", epochs=2, n_train=10000, check_n=100)
        return train_defended(cfg, mnist).classifier

    from advgui.core.models import Classifier

    plain = Classifier(plain_s2.model, {**plain_s2.meta, "name": "plain"}, plain_s2.logits_model)
    return plain, cached_model("distilled-s2", mnist, distill)


@pytest.fixture(scope="module")
def result(models_pair, mnist):
    from advgui.core.evaluation import EvalConfig, evaluate

    cfg = EvalConfig(attacks=("fgsm", "pgd"), eps=(0.3, 0, 0.1), n=200, pgd_steps=10)
    return evaluate(list(models_pair), mnist, cfg, transforms=["none", "squeeze-bits:1"])


def test_result_structure_and_clean_accuracy(result, models_pair, mnist):
    plain, distilled = models_pair
    assert result["eps"] == [0.0, 0.1, 0.3]  # sorted
    labels = [e["label"] for e in result["results"]]
    assert labels == ["plain", "plain + squeeze-bits:1", distilled.name,
                      f"{distilled.name} + squeeze-bits:1"]  # fmt: skip
    x, y = mnist.x_test[:200], mnist.y_test[:200]
    assert result["results"][0]["clean_accuracy"] == pytest.approx(plain.accuracy(x, y))
    assert result["results"][2]["clean_accuracy"] == pytest.approx(distilled.accuracy(x, y))
    json.dumps(result)  # plain JSON
    for entry in result["results"]:
        for res in entry["attacks"].values():
            assert res["robust_accuracy"][0] == entry["clean_accuracy"]  # eps 0
            # The reported figure is never better than either attack.
            for i, r in enumerate(res["robust_accuracy"]):
                assert r <= res["naive"][i] + 1e-12
                if res["adaptive"] is not None:
                    assert r <= res["adaptive"][i] + 1e-12


def test_attacks_are_strong_on_the_bare_model(result):
    plain = result["results"][0]
    assert plain["adaptive"] is None and plain["attacks"]["pgd"]["adaptive"] is None
    pgd = plain["attacks"]["pgd"]["robust_accuracy"]
    fgsm = plain["attacks"]["fgsm"]["robust_accuracy"]
    assert pgd[2] < 0.05 and pgd[2] <= fgsm[2]  # PGD at 0.3 breaks an undefended net
    assert pgd[0] > pgd[1] > pgd[2]


def test_masking_is_shown_for_distillation_and_squeezing(result):
    distilled = result["results"][2]
    pgd = distilled["attacks"]["pgd"]
    assert "logits divided by T=100" in distilled["adaptive"]
    assert pgd["naive"][2] > pgd["adaptive"][2] + 0.3  # naive looks robust, is not
    assert any("distillation saturates the softmax" in n for n in distilled["notes"])
    squeezed = result["results"][1]
    assert "BPDA" in squeezed["adaptive"]
    assert (
        squeezed["attacks"]["fgsm"]["naive"][1]
        > result["results"][0]["attacks"]["fgsm"]["naive"][1]
    )
    assert any("quantisation" in n for n in squeezed["notes"])


def test_csv_rows_and_png(result, tmp_path):
    from advgui.core.evaluation import CSV_FIELDS, curves, save_png, to_csv

    table = list(csv.DictReader(io.StringIO(to_csv(result))))
    assert len(table) == 4 * 2 * 3 and tuple(table[0]) == CSV_FIELDS
    assert table[0]["adaptive"] == ""  # bare model: no adaptive view
    c = curves(result)
    assert len(c) == 4 and c[0]["naive"] is None and c[2]["naive"] is not None
    worst = np.minimum(
        result["results"][0]["attacks"]["fgsm"]["robust_accuracy"],
        result["results"][0]["attacks"]["pgd"]["robust_accuracy"],
    )
    np.testing.assert_allclose(c[0]["robust"], worst)
    save_png(result, tmp_path / "p.png")
    from PIL import Image

    with Image.open(tmp_path / "p.png") as img:
        assert img.size == (1800, 1200)  # 900x600 at 2x: an exported plot stands alone


def test_min_norm_attack_is_projected_onto_each_ball(models_pair, mnist):
    from advgui.core.evaluation import EvalConfig, evaluate

    cfg = EvalConfig(
        attacks=("deepfool",), eps=(0, 0.05, 0.3), n=100, detector_fpr=0.05,
        attack_params={"deepfool": {"steps": 20}},
    )  # fmt: skip
    res = evaluate([models_pair[0]], mnist, cfg)
    acc = res["results"][0]["attacks"]["deepfool"]["robust_accuracy"]
    assert acc[0] >= acc[1] >= acc[2] and acc[2] < 0.5
    det = res["results"][0]["detector"]
    assert det["fpr_setting"] == 0.05 and 0 <= det["fpr_measured"] <= 0.15
    assert len(det["detection_rate"]["deepfool"]["rate"]) == 3


def test_cancel_and_validation(models_pair, mnist):
    from advgui.core.evaluation import EvalConfig, evaluate, parse_eps_grid
    from advgui.core.progress import Cancelled, CancelToken

    token = CancelToken()
    seen = []

    def progress(p):
        seen.append(p)
        token.cancel()

    with pytest.raises(Cancelled):
        evaluate([models_pair[0]], mnist, EvalConfig(n=100), progress=progress, cancel=token)
    assert len(seen) >= 1
    assert parse_eps_grid("0.3, 0,0.1") == (0.0, 0.1, 0.3)
    for bad, field in (("0,x", "eps"), ("0,1.5", "eps")):
        with pytest.raises(ParameterError) as err:
            parse_eps_grid(bad)
        assert err.value.field == field
    with pytest.raises(ParameterError) as err:
        EvalConfig(attacks=("nope",)).validate()
    assert err.value.field == "attacks"
    with pytest.raises(ParameterError):
        evaluate([models_pair[0]], mnist, EvalConfig(n=10), transforms=["blur:2"])


def test_cli_evaluate_and_defend(models_pair, mnist_path, tmp_path, capsys):
    from advgui import cli
    from advgui.core import models

    path = tmp_path / "plain.keras"
    models.save_model(models_pair[0], path)
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    code = cli.main([
        "--data", str(mnist_path), "evaluate", "--model", str(path),
        "--transform", "squeeze-bits:1", "--attack", "fgsm", "--eps", "0,0.2",
        "--n", "100", "--json", str(out_json), "--plot", str(out_png),
    ])  # fmt: skip
    assert code == 0
    data = json.loads(out_json.read_text())
    assert [e["transform"] for e in data["results"]] == ["none", "squeeze-bits:1"]
    assert set(data["results"][0]["attacks"]["fgsm"]) >= {"eps", "robust_accuracy"}
    assert out_png.read_bytes()[:4] == b"\x89PNG"
    assert "robust accuracy on 100 test images" in capsys.readouterr().out

    assert cli.main(["evaluate", "--model", str(path), "--eps", "0,2"]) == 2
    assert "epsilon must be between 0 and 1" in capsys.readouterr().err
    assert cli.main(["evaluate", "--model", str(tmp_path / "missing.keras")]) == 2

    model_out = tmp_path / "fgsm.keras"
    code = cli.main([
        "--data", str(mnist_path), "defend", "--defense", "fgsm-at", "--defense-arch", "cnn-s2",
        "--epochs", "1", "--n-train", "2000", "--out", str(model_out), "--no-store",
    ])  # fmt: skip
    assert code == 0
    loaded = models.load_model(model_out)
    assert loaded.meta["defense"] == "fgsm-at" and loaded.meta["defense_config"]["eps"] == 0.3


def test_cli_train_with_defense_option(mnist_path, tmp_path):
    from advgui import cli
    from advgui.core import models

    out = tmp_path / "fast.keras"
    code = cli.main([
        "--data", str(mnist_path), "train", "--defense", "fast-at", "--eps", "0.2",
        "--defense-arch", "cnn-s2", "--epochs", "1", "--n-train", "1000", "--out", str(out),
        "--no-store",
    ])  # fmt: skip
    assert code == 0
    meta = models.load_model(out).meta
    assert meta["defense"] == "fast-at" and meta["defense_config"]["eps"] == 0.2
    assert meta["defense_config"]["n_train"] == 1000
    assert cli.main(["train", "--defense", "trades", "--eps", "3", "--out", str(out)]) == 2
