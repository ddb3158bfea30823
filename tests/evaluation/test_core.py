"""`steervit eval core` end to end on the golden tiny model, with results that can be predicted."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from steervit.cli import main
from steervit.evaluation import core
from steervit.evaluation.datasets import read_core
from steervit.evaluation.features import FeatureCache, global_features

from .conftest import CORE_BASES, CORE_SCENES, MODEL_ARGS, make_core_folder, make_core_parquet, read_results


def run(data, out, *extra):
    assert main(["eval", "core", "--data", str(data), "--out", str(out), "--ks", "1", "2", *extra, *MODEL_ARGS]) == 0
    return read_results(out)


def test_core_cli_structure_and_oracle(core_data, tmp_path, capsys):
    """Images of one object are identical across base images, so every model finds them: P@1 = P@2 = 100."""
    results = run(core_data, tmp_path / "out", "--wrong-prompt", "--cache", str(tmp_path / "cache"))
    assert str(tmp_path / "out" / "results.json") in capsys.readouterr().out
    assert results["benchmark"] == "core" and results["setup"]["text"] is True
    assert results["overall"] == {"P@1": 100.0, "P@2": 100.0}
    assert set(results["per_scene"]) == set(CORE_SCENES)
    for scene, objects in CORE_SCENES.items():
        s = results["per_scene"][scene]
        assert s["queries"] == len(objects) * CORE_BASES and s["objects"] == len(objects)
    assert len(results["per_object"]) == 6
    assert results["per_object"]["kitchen/towel"]["prompt"] == "the towel."
    assert results["queries"] == 6 * CORE_BASES
    assert "wrong_prompt" in results and set(results["wrong_prompt"]["per_scene"]) == set(CORE_SCENES)
    assert (tmp_path / "out" / "results.md").read_text().count("| kitchen |") == 1
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 6  # one per (scene, prompt)
    # a second run reads the cache and gives the same numbers
    again = run(core_data, tmp_path / "again", "--wrong-prompt", "--cache", str(tmp_path / "cache"))
    assert again["per_object"] == results["per_object"]


def test_core_identical_images_score_the_expected_tie_value(tmp_path):
    """All images equal: every gallery item ties, P@k = relevant / gallery = (bases - 1) / (N - objects)."""
    data = make_core_folder(tmp_path / "same", pixels="same")
    results = run(data, tmp_path / "out", "--no-text")
    objects = 3
    expected = 100 * (CORE_BASES - 1) / (objects * CORE_BASES - objects)
    assert results["overall"]["P@1"] == pytest.approx(expected)
    assert results["overall"]["P@2"] == pytest.approx(expected)


def test_core_no_text_equals_gate_zero(tmp_path):
    """Plain features are the same for every prompt; gate factor 0 reproduces them exactly."""
    data = make_core_parquet(tmp_path / "d", pixels="random")  # every image different: not all 100
    records = read_core(data)
    plain = run(data, tmp_path / "plain", "--no-text", "--wrong-prompt")
    gate0 = run(data, tmp_path / "gate0", "--gate-factor", "0", "--wrong-prompt")
    for key in ("overall", "per_scene"):
        assert plain[key] == gate0[key]
    assert plain["wrong_prompt"]["overall"] == plain["overall"]  # no text: the prompt cannot matter
    assert len(records) == plain["queries"]
    steered = run(data, tmp_path / "steered")
    assert steered["overall"] != plain["overall"]  # the prompt does change the ranking


def test_core_per_object_weights_and_wrong_prompt_on_random_images(golden_model):
    """Random images: the overall value is the query-weighted mean of the objects; steering changes features."""
    from steervit.evaluation.datasets import CoreRecord
    from steervit.evaluation.features import ImageRef

    from .conftest import noise, png_bytes

    records = [CoreRecord("s", f"o{o}", f"b{b}", f"the object number {o}.",
                          ImageRef.encoded(png_bytes(noise(o * 10 + b))))
               for o in range(3) for b in range(3 + o)]
    cache = FeatureCache()
    results = core.evaluate(golden_model, records, ks=(1,), wrong_prompt=True, cache=cache)
    per_object = [results.per_object[f"s/o{o}"] for o in range(3)]
    expected = sum(p["P@1"] * p["queries"] for p in per_object) / sum(p["queries"] for p in per_object)
    assert results.precision(1) == results.overall["P@1"] == pytest.approx(expected)
    feats = global_features(golden_model, [r.image for r in records], ["the object number 0.", "the object number 1."],
                            cache=cache)
    assert feats.shape == (len(records), 2, golden_model.feature_dim)
    assert not torch.allclose(feats[:, 0], feats[:, 1])
    assert 0.0 <= results.wrong_prompt["overall"]["P@1"] <= 100.0
    assert np.isfinite(results.mean_over_scenes["P@1"])
    document = results.to_json()  # what results.json holds
    assert document["benchmark"] == "core" and document["overall"] == results.overall
    assert document["wrong_prompt"] == results.wrong_prompt and document["paper"] == core.PAPER
