"""The evaluation commands run end to end on the offline evaluation sets (tiny build, golden model).

The full-size runs for the bundled model are in the README; here the point is that the offline
layouts and the commands fit together and give sane, consistent numbers.
"""
from __future__ import annotations

import json

import pytest

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
