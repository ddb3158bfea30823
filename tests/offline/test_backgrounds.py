"""The photo-background catalogue and its sampler.

The photos themselves must be installed: `make test` runs scripts/install-backgrounds.sh. These
tests fail (they do not skip) without them.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from steervit.offline import backgrounds as bg

# Reserved for evaluation outside the project: never used, so never catalogued.
RESERVED = ("mate-backgrounds", "opencv-doc")


def test_pools_share_no_package_source_or_file():
    cat = bg.catalogue()
    train, ood = bg.pool_packages("train"), bg.pool_packages("ood")
    assert {p["name"] for p in train} == set(cat["pools"]["train"])
    assert {p["name"] for p in ood} == set(cat["pools"]["ood"])
    assert not {p["name"] for p in train} & {p["name"] for p in ood}
    # Binary packages built from one source share their origin, so they stay on one side too.
    assert not {p["source"] for p in train} & {p["source"] for p in ood}
    train_files = {f["path"] for p in train for f in p["files"]}
    ood_files = {f["path"] for p in ood for f in p["files"]}
    assert not train_files & ood_files
    assert {p["pool"] for p in cat["packages"]} == {"train", "ood"}


def test_reserved_packages_are_nowhere_in_the_catalogue():
    text = bg.CATALOGUE.read_text(encoding="utf-8").lower()
    for name in RESERVED:
        assert name not in text
    assert "opencv" not in text


def test_catalogue_keeps_attribution_and_only_photos():
    ood = bg.pool_packages("ood")
    assert sum(len(p["files"]) for p in ood) >= 20 and len(ood) >= 2
    for p in bg.catalogue()["packages"]:
        assert p["licence"] and p["version"] and p["photos"] == len(p["files"])
        for f in p["files"]:
            assert f["author"] and f["licence"] and f["content"]
            assert not f["path"].lower().endswith(bg.NOT_PHOTOS)


@pytest.mark.parametrize("pool", bg.POOLS)
def test_catalogued_files_are_installed(pool):
    files = bg.background_files(pool)  # FileNotFoundError names the install script
    assert len(files) == sum(len(p["files"]) for p in bg.pool_packages(pool))
    assert all(f.is_file() for f in files)


def test_missing_files_name_the_install_script(monkeypatch):
    monkeypatch.setattr(bg, "locate", lambda package, path: None)
    with pytest.raises(FileNotFoundError, match="install-backgrounds.sh"):
        bg.background_files("ood")
    with pytest.raises(ValueError):
        bg.background_files("test")


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory):
    """A big JPEG (to exercise draft decoding) and a small PNG, both random noise."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    big = folder / "big.jpg"
    Image.fromarray(rng.integers(0, 256, (1500, 3000, 3), dtype=np.uint8)).save(big, quality=80)
    small = folder / "small.png"
    Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(small)
    return [big, small]


def test_decoding_is_downscaled_and_cached(photo_files):
    big = bg.load_background(photo_files[0])
    assert big.dtype == np.uint8 and big.shape == (512, 1024, 3)
    assert bg.load_background(photo_files[0]) is big  # the LRU cache, not a second decode
    assert not big.flags.writeable
    assert bg.load_background(photo_files[1]).shape == (300, 400, 3)
    with pytest.raises(ValueError, match="not a photo"):
        bg.load_background(photo_files[1].with_suffix(".svg"))


def test_random_background_shape_determinism_and_variety(photo_files):
    one = bg.random_background(np.random.default_rng(7), photo_files, 96)
    assert one.shape == (96, 96, 3) and one.dtype == np.uint8
    again = bg.random_background(np.random.default_rng(7), photo_files, 96)
    np.testing.assert_array_equal(one, again)
    others = [bg.random_background(np.random.default_rng(s), photo_files, 96) for s in range(8, 12)]
    assert all(not np.array_equal(one, o) for o in others)
    plain = bg.random_background(np.random.default_rng(7), photo_files, 96, brightness=0, contrast=0, flip=False)
    assert plain.shape == (96, 96, 3)


@pytest.mark.parametrize("pool", bg.POOLS)
def test_random_background_on_real_photos(pool):
    files = bg.background_files(pool)
    rng = np.random.default_rng(1)
    images = [bg.random_background(rng, files, 64) for _ in range(3)]
    for image in images:
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert image.std() > 2  # a photo, not a flat fill
    np.testing.assert_array_equal(images[0], bg.random_background(np.random.default_rng(1), files, 64))


def test_catalogued_crop_removes_letterbox_bars():
    (path,) = [f for f in bg.background_files("train") if f.name == "mossy_bark.jpg"]
    image = bg.load_background(path)
    assert image.shape == (424, 640, 3)
    assert image[:3].mean() > 20 and image[-3:].mean() > 20  # the black bars are gone
