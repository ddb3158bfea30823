"""FG-CLS (linear probe) and Hummingbird (ADE20K nearest neighbours) end to end."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from steervit.cli import main
from steervit.evaluation import fgcls, hummingbird

from .conftest import MODEL_ARGS, read_results


# ------------------------------------------------------------------------------------------ FG-CLS
def test_fgcls_oracle_and_structure(fgcls_data, tmp_path):
    """Test images are byte copies of the training images, so a probe that fits its data scores 100."""
    out = tmp_path / "fg"
    assert main(["eval", "fgcls", "--data", str(fgcls_data), "--out", str(out),
                 "--cache", str(tmp_path / "cache"), *MODEL_ARGS]) == 0
    results = read_results(out)
    assert list(results["per_dataset"]) == ["imagewoof", "stanford_cars", "waterbirds"]
    for name, d in results["per_dataset"].items():
        assert d["accuracy"] == 100.0, name
        assert d["prompt"] == fgcls.PROMPTS[name]
    assert results["per_dataset"]["waterbirds"]["worst_group_accuracy"] == 100.0
    assert results["per_dataset"]["imagewoof"]["train"] == 6 and results["per_dataset"]["waterbirds"]["test"] == 4
    assert results["mean"] == 100.0
    assert results["probe"]["epochs"] == 300


def test_fgcls_explicit_folder_no_text_equals_gate_zero(fgcls_data, tmp_path):
    common = ["eval", "fgcls", "--imagewoof", str(fgcls_data / "imagewoof"), "--epochs", "3", *MODEL_ARGS]
    assert main([*common, "--out", str(tmp_path / "a"), "--no-text"]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--gate-factor", "0"]) == 0
    a, b = read_results(tmp_path / "a"), read_results(tmp_path / "b")
    assert list(a["per_dataset"]) == ["imagewoof"]
    assert a["per_dataset"]["imagewoof"]["accuracy"] == b["per_dataset"]["imagewoof"]["accuracy"]
    assert a["per_dataset"]["imagewoof"]["prompt"] is None


def test_fgcls_missing_data_is_a_clean_error(tmp_path, capsys):
    assert main(["eval", "fgcls", "--data", str(tmp_path), "--out", str(tmp_path / "o"), *MODEL_ARGS]) == 2
    assert "no FG-CLS dataset" in capsys.readouterr().err


def test_probe_learns_a_separable_problem():
    x = torch.cat([torch.randn(20, 8) + 3, torch.randn(20, 8) - 3])
    y = torch.tensor([0] * 20 + [1] * 20)
    probe = fgcls.train_probe(x, y, 2, epochs=50, batch_size=8)
    assert (probe(x).argmax(1) == y).all()


# ------------------------------------------------------------------------------------------ Hummingbird
def test_hummingbird_oracle(ade_data, tmp_path):
    """Validation images copy training images and k = 1: each patch finds itself, so IoU = 100.

    The masks are vertical stripes on patch boundaries, where bilinear upsampling + 0.5 is exact, and the
    "other" band (value 0) is ignored.
    """
    out = tmp_path / "hb"
    assert main(["eval", "hummingbird", "--data", str(ade_data), "--out", str(out), "--k", "1",
                 "--classes", "wall", "sky", "--bank-images", "3", "--val-images", "3", *MODEL_ARGS]) == 0
    results = read_results(out)
    assert set(results["per_class"]) == {"wall", "sky"}
    for c in results["per_class"].values():
        assert c["iou"] == pytest.approx(100.0)
        assert c["bank_images"] == 3 and c["val_images"] == 3 and c["val_negatives"] == 0
    assert results["miou"] == pytest.approx(100.0)
    assert results["protocol"]["k"] == 1


def test_hummingbird_defaults_and_baseline(ade_data, tmp_path):
    common = ["eval", "hummingbird", "--data", str(ade_data), "--classes", "1", "3", "floor", "--bank-images", "2",
              "--val-images", "2", *MODEL_ARGS]
    assert main([*common, "--out", str(tmp_path / "a"), "--no-text"]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--gate-factor", "0"]) == 0
    a, b = read_results(tmp_path / "a"), read_results(tmp_path / "b")
    assert a["per_class"] == b["per_class"]
    assert set(a["per_class"]) == {"wall", "sky"}  # "floor" is in no image: skipped
    assert 0 <= a["miou"] <= 100 and a["protocol"]["vote"] == "soft"


def test_knn_votes():
    bank = torch.eye(4)
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0])
    query = torch.tensor([[1.0, 0.1, 0.0, 0.0]])
    assert hummingbird.knn_scores(query, bank, labels, 1, "soft", 0.02).item() == pytest.approx(1.0)
    assert hummingbird.knn_scores(query, bank, labels, 2, "majority", 0.02).item() == pytest.approx(0.5)
    soft = hummingbird.knn_scores(query, bank, labels, 2, "soft", 1.0).item()
    assert 0.5 < soft < 1.0  # the nearer (positive) neighbour weighs more
    assert hummingbird.parse_classes(["wall", "150"]) == [1, 150]
    with pytest.raises(ValueError):
        hummingbird.parse_classes(["unicorn"])


def test_patch_labels_are_coverage_fractions():
    mask = np.zeros((32, 32), dtype=int)
    mask[:, :8] = 5
    labels = hummingbird.patch_labels([mask], 5, 16)
    assert labels.tolist() == [[0.5, 0.0, 0.5, 0.0]]
