"""Random and damaged bytes into the image import: only ImageFileError may come out.

(The IDX/npz dataset parsers are fuzzed in tests/core/test_data_fuzz.py.)
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from advgui.core import images
from advgui.core.errors import ImageFileError

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

MAGICS = [
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    b"\xff\xd8\xff\xdb",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"",
]


def _valid(fmt: str, size: tuple[int, int], seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    arr = (rng.random((size[1], size[0])) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def _load(tmp_path, blob: bytes, suffix: str = ".png") -> np.ndarray | None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(blob)
    try:
        out = images.load_image(path)
    except ImageFileError as err:
        assert str(err).startswith(str(path))  # the message names the file
        return None
    # Whatever is accepted is a proper MNIST-style digit.
    assert out.shape == (28, 28, 1) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    return out


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes(tmp_path, blob):
    _load(tmp_path, blob)


@FUZZ
@given(st.sampled_from(MAGICS), st.binary(max_size=1500), st.sampled_from([".png", ".jpg"]))
def test_valid_looking_headers(tmp_path, magic, tail, suffix):
    _load(tmp_path, magic + tail, suffix)


@FUZZ
@given(
    st.sampled_from(["PNG", "JPEG", "BMP", "GIF"]),
    st.tuples(st.integers(1, 64), st.integers(1, 64)),
    st.integers(0, 2**16),
    st.data(),
)
def test_damaged_real_images(tmp_path, fmt, size, seed, data):
    """Real images truncated, with flipped bytes or spliced garbage."""
    blob = bytearray(_valid(fmt, size, seed))
    how = data.draw(st.sampled_from(["truncate", "flip", "splice"]))
    if how == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    elif how == "flip":
        for _ in range(data.draw(st.integers(1, 20))):
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] = data.draw(st.integers(0, 255))
    else:
        i = data.draw(st.integers(0, len(blob)))
        blob[i:i] = data.draw(st.binary(min_size=1, max_size=200))
    _load(tmp_path, bytes(blob))


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


@FUZZ
@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.sampled_from([1, 2, 4, 8, 16, 3, 0, 255]),
    st.sampled_from([0, 2, 3, 4, 6, 1, 7]),
    st.binary(max_size=300),
)
def test_png_with_forged_header(tmp_path, width, height, depth, color, idat):
    """Well-formed chunks (valid CRCs) describing any size: giant headers are refused
    before anything is allocated, not decoded."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    blob = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
    blob += _chunk(b"IDAT", zlib.compress(idat)) + _chunk(b"IEND", b"")
    _load(tmp_path, blob)


def test_decompression_bomb_is_refused_cheaply(tmp_path):
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    blob = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
    blob += _chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + _chunk(b"IEND", b"")
    path = tmp_path / "bomb.png"
    path.write_bytes(blob)
    with pytest.raises(ImageFileError, match="too large"):
        images.load_image(path)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p.mkdir(),  # a folder
        lambda p: p.write_bytes(b""),  # empty
        lambda p: None,  # missing
        lambda p: p.write_bytes(_valid("PNG", (40, 40), 0)[:-30]),  # truncated at the end
        lambda p: Image.new("L", (50, 50), 255).save(p, format="PNG"),  # blank paper
        lambda p: Image.new("RGBA", (50, 50), (0, 0, 0, 0)).save(p, format="PNG"),  # clear
    ],
    ids=["folder", "empty", "missing", "truncated", "blank", "transparent"],
)
def test_odd_files(tmp_path, make):
    path = tmp_path / "odd.png"
    make(path)
    with pytest.raises(ImageFileError):
        images.load_image(path)
