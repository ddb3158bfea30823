"""The pointing game on real photos: the hand-drawn boxes, the photos they were drawn on, the metric."""
from __future__ import annotations

import dataclasses
import importlib.util
import json

import numpy as np
import pytest
import torch

from steervit.evaluation import pointing as pt
from steervit.transforms import Preprocessing

MODULES = {"skimage": "skimage", "sklearn": "sklearn", "matplotlib": "matplotlib"}


def raw_doc() -> dict:
    return json.loads(pt.PHOTOS_JSON.read_text(encoding="utf-8"))


def source_installed(source: dict) -> bool:
    module = source["package"] if source["kind"] == "package_file" else MODULES[source["kind"]]
    return importlib.util.find_spec(module) is not None


def loadable_photos() -> list[pt.PointingPhoto]:
    photos = [p for p in pt.read_photos() if source_installed(p.source_dict)]
    if not photos:
        pytest.skip("none of the packages holding the photos is installed")
    return photos


# ------------------------------------------------------------------------------------ the JSON itself
def test_json_parses_with_enough_photos_and_entries():
    doc = raw_doc()
    photos = pt.read_photos()
    entries = pt.read_entries()
    assert len(photos) >= 6 and len(entries) >= 25
    assert len({p.id for p in photos}) == len(photos)
    assert "hand" in doc["note"]
    for p in doc["photos"]:
        assert p["licence"] and p["source"]["call"] and p["title"]
        assert isinstance(p["used_in_training"]["used"], bool) and p["used_in_training"]["what"]
        assert 2 <= len(p["objects"]) <= 6
        for o in p["objects"]:
            assert 1 <= len(o["prompts"]) <= 3 and all(t.strip() for t in o["prompts"])


def test_every_box_lies_inside_its_photo_with_positive_area_and_stays_big_enough():
    for p in raw_doc()["photos"]:
        width, height = p["size"]
        for o in p["objects"]:
            x0, y0, x1, y1 = o["box"]
            assert all(isinstance(v, int) for v in o["box"])
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, (p["id"], o["name"])
            # resized with the whole photo to 224 x 224: at least 2 patches wide and 1.5 patches tall
            sx0, sy0, sx1, sy1 = pt.scale_box(o["box"], (width, height), (224, 224))
            assert sx1 - sx0 >= 28 and sy1 - sy0 >= 20, (p["id"], o["name"])


def test_no_source_is_a_reserved_package():
    text = pt.PHOTOS_JSON.read_text(encoding="utf-8").lower()
    for reserved in pt.RESERVED_PACKAGES + pt.RESERVED_PATHS:
        assert reserved not in text
    for p in raw_doc()["photos"]:
        assert p["source"]["kind"] in pt.SOURCE_KINDS
    for bad in ({"kind": "package_file", "package": "opencv-doc", "file": "x.jpg"},
                {"kind": "package_file", "package": "mate-backgrounds", "file": "x.jpg"},
                {"kind": "skimage", "name": "astronaut", "call": "/usr/share/backgrounds/mate/nature/x.jpg"},
                {"kind": "file", "path": "/tmp/x.jpg"}):
        with pytest.raises(ValueError):
            pt.check_source(bad)


def test_reading_refuses_a_box_outside_its_photo(tmp_path):
    doc = raw_doc()
    doc["photos"][0]["objects"][0]["box"] = [0, 0, doc["photos"][0]["size"][0] + 1, 10]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="outside"):
        pt.read_photos(path)


# ------------------------------------------------------------------------------- the photos on disk
def test_every_photo_loads_at_its_recorded_size_and_pixels():
    for photo in loadable_photos():
        array = pt.load_photo(photo)  # checks size and sha256
        assert array.shape == (photo.size[1], photo.size[0], 3) and array.dtype == np.uint8


