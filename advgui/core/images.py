"""Turn a user's picture or drawing into an image like the dataset's own.

A network only recognises pictures prepared the way its training images were, so each dataset
has its style (``style`` below; a dataset's spec names it):

- ``"digit"`` (MNIST): white ink on black, the digit's bounding box scaled to fit 20x20
  (keeping its aspect ratio), then placed in a 28x28 field so that its centre of mass is at the
  centre. Skipping any step (a dark digit on white paper, a digit filling the frame) makes a
  clean image look "adversarial" to the model.
- ``"object"`` (Fashion-MNIST): no digit-style centring. Zalando made its images from product
  photos on white: trimmed to the product, the longer side resized to 28, centred, negated. So
  the picture is inverted when its background is light, its background level taken as black,
  trimmed to what differs from the background, fitted whole into 28x28 (longer side 28, aspect
  ratio kept) and centred by its box on black; the object's own grey levels (shades, prints)
  are kept, not thresholded.

Image files are hostile input. Pillow knows formats whose decoders run other programs
(EPS and PS through Ghostscript) or that are complex parsers the app never needs (PDF, WMF,
ICNS, FLI...). So a file is opened only when its first bytes are one of the allow-listed raster
formats below, whatever its name says, and only with that format's decoder: PNG, JPEG, BMP,
GIF, TIFF and WebP, each decoded inside Pillow by its bundled C library (zlib, libjpeg,
libtiff, libwebp) with no external program and no embedded code. Everything else is refused
with a message naming what the file is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from advgui.core.errors import ImageFileError

#: Ink below this fraction of the strongest ink is background (paper texture, JPEG noise).
INK_THRESHOLD = 0.2
BOX = 20
SIZE = 28
#: How a picture becomes one of the dataset's images (see the module's docstring).
STYLES = ("digit", "object")
#: "object" style: what differs from the background by less than this is trimmed away
#: (Zalando's trimming used 5% of the range around the corners' colour).
TRIM_THRESHOLD = 0.05
#: Larger pictures are refused from their header, before decoding: a digit needs no more than
#: a phone photo's 16 megapixels (4096 x 4096), and a forged header (a "decompression bomb")
#: or a huge blank canvas would otherwise make the app decode hundreds of MB.
MAX_PIXELS = 4096 * 4096
#: Pictures are shrunk to at most this many pixels a side before the float work: the digit is
#: scaled to 20x20 anyway.
WORK_SIDE = 1024

#: Allowed formats: (magic bytes at offset 0, Pillow format name, name for messages).
_ALLOWED: tuple[tuple[bytes, str, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG", "PNG"),
    (b"\xff\xd8\xff", "JPEG", "JPEG"),
    (b"BM", "BMP", "BMP"),
    (b"GIF87a", "GIF", "GIF"),
    (b"GIF89a", "GIF", "GIF"),
    (b"II*\x00", "TIFF", "TIFF"),
    (b"MM\x00*", "TIFF", "TIFF"),
)
#: Formats recognised only to name them in the refusal.
_KNOWN: tuple[tuple[bytes, str], ...] = (
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS (DOS binary)"),
    (b"%PDF", "PDF"),
    (b"\xd7\xcd\xc6\x9a", "WMF"),
    (b"\x01\x00\x00\x00", "EMF"),
    (b"icns", "ICNS"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "Photoshop PSD"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xffO\xffQ", "JPEG 2000"),
    (b"P1", "PBM/PGM/PPM"),
    (b"P2", "PBM/PGM/PPM"),
    (b"P3", "PBM/PGM/PPM"),
    (b"P4", "PBM/PGM/PPM"),
    (b"P5", "PBM/PGM/PPM"),
    (b"P6", "PBM/PGM/PPM"),
    (b"qoif", "QOI"),
    (b"DDS ", "DDS"),
    (b"\x00\x00\x00\x1cftypavif", "AVIF"),
    (b"<?xml", "XML/SVG"),
    (b"<svg", "SVG"),
)
ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WebP")


def sniff_format(head: bytes) -> tuple[str, str] | None:
    """(Pillow format, display name) of an allowed image from its first 16 bytes, else None."""
    for magic, fmt, name in _ALLOWED:
        if head.startswith(magic):
            return fmt, name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP", "WebP"
    return None


def describe_format(head: bytes) -> str:
    """What a refused file looks like, for the one-line message."""
    if not head:
        return "an empty file"
    for magic, name in _KNOWN:
        if head.startswith(magic):
            return f"a {name} file"
    if head[:4] == b"RIFF":
        return f"a RIFF {head[8:12].decode('latin-1')!r} file"
    if all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "a text file"
    return f"an unknown format (first bytes {head[:8].hex()})"


@contextlib.contextmanager
def open_image(path: Path | str, *, max_pixels: int = MAX_PIXELS) -> Iterator[Any]:
    """Open an allow-listed image with its own decoder only, refusing oversized ones from the
    header. Every place the app reads an image goes through here."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    name = "image"
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
            found = sniff_format(head)
            if found is None:
                raise ImageFileError(
                    f"{path}: not a readable image: {describe_format(head)}; "
                    f"allowed formats: {', '.join(ALLOWED_FORMATS)}"
                )
            fmt, name = found
            fh.seek(0)
            with Image.open(fh, formats=[fmt]) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageFileError(
                        f"{path}: image too large ({width}x{height} pixels; at most "
                        f"{max_pixels / 1e6:.1f} megapixels)"
                    )
                yield img
    except FileNotFoundError as err:
        raise ImageFileError(f"{path}: no such file") from err
    except IsADirectoryError as err:
        raise ImageFileError(f"{path}: is a folder, not an image") from err
    except ImageFileError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageFileError(f"{path}: image too large ({err})") from err
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError) as err:
        raise ImageFileError(f"{path}: not a readable {name} image ({err})") from err


