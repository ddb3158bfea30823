"""GeneCIS "focus object": retrieve the image that shares the named object with the reference.

Each sample has a reference image, a condition (an object name), one target and distractors. The
reference is steered with "the <condition>"; with `condition="both"` (default) the target and the
distractors are steered with the same prompt, as CORE does, with "query" they use the plain trunk.
Cosine similarity ranks target + distractors; R@k = share of samples whose target is in the top k.
Averaging: over samples. How the paper conditioned SteerViT is not stated (reference §5).
"""
from __future__ import annotations

import numpy as np
import torch

from .datasets import GenecisSample
from .features import paired_global_features
from .metrics import recall_at_k
from .report import markdown_table

PAPER = {"R@1/2/3": {"SteerViT": [25.4, 39.1, 49.9], "DINOv2": [9.6, 19.5, 28.4],
                     "GeneCIS baseline": [18.7, 30.3, 37.4]}}


def prompt(condition: str) -> str:
    return f"the {condition.strip()}"


def evaluate(model, samples: list[GenecisSample], *, text: bool = True, condition: str = "both",
             ks=(1, 2, 3), batch_size: int = 32, workers: int = 0) -> dict:
    refs, prompts, rows = [], [], []
    for s in samples:
        p = prompt(s.condition) if text else None
        start = len(refs)
        for n, ref in enumerate([s.reference, s.target, *s.gallery]):
            refs.append(ref)
            prompts.append(p if n == 0 or condition == "both" else None)
        rows.append((start, len(refs)))
    if all(p is None for p in prompts):
        feats = paired_global_features(model, refs, None, batch_size=batch_size, workers=workers, desc="GeneCIS")
    else:
        plain = [i for i, p in enumerate(prompts) if p is None]
        steered = [i for i, p in enumerate(prompts) if p is not None]
        feats = torch.empty(len(refs), model.feature_dim)
        feats[steered] = paired_global_features(model, [refs[i] for i in steered], [prompts[i] for i in steered],
                                                batch_size=batch_size, workers=workers, desc="GeneCIS steered")
        if plain:
            feats[plain] = paired_global_features(model, [refs[i] for i in plain], None, batch_size=batch_size,
                                                  workers=workers, desc="GeneCIS plain")
    feats = feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    width = max(end - start - 1 for start, end in rows)
    sim = np.full((len(samples), width), -np.inf)
    for i, (start, end) in enumerate(rows):
        sim[i, :end - start - 1] = (feats[start + 1:end] @ feats[start]).numpy()
    recall = recall_at_k(sim, np.zeros(len(samples), dtype=int), ks)  # the target is column 0
    return {
        "benchmark": "genecis",
        "metric": "R@k, percent",
        "averaging": "mean over samples",
        "samples": len(samples),
        "condition": condition if text else None,
        **{f"R@{k}": 100 * v for k, v in recall.items()},
        "paper": PAPER,
    }


def table(results: dict) -> str:
    keys = [k for k in results if k.startswith("R@")]
    return markdown_table(["samples", *keys], [[results["samples"], *(results[k] for k in keys)]])
