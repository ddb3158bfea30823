"""PODS and GeneCIS end to end: oracle fixtures where the right answer is a byte copy of the query."""
from __future__ import annotations

import pytest

from steervit.cli import main
from steervit.evaluation import genecis, pods
from steervit.evaluation.datasets import read_genecis, read_pods

from .conftest import MODEL_ARGS, PODS_OBJECTS, make_pods, read_results


# ------------------------------------------------------------------------------------------ PODS
def test_pods_oracle_every_granularity(pods_data, tmp_path):
    """Positives copy the references: similarity 1 ranks them first under any prompt: PR-AUC = NDCG = 100."""
    out = tmp_path / "p"
    assert main(["eval", "pods", "--data", str(pods_data), "--out", str(out), *MODEL_ARGS]) == 0
    results = read_results(out)
    assert list(results["granularities"]) == ["supercategory", "name", "description"]
    assert results["objects"] == 3 and results["pool"] == 12
    for kind, g in results["granularities"].items():
        assert g["pr_auc"] == pytest.approx(100.0) and g["ndcg"] == pytest.approx(100.0), kind
    prompts = {k: g["per_object"]["my_mug"]["prompt"] for k, g in results["granularities"].items()}
    assert prompts == {"supercategory": "the mug", "name": "the coffee mug",
                       "description": "the white mug with a blue stripe."}


def test_pods_no_text_is_the_same_for_every_prompt_and_equals_gate_zero(pods_data, tmp_path):
    common = ["eval", "pods", "--data", str(pods_data), *MODEL_ARGS]
    assert main([*common, "--out", str(tmp_path / "a"), "--no-text"]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--gate-factor", "0"]) == 0
    a, b = read_results(tmp_path / "a"), read_results(tmp_path / "b")
    values = [(g["pr_auc"], g["ndcg"]) for g in a["granularities"].values()]
    assert len(set(values)) == 1
    assert [(g["pr_auc"], g["ndcg"]) for g in b["granularities"].values()] == values


def test_pods_without_descriptions_uses_folder_names(tmp_path, golden_model):
    data = read_pods(make_pods(tmp_path / "bare", descriptions=False))
    assert pods.available(data) == ["name"]
    assert pods.prompt_for(data, "old_bag", "name") == "the old bag"
    results = pods.evaluate(golden_model, data, ["name"])
    assert results.pr_auc("name") == pytest.approx(100.0)
    assert main(["eval", "pods", "--data", str(tmp_path / "bare"), "--granularity", "description",
                 "--out", str(tmp_path / "o"), *MODEL_ARGS]) == 2


def test_pods_hard_case_is_below_the_oracle(tmp_path, golden_model):
    """Swap positives and negatives of one object: its positives are now unrelated images."""
    root = make_pods(tmp_path / "swap")
    obj = next(iter(PODS_OBJECTS))
    (root / obj / "positive").rename(root / obj / "tmp")
    (root / obj / "negative").rename(root / obj / "positive")
    (root / obj / "tmp").rename(root / obj / "negative")
    results = pods.evaluate(golden_model, read_pods(root), ["name"])
    per_object = results.granularities["name"]["per_object"]
    assert per_object[obj]["pr_auc"] < 100.0
    assert results.pr_auc("name") == pytest.approx(
        sum(v["pr_auc"] for v in per_object.values()) / 3)


# ------------------------------------------------------------------------------------------ GeneCIS
def test_genecis_oracle(genecis_data, tmp_path):
    annotation, images = genecis_data
    out = tmp_path / "g"
    assert main(["eval", "genecis", "--data", str(annotation), "--images", str(images), "--out", str(out),
                 *MODEL_ARGS]) == 0
    results = read_results(out)
    assert results["samples"] == 3
    assert results["R@1"] == results["R@2"] == results["R@3"] == pytest.approx(100.0)
    assert results["condition"] == "both"


def test_genecis_baselines_and_query_only(genecis_data, golden_model):
    annotation, images = genecis_data
    samples = read_genecis(annotation, images)
    # make it a real task: the target is now a distractor-like image
    samples = [genecis.GenecisSample(s.reference, s.condition, s.gallery[0], s.gallery[1:] + [s.target])
               for s in samples]
    plain = genecis.evaluate(golden_model, samples, text=False)
    golden_model.set_gate_factor(0.0)
    try:
        gate0 = genecis.evaluate(golden_model, samples)
    finally:
        golden_model.set_gate_factor(1.0)
    assert {k: plain[k] for k in ("R@1", "R@2", "R@3")} == {k: gate0[k] for k in ("R@1", "R@2", "R@3")}
    assert plain["R@1"] <= plain["R@2"] <= plain["R@3"]
    query_only = genecis.evaluate(golden_model, samples, condition="query")
    assert query_only["condition"] == "query" and 0 <= query_only["R@1"] <= 100
