"""The evaluation commands run end to end on the offline evaluation sets (tiny build, golden model).

The full-size runs for the bundled model are in the README; here the point is that the offline
layouts and the commands fit together and give sane, consistent numbers.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from steervit.evaluation.datasets import read_voc
from steervit.evaluation.features import read_label_png
from steervit.offline import eval_sets
from steervit.cli import main
from support import OFFICIAL, TINY_ROBERTA, TRUNK

MODEL = ["--model", str(OFFICIAL), "--backbone-weights", str(TRUNK), "--text-encoder", str(TINY_ROBERTA)]


def run(name: str, data, out, *extra: str) -> dict:
    assert main(["eval", name, "--data", str(data), "--out", str(out), "--workers", "0", *MODEL, *extra]) == 0
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("text", [True, False], ids=["steered", "plain"])
def test_core_on_offline_set(built, tmp_path, text):
    out, _ = built
    results = run("core", out / "core", tmp_path, "--ks", "1", *([] if text else ["--no-text"]))
    p1 = results["overall"]["P@1"]
    assert 0.0 <= p1 <= 100.0
    assert results["queries"] == sum(1 for _ in (out / "core" / "metadata.jsonl").open())


def test_anomaly_on_offline_set(built, tmp_path):
    out, _ = built
    results = run("anomaly", out / "anomaly", tmp_path)
    text = json.dumps(results)
    assert "AUROC" in text or "auroc" in text
    assert set(results.get("per_category", results.get("categories", {}))) == {
        p.name for p in (out / "anomaly").iterdir() if p.is_dir()}


def test_pods_on_offline_set(built, tmp_path):
    out, _ = built
    results = run("pods", out / "pods", tmp_path)
    assert "description" in json.dumps(results)


def test_offline_mosaic_set_is_voc_layout_with_its_class_list(built):
    out, _ = built
    voc = read_voc(out / "mosaic", "val")  # classes.txt is picked up
    assert voc.classes[1:] == eval_sets.mosaic_classes()
    assert "quokka" in voc.classes and "ankle boot" in voc.classes
    assert len(voc.ids) == 8
    for image_id in voc.ids:
        image = voc.image(image_id).open()
        labels = read_label_png(voc.class_mask_path(image_id))
        objects = read_label_png(voc.root / "SegmentationObject" / f"{image_id}.png")
        assert Image.open(voc.class_mask_path(image_id)).mode == "P"
        assert labels.shape == objects.shape == (image.height, image.width)
        assert labels.max() < len(voc.classes)
        assert ((labels > 0) == (objects > 0)).all()  # every instance has a class and vice versa
        for k in np.unique(objects[objects > 0]):
            assert len(np.unique(labels[objects == k])) == 1  # one class per instance
    sources = json.loads((out / "mosaic" / "sources.json").read_text())
    items = {key for s in sources.values() for key in s["items"]}
    assert items and all(k.startswith("fmnist-test-") or k.startswith("photo-") for k in items)
    held = {f"photo-{k}" for k in json.loads((out / "build_info.json").read_text())["held_out_photo_objects"]}
    assert {k for k in items if k.startswith("photo-")} <= held  # held-out material only


@pytest.mark.parametrize("text", [True, False], ids=["steered", "plain"])
def test_mosaic_on_offline_set(built, tmp_path, text):
    out, _ = built
    results = run("mosaic", out / "mosaic", tmp_path, "--num-mosaics", "3", *([] if text else ["--no-text"]))
    assert results["mosaics"] == 3 and results["pairs"] >= 3
    assert set(results["per_class"]) <= set(eval_sets.mosaic_classes())
    assert 0.0 < results["attention"] <= 100.0 and 0.0 < results["head"] <= 100.0
