"""CORE: conditional retrieval of the inpainted object among images of the same scene (reference §5).

For every object of a scene, all images of that scene are encoded with that object's prompt; each
image of the object is a query, the gallery is every other image of the scene minus the variants of
the query's base image (same `image_id`). P@k = share of the top k showing the same object.
Averaging: over queries (every image is a query exactly once); per scene over that scene's queries;
`mean_over_scenes` is the unweighted mean of the per-scene values (equal when scenes are balanced).
Wrong-prompt control: the same queries, ranked with features made under each *other* object's prompt
of the scene, averaged over those prompts (costs nothing extra: those features exist already).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .datasets import CoreRecord
from .features import FeatureCache, global_features
from .metrics import core_precision_at_k
from .report import BenchmarkResult, markdown_table, weighted_mean

PAPER = {
    "P@1": {"SteerViT": 96.0, "SteerViT (wrong prompt)": 47.7, "DINOv2": 43.7, "MAE": 21.8, "SigLIP": 38.3,
            "CLIP": 44.2, "FLAIR": 81.3, "SAM3": 93.3, "GroundingDINO": 88.5, "chance": 20.0},
    "SteerViT per scene P@1": {"bathroom": 99.2, "kitchen": 98.6, "living room": 96.6, "park": 93.0,
                               "suburb": 97.7, "street": 90.8},
}


def scene_prompts(records: list[CoreRecord]) -> dict[str, str]:
    """Object -> its prompt (the most frequent one, should the data hold several)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        counts[r.object][r.prompt] += 1
    return {obj: c.most_common(1)[0][0] for obj, c in sorted(counts.items())}


def check_ks(by_scene: dict[str, list[CoreRecord]], ks: list[int]) -> None:
    """Fail before any encoding when a k exceeds the smallest gallery (scene minus the query's base image)."""
    for scene, rows in by_scene.items():
        per_base = Counter(r.image_id for r in rows)
        smallest = len(rows) - max(per_base.values())
        if max(ks) > smallest:
            raise ValueError(f"P@{max(ks)} needs {max(ks)} gallery images, scene {scene!r} leaves only {smallest} "
                             "after excluding the query's base image; choose smaller --ks")


def evaluate(model, records: list[CoreRecord], *, text: bool = True, ks=(1, 5, 10), wrong_prompt: bool = False,
             batch_size: int = 32, workers: int = 0, cache: FeatureCache | None = None) -> "CoreResults":
    """CORE P@k in percent: overall, per scene, per object and (optionally) with wrong prompts."""
    ks = [int(k) for k in ks]
    by_scene: dict[str, list[CoreRecord]] = defaultdict(list)
    for r in records:
        by_scene[r.scene].append(r)
    check_ks(by_scene, ks)
    per_scene, per_object, wrong_scene = {}, {}, {}
    for scene, rows in sorted(by_scene.items()):
        objects, per_scene[scene], wrong = score_scene(model, scene, rows, ks, text=text, wrong_prompt=wrong_prompt,
                                                       batch_size=batch_size, workers=workers, cache=cache)
        per_object.update(objects)
        if wrong is not None:
            wrong_scene[scene] = wrong
    return aggregate(per_scene, per_object, wrong_scene, ks)


def score_scene(model, scene: str, rows: list[CoreRecord], ks: list[int], *, text: bool, wrong_prompt: bool,
                batch_size: int, workers: int, cache: FeatureCache | None) -> tuple[dict, dict, dict | None]:
    """One scene: its per-object rows ("scene/object" -> P@k), its own row, and its wrong-prompt row
    (None unless asked for and the scene has more than one object)."""
    prompts = scene_prompts(rows)
    objects = list(prompts)
    feats = object_features(model, scene, rows, prompts, text=text, batch_size=batch_size, workers=workers,
                            cache=cache)
    labels = np.array([r.object for r in rows])
    ids = np.array([r.image_id for r in rows])
    scores = rank_scene(feats, labels, ids, objects, ks)
    counts = [int((labels == obj).sum()) for obj in objects]
    per_object = {f"{scene}/{obj}": {"prompt": prompts[obj], "queries": count, **_percent(score)}
                  for obj, score, count in zip(objects, scores, counts)}
    summary = {"queries": sum(counts), "objects": len(objects), **_percent(_weighted(scores, counts, ks))}
    wrong = None
    if wrong_prompt and len(objects) > 1:
        wrong = _percent(_weighted(wrong_prompt_scene(feats, labels, ids, objects, ks), counts, ks))
    return per_object, summary, wrong


