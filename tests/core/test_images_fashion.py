"""Image import on Fashion-MNIST: object style, no digit centring."""

from __future__ import annotations

import numpy as np
import pytest

from advgui.core import data

FASHION = data.FASHION_MNIST


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
