"""The demo's scenes and outputs (mechanics, on the tiny golden model; quality lives in bench/)."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from steervit import demo


def test_demo_scenes_have_one_exact_mask_per_prompt():
    scenes = demo.build_scenes()
    assert len(scenes) == 3
    for scene in scenes:
        assert scene.image.shape == (224, 224, 3)
        assert len(scene.prompts) == len(scene.masks) >= 3
        total = np.zeros((224, 224), int)
        for mask in scene.masks:
            assert mask.sum() > 500
            total += mask
        assert total.max() == 1  # objects do not overlap


def test_demo_writes_overlays_and_index(golden_model, tmp_path):
    scenes = demo.build_scenes()[:1]
    rows = demo.run(golden_model, scenes, tmp_path)
    index = demo.write_index(rows, tmp_path, "golden")
    assert [r["prompt"] for r in rows] == scenes[0].prompts
    assert all(0.0 <= r["mass"] <= 1.0 for r in rows)
    assert all((tmp_path / r["file"]).is_file() for r in rows)
    with Image.open(tmp_path / rows[0]["file"]) as figure:  # image | head | steered | plain, side by side
        assert figure.size == (4 * golden_model.image_size, golden_model.image_size)
    page = index.read_text()
    assert all(r["file"] in page for r in rows) and "the scenes are made" in page
    json.dumps(rows)
