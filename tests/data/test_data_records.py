"""Every mask spec decodes to exactly the hand-made mask."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from steervit.data import (
    BoxMask,
    ImageMask,
    PngBytesMask,
    PngMask,
    PolygonMask,
    RleMask,
    decode_mask,
    encode_rle,
)
from steervit.data.records import coco_segmentation_mask, polygon_mask

W, H = 64, 48


def test_box_mask(helpers):
    expected = helpers.rect(W, H, 10, 20, 20, 15)
    np.testing.assert_array_equal(decode_mask(BoxMask((10, 20, 20, 15)), W, H), expected)


def test_box_is_clipped_to_the_image(helpers):
    np.testing.assert_array_equal(decode_mask(BoxMask((50, 40, 100, 100)), W, H), helpers.rect(W, H, 50, 40, 14, 8))


def test_polygon_mask_two_parts(helpers):
    spec = PolygonMask(((10, 20, 30, 20, 30, 40, 10, 40), (40, 5, 50, 5, 50, 10, 40, 10)))
    expected = helpers.rect(W, H, 10, 20, 20, 20) | helpers.rect(W, H, 40, 5, 10, 5)
    np.testing.assert_array_equal(decode_mask(spec, W, H), expected)


def test_degenerate_polygons_are_ignored_not_read_as_boxes(helpers):
    spec = polygon_mask([[1, 2, 3, 4], [10, 20, 30, 20, 30, 40, 10, 40]])
    np.testing.assert_array_equal(decode_mask(spec, W, H), helpers.rect(W, H, 10, 20, 20, 20))


def test_single_flat_polygon_is_accepted(helpers):
    spec = coco_segmentation_mask([10, 20, 30, 20, 30, 40, 10, 40])
    np.testing.assert_array_equal(decode_mask(spec, W, H), helpers.rect(W, H, 10, 20, 20, 20))


@pytest.mark.parametrize("counts_type", ["str", "bytes"])
def test_compressed_rle(helpers, counts_type):
    expected = helpers.rect(W, H, 3, 4, 7, 9)
    rle = encode_rle(expected)
    if counts_type == "bytes":
        rle["counts"] = rle["counts"].encode()
    np.testing.assert_array_equal(decode_mask(RleMask(rle), W, H), expected)


def test_uncompressed_rle(helpers):
    expected = helpers.rect(W, H, 3, 4, 7, 9)
    counts, value, run = [], False, 0  # alternating run lengths, background first, down the columns
    for pixel in expected.flatten(order="F"):
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = pixel, 1
    counts.append(run)
    spec = coco_segmentation_mask({"size": [H, W], "counts": counts})
    np.testing.assert_array_equal(decode_mask(spec, W, H), expected)


def test_png_file_bytes_and_pil(helpers, tmp_path):
    expected = helpers.rect(W, H, 5, 6, 11, 12)
    path = helpers.save_mask_png(tmp_path / "m.png", expected)
    np.testing.assert_array_equal(decode_mask(PngMask(str(path)), W, H), expected)
    np.testing.assert_array_equal(decode_mask(PngBytesMask(path.read_bytes()), W, H), expected)
    one_bit = Image.fromarray(expected).convert("1")
    np.testing.assert_array_equal(decode_mask(ImageMask(one_bit), W, H), expected)


def test_zero_one_valued_grey_png(helpers):
    expected = helpers.rect(W, H, 5, 6, 11, 12)
    buffer = io.BytesIO()
    Image.fromarray(expected.astype(np.uint8)).save(buffer, format="PNG")  # values 0/1, not 0/255
    np.testing.assert_array_equal(decode_mask(PngBytesMask(buffer.getvalue()), W, H), expected)


def test_mask_stored_at_another_size_is_resized(helpers):
    half = helpers.rect(W // 2, H // 2, 5, 5, 10, 10)
    out = decode_mask(ImageMask(Image.fromarray(half)), W, H)
    np.testing.assert_array_equal(out, helpers.rect(W, H, 10, 10, 20, 20))


def test_import_needs_no_optional_dependencies():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for name in ('pycocotools', 'pyarrow', 'pandas', 'datasets'): sys.modules[name] = None\n"
        "import steervit.data as d\n"
        "import numpy as np\n"
        "assert d.decode_mask(d.BoxMask((1, 1, 2, 2)), 4, 4).sum() == 4\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
