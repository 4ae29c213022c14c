"""Importing a user's picture as an MNIST-style digit: inversion, box fitting, centring."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from advgui.core.errors import ImageFileError
from advgui.core.images import load_image, prepare_digit


def _centre_of_mass(img):
    img = img.reshape(28, 28).astype(np.float64)
    ys, xs = np.indices(img.shape)
    return (ys * img).sum() / img.sum() + 0.5, (xs * img).sum() / img.sum() + 0.5


def _box(img):
    rows = np.flatnonzero(img.reshape(28, 28).max(1) > 0.2)
    cols = np.flatnonzero(img.reshape(28, 28).max(0) > 0.2)
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def _scan(digit, size=200, dark_on_light=True, offset=(20, 50)):
    """A test digit drawn large and off-centre on paper, like a photo or scan."""
    big = (
        np.asarray(
            Image.fromarray((digit.reshape(28, 28) * 255).astype(np.uint8)).resize((112, 112)),
            np.float32,
        )
        / 255.0
    )
    paper = np.zeros((size, size), np.float32)
    paper[offset[0] : offset[0] + 112, offset[1] : offset[1] + 112] = big
    return 1.0 - paper if dark_on_light else paper


def test_scanned_dark_digit_becomes_a_centred_mnist_digit(mnist, trained_cnn, tmp_path):
    idx = np.arange(40)
    paths = []
    for i in idx:
        path = tmp_path / f"scan{i}.{'jpg' if i % 2 else 'png'}"
        img = Image.fromarray((_scan(mnist.x_test[i]) * 255).astype(np.uint8)).convert("RGB")
        img.save(path, quality=95)
        paths.append(path)
    digits = np.stack([load_image(p) for p in paths])
    assert digits.shape == (40, 28, 28, 1) and digits.dtype == np.float32
    assert digits.min() >= 0 and digits.max() <= 1
    for d in digits:
        cy, cx = _centre_of_mass(d)
        assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1
        assert max(_box(d)) in (19, 20, 21)  # the longer side fills the 20x20 box
        assert d[0].max() == 0 and d[:, 0].max() == 0  # black background, white ink
    # The model reads the imported digits as their labels about as well as the originals.
    acc = trained_cnn.accuracy(digits, mnist.y_test[idx])
    assert acc >= 0.85, acc


def test_light_ink_on_dark_is_not_inverted_and_aspect_is_kept():
    canvas = np.zeros((100, 300), np.float32)
    canvas[40:60, 20:280] = 1.0  # a wide bar: 20 x 260
    out = prepare_digit(canvas)
    h, w = _box(out)
    assert w == 20 and h in (1, 2, 3)  # aspect ratio 13:1 kept, not stretched
    assert out[out > 0.5].size > 0 and np.median(out) == 0


def test_transparent_png_with_dark_strokes(tmp_path):
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[10:54, 30:34] = (0, 0, 0, 255)  # a black "1" on a transparent sheet
    Image.fromarray(rgba, "RGBA").save(tmp_path / "one.png")
    out = load_image(tmp_path / "one.png")
    assert out[0].max() == 0 and out.max() > 0.9
    assert _box(out)[0] == 20


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "not a readable"), (b"\x89PNG\r\n\x1a\n garbage", "not a readable")],
)
def test_corrupt_files_raise_image_file_error(tmp_path, content, message):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageFileError, match=message):
        load_image(path)


def test_truncated_jpeg_and_blank_and_missing(tmp_path, mnist):
    good = tmp_path / "d.jpg"
    Image.fromarray((mnist.x_test[0].reshape(28, 28) * 255).astype(np.uint8)).save(good)
    data = good.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageFileError):
        load_image(tmp_path / "cut.jpg")
    Image.new("L", (50, 50), 255).save(tmp_path / "white.png")
    with pytest.raises(ImageFileError, match="blank"):
        load_image(tmp_path / "white.png")
    with pytest.raises(ImageFileError, match="no such file"):
        load_image(tmp_path / "missing.png")
