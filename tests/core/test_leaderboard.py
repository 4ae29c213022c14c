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
    rc = cli.main([*(["--data", str(data)] if data else []), "leaderboard", *args])
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
