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


def test_real_photos_are_whole_photos_with_a_box_per_prompt():
    from steervit.evaluation import pointing

    scenes = demo.build_real_photos()
    assert [s.name for s in scenes] == [f"real photo: {photo_id}" for photo_id, _ in demo.REAL_PHOTOS]
    photos = {p.id: p for p in pointing.read_photos()}
    for scene, (photo_id, prompts) in zip(scenes, demo.REAL_PHOTOS):
        assert scene.real and scene.masks is None
        assert (scene.image.shape[1], scene.image.shape[0]) == photos[photo_id].size  # whole, not resized
        assert scene.prompts == list(prompts) and len(prompts) >= 2  # several objects to move between
        for prompt, box in zip(scene.prompts, scene.boxes):  # each prompt with its own object's box
            assert [o.box for o in photos[photo_id].objects if prompt in o.prompts] == [box]
        assert len(set(scene.boxes)) == len(scene.boxes)


def test_real_photo_scores_are_the_pointing_games(golden_model, tmp_path):
    """The demo scores a real photo exactly as the pointing game scores the same (photo, prompt)."""
    from steervit.evaluation import pointing

    scene = demo.build_real_photos()[0]
    rows = demo.run(golden_model, [scene], tmp_path)
    photo_id = demo.REAL_PHOTOS[0][0]
    entries = [e for e in pointing.read_entries() if e.photo.id == photo_id and e.prompt in scene.prompts]
    by_prompt = {r["prompt"]: r for r in pointing.evaluate(golden_model, entries)["per_entry"]}
    for row in rows:
        assert row["real"]
        expected = by_prompt[row["prompt"]]
        assert abs(100 * row["mass"] - expected["steered"]["head_mass"]) < 1e-6
        assert 100 * row["head_peak"] == expected["steered"]["head_pointing"]
        assert 100 * row["attention_peak"] == expected["steered"]["attention_pointing"]
        assert 100 * row["plain_attention_peak"] == expected["plain"]["attention_pointing"]
        assert "in the object's box" in demo.describe(row)
    page = demo.write_index(rows, tmp_path, "golden").read_text()
    assert "hand-drawn box" in page and all(r["file"] in page for r in rows)
