"""Gate sweep, layer-wise divergence and embedding maps end to end."""
from __future__ import annotations

import json

import pytest
import numpy as np
import torch
from PIL import Image

from steervit.cli import main
from steervit.evaluation import analysis

from .conftest import MODEL_ARGS, make_image_folder, read_results


# ------------------------------------------------------------------------------------------ gate sweep
def test_gate_sweep_table_plot_and_the_zero_gate(core_data, fgcls_data, ade_data, tmp_path):
    out = tmp_path / "sweep"
    assert main(["eval", "gate-sweep", "--data", str(core_data), "--out", str(out), "--gates", "0", "1",
                 "--ks", "1", "--imagewoof", str(fgcls_data / "imagewoof"), "--epochs", "5", "--ade20k", str(ade_data),
                 "--classes", "wall", "sky", "--bank-images", "1", "--val-images", "1", *MODEL_ARGS]) == 0
    results = read_results(out)
    rows = results["rows"]
    assert [r["gate_factor"] for r in rows] == [0.0, 1.0]
    assert results["quality_from"] == ["fgcls", "ade20k"]
    for r in rows:
        assert r["quality"] == pytest.approx((r["fgcls"] + r["ade20k"]) / 2)
        assert 0 <= r["core_P@1"] <= 100
    with Image.open(out / "pareto.png") as im:
        assert im.format == "PNG" and im.width > 100
    assert "| 1.0 |" in (out / "results.md").read_text()

    # gate factor 0 is the plain trunk: the sweep's first row equals --no-text runs of each benchmark
    plain = tmp_path / "plain"
    assert main(["eval", "core", "--data", str(core_data), "--out", str(plain), "--ks", "1", "--no-text",
                 *MODEL_ARGS]) == 0
    assert rows[0]["core_P@1"] == read_results(plain)["overall"]["P@1"]


def test_gate_sweep_core_only(core_data, tmp_path, capsys):
    out = tmp_path / "s"
    common = ["eval", "gate-sweep", "--data", str(core_data), "--out", str(out), "--gates", "0", "1", *MODEL_ARGS]
    assert main(common) == 2  # the default P@10 does not fit the fixture's 9-image galleries
    assert "choose smaller --ks" in capsys.readouterr().err
    assert main([*common, "--ks", "1", "5"]) == 0
    rows = read_results(out)["rows"]
    assert all(r["quality"] is None and "fgcls" not in r for r in rows)
    assert (out / "pareto.png").is_file()


# ------------------------------------------------------------------------------------------ divergence
def test_block_outputs_reproduce_the_model(golden_model):
    """The block-by-block run is the model's own block loop: it ends exactly where forward does."""
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    text = golden_model.encode_text(["the red car", "a dog"])
    with torch.no_grad():
        steered = analysis.block_outputs(golden_model, x, text)
        plain = analysis.block_outputs(golden_model, x, None)
        assert torch.equal(steered[-1], golden_model(x, text))
        assert torch.equal(plain[-1], golden_model(x))
    assert len(steered) == len(golden_model.trunk.blocks) + 1
    first = min(int(i) for i in golden_model.cross_attn_layers)
    for i in range(first):
        assert torch.equal(steered[i], plain[i])  # nothing is steered before the first cross-attention
    assert not torch.allclose(steered[first], plain[first])


def test_divergence_cli_on_coco(coco_data, tmp_path):
    out = tmp_path / "d"
    assert main(["eval", "divergence", "--data", str(coco_data), "--out", str(out), *MODEL_ARGS]) == 0
    results = read_results(out)
    assert results["images"] == 3 and results["blocks"] == list(range(6))
    assert results["cross_attn_blocks"] == [1, 3, 5]
    assert results["cls"][0] == pytest.approx(0, abs=1e-12)  # block 0 has no cross-attention
    assert results["patches"][0] == pytest.approx(0, abs=1e-12)
    assert all(v > 0 for v in results["cls"][1:])
    assert (out / "divergence.png").is_file()

    gate0 = tmp_path / "g0"
    assert main(["eval", "divergence", "--data", str(coco_data), "--out", str(gate0), "--gate-factor", "0",
                 *MODEL_ARGS]) == 0
    assert read_results(gate0)["cls"] + read_results(gate0)["patches"] == pytest.approx([0.0] * 12, abs=1e-12)