def image_size(path: Path | str) -> tuple[int, int]:
    """(width, height) from the header alone: allow-list and size limit applied, no decoding."""
    with open_image(path) as img:
        return img.size


def load_image(path: Path | str, *, style: str = "digit") -> np.ndarray:
    """Read a picture (any size, colour, bit depth) as a (28, 28, 1) float32 image prepared in
    ``style``: an MNIST-style digit (``"digit"``) or a Fashion-MNIST-style object (``"object"``)."""
    prepare = _preparer(style)
    with open_image(path) as img:
        if img.format == "JPEG":  # libjpeg decodes at 1/2..1/8 scale: big photos cost less
            img.draft(img.mode, (WORK_SIDE, WORK_SIDE))
        img.load()
        gray = to_gray(img)
    try:
        return prepare(gray)
    except ImageFileError as err:
        raise ImageFileError(f"{Path(path)}: {err}") from None


def prepare_image(gray: np.ndarray, style: str = "digit") -> np.ndarray:
    """A gray image (values in [0, 1], any size) as a (28, 28, 1) image in ``style``."""
    return _preparer(style)(gray)


def _preparer(style: str) -> Any:
    if style not in STYLES:
        raise ValueError(f"unknown image style {style!r}; expected one of {STYLES}")
    return prepare_digit if style == "digit" else prepare_object


def _reduce(img: Any) -> Any:
    """Shrink a big picture before the float work (a digit ends up 20x20 anyway)."""
    factor = max(img.size) // WORK_SIDE
    return img.reduce(factor) if factor >= 2 else img


def _bit_depth(img: Any) -> int:
    """Bits per sample of an integer grey image, from the file's header where it says."""
    if img.mode.startswith("I;16"):
        return 16
    if img.format == "PNG":
        return 16  # PNG samples have at most 16 bits; older Pillow reads them as mode "I"
    bits = getattr(img, "tag_v2", {}).get(258) if img.format == "TIFF" else None
    if isinstance(bits, tuple):
        bits = bits[0]
    if isinstance(bits, int) and 1 <= bits <= 32:
        return bits
    peak = int(np.asarray(img).max(initial=0))
    return next(b for b in (8, 16, 32) if peak < (1 << b))


