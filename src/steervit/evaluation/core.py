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

import numpy as np

from .datasets import CoreRecord
from .features import FeatureCache, global_features
from .metrics import core_precision_at_k
from .report import markdown_table, weighted_mean

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
             batch_size: int = 32, workers: int = 0, cache: FeatureCache | None = None) -> dict:
    """CORE P@k in percent: overall, per scene, per object and (optionally) with wrong prompts."""
    ks = [int(k) for k in ks]
    by_scene: dict[str, list[CoreRecord]] = defaultdict(list)
    for r in records:
        by_scene[r.scene].append(r)
    check_ks(by_scene, ks)
    per_scene, per_object, wrong_scene = {}, {}, {}
    for scene, rows in sorted(by_scene.items()):
        prompts = scene_prompts(rows)
        objects = list(prompts)
        labels = np.array([r.object for r in rows])
        ids = np.array([r.image_id for r in rows])
        feats = global_features(model, [r.image for r in rows], list(prompts.values()) if text else None,
                                batch_size=batch_size, workers=workers, cache=cache, desc=f"CORE {scene}")

        def under(j):  # features of the scene under object j's prompt
            return feats[:, j] if text else feats

        scores, wrong, counts = [], [], []
        for j, obj in enumerate(objects):
            queries = labels == obj
            result = core_precision_at_k(under(j).numpy(), labels, ids, ks, queries)
            per_object[f"{scene}/{obj}"] = {"prompt": prompts[obj], "queries": int(queries.sum()),
                                            **{f"P@{k}": 100 * v for k, v in result.items()}}
            scores.append(result)
            counts.append(int(queries.sum()))
            if wrong_prompt and len(objects) > 1:
                others = [core_precision_at_k(under(i).numpy(), labels, ids, ks, queries)
                          for i in range(len(objects)) if i != j]
                wrong.append({k: float(np.mean([o[k] for o in others])) for k in ks})
        per_scene[scene] = {"queries": sum(counts), "objects": len(objects),
                            **{f"P@{k}": 100 * weighted_mean([s[k] for s in scores], counts) for k in ks}}
        if wrong:
            wrong_scene[scene] = {f"P@{k}": 100 * weighted_mean([w[k] for w in wrong], counts) for k in ks}

    weights = [s["queries"] for s in per_scene.values()]
    results = {
        "benchmark": "core",
        "metric": "P@k, percent",
        "averaging": "overall = mean over all queries; per scene = mean over its queries; "
                     "mean_over_scenes = unweighted mean of the scenes",
        "overall": {f"P@{k}": weighted_mean([s[f"P@{k}"] for s in per_scene.values()], weights) for k in ks},
        "mean_over_scenes": {f"P@{k}": float(np.mean([s[f"P@{k}"] for s in per_scene.values()])) for k in ks},
        "queries": sum(weights),
        "per_scene": per_scene,
        "per_object": per_object,
        "paper": PAPER,
    }
    if wrong_scene:
        results["wrong_prompt"] = {
            "overall": {f"P@{k}": weighted_mean([w[f"P@{k}"] for w in wrong_scene.values()],
                                                [per_scene[s]["queries"] for s in wrong_scene]) for k in ks},
            "per_scene": wrong_scene,
        }
    return results


def table(results: dict) -> str:
    ks = list(results["overall"])
    wrong = results.get("wrong_prompt", {}).get("per_scene", {})
    headers = ["scene", "queries", *ks] + (["wrong-prompt P@1"] if wrong else [])
    rows = [[scene, s["queries"], *(s[k] for k in ks)] + ([wrong.get(scene, {}).get("P@1")] if wrong else [])
            for scene, s in results["per_scene"].items()]
    rows.append(["all", results["queries"], *(results["overall"][k] for k in ks)]
                + ([results["wrong_prompt"]["overall"].get("P@1")] if wrong else []))
    return markdown_table(headers, rows)


def command(args) -> int:
    from ..cli import load_model
    from .datasets import read_core
    from .report import fmt, setup, write_results

    records = read_core(args.data, args.split)
    model = load_model(args)
    results = evaluate(model, records, text=not args.no_text, ks=args.ks, wrong_prompt=args.wrong_prompt,
                       batch_size=args.batch_size, workers=args.workers, cache=FeatureCache(args.cache))
    results["setup"] = setup(args, model, split=args.split, ks=args.ks)
    path = write_results(args.out, results, table(results))
    print(path)
    print("CORE " + ", ".join(f"{k} {fmt(v)}" for k, v in results["overall"].items()))
    return 0