def test_used_in_training_agrees_with_the_offline_training_photos():
    """A photo counts as used when photos.py pastes a cut-out of it into training scenes (held-out
    objects reach only the test split and evaluation sets, and never serve as training backgrounds)."""
    from steervit.offline import photos as training

    ours = loadable_photos()
    seen, held = set(), set()
    for obj in training.PHOTO_OBJECTS:
        try:
            digest = pt.pixel_sha256(training.load_photo(obj.key))
        except (ImportError, FileNotFoundError):
            continue
        (held if obj.held_out else seen).add(digest)
    for photo in ours:
        assert photo.used_in_training == (photo.sha256 in seen), photo.id
        if not photo.used_in_training and photo.sha256 in held:
            assert "held out" in photo.training_note
    assert any(not p.used_in_training for p in ours)


def test_hand_drawn_quokka_box_agrees_with_imgaugs_own_annotation():
    if importlib.util.find_spec("imgaug") is None:
        pytest.skip("imgaug is not installed")
    annotation = json.loads((pt.package_folder("imgaug") / "quokka_annotations.json").read_text())
    theirs = annotation["bounding_boxes"][0]
    b = [theirs["x1"], theirs["y1"], theirs["x2"], theirs["y2"]]
    ours = next(o.box for p in pt.read_photos() if p.id == "quokka" for o in p.objects if o.name == "quokka")
    inter = max(0, min(ours[2], b[2]) - max(ours[0], b[0])) * max(0, min(ours[3], b[3]) - max(ours[1], b[1]))
    union = (ours[2] - ours[0]) * (ours[3] - ours[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    assert inter / union > 0.9


# ------------------------------------------------------------------------------------------ the metric
def test_pointing_is_100_for_a_peak_inside_the_box_and_0_outside():
    box = pt.box_mask((10, 20, 30, 40), 64, 64)
    inside, outside = torch.zeros(64, 64), torch.zeros(64, 64)
    inside[25, 15] = 1.0
    outside[5, 50] = 1.0
    assert pt.pointing_accuracy(torch.stack([inside, inside]), torch.stack([box, box])) == 100.0
    assert pt.pointing_accuracy(outside[None], box[None]) == 0.0
    assert pt.pointing_accuracy(torch.stack([inside, outside]), torch.stack([box, box])) == 50.0
    assert pt.mass_inside(inside, box) == 1.0 and pt.mass_inside(outside, box) == 0.0


def test_pointing_edges_ties_and_flat_maps():
    box = pt.box_mask((10, 20, 30, 40), 64, 64)  # pixels x 10..29, y 20..39
    for (y, x), hit in (((20, 10), 1.0), ((39, 29), 1.0), ((19, 10), 0.0), ((20, 30), 0.0)):
        heat = torch.zeros(64, 64)
        heat[y, x] = 1.0
        assert pt.pointing_hit(heat, box) == hit, (y, x)
    tied = torch.zeros(64, 64)
    tied[25, 15] = tied[5, 50] = 1.0
    assert pt.pointing_hit(tied, box) == 0.5
    flat = torch.full((64, 64), 0.25)  # a flat map scores the box's share of the image, not a corner
    assert pt.pointing_hit(flat, box) == pytest.approx(float(box.double().mean()))
    assert pt.pointing_hit(torch.zeros(64, 64), pt.box_mask((0, 0, 1, 1), 64, 64, tolerance=2)) == \
        pytest.approx(9 / 64 ** 2)


def test_box_scaling_to_the_square_input():
    assert pt.scale_box((0, 0, 600, 400), (600, 400), (224, 224)) == (0, 0, 224, 224)
    assert pt.scale_box((300, 100, 600, 400), (600, 400), (224, 224)) == (112, 56, 224, 224)
    assert bool(pt.box_mask((0, 0, 224, 224), 224, 224).all())
    assert int(pt.box_mask((112, 0, 224, 224), 224, 224).sum()) == 112 * 224


# ----------------------------------------------------------------------------------------- evaluate
class PeakModel:
    """Puts every prompt's peak at the centre of its entry's (scaled) box; without a prompt at (0, 0)."""

    image_size = 64

    def __init__(self, boxes: dict[str, tuple[float, ...]]):
        self.boxes = boxes
        self.preprocessing = Preprocessing(size=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

    def encode_text(self, prompts):
        return list(prompts)

    def _maps(self, x, texts):
        maps = torch.zeros(x.shape[0], 64, 64)
        for i in range(x.shape[0]):
            if texts is None:
                maps[i, 0, 0] = 1.0
            else:
                x0, y0, x1, y1 = self.boxes[texts[i]]
                maps[i, int((y0 + y1) / 2), int((x0 + x1) / 2)] = 1.0
        return maps

    def get_heatmaps(self, x, texts, gate_factor=None):
        assert texts is not None or gate_factor == 0.0
        return self._maps(x, texts)[:, None]

    def get_attention_heatmaps(self, x, texts=None):
        return self._maps(x, texts)


def test_evaluate_scores_a_model_that_points_at_every_box():
    photos = pt.read_photos()[:3]
    entries = [dataclasses.replace(e, prompt=f"{e.photo.id}: {e.prompt}") for e in pt.read_entries(photos=photos)]
    boxes = {e.prompt: pt.scale_box(e.box, e.photo.size, (64, 64)) for e in entries}
    images = {p.id: np.zeros((p.size[1], p.size[0], 3), np.uint8) for p in photos}
    results = pt.evaluate(PeakModel(boxes), entries, images=images, batch_size=4)
    assert results["entries"] == len(entries) and results["photos"] == 3
    assert results["steered"] == {"head_pointing": 100.0, "head_mass": 100.0, "attention_pointing": 100.0}
    corner = [float(pt.box_mask(b, 64, 64)[0, 0]) * 100 for b in boxes.values()]
    assert results["plain"]["head_pointing"] == pytest.approx(np.mean(corner))
    assert results["plain"]["attention_pointing"] == pytest.approx(np.mean(corner))
    chance = [float(pt.box_mask(b, 64, 64).double().mean()) * 100 for b in boxes.values()]
    assert results["chance"] == pytest.approx(np.mean(chance))
    assert len(results["per_entry"]) == len(entries) and set(results["per_photo"]) == {p.id for p in photos}
    without = pt.evaluate(PeakModel(boxes), entries, images=images, text=False)
    assert without["steered"] is None and without["plain"] == results["plain"]
    assert "plain trunk" in pt.table(without)


def in_range(value) -> bool:
    return value is None or 0.0 <= value <= 100.0


def test_evaluate_on_the_golden_model_gives_percentages(golden_model):
    photos = loadable_photos()
    entries = pt.read_entries(photos=photos)
    results = pt.evaluate(golden_model, entries, batch_size=8)
    assert results["entries"] == len(entries) and results["image_size"] == golden_model.image_size
    groups = [results, results["not_in_training"], results["in_training"], *results["per_photo"].values()]
    for group in groups:
        if group is None:
            continue
        assert in_range(group["chance"]) and group["chance"] > 0
        for mode in ("steered", "plain"):
            assert set(group[mode]) == set(pt.METRICS)
            assert all(in_range(v) for v in group[mode].values()), (mode, group[mode])
    for row in results["per_entry"]:
        assert row["steered"]["head_pointing"] is not None and in_range(row["steered"]["head_mass"])
    table = pt.table(results)
    assert "head pointing" in table and all(f"| {pid} |" in table for pid in results["per_photo"])
    assert pt.summary(results).startswith("pointing:")


def test_pointing_command_writes_results(tmp_path):
    """`steervit eval pointing` on the packaged boxes with the tiny golden model: one results.json."""
    import json

    from steervit.cli import main
    from .conftest import MODEL_ARGS

    out = tmp_path / "pointing"
    assert main(["eval", "pointing", "--out", str(out), "--batch-size", "16", *MODEL_ARGS]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["setup"]["entries"] >= 25
    assert (out / "results.md").is_file()
