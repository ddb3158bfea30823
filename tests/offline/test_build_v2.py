"""The second- and third-generation recipes: crowded scenes on real backgrounds, exact visible masks,
test split as v1; v3 adds photo objects without changing what v1 and v2 build."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from steervit.data import read_manifest
from steervit.offline import photos
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
    with pytest.raises(ValueError, match="recipe must be one of v1, v2, v3"):
        build_offline(tmp_path / "x", sizes=BuildSizes(recipe="v4"), progress=False)
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def v3(fashion_mnist_installed, tmp_path_factory):
    out = tmp_path_factory.mktemp("v3")
    build_offline(out, seed=SEED, sizes=replace(TINY, train=60, validation=4, test=6, recipe="v3"),
                  eval_sets_too=False, progress=False)
    return out


def test_v3_adds_the_new_photo_objects_and_more_crowds(v2, v3):
    new = {o.key for o in photos.PHOTO_OBJECTS if o.since == "v3"}
    train_v2 = [s for s in _scenes(v2) if s["split"] == "train"]
    train_v3 = [s for s in _scenes(v3) if s["split"] == "train"]
    used_v3 = {i["category"] for s in train_v3 for i in s["items"] if i["source"] == "photo"}
    used_v2 = {i["category"] for s in _scenes(v2) for i in s["items"] if i["source"] == "photo"}
    assert used_v3 & new and not used_v2 & new  # v2 stays as it was built
    assert np.mean([len(s["items"]) >= 9 for s in train_v3]) > np.mean([len(s["items"]) >= 9 for s in train_v2])
    info = json.loads((v3 / "build_info.json").read_text())
    assert new <= set(info["photo_objects"]) and not new & set(info["held_out_photo_objects"])
    assert [s for s in _scenes(v3) if s["split"] == "test"] == [s for s in _scenes(v2) if s["split"] == "test"]