def to_gray(img: Any) -> np.ndarray:
    """Grey levels in [0, 1], scaled by the image's own bit depth; transparency becomes
    background (the paper's colour), whatever colour the transparent pixels hide."""
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        if arr.ndim == 3:
            arr = arr[..., 0]
        top = float(max(arr.max(initial=0.0), 1.0)) if mode == "F" else (1 << _bit_depth(img)) - 1
        gray = np.clip(arr / np.float32(top), 0.0, 1.0)
        if max(gray.shape) >= 2 * WORK_SIDE:
            from PIL import Image

            gray = np.asarray(_reduce(Image.fromarray(gray, "F")), np.float32)
        return gray
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in img.info):
        rgba = np.asarray(_reduce(img.convert("RGBA")), dtype=np.float32) / 255.0
        gray = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
        alpha = rgba[..., 3]
        if alpha.min() < 0.99:
            # Opaque strokes on a transparent sheet: the ink is whatever is opaque.
            opaque = alpha > 0.5
            ink_dark = opaque.any() and gray[opaque].mean() < 0.5
            paper = 1.0 if ink_dark else 0.0
            gray = alpha * gray + (1.0 - alpha) * paper
        return gray
    return np.asarray(_reduce(img.convert("L")), dtype=np.float32) / 255.0


def _light_on_dark(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """The image as light content on a dark background (inverted when the border is light),
    and the background's grey level (the border's median)."""
    arr = np.asarray(gray, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.size == 0 or not np.isfinite(arr).all():
        raise ImageFileError("not a 2-D image")
    arr = np.clip(arr, 0.0, 1.0)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    if np.median(border) > 0.5:  # dark on light paper: both datasets are the opposite
        arr = 1.0 - arr
        border = 1.0 - border
    return arr, float(np.median(border))


def prepare_object(gray: np.ndarray) -> np.ndarray:
    """Fashion-MNIST-style preparation of a gray image (values in [0, 1], any size): invert if
    the background is light, map the background's level to black (and the brightest possible
    value to white), trim to what differs from the background, resize the longer side to 28
    keeping the aspect ratio, and centre the box on a black 28x28 field. No thresholding and no
    centre of mass: a garment's shades and its position in its own box are part of the image."""
    from PIL import Image

    arr, background = _light_on_dark(gray)
    arr = np.clip((arr - background) / max(1.0 - background, 1e-3), 0.0, 1.0)
    if float(arr.max()) < TRIM_THRESHOLD:
        raise ImageFileError("no object found (the image is blank)")
    rows = np.flatnonzero(arr.max(axis=1) > TRIM_THRESHOLD)
    cols = np.flatnonzero(arr.max(axis=0) > TRIM_THRESHOLD)
    crop = arr[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    scale = SIZE / max(h, w)
    new_w, new_h = max(1, min(SIZE, round(w * scale))), max(1, min(SIZE, round(h * scale)))
    img = Image.fromarray(np.round(crop * 255.0).astype(np.uint8))
    small = np.asarray(img.resize((new_w, new_h), Image.Resampling.LANCZOS), np.float32) / 255.0
    out = np.zeros((SIZE, SIZE), np.float32)
    top, left = (SIZE - new_h) // 2, (SIZE - new_w) // 2
    out[top : top + new_h, left : left + new_w] = np.clip(small, 0.0, 1.0)
    return out.reshape(SIZE, SIZE, 1)


def prepare_digit(gray: np.ndarray) -> np.ndarray:
    """MNIST-style centring of a gray image (values in [0, 1], any size): invert if the
    background is light, crop to the ink's bounding box, fit into 20x20 keeping the aspect
    ratio, and place in 28x28 with the centre of mass at the centre."""
    from PIL import Image

    arr, background = _light_on_dark(gray)
    arr = np.clip(arr - background, 0.0, None)  # paper's own grey is not ink
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
