"""Hummingbird-style ADE20K evaluation: training-free segmentation by patch nearest neighbours.

Each class c is its own binary task, steered with "the <c>". A memory bank holds the patch features of
`bank_images` training images that contain c, each labelled with the share of the patch covered by c.
A validation patch takes the labels of its k most similar bank patches (cosine): soft vote = their
softmax(similarity / T)-weighted mean, majority = the share of neighbours whose label is >= 0.5. The
patch-grid scores are upsampled bilinearly to the input size and thresholded at 0.5.
Scored per class on `val_images` validation images containing c plus as many without it (so false
positives count); ADE's "other" pixels (value 0) are ignored. IoU is accumulated over those images
per class; mIoU = unweighted mean over classes. Images and masks are resized (not cropped) to the
model's square input. Defaults: 10 bank images, 20 + 20 validation images, k = 10, soft vote, T = 0.02.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .datasets import ADE20K_CLASSES
from .features import ImageRef, dense_features, read_label_png, resize_mask, square_transform
from .metrics import per_class_iou
from .report import BenchmarkResult, markdown_table, mean

PAPER = {"ADE20k mIoU": {"DINOv2": 53.7, "SteerViT": 55.4}}


def parse_classes(names: list[str] | None) -> list[int]:
    """Class names or indices (1..150) -> sorted indices; None = all."""
    if not names:
        return list(range(1, len(ADE20K_CLASSES) + 1))
    out = []
    for name in names:
        if name.isdigit() and 1 <= int(name) <= len(ADE20K_CLASSES):
            out.append(int(name))
        elif name in ADE20K_CLASSES:
            out.append(ADE20K_CLASSES.index(name) + 1)
        else:
            raise ValueError(f"unknown ADE20K class {name!r}")
    return sorted(set(out))


def select_images(pairs: list[tuple[Path, Path]], classes: list[int], per_class: int, seed: int,
                  negatives: bool) -> dict[int, tuple[list[int], list[int]]]:
    """Class -> (indices of up to `per_class` images containing it, as many without it if `negatives`).

    Annotations are read in a seeded random order until every class has enough, so rare classes may
    read most of the split but common ones stop early.
    """
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    positive: dict[int, list[int]] = {c: [] for c in classes}
    negative: dict[int, list[int]] = {c: [] for c in classes}
    for i in tqdm(order, desc="reading annotations", unit="img", disable=None, leave=False):
        present = set(np.unique(read_label_png(pairs[i][1])).tolist())
        for c in classes:
            bucket = positive[c] if c in present else negative[c]
            if len(bucket) < per_class:
                bucket.append(i)
        if all(len(positive[c]) >= per_class and (not negatives or len(negative[c]) >= per_class)
               for c in classes):
            break
    return {c: (positive[c], negative[c][:len(positive[c])] if negatives else []) for c in classes}


def knn_scores(query: torch.Tensor, bank: torch.Tensor, labels: torch.Tensor, k: int, vote: str,
               temperature: float, chunk: int = 4096) -> torch.Tensor:
    """Per query patch, the label estimate from its k nearest bank patches (cosine similarity)."""
    bank = F.normalize(bank, dim=-1)
    k = min(k, bank.shape[0])
    out = []
    for part in F.normalize(query, dim=-1).split(chunk):
        sims, idx = (part @ bank.T).topk(k, dim=1)
        neighbours = labels[idx]
        if vote == "soft":
            out.append((torch.softmax(sims / temperature, dim=1) * neighbours).sum(1))
        else:
            out.append((neighbours >= 0.5).float().mean(1))
    return torch.cat(out)


def patch_labels(masks: list[np.ndarray], cls: int, patch: int) -> torch.Tensor:
    """Share of each patch covered by class `cls`: (n, patches)."""
    binary = torch.from_numpy(np.stack([m == cls for m in masks]).astype(np.float32))[:, None]
    return F.avg_pool2d(binary, patch).flatten(1)


@torch.no_grad()
def evaluate(model, train: list[tuple[Path, Path]], val: list[tuple[Path, Path]], *, text: bool = True,
             classes: list[int] | None = None, bank_images: int = 10, val_images: int = 20, k: int = 10,
             vote: str = "soft", temperature: float = 0.02, seed: int = 0, batch_size: int = 32,
             workers: int = 0) -> "HummingbirdResults":
    """Per-class IoU (percent) and mIoU."""
    classes = classes or parse_classes(None)
    size, patch = model.image_size, model.patch_size
    grid = (size // patch, size // patch)
    transform = square_transform(model)
    bank_sel = select_images(train, classes, bank_images, seed, negatives=False)
    val_sel = select_images(val, classes, val_images, seed, negatives=True)
    per_class = {}
    for c in tqdm(classes, desc="ADE20K classes", unit="class", disable=None):
        name = ADE20K_CLASSES[c - 1]
        if not bank_sel[c][0] or not val_sel[c][0]:
            continue  # absent from the train or the validation images read
        prompt = f"the {name}" if text else None

        def encode(split, indices):
            refs = [ImageRef.file(split[i][0], upright=False) for i in indices]  # labels are as stored
            feats = dense_features(model, refs, prompt, transform, batch_size=batch_size, workers=workers)
            return feats, [resize_mask(read_label_png(split[i][1]), size) for i in indices]

        bank, bank_masks = encode(train, bank_sel[c][0])
        labels = patch_labels(bank_masks, c, patch).flatten().to(model.device)
        bank = bank.flatten(0, 1).to(model.device)
        query, masks = encode(val, val_sel[c][0] + val_sel[c][1])
        scores = knn_scores(query.flatten(0, 1).to(model.device), bank, labels, k, vote, temperature)
        maps = F.interpolate(scores.view(-1, 1, *grid).float().cpu(), size=(size, size), mode="bilinear",
                             align_corners=False)[:, 0]
        preds = [(m >= 0.5).numpy() & (gt != 0) for m, gt in zip(maps, masks)]
        iou = per_class_iou(preds, [gt == c for gt in masks]).get(0)
        if iou is not None:
            per_class[name] = {"iou": 100 * iou, "bank_images": len(bank_sel[c][0]),
                               "val_images": len(val_sel[c][0]), "val_negatives": len(val_sel[c][1])}
    return HummingbirdResults(
        miou=mean([v["iou"] for v in per_class.values()]), classes=len(per_class), per_class=per_class,
        protocol={"bank_images": bank_images, "val_images": val_images, "k": k, "vote": vote,
                  "temperature": temperature, "seed": seed, "size": size})


@dataclass
class HummingbirdResults(BenchmarkResult):
    """Per-class IoU (percent) of the nearest-neighbour segmentation and their unweighted mean."""

    benchmark: ClassVar[str] = "hummingbird"
    metric: ClassVar[str] = "IoU of each class vs the rest, percent"
    averaging: ClassVar[str] = "IoU accumulated over a class's validation images; mIoU = unweighted mean over classes"
    paper: ClassVar[dict] = PAPER
    miou: float | None
    classes: int
    per_class: dict[str, dict]
    protocol: dict


def table(results: dict) -> str:
    rows = [[name, v["iou"]] for name, v in results["per_class"].items()]
    rows.append(["mIoU", results["miou"]])
    return markdown_table(["class", "IoU"], rows)
