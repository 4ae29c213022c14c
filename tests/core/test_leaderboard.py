"""``advgui leaderboard`` on one machine: real MNIST, three small trained models, hostile files
beside them. The Ray path is in test_leaderboard_ray.py."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from advgui import cli
from advgui.core import evaluation, leaderboard
from advgui.core.progress import Cancelled, CancelToken

PGD = {"attack": "pgd", "eps": 0.1, "n": 60, "chunk": 20}


@pytest.fixture
def folder(class_models, tmp_path):
    """The class's folder: three models, a file that is not a model, a legacy HDF5 file."""
    d = tmp_path / "submissions"
    d.mkdir()
    for p in class_models:
        shutil.copy(p, d / p.name)
    (d / "dave.keras").write_bytes(b"PK\x03\x04 not really a zip")
    (d / "erin.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    return d


def test_local_ranking_matches_evaluate_and_refuses_bad_files(folder, mnist, class_models):
    result = leaderboard.run([folder], mnist, leaderboard.LeaderboardConfig(**PGD))
    ranking = result["ranking"]
    assert [e["rank"] for e in ranking] == [1, 2, 3]
    assert sorted(e["model"] for e in ranking) == ["alice", "bob", "carol"]
    robust = [e["robust_accuracy"] for e in ranking]
    assert robust == sorted(robust, reverse=True)
    assert all(e["robust_accuracy"] <= e["clean_accuracy"] for e in ranking)
    assert result["tasks"] == 3 * 3 and result["executor"] == "local"
    refused = {r["file"].rsplit("/", 1)[-1]: r["reason"] for r in result["refused"]}
    assert set(refused) == {"dave.keras", "erin.h5"}
    assert "not a zip archive" in refused["dave.keras"]
    assert "HDF5" in refused["erin.h5"]
    # The same figures as `advgui evaluate` with the same images, seed and chunks.
    from advgui.core import models

    clfs = [models.load_model(p) for p in class_models]
    cfg = evaluation.EvalConfig(attacks=("pgd",), eps=(0.1,), n=60, batch_size=20, adaptive=False)
    ev = evaluation.evaluate(clfs, mnist, cfg)
    by_name = {e["model"]: e for e in ranking}
    for path, entry in zip(class_models, ev["results"], strict=True):
        mine = by_name[path.stem]
        assert mine["clean_accuracy"] == entry["clean_accuracy"]
        assert mine["robust_accuracy"] == entry["attacks"]["pgd"]["robust_accuracy"][0]


def test_autoattack_cascade_and_outputs(class_models, mnist, tmp_path):
    hostile = tmp_path / "<img src=x onerror=alert(1)>.keras"
    shutil.copy(class_models[0], hostile)
    cfg = leaderboard.LeaderboardConfig(
        attack="autoattack", eps=0.2, n=16, chunk=8, params={"steps": 5, "queries": 20}
    )
    result = leaderboard.run([hostile], mnist, cfg)
    (entry,) = result["ranking"]
    names = [c["attack"] for c in entry["cascade"]]
    assert names[0] == "apgd-ce" and "square" in names
    assert sum(c["broken"] for c in entry["cascade"]) == round(
        16 * (entry["clean_accuracy"] - entry["robust_accuracy"])
    )
    assert result["device"].startswith(("CPU", "GPU"))
    page = leaderboard.to_html(result)
    assert "<img" not in page and "&lt;img src=x" in page
    assert "http" not in page.split("<body>")[1]  # no external assets
    rows = leaderboard.to_csv(result).splitlines()
    assert rows[0].startswith("rank,model") and "apgd-ce" in rows[1]


def test_stop_ends_the_local_run(folder, mnist):
    token = CancelToken()
    seen = []

    def progress(update):
        seen.append(update)
        if update.info.get("model"):  # the first task is done: Stop
            token.cancel()

    with pytest.raises(Cancelled):
        leaderboard.run([folder], mnist, leaderboard.LeaderboardConfig(**PGD),
                        progress=progress, cancel=token)  # fmt: skip
    assert sum(1 for u in seen if u.info.get("model")) == 1


def test_no_usable_model_is_one_error(tmp_path, mnist):
    (tmp_path / "a.keras").write_bytes(b"junk")
    with pytest.raises(leaderboard.ModelFileError, match="no usable model among 1 file"):
        leaderboard.run([tmp_path], mnist, leaderboard.LeaderboardConfig(**PGD))


# --------------------------------------------------------------------------- the command


def _cli(capsys, *args, data=None):
    try:
        rc = cli.main([*(["--data", str(data)] if data else []), "leaderboard", *args])
    except SystemExit as done:  # argparse refuses an option's value itself
        rc = done.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_writes_json_csv_html(folder, mnist_path, tmp_path, capsys):
    out_json, out_csv, out_html = tmp_path / "lb.json", tmp_path / "lb.csv", tmp_path / "lb.html"
    rc, out, err = _cli(
        capsys, "--models", str(folder), "--attack", "fgsm", "--eps", "0.1", "--n", "40",
        "--chunk", "20", "--json", str(out_json),
        "--csv", str(out_csv), "--html", str(out_html), "--quiet", data=mnist_path,
    )  # fmt: skip
    assert rc == 0, err
    doc = json.loads(out_json.read_text())
    assert doc["dataset"] == "mnist" and len(doc["ranking"]) == 3 and len(doc["refused"]) == 2
    assert doc["device"].startswith(("CPU", "GPU"))
    assert out.splitlines()[0].startswith("fgsm at eps 0.1")
    assert len(out_csv.read_text().splitlines()) == 1 + 3 + 2
    assert out_html.read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--eps", "2"], "epsilon must be above 0 and at most 1"),
        (["--param", "bogus=1"], "bogus"),
        (["--cluster", "127.0.0.1:9"], "cannot reach the Ray cluster at 127.0.0.1:9"),
        (["--cluster", "nonsense"], "expected HOST:PORT"),
        (["--certify", "smoothing", "--sigma", "0"], "sigma must be between 0.001 and 10"),
        (["--certify", "smoothing", "--sigma", "nan"], "--sigma: must be a finite number"),
        (["--certify", "smoothing", "--n-samples", "0"], "--n-samples: must be at least 1"),
        (["--certify", "smoothing", "--n-samples", "1e9"], "--n-samples: not a whole number"),
        (["--certify", "smoothing", "--n-samples", "1000000000"], "n-samples must be between"),
        (["--certify", "smoothing", "--radius", "-1"], "radius must be between 0 and 100"),
        (["--sigma", "0.5"], "--sigma needs --certify smoothing"),
        (["--certify", "ibp", "--n-samples", "200"], "--n-samples needs --certify smoothing"),
    ],
)
def test_cli_errors_are_one_line(folder, mnist_path, capsys, args, needle):
    rc, _, err = _cli(capsys, "--models", str(folder), "--n", "4", *args, data=mnist_path)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err


