"""Zero-shot anomaly segmentation: prompts, map normalisation, scoring, and both layouts end to end."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from steervit.cli import main
from steervit.evaluation import anomaly
from steervit.evaluation.datasets import read_mvtec

from .conftest import MODEL_ARGS, read_results


def test_ten_prompts_in_the_published_style():
    prompts = anomaly.prompts_for("metal_nut")
    assert len(prompts) == len(set(prompts)) == 10
    assert prompts[0] == "the anomaly in the metal nut."
    assert all("metal nut" in p for p in prompts)
    assert anomaly.object_name("pcb3") == "printed circuit board" and anomaly.object_name("macaroni2") == "macaroni"


def test_normalisations():
    logits = torch.tensor([[0.0, 1.0, 2.0]])
    assert anomaly.normalise(logits, "softmax").sum().item() == pytest.approx(1.0)
    assert torch.equal(anomaly.normalise(logits, "logits"), logits)
    assert anomaly.normalise(logits, "sigmoid")[0, 0].item() == pytest.approx(0.5)
    with pytest.raises(ValueError):
        anomaly.normalise(logits, "tanh")


def test_a_perfect_map_scores_100_and_a_constant_map_chance():
    masks = np.zeros((3, 16, 16), bool)
    masks[1, 2:6, 3:9] = True
    masks[2, 10:12, 10:15] = True
    perfect = anomaly.score(masks.astype(float), masks)
    assert perfect == {"pixel_auroc": 100.0, "pro": pytest.approx(100.0), "f1_max": 100.0, "image_auroc": 100.0}
    flat = anomaly.score(np.zeros(masks.shape), masks)
    assert flat["pixel_auroc"] == pytest.approx(50.0) and flat["image_auroc"] == pytest.approx(50.0)
    normal_only = anomaly.score(np.zeros((1, 4, 4)), np.zeros((1, 4, 4), bool))
    assert normal_only["pixel_auroc"] is None and normal_only["image_auroc"] is None


def test_image_auroc_scores_each_image_by_its_map_maximum():
    """Image AUROC (MVTec convention) against sklearn: score = max of the map, label = any defect pixel."""
    roc_auc_score = pytest.importorskip("sklearn.metrics").roc_auc_score
    rng = np.random.default_rng(0)
    maps = rng.random((12, 8, 8))
    maps[[2, 7]] = 0.5  # two images with the same maximum: a tie, which counts one half
    masks = np.zeros(maps.shape, bool)
    for i in (1, 2, 4, 9, 10):  # defects of different sizes
        masks[i, i % 6:i % 6 + 1 + i % 3, 3:5] = True
    maps[4, 0, 0] = 2.0  # a hot pixel outside the defect still raises the image's score
    labels = np.array([i in (1, 2, 4, 9, 10) for i in range(12)])
    assert np.array_equal(anomaly.image_scores(maps), maps.max(axis=(1, 2)))
    expected = 100 * roc_auc_score(labels, maps.max(axis=(1, 2)))
    assert anomaly.score(maps, masks)["image_auroc"] == pytest.approx(expected, abs=1e-9)  # float sums only
    assert 0 < expected < 100 and expected != 50.0  # a real, non-degenerate ranking


def test_ground_truth_is_resized_and_binary(mvtec_data):
    samples = read_mvtec(mvtec_data)["bottle"]
    gt = anomaly.ground_truth(samples, 32)
    assert gt.shape == (4, 32, 32) and gt.dtype == bool
    assert not gt[:2].any() and gt[2].sum() == 10 * 8  # the 64 px mask's 16 x 20 box, halved


def test_anomaly_mvtec_cli(mvtec_data, tmp_path):
    out = tmp_path / "mv"
    assert main(["eval", "anomaly", "--data", str(mvtec_data), "--out", str(out), *MODEL_ARGS]) == 0
    results = read_results(out)
    assert results["setup"]["layout"] == "mvtec" and results["normalization"] == "softmax"
    assert list(results["per_category"]) == ["bottle", "metal_nut"]
    assert len(results["prompts"]) == 10
    assert "maximum of the image's anomaly map" in results["image_score"] and "image AUROC" in results["metric"]
    for c in results["per_category"].values():
        assert c["images"] == 4 and c["anomalous"] == 2
        for key in ("pixel_auroc", "pro", "f1_max", "image_auroc"):
            assert 0 <= c[key] <= 100
    for key in ("pro", "image_auroc"):
        assert results["mean"][key] == pytest.approx(np.mean([c[key] for c in results["per_category"].values()]))
    assert "image AUROC" in (out / "results.md").read_text()


def test_anomaly_visa_cli_baseline_and_options(visa_data, tmp_path):
    common = ["eval", "anomaly", "--data", str(visa_data), "--categories", "pcb1", *MODEL_ARGS]
    assert main([*common, "--out", str(tmp_path / "plain"), "--no-text"]) == 0
    assert main([*common, "--out", str(tmp_path / "gate0"), "--gate-factor", "0"]) == 0
    assert main([*common, "--out", str(tmp_path / "sig"), "--normalization", "sigmoid"]) == 0
    plain, gate0, sig = (read_results(tmp_path / n) for n in ("plain", "gate0", "sig"))
    assert plain["setup"]["layout"] == "visa" and list(plain["per_category"]) == ["pcb1"]
    # gate factor 0 runs the plain trunk's operations in the same order: the very same maps and scores
    for key in ("pixel_auroc", "pro", "f1_max", "image_auroc"):
        assert plain["per_category"]["pcb1"][key] == gate0["per_category"]["pcb1"][key]
    assert "prompts" not in plain  # no prompts (None fields are left out of results.json)
    assert sig["normalization"] == "sigmoid" and sig["per_category"]["pcb1"]["object"] == "printed circuit board"
    assert main([*common[:-len(MODEL_ARGS)], "--categories", "nope", "--out", str(tmp_path / "x"), *MODEL_ARGS]) == 2
