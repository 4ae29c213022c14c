"""Turn a user's picture or drawing into an MNIST-like digit.

A network trained on MNIST only recognises digits prepared the way MNIST's were: white ink on
black, the digit's bounding box scaled to fit 20x20 (keeping its aspect ratio), then placed in
a 28x28 field so that its centre of mass is at the centre. Skipping any step (a dark digit on
white paper, a digit filling the frame) makes a clean image look "adversarial" to the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from advgui.core.errors import ImageFileError

#: Ink below this fraction of the strongest ink is background (paper texture, JPEG noise).
INK_THRESHOLD = 0.2
BOX = 20
SIZE = 28
#: Larger pictures are refused before decoding: a digit photo never needs more, and a forged
#: header (a "decompression bomb") would otherwise make the app allocate gigabytes.
MAX_PIXELS = 40_000_000


def load_image(path: Path | str) -> np.ndarray:
    """Read a PNG/JPG (any size, colour or gray) as an MNIST-style (28, 28, 1) float32 digit."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise ImageFileError(
                    f"{path}: image too large ({width}x{height} pixels; at most "
                    f"{MAX_PIXELS // 1_000_000} megapixels)"
                )
            img.load()
            gray = _to_gray(img)
    except FileNotFoundError as err:
        raise ImageFileError(f"{path}: no such file") from err
    except ImageFileError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageFileError(f"{path}: image too large ({err})") from err
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise ImageFileError(f"{path}: not a readable PNG or JPG image ({err})") from err
    try:
        return prepare_digit(gray)
    except ImageFileError as err:
        raise ImageFileError(f"{path}: {err}") from None


def _to_gray(img: object) -> np.ndarray:
    """Gray levels in [0, 1]; transparency becomes background (the paper's colour)."""
    from PIL import Image

    assert isinstance(img, Image.Image)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        gray = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
        alpha = rgba[..., 3]
        if alpha.min() < 0.99:
            # Opaque strokes on a transparent sheet: the ink is whatever is opaque.
            opaque = alpha > 0.5
            ink_dark = opaque.any() and gray[opaque].mean() < 0.5
            paper = 1.0 if ink_dark else 0.0
            gray = alpha * gray + (1.0 - alpha) * paper
        return gray
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def prepare_digit(gray: np.ndarray) -> np.ndarray:
    """MNIST-style centring of a gray image (values in [0, 1], any size): invert if the
    background is light, crop to the ink's bounding box, fit into 20x20 keeping the aspect
    ratio, and place in 28x28 with the centre of mass at the centre."""
    from PIL import Image

    arr = np.asarray(gray, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.size == 0 or not np.isfinite(arr).all():
        raise ImageFileError("not a 2-D image")
    arr = np.clip(arr, 0.0, 1.0)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    if np.median(border) > 0.5:  # dark ink on light paper: MNIST is the opposite
        arr = 1.0 - arr
        border = 1.0 - border
    arr = np.clip(arr - np.median(border), 0.0, None)  # paper's own grey is not ink
    peak = float(arr.max())
    if peak < 0.05:
        raise ImageFileError("no digit found (the image is blank)")
    arr = arr / peak
    arr[arr < INK_THRESHOLD] = 0.0
    rows = np.flatnonzero(arr.max(axis=1) > 0)
    cols = np.flatnonzero(arr.max(axis=0) > 0)
    crop = arr[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    scale = BOX / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    img = Image.fromarray((crop * 255.0).astype(np.uint8))
    small = np.asarray(img.resize((new_w, new_h), Image.Resampling.LANCZOS), np.float32) / 255.0
    small = np.clip(small, 0.0, 1.0)
    out = np.zeros((SIZE, SIZE), np.float32)
    # Centre of mass of the scaled digit, then the offset that brings it to (14, 14).
    total = small.sum()
    ys, xs = np.indices(small.shape)
    cy = float((ys * small).sum() / total) if total > 0 else new_h / 2
    cx = float((xs * small).sum() / total) if total > 0 else new_w / 2
    top = round(SIZE / 2 - cy - 0.5)
    left = round(SIZE / 2 - cx - 0.5)
    top = min(max(top, 0), SIZE - new_h)
    left = min(max(left, 0), SIZE - new_w)
    out[top : top + new_h, left : left + new_w] = small
    return out.reshape(SIZE, SIZE, 1)
