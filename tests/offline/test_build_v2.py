"""The second-generation recipe: crowded scenes on real backgrounds, exact visible masks, test split as v1."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from steervit.data import read_manifest
from steervit.offline.build import BuildSizes, build_offline

from .conftest import SEED, TINY


@pytest.fixture(scope="module")
def v2(fashion_mnist_installed, tmp_path_factory):
    out = tmp_path_factory.mktemp("v2")
    build_offline(out, seed=SEED, sizes=replace(TINY, train=40, validation=4, test=6, recipe="v2"),
                  eval_sets_too=False, progress=False)
    return out


def _scenes(out):
    return [json.loads(line) for line in (out / "scenes.jsonl").read_text().splitlines()]


def test_v2_training_scenes_are_varied_and_masks_exact(v2):
    train = [s for s in _scenes(v2) if s["split"] == "train"]
    counts = [len(s["items"]) for s in train]
    assert min(counts) <= 2 and max(counts) >= 7  # from lone items to crowds
    assert any(s["background"] == "photo background" for s in train)
    for s in train:
        union = np.zeros((224, 224), int)
        for item in s["items"]:
            mask = np.asarray(Image.open(v2 / item["mask"])) > 0
            assert mask.any()
            union += mask
        assert union.max() == 1  # touching and hidden items: the visible masks still never overlap


def test_v2_keeps_the_v1_test_split(v2, tmp_path):
    v1 = tmp_path / "v1"
    build_offline(v1, seed=SEED, sizes=replace(TINY, train=40, validation=4, test=6), eval_sets_too=False,
                  progress=False)
    test_v1 = [s for s in _scenes(v1) if s["split"] == "test"]
    test_v2 = [s for s in _scenes(v2) if s["split"] == "test"]
    assert test_v1 == test_v2
    assert [r.expression for r in read_manifest(v1 / "manifest.jsonl", split="test")] == \
        [r.expression for r in read_manifest(v2 / "manifest.jsonl", split="test")]


def test_unknown_recipe_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="recipe must be v1 or v2"):
        build_offline(tmp_path / "x", sizes=BuildSizes(recipe="v3"), progress=False)
    assert not (tmp_path / "x").exists()
