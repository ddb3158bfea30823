"""PODS: personalised object discrimination from a few reference images (reference §5).

The test pool is every positive and negative image of every object. For object o (prompt p_o), the
pool and o's reference images are encoded with p_o, L2-normalised, compared by cosine similarity:
- classification: a pool image's score = its mean similarity to o's references; PR-AUC (average
  precision) with o's positives as the positive class and the rest of the pool as negatives;
- retrieval: each reference image ranks the whole pool; NDCG over the full ranking (binary
  relevance = o's positives), averaged over o's references.
Averaging: per object, then the unweighted mean over objects. Prompt kinds: "the <supercategory>",
"the <name>" (descriptions.json, else the folder name), and the instance description itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .datasets import PodsData, readable
from .features import FeatureCache, global_features
from .metrics import average_precision, ndcg_from_similarity
from .report import BenchmarkResult, markdown_table, mean

GRANULARITIES = ("supercategory", "name", "description")
PAPER = {"PR-AUC / NDCG": {"DINOv2": [29.6, 67.0], "SteerViT supercategory": [27.9, 59.3],
                           "SteerViT name": [44.0, 68.3], "SteerViT description": [58.1, 77.3],
                           "DINOv2 fine-tuned per object": [48.0, 79.6]}}


def prompt_for(data: PodsData, obj: str, kind: str) -> str | None:
    """The prompt of `obj` at one granularity, or None when descriptions.json lacks it."""
    info = data.descriptions.get(obj, {})
    if kind == "name":
        return f"the {info.get('name') or readable(obj)}"
    if kind == "supercategory" and info.get("supercategory"):
        return f"the {info['supercategory']}"
    if kind == "description" and info.get("description"):
        return info["description"]
    return None


def available(data: PodsData) -> list[str]:
    return [g for g in GRANULARITIES if all(prompt_for(data, o, g) for o in data.objects)]


def evaluate(model, data: PodsData, granularities: list[str], *, text: bool = True, batch_size: int = 32,
             workers: int = 0, cache: FeatureCache | None = None) -> "PodsResults":
    """PR-AUC and NDCG (percent) per granularity; without text every granularity is the plain baseline."""
    cache = cache if cache is not None else FeatureCache()
    objects = list(data.objects)
    pool = [(o, part, ref) for o in objects for part in ("positive", "negative") for ref in data.objects[o][part]]
    owner = np.array([o for o, _, _ in pool])
    positive = np.array([part == "positive" for _, part, _ in pool])
    references = [ref for o in objects for ref in data.objects[o]["reference"]]
    ref_owner = np.array([o for o in objects for _ in data.objects[o]["reference"]])
    refs = [ref for _, _, ref in pool] + references
    results = {}
    for kind in granularities:
        prompts = {o: prompt_for(data, o, kind) for o in objects}
        unique = sorted(set(prompts.values()))
        feats = global_features(model, refs, unique if text else None, batch_size=batch_size, workers=workers,
                                cache=cache, desc=f"PODS {kind}")
        per_object = {}
        for o in objects:
            f = feats[:, unique.index(prompts[o])] if text else feats
            f = f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            sim = (f[len(pool):][ref_owner == o] @ f[:len(pool)].T).numpy()  # (references, pool)
            labels = (owner == o) & positive
            per_object[o] = {
                "prompt": prompts[o] if text else None,
                "pr_auc": 100 * average_precision(sim.mean(0), labels),
                "ndcg": 100 * ndcg_from_similarity(sim, np.broadcast_to(labels, sim.shape).astype(float)),
            }
        results[kind] = {"pr_auc": mean([v["pr_auc"] for v in per_object.values()]),
                         "ndcg": mean([v["ndcg"] for v in per_object.values()]), "per_object": per_object}
    return PodsResults(objects=len(objects), pool=len(pool), granularities=results)


@dataclass
class PodsResults(BenchmarkResult):
    """PR-AUC and NDCG (percent) per prompt granularity, each with its per-object values."""

    benchmark: ClassVar[str] = "pods"
    metric: ClassVar[str] = "one-vs-all PR-AUC and retrieval NDCG, percent"
    averaging: ClassVar[str] = "per object (NDCG: mean over its reference queries), then unweighted mean over objects"
    paper: ClassVar[dict] = PAPER
    objects: int
    pool: int
    granularities: dict[str, dict]

    def pr_auc(self, granularity: str) -> float:
        return self.granularities[granularity]["pr_auc"]

    def ndcg(self, granularity: str) -> float:
        return self.granularities[granularity]["ndcg"]


def table(results: dict) -> str:
    rows = [[kind, g["pr_auc"], g["ndcg"]] for kind, g in results["granularities"].items()]
    return markdown_table(["prompt", "PR-AUC", "NDCG"], rows)
