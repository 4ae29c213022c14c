"""Hostile dataset and model files are refused before they cost memory; interrupted writes leave
nothing behind for good; outputs follow the umask. (Peak memory: benchmarks/bench_hostile_files.py.)
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from advgui.cli import main
from advgui.core import data, models
from advgui.core.errors import DataError, ModelFileError
from advgui.core.fileio import atomic_write_text, sweep_stale

# ----------------------------------------------------------------------------- builders


def npy_header(shape: tuple[int, ...], dtype: str = "|u1") -> bytes:
    """A version 1.0 .npy header declaring ``shape`` (the data may be anything)."""
    head = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    pad = 64 - (10 + len(head) + 1) % 64
    head += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head


def write_npz(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in members.items():
            zf.writestr(f"{name}.npy", blob)
    return path


def gzip_bomb(raw_size: int) -> bytes:
    """A gzip stream of a valid IDX header followed by ``raw_size`` zero bytes."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [comp.compress(struct.pack(">HBBIII", 0, 8, 3, 60000, 28, 28))]
    chunk = b"\0" * (1 << 22)
    for _ in range(raw_size // len(chunk)):
        out.append(comp.compress(chunk))
    out.append(comp.flush())
    return b"".join(out)


def padded_model(src: Path, dst: Path, member: str, size: int) -> Path:
    """A copy of a real .keras file with ``member`` padded to ``size`` bytes (deflated)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            blob = zin.read(info.filename)
            if info.filename == member:
                blob = blob + b" " * (size - len(blob))
            zout.writestr(info.filename, blob)
        if member not in zin.namelist():
            zout.writestr(member, b"{}" + b" " * size)
    return dst


def run_cli(argv: list[str], capsys) -> tuple[int, list[str]]:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return code, [line for line in err if "advgui" in line]


@pytest.fixture(scope="module")
def tiny_model(mnist, tmp_path_factory) -> Path:
    from advgui.core import training

    cfg = training.TrainConfig(arch="mlp", epochs=1, n_train=500, n_val=0, batch_size=100)
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    models.save_model(training.train(cfg, mnist).classifier, path)
    return path


# ----------------------------------------------------------------------------- datasets


def test_forged_npy_header_is_refused_before_allocating(tmp_path, capsys):
    """Shape (10**7, 10**6, 28) once made `data import` die with _ArrayMemoryError."""
    huge = npy_header((10**7, 10**6, 28)) + b"\0" * 100
    members = {k: huge for k in ("x_train", "y_train", "x_test", "y_test")}
    npz = write_npz(tmp_path / "mnist.npz", members)
    with pytest.raises(DataError, match=r"expected uint8 \(60000, 28, 28\)"):
        data.read_npz(npz)
    code, lines = run_cli(["data", "import", str(npz)], capsys)
    assert code == 2 and len(lines) == 1 and "refused before reading" in lines[0]
    # Object arrays are never unpickled: refused from the header too.
    members["x_train"] = npy_header((60000, 28, 28), "|O") + b"\0" * 10
    with pytest.raises(DataError, match=r"object|expected uint8"):
        data.read_npz(write_npz(tmp_path / "obj.npz", members))


def test_oversized_npz_member_is_refused_from_the_zip_directory(tmp_path):
    big = npy_header((60000, 28, 28)) + b"\0" * (60000 * 784 + (20 << 20))
    npz = write_npz(
        tmp_path / "mnist.npz", dict.fromkeys(("x_train", "y_train", "x_test", "y_test"), big)
    )
    with pytest.raises(DataError, match="refused before reading"):
        data.read_npz(npz)


def test_gzip_bomb_is_refused_once_it_outgrows_mnist(tmp_path, capsys, mnist_gz):
    folder = tmp_path / "bomb"
    folder.mkdir()
    for name in data.FILES:
        (folder / f"{name}.gz").write_bytes((mnist_gz / f"{name}.gz").read_bytes())
    blob = gzip_bomb(200 << 20)  # 200 MB of zeros in ~200 KB
    assert len(blob) < 1 << 20
    (folder / "train-images-idx3-ubyte.gz").write_bytes(blob)
    with pytest.raises(DataError, match="expands beyond 47,040,016 bytes"):
        data.read_folder(folder)
    code, lines = run_cli(["data", "import", str(folder)], capsys)
    assert code == 2 and len(lines) == 1 and "expands beyond" in lines[0]


def test_huge_sparse_files_are_refused_without_reading_them(tmp_path, capsys):
    sparse = tmp_path / "disk.img"
    with open(sparse, "wb") as fh:
        fh.truncate(3 << 30)  # 3 GB, sparse: costs no disk
    code, lines = run_cli(["data", "import", str(sparse)], capsys)
    assert code == 2 and len(lines) == 1 and "not a dataset" in lines[0]
    folder = tmp_path / "sparse"
    folder.mkdir()
    for name in data.FILES:
        with open(folder / name, "wb") as fh:
            fh.truncate(3 << 30)
    with pytest.raises(DataError, match="too large: 3,221,225,472 bytes"):
        data.read_folder(folder)


def test_rejected_advgui_data_is_named_when_the_cache_is_used(
    tmp_path, capsys, monkeypatch, mnist_path, tiny_model
):
    assert main(["data", "import", str(mnist_path)]) == 0  # a valid cache
    capsys.readouterr()
    bad = tmp_path / "not-mnist.npz"
    write_npz(
        bad,
        dict.fromkeys(("x_train", "y_train", "x_test", "y_test"), npy_header((10**7, 10**6, 28))),
    )
    monkeypatch.setenv("ADVGUI_DATA", str(bad))
    argv = ["attack", "--model", str(tiny_model), "--method", "fgsm", "--index", "0"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if line.startswith("advgui: warning:")]
    assert len(warning) == 1 and str(bad) in warning[0] and "using cache" in warning[0]


# ----------------------------------------------------------------------------- models


@pytest.mark.parametrize(
    ("member", "expect"),
    [
        ("advgui.json", "advgui.json too large (64 MB"),
        ("config.json", "config.json too large (64 MB"),
    ],
)
def test_padded_model_members_are_refused_from_the_zip_directory(
    tiny_model, tmp_path, capsys, member, expect, mnist_path
):
    bad = padded_model(tiny_model, tmp_path / "padded.keras", member, 64 << 20)
    assert bad.stat().st_size < 1 << 20
    with pytest.raises(ModelFileError, match=re.escape(expect)):
        models.read_meta(bad)
    argv = ["--data", str(mnist_path), "attack", "--model", str(bad), "--method", "fgsm"]
    code, lines = run_cli([*argv, "--index", "0"], capsys)
    assert code == 2 and len(lines) == 1 and expect in lines[0]
    # In the store: skipped with a warning naming it; the good model is still listed.
    from advgui.core.store import ModelStore

    store = ModelStore(tmp_path / "store")
    store.root.mkdir()
    (store.root / "good.keras").write_bytes(tiny_model.read_bytes())
    (store.root / "padded.keras").write_bytes(bad.read_bytes())
    warnings: list[str] = []
    assert [e.path.name for e in store.entries(warnings)] == ["good.keras"]
    assert len(warnings) == 1 and "padded.keras" in warnings[0] and expect in warnings[0]


def test_legacy_hdf5_and_mismatched_weights_say_why_in_one_line(tiny_model, tmp_path):
    from advgui.core.tfimport import keras

    k = keras()
    net = k.Sequential([k.Input((784,)), k.layers.Dense(10)])
    net.save(tmp_path / "legacy.h5")
    with pytest.raises(ModelFileError, match="legacy HDF5") as info:
        models.load_model(tmp_path / "legacy.h5")
    assert "\n" not in str(info.value)
    # Weights of another shape inside a valid archive: Keras's reason, on one line.
    other = k.Sequential([k.Input((784,)), k.layers.Dense(20), k.layers.Dense(10)])
    other.save(tmp_path / "other.keras")
    with zipfile.ZipFile(tmp_path / "other.keras") as zf:
        weights = zf.read("model.weights.h5")
    with zipfile.ZipFile(tiny_model) as zin, zipfile.ZipFile(tmp_path / "mixed.keras", "w") as zout:
        for info in zin.infolist():
            blob = weights if info.filename == "model.weights.h5" else zin.read(info.filename)
            zout.writestr(info.filename, blob)
    with pytest.raises(ModelFileError) as info:
        models.load_model(tmp_path / "mixed.keras")
    message = str(info.value)
    assert "\n" not in message and len(message) < 500
    assert "weights do not fit" in message and "shape" in message
    assert "Example error message" not in message and "Target variable" not in message


# ----------------------------------------------------------------------------- interrupted writes

_KILLED_SAVE = """
import os, sys
from advgui.core import models, store
clf = models.load_model(sys.argv[1])
os.fsync = lambda fd: os._exit(9)   # die in the middle of the store's write
store.ModelStore(sys.argv[2]).add(clf)
"""


def test_a_killed_store_write_leaves_nothing_after_the_next_start(tiny_model, tmp_path):
    root = tmp_path / "store"
    tmp_before = set(Path("/tmp").glob(".advgui-save-*"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_SAVE, str(tiny_model), str(root)], env=env, timeout=300
    )
    assert proc.returncode == 9
    left = sorted(p.name for p in root.iterdir())
    assert any(n.endswith(".lock") for n in left) and any(".part" in n for n in left), left
    assert set(Path("/tmp").glob(".advgui-save-*")) == tmp_before  # nothing written to /tmp
    # A live writer's lock and temporary are left alone; a legacy empty lock only when old.
    from advgui.core.fileio import temp_name, write_lock

    write_lock(root / ".live.keras.lock")
    live_tmp = temp_name(root / "live.keras")
    live_tmp.write_bytes(b"x")
    (root / ".legacy.keras.lock").touch()
    old = root / ".old.keras.lock"
    old.touch()
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    from advgui.core.store import ModelStore

    assert ModelStore(root).entries() == []
    remaining = sorted(p.name for p in root.iterdir())
    assert remaining == sorted([".legacy.keras.lock", ".live.keras.lock", live_tmp.name])


def test_a_dead_writers_result_folder_is_swept(tmp_path):
    from advgui.core.fileio import temp_name
    from advgui.core.results import ResultStore

    store = ResultStore(tmp_path / "results")
    entry = store.add("attack", {"x": 1}, name="kept")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    half = temp_name(store.root / "20260101-000000-000000-attack-dead", "r")
    half = half.with_name(half.name.replace(f".{os.getpid()}-", f".{dead}-"))
    half.mkdir()
    (half / "result.json").write_text("{")
    assert [e.name for e in store.entries()] == ["kept"] and not half.exists()
    assert entry.path.is_dir()


# ----------------------------------------------------------------------------- permissions


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_follow_the_umask(tmp_path, umask, mode, tiny_model, mnist_path):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "out.json", json.dumps({"a": 1}))
        assert (tmp_path / "out.json").stat().st_mode & 0o777 == mode
        code = main(["--data", str(mnist_path), "attack", "--model", str(tiny_model),
                     "--method", "fgsm", "--index", "1", "--out", str(tmp_path / "a.png"),
                     "--json", str(tmp_path / "r.json")])  # fmt: skip
        assert code == 0
        for name in ("a.png", "a.json", "r.json"):
            assert (tmp_path / name).stat().st_mode & 0o777 == mode, name
    finally:
        os.umask(old)


def test_sweep_ignores_what_is_not_ours(tmp_path):
    for name in ("notes.txt", ".hidden", ".x.part", ".y.12.part"):
        (tmp_path / name).write_text("keep")
    assert sweep_stale(tmp_path) == []
    assert len(list(tmp_path.iterdir())) == 4


def test_image_and_npz_helpers_here_are_real_files():
    """The builders above make what they claim (so the refusals are for the right reason)."""
    buf = io.BytesIO(npy_header((2, 3)) + bytes(6))
    np.testing.assert_array_equal(np.load(buf), np.zeros((2, 3), np.uint8))
    assert zlib.decompress(gzip_bomb(1 << 22), 16 + zlib.MAX_WBITS)[:4] == b"\0\0\x08\x03"
