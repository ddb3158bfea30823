"""The Fashion-MNIST reader and its masks: real files from the Debian package, exact masks at any size."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from steervit.offline import fashion_mnist as fm


def test_reads_both_splits(fashion_mnist_installed):
    train, test = fm.load_fashion_mnist("train"), fm.load_fashion_mnist("test")
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert train.images.dtype == np.uint8
    # the dataset is balanced: 6,000 / 1,000 photos per class
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert np.bincount(test.labels).tolist() == [1000] * 10


def test_missing_files_say_which_package_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv(fm.ENV_DIR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        fm.require_fashion_mnist()
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        fm.load_fashion_mnist("test", str(tmp_path))


def test_read_idx_checks_the_header(tmp_path):
    good = tmp_path / "x.gz"
    with gzip.open(good, "wb") as f:
        f.write(bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6)))
    assert fm.read_idx(good).tolist() == [[0, 1, 2], [3, 4, 5]]
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]))
    with pytest.raises(ValueError, match="bytes of data"):
        fm.read_idx(short)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX"):
        fm.read_idx(bad)


def test_mask_keeps_real_holes_and_fills_dark_seams():
    grey = np.zeros((40, 40), np.uint8)
    grey[5:35, 5:35] = 200
    grey[10:30, 10:30] = 0  # a big hole: background showing through (a bag's handle)
    grey[32, 20] = 5  # one dark pixel inside the product: print, not background
    mask = fm.item_mask(grey)
    assert not mask[15:25, 15:25].any()
    assert mask[32, 20]
    grey[2, 2] = 255  # a stray speck away from the product is dropped
    assert not fm.item_mask(grey)[2, 2]


@pytest.mark.parametrize("size", [20, 47, 90, 150])
@pytest.mark.parametrize("tint", [None, (225, 40, 40), (50, 100, 235)])
def test_rendered_mask_is_exactly_the_non_zero_pixels(fashion_mnist_installed, size, tint):
    data = fm.load_fashion_mnist("train")
    for index in (0, 1, 17, 123, 4567):  # several classes
        rgb, mask = fm.render_item(data.images[index], size, tint, flip=index % 2 == 1)
        assert rgb.shape == (size, size, 3) and mask.shape == (size, size)
        assert mask.any()
        np.testing.assert_array_equal(rgb.max(axis=2) > 0, mask)


def test_tint_keeps_the_real_shading(fashion_mnist_installed):
    grey = fm.load_fashion_mnist("test").images[0]
    rgb, mask = fm.render_item(grey, 56, (225, 40, 40))
    red = rgb[..., 0][mask].astype(float)
    assert red.std() > 10  # shading survives: not a flat silhouette
    assert (rgb[..., 0][mask] >= rgb[..., 1][mask]).all()  # and it is red
