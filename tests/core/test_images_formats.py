"""Image files are hostile: only allow-listed raster formats, by content, with their own
decoder; every allowed format and bit depth of the same digit reads as the same digit."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from advgui.core import images
from advgui.core.errors import ImageFileError

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n(/tmp/x) (w) file closefile\nshowpage\n"


@pytest.fixture
def eps_opened(monkeypatch):
    """Record any use of Pillow's EPS plugin (which would hand the file to Ghostscript)."""
    calls = []
    real = EpsImagePlugin.EpsImageFile._open

    def spy(self):
        calls.append(self)
        return real(self)

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", spy)
    return calls


@pytest.mark.parametrize(
    ("blob", "named"),
    [
        (EPS, "PostScript/EPS"),
        (b"\xc5\xd0\xd3\xc6" + b"\0" * 40, "EPS"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "PDF"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "XML/SVG"),
        (b"\xd7\xcd\xc6\x9a" + b"\0" * 40, "WMF"),
        (b"P5\n28 28\n255\n" + b"\0" * 784, "PBM/PGM/PPM"),
        (b"just some text\n", "text"),
        (b"", "empty"),
    ],
    ids=["eps", "eps-binary", "pdf", "svg", "wmf", "pgm", "text", "empty"],
)
def test_non_allowed_formats_are_refused_by_content_whatever_the_name(
    tmp_path, eps_opened, blob, named
):
    for name in ("e.png", "e.jpg", "e.eps"):
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(ImageFileError) as info:
            images.load_image(path)
        message = str(info.value)
        assert named in message and "allowed formats: PNG, JPEG" in message
        assert "\n" not in message and message.startswith(str(path))
    assert eps_opened == []  # Ghostscript's plugin was never even asked


def test_a_png_name_on_a_jpeg_is_read_as_the_jpeg_it_is(tmp_path, mnist):
    digit = (mnist.x_test[0].reshape(28, 28) * 255).astype(np.uint8)
    path = tmp_path / "really-a-jpeg.png"
    Image.fromarray(digit).resize((112, 112)).save(path, format="JPEG", quality=95)
    assert images.load_image(path).max() > 0.9


def _digit_variants(digit: np.ndarray, tmp_path):
    """The same 8-bit digit (white on black) in every allowed format and bit depth."""
    d8 = digit
    inv = 255 - d8
    files = {}

    def save(name, img, fmt, **kw):
        path = tmp_path / name
        img.save(path, format=fmt, **kw)
        files[name] = path

    save("l8.png", Image.fromarray(d8), "PNG")
    save("l16.png", Image.fromarray(d8.astype(np.uint16) * 257), "PNG")
    save("l16-dark-on-light.png", Image.fromarray(inv.astype(np.uint16) * 257), "PNG")
    save("rgb.png", Image.fromarray(np.stack([d8] * 3, -1)), "PNG")
    # Ink as opacity over transparent pixels whose hidden colour is white, then black.
    for hidden in (255, 0):
        rgba = np.zeros((*d8.shape, 4), np.uint8)
        rgba[..., :3] = hidden
        rgba[d8 > 0, :3] = 255
        rgba[..., 3] = d8
        save(f"rgba-hidden{hidden}.png", Image.fromarray(rgba, "RGBA"), "PNG")
    la = np.stack([np.full_like(d8, 255), d8], -1)
    save("la.png", Image.fromarray(la, "LA"), "PNG")
    # A palette image whose entry 0 is transparent; the other entries are grey levels.
    pal = Image.fromarray(d8).convert("P", palette=Image.Palette.ADAPTIVE, colors=255)
    p = np.asarray(pal).copy()
    lut = np.asarray(pal.getpalette()[: 3 * 256]).reshape(-1, 3)[:, 0]
    p_img = Image.fromarray(p, "P")
    p_img.putpalette(pal.getpalette())
    background = int(np.flatnonzero(lut == lut[p[0, 0]])[0])
    p_img.info["transparency"] = background
    save("palette-transparent.png", p_img, "PNG", transparency=background)
    save("l8.bmp", Image.fromarray(d8), "BMP")
    save("l8.gif", Image.fromarray(d8), "GIF")
    save("l8.tif", Image.fromarray(d8), "TIFF")
    save("l16.tif", Image.fromarray(d8.astype(np.uint16) * 257), "TIFF")
    save("l8.webp", Image.fromarray(np.stack([d8] * 3, -1)), "WEBP", lossless=True)
    return files


