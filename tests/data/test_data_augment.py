"""Joint augmentation: keeps the target, flips only without directional words, reproducible."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from steervit.data import AugmentConfig, augment_pair, has_directional_word


def _image(width=128, height=96, seed=0):
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(rgb)


@pytest.mark.parametrize(
    "text, expected",
    [("the left cup", True), ("Top shelf", True), ("bottom-left corner", True), ("the LOWER one", True),
     ("turn clockwise", True), ("man to the west", True), ("the cup", False), ("leftover pizza", False),
     ("a rightful owner", False), ("topping", False), ("", False)],
)
def test_directional_words_whole_word(text, expected):
    assert has_directional_word(text) is expected


def test_target_survives_augmentation(helpers):
    image = _image(128, 128)
    mask = helpers.rect(128, 128, 118, 118, 8, 8)  # 64 px in a corner: most random crops lose it
    for seed in range(60):
        _, out, _ = augment_pair(image, mask, "the thing", 128, torch.Generator().manual_seed(seed))
        assert out.shape == (128, 128) and out.dtype == bool
        assert out.sum() >= 16, seed


def test_flip_only_without_directional_words(helpers):
    image = _image(64, 64)
    mask = helpers.rect(64, 64, 4, 10, 16, 20)  # on the left
    flipped_mask = helpers.rect(64, 64, 44, 10, 16, 20)
    geometry_only = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), affine_p=0.0, jitter_p=0.0)
    flips = {"the left cup": 0, "the cup": 0}
    for text in flips:
        for seed in range(40):
            out_image, out, applied = augment_pair(image, mask, text, 64, torch.Generator().manual_seed(seed), geometry_only)
            if applied["flip"]:
                flips[text] += 1
                np.testing.assert_array_equal(out, flipped_mask)
                np.testing.assert_array_equal(np.asarray(out_image), np.asarray(image)[:, ::-1])
            else:
                np.testing.assert_array_equal(out, mask)
    assert flips["the left cup"] == 0
    assert 8 <= flips["the cup"] <= 32, flips


def test_flip_rule_with_the_full_recipe(helpers):
    image, mask = _image(), helpers.rect(128, 96, 30, 20, 40, 40)
    applied = {
        text: [augment_pair(image, mask, text, 64, torch.Generator().manual_seed(s))[2] for s in range(30)]
        for text in ("the cup on the Right", "the cup")
    }
    assert not any(a["flip"] for a in applied["the cup on the Right"])
    assert any(a["flip"] for a in applied["the cup"])
    assert any(a["affine"] for a in applied["the cup"]) and any(a["jitter"] for a in applied["the cup"])


def test_same_seed_same_result(helpers):
    image, mask = _image(), helpers.rect(128, 96, 30, 20, 40, 40)
    runs = [augment_pair(image, mask, "a cup", 64, torch.Generator().manual_seed(s)) for s in (3, 3, 4)]
    np.testing.assert_array_equal(np.asarray(runs[0][0]), np.asarray(runs[1][0]))
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(np.asarray(runs[0][0]), np.asarray(runs[2][0]))
