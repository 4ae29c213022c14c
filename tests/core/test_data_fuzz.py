"""Random bytes into the dataset parsers: only DataError may come out, never a crash."""

from __future__ import annotations

import gzip
import io
import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advgui.core import data
from advgui.core.errors import DataError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _idx_like(draw_dims: list[int], payload: bytes, dtype: int) -> bytes:
    return struct.pack(f">HBB{len(draw_dims)}I", 0, dtype, len(draw_dims), *draw_dims) + payload


@FUZZ
@given(st.binary(max_size=600))
def test_parse_idx_random_bytes(blob):
    try:
        arr = data.parse_idx(blob)
    except DataError:
        return
    assert arr.dtype == np.uint8 and arr.size == len(blob) - 4 - 4 * arr.ndim


@FUZZ
@given(
    st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=5),
    st.binary(max_size=300),
    st.sampled_from([0x08, 0x09, 0x0B, 0x0D, 0xFF]),
)
def test_parse_idx_header_like(dims, payload, dtype):
    try:
        arr = data.parse_idx(_idx_like(dims, payload, dtype))
    except DataError:
        return
    assert arr.shape == tuple(dims)


@FUZZ
@given(st.binary(max_size=400), st.booleans())
def test_folder_of_random_files(tmp_path_factory, blob, compress):
    folder = tmp_path_factory.mktemp("fuzz")
    for name in data.FILES:
        payload = gzip.compress(blob) if compress else blob
        (folder / name).write_bytes(payload)
    try:
        data.read_folder(folder)
    except DataError:
        return
    raise AssertionError("random bytes passed MNIST verification")


@FUZZ
@given(st.binary(max_size=800))
def test_npz_random_bytes(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("npz") / "mnist.npz"
    path.write_bytes(b"PK" + blob)
    try:
        data.read_path(path)
    except DataError:
        return
    raise AssertionError("random bytes passed as an npz")


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["x_train", "y_train", "x_test", "y_test", "other"]),
        st.lists(st.integers(0, 255), max_size=20),
    )
)
def test_npz_with_wrong_arrays(tmp_path_factory, arrays):
    buf = io.BytesIO()
    np.savez(buf, **{k: np.array(v, dtype=np.uint8) for k, v in arrays.items()})
    path = tmp_path_factory.mktemp("npz2") / "mnist.npz"
    path.write_bytes(buf.getvalue())
    try:
        data.read_npz(path)
    except DataError:
        return
    raise AssertionError("wrong arrays passed as MNIST")