def test_cli_cluster_without_ray_says_how_to_install(folder, mnist_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    rc, _, err = _cli(capsys, "--models", str(folder), "--cluster", "10.0.0.5:6379")
    assert rc == 2 and "pip install 'advgui[cluster]'" in err and len(err.splitlines()) == 1


def test_missing_folder_is_one_line(tmp_path, capsys):
    rc, _, err = _cli(capsys, "--models", str(tmp_path / "nope"))
    assert rc == 2 and "no usable model" in err and "no such model file" in err


def test_plan_is_fixed():
    tasks = leaderboard.plan(2, 45, 20)
    assert [(t.model, t.start, t.stop) for t in tasks] == [
        (0, 0, 20), (0, 20, 40), (0, 40, 45), (1, 0, 20), (1, 20, 40), (1, 40, 45),
    ]  # fmt: skip
    assert np.array_equal([t.index for t in tasks], np.arange(6))


# --------------------------------------------------------------------------- certified


@pytest.fixture
def cert_folder(class_models, ibp_s2, tmp_path):
    """An IBP-trained model (ivy), a plain MLP (alice) and one IBP cannot bound (bea: a
    BatchNormalization layer), as a class might hand them in."""
    from advgui.core import models
    from advgui.core.tfimport import keras

    d = tmp_path / "certified"
    d.mkdir()
    models.save_model(ibp_s2, d / "ivy.keras")
    shutil.copy(class_models[0], d / "alice.keras")
    k = keras()
    k.utils.set_random_seed(0)
    inputs = k.Input((28, 28, 1))
    h = k.layers.Conv2D(4, 3, activation="relu")(inputs)
    h = k.layers.BatchNormalization(name="bn")(h)
    net = k.Model(inputs, k.layers.Dense(10)(k.layers.Flatten()(h)))
    models.save_model(models.Classifier(net, {"name": "bea"}), d / "bea.keras")
    return d


def _chunks(mnist, n, chunk):
    x = np.asarray(mnist.x_test[:n], np.float32).reshape(-1, 28, 28, 1)
    y = np.asarray(mnist.y_test[:n], np.int64)
    return [(c, x[s : s + chunk], y[s : s + chunk]) for c, s in enumerate(range(0, n, chunk))]


def test_cli_certify_ibp_column_and_an_unverifiable_model(cert_folder, mnist_path, mnist,
                                                          ibp_s2, tmp_path, capsys):  # fmt: skip
    out_json, out_csv, out_html = tmp_path / "lb.json", tmp_path / "lb.csv", tmp_path / "lb.html"
    rc, out, err = _cli(
        capsys, "--models", str(cert_folder), "--attack", "pgd", "--eps", "0.1", "--n", "20",
        "--chunk", "20", "--certify", "ibp", "--json", str(out_json), "--csv", str(out_csv),
        "--html", str(out_html), "--quiet", data=mnist_path,
    )  # fmt: skip
    assert rc == 0, err
    doc = json.loads(out_json.read_text())
    rows = {e["model"]: e for e in doc["ranking"]}
    assert set(rows) == {"ivy", "alice", "bea"} and not doc["refused"]
    for name in ("ivy", "alice"):
        e = rows[name]
        assert 0.0 <= e["certified_accuracy"] <= e["robust_accuracy"] <= e["clean_accuracy"]
        assert e["certified_consistent"] and "certify_error" not in e
    # IBP-trained at 0.1, ivy is verified on most images: the certifier's own figure.
    from advgui.core import certify

    ((_, x, y),) = _chunks(mnist, 20, 20)
    whole = certify.verified_accuracy(ibp_s2, x, y, 0.1).verified_accuracy[0]
    assert rows["ivy"]["certified_accuracy"] == whole > 0.5
    # bea cannot be bounded: its reason is in its row, and it is ranked all the same.
    bea = rows["bea"]
    assert bea["certified_accuracy"] is None and "not verifiable: layer bn" in bea["certify_error"]
    assert 0.0 <= bea["robust_accuracy"] <= bea["clean_accuracy"]
    lines = out.splitlines()
    assert "certified: IBP-verified at eps 0.1" in lines[0] and "certified" in lines[1].split()
    ivy_line = next(ln for ln in lines if " ivy " in ln)
    assert f"{100 * rows['ivy']['certified_accuracy']:.1f}%" in ivy_line.split()
    bea_line = next(ln for ln in lines if " bea " in ln)
    assert "not certified: not verifiable: layer bn" in bea_line
    table = out_csv.read_text().splitlines()
    assert "certified_accuracy" in table[0].split(",")
    assert any(r.startswith(f"{rows['ivy']['rank']},ivy,") and f",{whole}," in r for r in table)
    page = out_html.read_text()
    assert "<th>certified</th>" in page and "not certified: not verifiable: layer bn" in page


def test_cli_certify_smoothing_per_chunk_seeds(cert_folder, mnist_path, mnist, tmp_path, capsys):
    out_json = tmp_path / "lb.json"
    rc, out, err = _cli(
        capsys, "--models", str(cert_folder), "--attack", "pgd", "--eps", "0.1", "--n", "20",
        "--chunk", "10", "--certify", "smoothing", "--sigma", "0.25", "--n-samples", "300",
        "--n0", "20", "--radius", "0.25", "--json", str(out_json), "--quiet", data=mnist_path,
    )  # fmt: skip
    assert rc == 0, err
    doc = json.loads(out_json.read_text())
    rows = {e["model"]: e for e in doc["ranking"]}
    assert set(rows) == {"ivy", "alice", "bea"}  # smoothing needs no special model
    for e in rows.values():
        assert 0.0 <= e["certified_accuracy"] <= 1.0 and "certify_error" not in e
        assert e["certified"] == round(20 * e["certified_accuracy"])
    assert rows["alice"]["certified_accuracy"] > 0.5  # a plain MLP keeps most at sigma 0.25
    # The figure is the certifier's on each chunk with that chunk's seed.
    from advgui.core import certify, models

    clf = models.load_model(cert_folder / "alice.keras")
    got = []
    for c, xs, ys in _chunks(mnist, 20, 10):
        cfg = certify.SmoothingConfig(sigma=0.25, n0=20, n=300, seed=leaderboard.certify_seed(0, c))
        cert = certify.certify(clf, xs, ys, cfg)
        got.extend(cert.correct & (cert.radius >= 0.25))
    assert rows["alice"]["certified"] == sum(got)
    assert leaderboard.certify_seed(0, 0) != leaderboard.certify_seed(0, 1)
    assert "smoothing certified at L2 radius 0.25 (sigma 0.25, n 300" in out.splitlines()[0]


def test_certified_above_robust_is_flagged_as_a_bug():
    """The check evaluate makes, on a leaderboard row: verified images the attack broke."""
    cfg = leaderboard.LeaderboardConfig(attack="pgd", eps=0.1, certify="ibp").validate()
    entry = {"model": "m", "clean_accuracy": 1.0, "robust_accuracy": 0.5, "flags": []}
    chunks = [{"certified": np.array([1, 1, 0, 1], bool)}, {"certified": np.ones(4, bool)}]
    out = leaderboard._certified(chunks, entry, cfg)
    assert out["certified_accuracy"] == 7 / 8 and not out["certified_consistent"]
    (flag,) = entry["flags"]
    assert flag["name"] == "certified-above-empirical" and "BUG" in flag["message"]
    assert leaderboard.certified_cell({**entry, **out}) == "87.5%!"
    fine = {"model": "m", "clean_accuracy": 1.0, "robust_accuracy": 0.875, "flags": []}
    assert leaderboard._certified(chunks, fine, cfg)["certified_consistent"]
    assert not fine["flags"]