def object_features(model, scene: str, rows: list[CoreRecord], prompts: dict[str, str], *, text: bool,
                    batch_size: int, workers: int, cache: FeatureCache | None) -> list[np.ndarray]:
    """The scene's (N, D) features under each object's prompt, in `prompts` order (without text: the
    same plain features for every object)."""
    feats = global_features(model, [r.image for r in rows], list(prompts.values()) if text else None,
                            batch_size=batch_size, workers=workers, cache=cache, desc=f"CORE {scene}")
    if not text:
        return [feats.numpy()] * len(prompts)
    return [feats[:, j].numpy() for j in range(len(prompts))]


def rank_scene(feats: list[np.ndarray], labels: np.ndarray, ids: np.ndarray, objects: list[str],
               ks: list[int]) -> list[dict[int, float]]:
    """{k: P@k} of each object's images as queries, ranked with features under that object's prompt."""
    return [core_precision_at_k(feats[j], labels, ids, ks, labels == obj) for j, obj in enumerate(objects)]


def wrong_prompt_scene(feats: list[np.ndarray], labels: np.ndarray, ids: np.ndarray, objects: list[str],
                       ks: list[int]) -> list[dict[int, float]]:
    """The wrong-prompt control: each object's queries ranked under every other object's prompt, as
    {k: P@k} averaged over those prompts."""
    out = []
    for j, obj in enumerate(objects):
        queries = labels == obj
        others = [core_precision_at_k(feats[i], labels, ids, ks, queries) for i in range(len(objects)) if i != j]
        out.append({k: float(np.mean([o[k] for o in others])) for k in ks})
    return out


@dataclass
class CoreResults(BenchmarkResult):
    """CORE P@k in percent, keyed "P@k": overall (query-weighted), per scene, per object."""

    benchmark: ClassVar[str] = "core"
    metric: ClassVar[str] = "P@k, percent"
    averaging: ClassVar[str] = ("overall = mean over all queries; per scene = mean over its queries; "
                                "mean_over_scenes = unweighted mean of the scenes")
    paper: ClassVar[dict] = PAPER
    overall: dict[str, float]
    mean_over_scenes: dict[str, float]
    queries: int
    per_scene: dict[str, dict]
    per_object: dict[str, dict]
    wrong_prompt: dict | None = None  # {"overall", "per_scene"} of the wrong-prompt control

    def precision(self, k: int = 1) -> float:
        return self.overall[f"P@{k}"]


def aggregate(per_scene: dict, per_object: dict, wrong_scene: dict, ks: list[int]) -> CoreResults:
    """Overall (query-weighted) and unweighted means of the per-scene values."""
    weights = [s["queries"] for s in per_scene.values()]
    keys = [f"P@{k}" for k in ks]
    wrong = None
    if wrong_scene:
        wrong = {"overall": _weighted(list(wrong_scene.values()), [per_scene[s]["queries"] for s in wrong_scene], keys),
                 "per_scene": wrong_scene}
    return CoreResults(
        overall=_weighted(list(per_scene.values()), weights, keys),
        mean_over_scenes={key: float(np.mean([s[key] for s in per_scene.values()])) for key in keys},
        queries=sum(weights), per_scene=per_scene, per_object=per_object, wrong_prompt=wrong)


def _weighted(rows: list[dict], weights: list[int], keys: list) -> dict:
    """Per key, the `weights`-weighted mean of the rows' values."""
    return {key: weighted_mean([r[key] for r in rows], weights) for key in keys}


def _percent(scores: dict[int, float]) -> dict[str, float]:
    return {f"P@{k}": 100 * v for k, v in scores.items()}


def table(results: dict) -> str:
    ks = list(results["overall"])
    wrong = results.get("wrong_prompt", {}).get("per_scene", {})
    headers = ["scene", "queries", *ks] + (["wrong-prompt P@1"] if wrong else [])
    rows = [[scene, s["queries"], *(s[k] for k in ks)] + ([wrong.get(scene, {}).get("P@1")] if wrong else [])
            for scene, s in results["per_scene"].items()]
    rows.append(["all", results["queries"], *(results["overall"][k] for k in ks)]
                + ([results["wrong_prompt"]["overall"].get("P@1")] if wrong else []))
    return markdown_table(headers, rows)
