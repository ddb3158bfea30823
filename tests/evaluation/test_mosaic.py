"""MOSAIC: mosaic construction, ground truth, and the command end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest

from steervit.cli import main
from steervit.evaluation import mosaic
from steervit.evaluation.datasets import read_voc
from steervit.evaluation.metrics import patch_grid_mask

from .conftest import MODEL_ARGS, read_results


def test_compose_places_each_image_in_its_quadrant(voc_data):
    voc = read_voc(voc_data)
    ids = ["2007_000001", "2007_000004", "2007_000006", "2007_000002"]  # cat, car, bird, person + dog
    image, mask = mosaic.compose(voc, ids, 160)
    assert image.size == (160, 160) and mask.shape == (160, 160)
    quadrants = [mask[:80, :80], mask[:80, 80:], mask[80:, :80], mask[80:, 80:]]
    assert [sorted(set(np.unique(q)) - {0, 255}) for q in quadrants] == [[8], [7], [3], [12, 15]]
    assert mosaic.present_classes(mask) == [3, 7, 8, 12, 15]
    # padding to square keeps the aspect ratio: the wide car image (50 x 90) leaves black bars top and bottom
    car = np.asarray(image)[:80, 80:]
    assert car[:5].max() == 0 and car[-5:].max() == 0 and car[40].max() > 0
    gt = patch_grid_mask(mask == 15, patch_size=16)
    assert gt.shape == (10, 10) and gt[5:, 5:].any() and not gt[:5].any()


def test_mosaic_list_is_seeded():
    voc = type("V", (), {"ids": [str(i) for i in range(10)]})()
    a, b = mosaic.make_mosaics(voc, 5, seed=3), mosaic.make_mosaics(voc, 5, seed=3)
    assert a == b and all(len(set(m)) == 4 for m in a)
    assert mosaic.make_mosaics(voc, 5, seed=4) != a


def test_mosaic_cli(voc_data, tmp_path, capsys):
    out = tmp_path / "m"
    args = ["eval", "mosaic", "--data", str(voc_data), "--num-mosaics", "2", "--seed", "1", *MODEL_ARGS]
    assert main([*args, "--out", str(out)]) == 0
    results = read_results(out)
    saved = json.loads((out / "mosaics.json").read_text())
    assert len(saved["mosaics"]) == results["mosaics"] == 2
    assert results["pairs"] == len(results["per_pair"]) >= 2
    for pair in results["per_pair"]:
        assert 0 < pair["attention"] <= 100 and 0 < pair["head"] <= 100 and pair["patches"] > 0
    assert results["attention"] == pytest.approx(np.mean([p["attention"] for p in results["per_pair"]]))
    assert sum(c["pairs"] for c in results["per_class"].values()) == results["pairs"]
    assert results["paper"]["attention PR-AUC"]["SteerViT"] == 50.2

    # the saved list reproduces the run; gate factor 0 equals the plain trunk
    again = tmp_path / "again"
    assert main([*args, "--out", str(again), "--mosaics", str(out / "mosaics.json"), "--seed", "99"]) == 0
    assert read_results(again)["per_pair"] == results["per_pair"]
    plain, gate0 = tmp_path / "plain", tmp_path / "gate0"
    assert main([*args, "--out", str(plain), "--no-text"]) == 0
    assert main([*args, "--out", str(gate0), "--gate-factor", "0"]) == 0
    assert read_results(plain)["per_pair"] == read_results(gate0)["per_pair"]
    assert read_results(plain)["per_pair"] != results["per_pair"]


def test_mosaic_class_list(voc_data, tmp_path, capsys):
    """`--classes` renames the labels (prompts "the <name>"); a list too short for a label is an error."""
    args = ["eval", "mosaic", "--data", str(voc_data), "--num-mosaics", "2", "--seed", "1", *MODEL_ARGS]
    names = [f"widget {i}" for i in range(1, 21)]
    assert main([*args, "--out", str(tmp_path / "named"), "--classes", ",".join(names)]) == 0
    results = read_results(tmp_path / "named")
    assert results["classes"] == names
    assert set(results["per_class"]) <= set(names) and results["per_class"]
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "short"), "--classes", "a,b"]) == 2
    assert "pass --classes" in capsys.readouterr().err
