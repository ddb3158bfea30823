"""The OOD suite: each part differs from training along its one axis, and its files are consistent."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from steervit.data import read_manifest
from steervit.offline import backgrounds, vocabulary
from steervit.offline.ood import PARTS, OodSizes, build_ood


@pytest.fixture(scope="module")
def ood(fashion_mnist_installed, tmp_path_factory):
    out = tmp_path_factory.mktemp("ood")
    # the probe part has its own tiny build in test_probe.py
    summary = build_ood(out, seed=1, sizes=OodSizes(scenes=4, expressions=2, core_scenes=2, core_bases=2,
                                                    probe_train=0, probe_test=0),
                        overwrite=True, progress=False)
    return out, summary


def test_every_part_is_written_with_masks_on_its_items(ood):
    out, summary = ood
    records = read_manifest(out / "manifest.jsonl", split="test")
    assert {r.source for r in records} == {f"ood_{p}" for p in PARTS}
    for line in (out / "scenes.jsonl").read_text().splitlines():
        scene = json.loads(line)
        image = np.asarray(Image.open(out / scene["image"]))
        union = np.zeros(image.shape[:2], int)
        for item in scene["items"]:
            mask = np.asarray(Image.open(out / item["mask"])) > 0
            assert mask.any(), f"{scene['image_id']}: an item with nothing visible"
            union += mask
        assert union.max() == 1  # visible masks never overlap, also where items hide each other


def test_dense_layouts_hold_nine_and_twelve_items(ood):
    out, _ = ood
    counts = {}
    for line in (out / "scenes.jsonl").read_text().splitlines():
        scene = json.loads(line)
        counts.setdefault(scene["part"], []).append(len(scene["items"]))
    assert set(counts["layouts_9"]) == {9} and set(counts["layouts_12"]) == {12}
    assert max(counts["backgrounds"]) <= 6


def test_backgrounds_part_uses_only_unseen_backgrounds(ood):
    out, _ = ood
    ood_names = {str(p) for p in backgrounds.background_files("ood")}
    train_names = {str(p) for p in backgrounds.background_files("train")}
    for line in (out / "scenes.jsonl").read_text().splitlines():
        scene = json.loads(line)
        if scene["part"] == "backgrounds":
            name = scene["background"].removeprefix("ood:")
            assert name in ood_names and name not in train_names


def test_phrasings_part_uses_held_out_wording_and_the_others_do_not(ood):
    out, _ = ood
    for line in (out / "scenes.jsonl").read_text().splitlines():
        scene = json.loads(line)
        for expression in scene["expressions"]:
            held = vocabulary.is_held_out(expression["text"])
            assert held == (scene["part"] == "phrasings"), (scene["part"], expression["text"])


def test_core_style_set_is_in_the_core_layout(ood):
    from steervit.evaluation.datasets import read_core

    out, _ = ood
    records = read_core(out / "core", "test")
    assert len(records) == 2 * 2 * 5  # scenes x bases x (4 products + 1 photo object)