def test_divergence_folder_needs_a_prompt(tmp_path, capsys):
    folder = make_image_folder(tmp_path / "imgs", classes=1, per_class=2)
    assert main(["eval", "divergence", "--data", str(folder), "--out", str(tmp_path / "o"), *MODEL_ARGS]) == 2
    assert "--prompt" in capsys.readouterr().err
    assert main(["eval", "divergence", "--data", str(folder), "--prompt", "the cat", "--out", str(tmp_path / "o"),
                 "--max-images", "3", *MODEL_ARGS]) == 0
    assert read_results(tmp_path / "o")["images"] == 3


# ------------------------------------------------------------------------------------------ embedding map
def test_embedding_map_panels(tmp_path):
    folder = make_image_folder(tmp_path / "imgs", classes=2, per_class=3)
    out = tmp_path / "map"
    assert main(["eval", "embedding-map", "--data", str(folder), "--out", str(out), "--prompt", "the dog",
                 "the car", "--method", "pca", *MODEL_ARGS]) == 0
    results = read_results(out)
    assert list(results["panels"]) == ["plain", "the dog", "the car"]
    assert results["classes"] == ["train", "val"] and len(results["labels"]) == 12
    for panel in results["panels"].values():
        assert (out / panel["file"]).is_file() and len(panel["coords"]) == 12 and panel["method"] == "pca"
        assert panel["nn_accuracy"] is not None
    assert results["panels"]["the dog"]["coords"] != results["panels"]["plain"]["coords"]

    plain = tmp_path / "plain"
    assert main(["eval", "embedding-map", "--data", str(folder), "--out", str(plain), "--prompt", "the dog",
                 "the car", "--no-text", *MODEL_ARGS]) == 0
    panels = read_results(plain)["panels"]
    assert panels["the dog"]["coords"] == panels["plain"]["coords"] == panels["the car"]["coords"]
    assert json.loads((plain / "results.json").read_text())["setup"]["text"] is False


def test_projection_fallback_and_nn_accuracy():
    feats = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.9, 0.1]])
    coords, used = analysis.project(feats, "pca")
    assert used == "pca" and coords.shape == (4, 2)
    assert analysis.nn_accuracy(feats, [0, 0, 1, 1]) == 100.0
    assert analysis.nn_accuracy(feats, [0, 0, 0, 0]) is None


def test_late_fusion_divergence_is_zero_in_the_trunk_and_matches_forward(tmp_path):
    """Late fusion steers after the last block: every block's divergence is 0, the output's is not,
    and the last entry is the model's own forward (an old copy of the loop ran late layers first)."""
    from PIL import Image

    from support import make_tiny_model
    from steervit.evaluation.features import ImageRef

    model = make_tiny_model(fusion="late")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    text = model.encode_text(["the red car", "a dog"])
    with torch.no_grad():
        steered = analysis.block_outputs(model, x, text)
        assert torch.equal(steered[-1], model(x, text))
    refs = []
    for i in range(2):
        path = tmp_path / f"{i}.png"
        Image.fromarray((np.random.default_rng(i).random((64, 64, 3)) * 255).astype(np.uint8)).save(path)
        refs.append(ImageRef.file(path))
    result = analysis.divergence(model, refs, ["the red car", "a dog"], batch_size=2)
    # identical tokens: 1 - cosine is 0 up to float64 rounding of the cosine itself
    assert len(result["cls"]) == len(model.trunk.blocks)
    assert max(map(abs, result["cls"] + result["patches"])) < 1e-12
    assert result["final_norm"]["cls"] > 1e-4
