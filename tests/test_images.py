"""The one image reader (steervit.io) that every path uses: 16-bit scaling, EXIF orientation, size limits."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from steervit import io as sio
from steervit.io import (
    MAX_ASPECT_RATIO,
    MAX_PIXELS,
    ImageError,
    ImageShapeError,
    ImageTooLargeError,
    decode_rgb,
    open_rgb,
    probe_image,
    to_rgb,
)

RED, BLUE = (230, 20, 20), (20, 20, 230)


# ------------------------------------------------------------------------------ helpers (also used elsewhere)
def gradient16(width: int = 256, height: int = 64) -> np.ndarray:
    """A 16-bit gradient over the whole 0..65535 range, odd values included."""
    return np.linspace(0, 65535, width * height).round().astype(np.uint16).reshape(height, width)


def exif_jpeg(path: Path, orientation: int = 6, size: tuple[int, int] = (60, 40)) -> Path:
    """A JPEG stored `size` (w, h) with its left half red and right half blue, tagged with `orientation`.

    Orientation 6 = "rotate 90 degrees clockwise to display": a viewer shows it h x w, red on top."""
    w, h = size
    pixels = np.empty((h, w, 3), np.uint8)
    pixels[:, : w // 2] = RED
    pixels[:, w // 2:] = BLUE
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, format="JPEG", quality=95, exif=exif.tobytes())
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height and whose data is a few bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def strip_png(path: Path, width: int = 8000, height: int = 1) -> Path:
    """A real, tiny (about 100 bytes) PNG of an extreme aspect ratio."""
    Image.new("L", (width, height)).save(path, format="PNG")
    return path


def is_red(rgb) -> bool:
    r, g, b = (float(v) for v in rgb)
    return r > 150 and b < 100


def is_blue(rgb) -> bool:
    r, g, b = (float(v) for v in rgb)
    return b > 150 and r < 100


# ------------------------------------------------------------------------------ 16-bit
@pytest.mark.parametrize("fmt, dtype", [("PNG", "<u2"), ("TIFF", "<u2"), ("TIFF", ">u2"), ("TIFF", "<i4")])
def test_16bit_images_are_scaled_to_8bit_not_clipped_to_white(tmp_path, fmt, dtype):
    values = gradient16()
    path = tmp_path / f"deep.{fmt.lower()}"
    Image.fromarray(values.astype(dtype)).save(path, format=fmt)
    with Image.open(path) as im:
        assert im.mode in ("I;16", "I;16B", "I")  # what PIL opens these as
        assert np.asarray(im.convert("RGB")).mean() > 250  # the bug: convert clips nearly all to white

    rgb = np.asarray(open_rgb(path))
    expected = np.rint(values / 257.0).astype(np.uint8)
    assert rgb.shape == values.shape + (3,) and rgb.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], expected)
    assert np.abs(rgb[..., 0].astype(int) - (values >> 8)).max() <= 1


def test_32bit_and_float_images_use_their_own_range_when_outside_16bit():
    values = np.linspace(-70000, 200000, 64 * 64).reshape(64, 64).astype(np.int32)
    grey = np.asarray(to_rgb(Image.fromarray(values, "I")))[..., 0]
    assert grey.min() == 0 and grey.max() == 255  # stretched, not clipped to black and white halves
    assert (np.diff(grey.ravel().astype(int)) >= 0).all()
    unit = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    grey = np.asarray(to_rgb(Image.fromarray(unit, "F")))[..., 0]
    np.testing.assert_array_equal(grey, np.rint(unit * 255).astype(np.uint8))


def test_8bit_modes_are_unchanged(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(grey)))[..., 1], grey)
    rgb = Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    assert to_rgb(rgb) is rgb


# ------------------------------------------------------------------------------ EXIF orientation
def test_exif_orientation_6_is_applied_to_files_and_bytes(tmp_path):
    path = exif_jpeg(tmp_path / "phone.jpg", 6, (60, 40))
    with Image.open(path) as im:
        assert im.size == (60, 40)  # stored sideways
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    for image in (open_rgb(path), decode_rgb(path.read_bytes())):
        assert image.size == (40, 60)  # width and height swapped, as a viewer shows it
        pixels = np.asarray(image)
        np.testing.assert_array_equal(pixels, expected)
        # stored left half red -> displayed top half red (rotated 90 degrees clockwise)
        assert is_red(pixels[5, 5]) and is_red(pixels[5, 34]) and is_blue(pixels[54, 5]) and is_blue(pixels[54, 34])
    stored, orientation = sio.read_image(path, upright=False)
    assert stored.size == (60, 40) and orientation == 6


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pil_exif_transpose(tmp_path, orientation):
    path = exif_jpeg(tmp_path / f"o{orientation}.jpg", orientation, (48, 32))
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    np.testing.assert_array_equal(np.asarray(open_rgb(path)), expected)


def test_evaluation_images_are_read_upright(tmp_path):
    from steervit.evaluation.features import ImageRef

    path = exif_jpeg(tmp_path / "phone.jpg")
    assert ImageRef.file(path).open().size == (40, 60)
    assert ImageRef.encoded(path.read_bytes()).open().size == (40, 60)


def test_training_images_and_their_masks_are_turned_upright_together(tmp_path):
    from steervit.data import BoxMask, Record, ReferringSegmentationDataset

    path = exif_jpeg(tmp_path / "phone.jpg", 6, (64, 32))
    # the annotation is in the file's stored pixels (as COCO's): the red left half, x 0..32
    dataset = ReferringSegmentationDataset([Record(str(path), "the red half", BoxMask((0, 0, 32, 32)), "t")],
                                           32, train=False, mean=(0, 0, 0), std=(1, 1, 1))
    sample = dataset[0]
    image = (sample["image"].permute(1, 2, 0).numpy() * 255)
    mask = sample["mask"].numpy() > 0.5
    # upright the red half is on top; the mask follows it
    assert is_red(image[4, 16]) and is_blue(image[28, 16])
    assert mask[:12].all() and not mask[20:].any()


def test_broken_exif_does_not_make_an_image_unreadable(tmp_path):
    path = tmp_path / "odd.jpg"
    Image.new("RGB", (30, 20), RED).save(path, exif=b"Exif\x00\x00garbage-not-tiff")
    assert open_rgb(path).size == (30, 20)


# ------------------------------------------------------------------------------ size limits
def test_an_8000x1_png_is_refused_from_its_header(tmp_path):
    path = strip_png(tmp_path / "strip.png")
    assert path.stat().st_size < 200
    with pytest.raises(ImageShapeError) as info:
        open_rgb(path)
    message = str(info.value)
    assert str(path) in message and "8000×1" in message and "aspect 8000:1" in message
    assert f"at most {MAX_ASPECT_RATIO:g}:1 is supported" in message and "crop it first" in message
    assert isinstance(info.value, ValueError)  # every caller's "bad input" path catches it
    with pytest.raises(ImageShapeError):
        probe_image(path)
    with pytest.raises(ImageShapeError):
        decode_rgb(path.read_bytes())
    assert probe_image(strip_png(tmp_path / "ok.png", 400, 20)) == (400, 20)  # 20:1 is still fine


def test_too_many_pixels_are_refused_before_decoding(tmp_path):
    side = int(MAX_PIXELS ** 0.5) + 100
    with pytest.raises(ImageTooLargeError, match="megapixels; the limit is 64 megapixels"):
        decode_rgb(png_header_only(side, side))  # would need ~200 MB to decode; refused at once
    with pytest.raises(ImageTooLargeError, match="decompression bomb"):
        decode_rgb(png_header_only(100_000, 100_000))
    with pytest.raises(ImageTooLargeError, match="limit is 1 megapixels"):
        decode_rgb(png_header_only(2000, 1000), max_pixels=1_000_000)


def test_unreadable_files_give_one_clear_line(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ImageError) as info:
        open_rgb(bad)
    assert str(bad) in str(info.value) and "unknown format" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="image not found"):
        open_rgb(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="empty"):
        decode_rgb(b"")


# ------------------------------------------------------------------------------ overlay
def test_overlay_refuses_alpha_outside_0_1():
    from steervit import overlay as ov

    image = Image.new("RGB", (8, 8))
    heat = np.zeros((2, 2), np.float32)
    for alpha in (float("nan"), 7.0, -0.1):
        with pytest.raises(ValueError, match="alpha must be between 0 and 1"):
            ov.overlay(image, heat, alpha)
    assert ov.overlay(image, heat, 1.0).size == (8, 8)


def test_image_buffer_helper_matches_io(tmp_path):
    """`decode_rgb` of a file's bytes is what `open_rgb` reads from the file."""
    buffer = io.BytesIO()
    Image.fromarray(gradient16()).save(buffer, format="PNG")
    (tmp_path / "g.png").write_bytes(buffer.getvalue())
    np.testing.assert_array_equal(np.asarray(decode_rgb(buffer.getvalue())), np.asarray(open_rgb(tmp_path / "g.png")))
