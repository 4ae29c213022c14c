"""The headless commands: exit codes and one-line errors."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from advgui.cli import main


def test_data_info_on_real_files(mnist_path, capsys):
    assert main(["--data", str(mnist_path), "data", "info", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"train": 60000' in out and "5923" in out


def test_import_then_info_uses_cache(mnist_path, capsys, monkeypatch):
    monkeypatch.delenv("ADVGUI_DATA", raising=False)
    assert main(["data", "import", str(mnist_path)]) == 0
    assert main(["data", "info"]) == 0
    assert "source:  cache" in capsys.readouterr().out


def test_missing_source_exits_2_with_one_line(tmp_path):
    env = {"ADVGUI_HOME": str(tmp_path), "PATH": "", "ADVGUI_DATA": str(tmp_path / "none")}
    proc = subprocess.run(
        [sys.executable, "-m", "advgui", "data", "fetch", "--no-download"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "MNIST not found" in lines[0] and "Traceback" not in proc.stderr


def test_bad_arguments_exit_2(capsys):
    import pytest

    with pytest.raises(SystemExit) as info:
        main(["data", "import"])
    assert info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_help_for_each_command():
    for args in (["--help"], ["data", "--help"], ["data", "fetch", "--help"], ["predict", "-h"]):
        proc = subprocess.run([sys.executable, "-m", "advgui", *args], capture_output=True)
        assert proc.returncode == 0 and b"usage" in proc.stdout


NUMBERS = ("nan", "inf", "-inf", "-1", "0", "1e300")


EPS_BAD = ("nan", "inf", "-inf", "-1", "1.5", "1e300")  # epsilon 0 is a valid (no-op) budget


@pytest.fixture(scope="module")
def files(tmp_path_factory, mnist_gz):
    """A tiny (untrained) model and every kind of broken model, dataset and image file."""
    from advgui.core import models
    from advgui.core.tfimport import keras

    k = keras()
    d = tmp_path_factory.mktemp("bad_files")
    models.save_model(
        models.Classifier(models.build_model("mlp", hidden=(8,)), {"name": "tiny"}),
        d / "tiny.keras",
    )
    blob = (d / "tiny.keras").read_bytes()
    (d / "garbage.keras").write_bytes(os.urandom(500))
    (d / "truncated.keras").write_bytes(blob[: len(blob) // 2])
    (d / "text.keras").write_text("this is not a model\n")

    inp = k.Input((28, 28, 1))
    x = k.layers.Flatten()(inp)
    x = k.layers.Lambda(lambda t: t * 2.0)(x)
    k.Model(inp, k.layers.Dense(10)(x)).save(d / "lambda.keras")

    @k.saving.register_keras_serializable(package="reliability_test")
    class Unknown(k.layers.Layer):
        def call(self, t):
            return t

    inp = k.Input((28, 28, 1))
    x = Unknown()(k.layers.Flatten()(inp))
    k.Model(inp, k.layers.Dense(10)(x)).save(d / "custom.keras")
    # Forget the class again: the file now names an object this process does not know.
    k.saving.get_custom_objects().pop("reliability_test>Unknown")

    inp = k.Input((32, 32, 3))
    k.Model(inp, k.layers.Dense(10)(k.layers.Flatten()(inp))).save(d / "shape_in.keras")
    inp = k.Input((28, 28, 1))
    k.Model(inp, k.layers.Dense(5)(k.layers.Flatten()(inp))).save(d / "shape_out.keras")

    # Datasets: a folder with a corrupt gzip, one with a truncated file, a damaged npz, a
    # foreign file, and a copy of MNIST with one byte altered (fails the SHA-256 check).
    (d / "ds_corrupt").mkdir()
    for name in ("train-images", "train-labels", "t10k-images", "t10k-labels"):
        src = next(mnist_gz.glob(f"{name}*"))
        shutil.copy(src, d / "ds_corrupt" / src.name)
    shutil.copytree(d / "ds_corrupt", d / "ds_truncated")
    shutil.copytree(d / "ds_corrupt", d / "ds_altered")
    victim = next((d / "ds_corrupt").glob("t10k-labels*"))
    victim.write_bytes(b"\x1f\x8b\x08\x00" + os.urandom(200))
    victim = next((d / "ds_truncated").glob("train-labels*"))
    victim.write_bytes(victim.read_bytes()[:1000])
    import gzip

    victim = next((d / "ds_altered").glob("t10k-labels*"))
    raw = bytearray(gzip.decompress(victim.read_bytes()))
    raw[100] = (raw[100] + 1) % 10
    victim.write_bytes(gzip.compress(bytes(raw)))
    (d / "damaged.npz").write_bytes(b"PK\x03\x04" + os.urandom(300))
    (d / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(100))
    return d


def _run(argv: list[str], capsys) -> tuple[int, list[str]]:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    # Progress bars also go to stderr ("[###---] 40% ..."); the error is one line after them.
    lines = [line for line in err.splitlines() if line.strip()]
    messages = [line for line in lines if not line.startswith("[")]
    if messages:
        assert lines[-1] == messages[-1], lines
    return rc, messages


def _assert_clean_failure(argv, capsys, out_dir: Path, *, expect: str = "") -> str:
    before = {p for p in out_dir.rglob("*") if not p.is_dir()}
    rc, lines = _run(argv, capsys)
    assert rc == 2, (argv, lines)
    assert len(lines) == 1, lines
    assert lines[0].startswith("advgui"), lines
    assert expect.lower() in lines[0].lower(), lines[0]
    left = {p for p in out_dir.rglob("*") if not p.is_dir()} - before
    assert not left, f"left behind: {sorted(left)}"
    return lines[0]


TRAIN_NUMERIC = {
    "--epochs": ("0", "-1", "nan", "1e9", "99999999999999999999"),
    "--batch-size": ("0", "-5", "nan", "100000000000"),
    "--lr": NUMBERS,
    "--n-train": ("0", "-1", "nan", "1e9", "70000"),
    "--n-val": ("-3", "nan", "100000"),
}


DEFEND_NUMERIC = {
    "--eps": EPS_BAD,
    "--lr": NUMBERS,
    "--batch-size": ("0", "1000000000"),
    "--steps": ("0", "1000000000"),
    "--epochs": ("0", "1000000000"),
    "--beta": ("nan", "-1", "1e300"),
    "--temperature": ("nan", "0", "-1", "1e300"),
    "--sigma": ("nan", "0", "-1", "1e300"),
}


ATTACK_NUMERIC = {
    "--eps": EPS_BAD,
    "--steps": ("0", "-1", "nan", "1000000000"),
    "--lam": ("nan", "inf", "-1", "1e300"),
    "--step-size": NUMBERS,
    "--confidence": ("nan", "-1", "2", "0"),
    "--index": ("-1", "10000", "99999999999999999999", "nan"),
    "--target": ("-1", "10", "nan"),
}


ATTACK_METHOD = {  # a method that takes each option (or a goal-less one, where it does not)
    "--eps": "pgd",
    "--steps": "noise",
    "--lam": "targeted",
    "--step-size": "targeted",
    "--confidence": "targeted",
    "--index": "fgsm",
    "--target": "targeted",
}


EVALUATE_NUMERIC = {
    "--eps": ("nan", "inf", "-0.1", "5", "", "a,b", "0.1,nan"),
    "--n": ("0", "-1", "1000000"),
    "--steps": ("0", "1000000000"),
    "--restarts": ("0", "1000000000"),
    "--eot": ("0", "1000000000"),
    "--detector-fpr": ("nan", "-1", "2"),
}
#: ``evaluate --certify smoothing``'s own options.
CERTIFY_NUMERIC = {
    "--sigma": ("nan", "0", "-1", "1e300"),
    "--n-samples": ("0", "1000000000"),
    "--n0": ("0", "1000000000"),
    "--alpha": ("nan", "0", "0.9"),
    "--radii": ("", "-1", "a,b", "1,nan"),
    "--smoothing-attack": ("-1", "a", "1000000"),
    "--smoothing-attack-samples": ("0", "nan", "100000"),
}


def _cases():
    for opt, values in TRAIN_NUMERIC.items():
        for v in values:
            yield pytest.param(["train", "--arch", "mlp", opt, v], id=f"train{opt}={v}")
    for opt, values in DEFEND_NUMERIC.items():
        for v in values:
            defense = {"--beta": "trades", "--temperature": "distill", "--sigma": "noise"}.get(
                opt, "fast-at"
            )
            argv = ["defend", "--defense", defense, opt, v]
            yield pytest.param(argv, id=f"defend{opt}={v}")
            if opt in ("--eps", "--temperature"):
                argv = ["train", "--defense", defense, opt, v]
                yield pytest.param(argv, id=f"train-defense{opt}={v}")
    for opt, values in ATTACK_NUMERIC.items():
        for v in values:
            method = ATTACK_METHOD[opt]
            argv = ["attack", "--model", "{tiny}", "--method", method, "--index", "0"]
            if method == "targeted" and opt != "--target":
                argv += ["--target", "2"]
            if opt == "--index":
                argv = argv[:-2]
            yield pytest.param([*argv, f"{opt}={v}"], id=f"attack-{method}{opt}={v}")
    for opt, values in EVALUATE_NUMERIC.items():
        for v in values:
            argv = ["evaluate", "--model", "{tiny}", f"{opt}={v}"]
            yield pytest.param(argv, id=f"evaluate{opt}={v}")
    for opt, values in CERTIFY_NUMERIC.items():
        for v in values:
            argv = ["evaluate", "--model", "{tiny}", "--certify", "smoothing", f"{opt}={v}"]
            if opt != "--sigma":
                argv.append("--sigma=0.5")
            yield pytest.param(argv, id=f"evaluate-certify{opt}={v}")
    for t in ("jpeg:0", "jpeg:500", "median:-1", "noise:nan", "squeeze-bits:99", "bogus", ":"):
        yield pytest.param(
            ["evaluate", "--model", "{tiny}", "--transform", t], id=f"evaluate-transform={t}"
        )
    for param in ("foo=1", "eps=nan", "eps", "=1"):
        argv = ["attack", "--model", "{tiny}", "--method", "fgsm", "--index", "0"]
        yield pytest.param([*argv, "--param", param], id=f"attack-param={param}")


@pytest.mark.parametrize("argv", list(_cases()))
def test_bad_numbers_exit_2_with_one_line(argv, files, mnist_path, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    filled = [a.format(tiny=files / "tiny.keras") for a in argv]
    if filled[0] in ("train", "defend"):
        filled += ["--out", str(out / "m.keras"), "--no-store"]
    if filled[0] == "attack":
        filled += ["--out", str(out / "adv.png"), "--json", str(out / "adv.json")]
    if filled[0] == "evaluate":
        filled += ["--json", str(out / "r.json")]
    _assert_clean_failure(["--data", str(mnist_path), *filled], capsys, tmp_path)


BAD_MODELS = {
    "garbage": "not a keras 3",
    "truncated": "not a keras 3",
    "text": "not a keras 3",
    "lambda": "lambda layer",
    "custom": "custom objects",
    "shape_in": "input shape",
    "shape_out": "output shape",
    "missing": "no such",
}


@pytest.mark.parametrize("command", ["attack", "evaluate"])
@pytest.mark.parametrize("name", sorted(BAD_MODELS))
def test_bad_model_files_are_refused(command, name, files, mnist_path, tmp_path, capsys):
    model = str(files / f"{name}.keras")
    out = tmp_path / "out"
    out.mkdir()
    if command == "attack":
        argv = ["attack", "--model", model, "--method", "fgsm", "--index", "0"]
        argv += ["--out", str(out / "a.png")]
    else:
        argv = ["evaluate", "--model", model, "--n", "10", "--eps", "0.1", "--attack", "fgsm"]
        argv += ["--json", str(out / "r.json")]
    line = _assert_clean_failure(
        ["--data", str(mnist_path), *argv], capsys, tmp_path, expect=BAD_MODELS[name]
    )
    if name in ("lambda", "custom"):
        assert "safe" in line.lower() or "refused" in line.lower()


BAD_DATA = {
    "ds_corrupt": "corrupt",
    "ds_truncated": "",
    "ds_altered": "checksum",
    "damaged.npz": "npz",
    "picture.png": "not a dataset",
    "nowhere": "no such",
}


@pytest.mark.parametrize("name", sorted(BAD_DATA))
@pytest.mark.parametrize(
    "command",
    [
        ["data", "info"],
        ["data", "import", "{path}"],
        ["train", "--arch", "mlp", "--epochs", "1", "--n-train", "200", "--no-store"],
        ["defend", "--defense", "fgsm-at", "--epochs", "1", "--n-train", "200", "--no-store"],
        ["attack", "--model", "{tiny}", "--method", "fgsm", "--index", "0"],
        ["evaluate", "--model", "{tiny}", "--n", "10", "--attack", "fgsm", "--eps", "0.1"],
    ],
    ids=lambda c: "-".join(c[:2]),
)
def test_bad_datasets_are_refused(command, name, files, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ADVGUI_DATA", raising=False)
    path = str(files / name)
    argv = [a.format(path=path, tiny=files / "tiny.keras") for a in command]
    if argv[0] in ("train", "defend"):
        argv += ["--out", str(tmp_path / "m.keras")]
    if argv[:2] != ["data", "import"]:
        argv = ["--data", path, *argv]
    _assert_clean_failure(argv, capsys, tmp_path, expect=BAD_DATA[name])
    # Nothing of the bad dataset reached the cache.
    cache = Path(os.environ["ADVGUI_HOME"]) / "cache"
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _refuse_dir(monkeypatch, folder: Path) -> None:
    """Writes into ``folder`` fail with EACCES (chmod does not stop root, so simulate)."""
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        target = kwargs.get("dir")
        if target is not None and Path(target).resolve() == folder.resolve():
            raise PermissionError(errno.EACCES, "Permission denied", str(folder))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def _write_commands(files, out: Path) -> dict[str, list[str]]:
    tiny = str(files / "tiny.keras")
    attack = ["attack", "--model", tiny, "--method", "fgsm", "--index", "3", "--eps", "0.2"]
    return {
        "train": [
            *("train", "--arch", "mlp", "--epochs", "1", "--n-train", "300", "--n-val", "0"),
            *("--batch-size", "100", "--out", str(out / "m.keras"), "--json", str(out / "m.json")),
        ],
        "attack-png": [*attack, "--out", str(out / "adv.png")],
        "attack-json": [*attack, "--json", str(out / "adv.json")],
        "evaluate": [
            *("evaluate", "--model", tiny, "--n", "20", "--attack", "fgsm"),
            *("--eps", "0,0.1", "--naive-only", "--csv", str(out / "r.csv")),
        ],
    }


WRITERS = ("train", "attack-png", "attack-json", "evaluate")


@pytest.mark.parametrize("fault", ["enospc-fsync", "enospc-write", "eacces"])
@pytest.mark.parametrize("which", WRITERS)
def test_full_disk_and_unwritable_folder(which, fault, files, mnist_path, tmp_path, capsys,
                                         monkeypatch):  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    argv = ["--data", str(mnist_path), *_write_commands(files, out)[which]]
    if fault == "enospc-fsync":
        monkeypatch.setattr(os, "fsync", _enospc)
    elif fault == "enospc-write":
        real_fdopen = os.fdopen

        class FullFile:
            def __init__(self, fh):
                self._fh = fh

            def write(self, data):
                self._fh.write(bytes(data)[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")

            def __getattr__(self, name):
                return getattr(self._fh, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return self._fh.__exit__(*exc)

        def fdopen(fd, mode="r", *a, **kw):
            fh = real_fdopen(fd, mode, *a, **kw)
            return FullFile(fh) if "w" in mode else fh

        monkeypatch.setattr(os, "fdopen", fdopen)
    else:
        _refuse_dir(monkeypatch, out)
    expect = "no permission" if fault == "eacces" else "disk full"
    _assert_clean_failure(argv, capsys, out, expect=expect)
    monkeypatch.undo()
    leftovers = [p for p in Path(tempfile.gettempdir()).glob(".advgui-save-*")]
    assert not leftovers, leftovers


def test_train_into_full_model_store_leaves_no_file(files, mnist_path, tmp_path, capsys,
                                                    monkeypatch):  # fmt: skip
    from advgui.core import paths

    monkeypatch.setattr(os, "fsync", _enospc)
    argv = ["--data", str(mnist_path), "train", "--arch", "mlp", "--epochs", "1"]
    argv += ["--n-train", "300", "--n-val", "0", "--out", str(tmp_path / "m.keras")]
    _assert_clean_failure(argv, capsys, tmp_path, expect="disk full")
    store = paths.store_dir()
    assert not store.exists() or not list(store.iterdir())


def _user_images(d: Path, mnist) -> Path:
    from PIL import Image

    d.mkdir(exist_ok=True)
    for i in range(2):
        Image.fromarray((mnist.x_test[i, :, :, 0] * 255).astype("uint8")).save(d / f"d{i}.png")
    return d


ONE = "attack --model {tiny} --method fgsm --image {digits}/d0.png"


FOLDER = "attack --model {tiny} --method fgsm --images"


#: id -> (command line, words the one-line error must contain)
IMAGE_CASES = {
    "attack-broken-png": ("attack --model {tiny} --method fgsm --image {files}/picture.png",
                          "not a readable"),
    "attack-text-file": ("attack --model {tiny} --method fgsm --image {files}/text.keras",
                         "not a readable"),
    "attack-missing-image": ("attack --model {tiny} --method fgsm --image {out}/no.png",
                             "no such file"),
    "predict-text-file": ("predict --model {tiny} --image {files}/text.keras", "not a readable"),
    "predict-empty-folder": ("predict --model {tiny} --images {empty}", "no files"),
    "predict-missing-folder": ("predict --model {tiny} --images {out}/nowhere", "no such folder"),
    "attack-empty-folder": (f"{FOLDER} {{empty}} --out {{out}}/res", "no files"),
    "attack-no-image-in-folder": (f"{FOLDER} {{junk}} --out {{out}}/res", "none of its 2 files"),
    "attack-images-without-out": (f"{FOLDER} {{digits}}", "--out"),
    "attack-images-out-is-input": (f"{FOLDER} {{digits}} --out {{digits}}", "must not be"),
    "attack-targeted-without-target": (
        "attack --model {tiny} --method targeted --image {digits}/d0.png", "needs a target"
    ),
    # Output paths are checked before any work: nothing is written at all.
    "attack-json-missing-folder": (f"{ONE} --out {{out}}/a.png --json {{out}}/no/r.json",
                                   "does not exist"),
    "attack-json-is-sidecar": (f"{ONE} --out {{out}}/a.png --json {{out}}/a.json", "sidecar"),
    "attack-json-is-enlarged-png": (f"{ONE} --out {{out}}/a.png --json {{out}}/a_x10.png",
                                    "same file"),
    "attack-json-overwrites-image": (f"{ONE} --json {{digits}}/d0.png", "input"),
    "attack-json-is-folder": (f"{ONE} --json {{out}}", "is a folder"),
    "attack-index-json-is-sidecar": (
        "attack --model {tiny} --method fgsm --index 0 --out {out}/a.png --json {out}/a.json",
        "sidecar",
    ),
    "attack-images-json-is-index": (
        f"{FOLDER} {{digits}} --out {{out}}/res --json {{out}}/res/index.csv", "index.csv"
    ),
    "predict-json-missing-folder": (
        "predict --model {tiny} --image {digits}/d0.png --json {out}/no/p.json", "does not exist"
    ),
    "predict-json-overwrites-image": (
        "predict --model {tiny} --images {digits} --json {digits}/d1.png", "input"
    ),
    "train-json-is-model": ("train --arch mlp --out {out}/m.keras --json {out}/m.keras",
                            "same file"),
    "evaluate-csv-is-json": ("evaluate --model {tiny} --n 10 --json {out}/r.json --csv "
                             "{out}/r.json", "same file"),
    "evaluate-plot-overwrites-model": ("evaluate --model {tiny} --n 10 --plot {tiny}", "input"),
}  # fmt: skip


@pytest.mark.parametrize(("argv", "expect"), list(IMAGE_CASES.values()), ids=list(IMAGE_CASES))
def test_bad_images_and_output_paths_exit_2_writing_nothing(argv, expect, files, mnist, mnist_path,
                                                            tmp_path, capsys):  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "empty").mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.txt").write_text("text\n")
    (junk / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    digits = _user_images(tmp_path / "digits", mnist)
    places = {"tiny": files / "tiny.keras", "files": files, "out": out, "digits": digits}
    filled = argv.format(**places, empty=tmp_path / "empty", junk=junk).split()
    before = (files / "tiny.keras").read_bytes()
    _assert_clean_failure(["--data", str(mnist_path), *filled], capsys, tmp_path, expect=expect)
    assert (files / "tiny.keras").read_bytes() == before
    assert not (out / "res").exists()