def test_every_format_and_bit_depth_of_a_digit_gives_the_same_array(tmp_path, mnist):
    digit = (mnist.x_test[3].reshape(28, 28) * 255).round().astype(np.uint8)
    big = np.asarray(Image.fromarray(digit).resize((84, 84), Image.Resampling.NEAREST))
    reference = images.prepare_digit(big.astype(np.float32) / 255.0)
    Image.fromarray(255 - big).save(tmp_path / "l8-dark-on-light.png")
    dark_reference = images.load_image(tmp_path / "l8-dark-on-light.png")
    for name, path in _digit_variants(big, tmp_path).items():
        expected = dark_reference if "dark-on-light" in name else reference
        diff = np.abs(images.load_image(path) - expected).max() * 255
        assert diff <= 1.0, f"{name}: differs by {diff:.1f} grey levels"


def test_16_bit_digit_is_not_a_filled_block(tmp_path, mnist):
    """The reported failure: 16-bit grey clipped to white by a plain mode conversion."""
    x = mnist.x_test[0].reshape(28, 28)
    for dark_on_light in (False, True):
        v = 1.0 - x if dark_on_light else x
        Image.fromarray((v * 65535).astype(np.uint16)).resize((140, 140)).save(tmp_path / "16.png")
        Image.fromarray((v * 255).astype(np.uint8)).resize((140, 140)).save(tmp_path / "8.png")
        out = images.load_image(tmp_path / "16.png")
        ref = images.load_image(tmp_path / "8.png")
        assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.99
        assert (out > 0.5).mean() < 0.3


def _png(width: int, height: int, color: int = 6) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + payload))
        return struct.pack(">I", len(payload)) + kind + payload + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    row = b"\0" + b"\0" * (4 * width)
    idat = zlib.compress(row * height, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_huge_canvas_is_refused_from_its_header_without_decoding(tmp_path, monkeypatch):
    """A 6300x6300 RGBA PNG of ~150 KB once took 6.8 s and 1.5 GB before being called blank."""
    path = tmp_path / "canvas.png"
    path.write_bytes(_png(6300, 6300))
    assert path.stat().st_size < 300_000
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self))
    with pytest.raises(ImageFileError, match=r"too large \(6300x6300"):
        images.load_image(path)
    assert decoded == []
    with pytest.raises(ImageFileError, match="too large"):
        images.image_size(path)


def test_large_allowed_photo_is_shrunk_before_the_float_work(tmp_path, mnist):
    digit = (mnist.x_test[1].reshape(28, 28) * 255).astype(np.uint8)
    Image.fromarray(255 - digit).resize((3000, 3000)).save(tmp_path / "photo.jpg", quality=90)
    out = images.load_image(tmp_path / "photo.jpg")
    ref = images.prepare_digit(digit.astype(np.float32) / 255)
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] > 0.9


def test_exported_pngs_are_read_back_through_the_same_allow_list(tmp_path):
    from advgui.core.export import read_png

    (tmp_path / "x.png").write_bytes(EPS)
    with pytest.raises(ImageFileError, match="PostScript"):
        read_png(tmp_path / "x.png")
    buf = io.BytesIO()
    Image.fromarray(np.zeros((28, 28), np.uint16) + 65535).save(buf, format="PNG")
    (tmp_path / "w.png").write_bytes(buf.getvalue())
    assert read_png(tmp_path / "w.png").min() == 1.0  # 16-bit white is white, not clipped
