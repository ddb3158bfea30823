"""MOSAIC: does the prompt steer where the CLS token looks? (reference §5)

Four PASCAL VOC images, each padded to a square (centred, black / background) and resized to a
quarter of the model's input, are stitched 2x2. For every class present in the mosaic the prompt is
"the <class>" (VOC's names, or a class list such as the offline set's `classes.txt`) and the ground truth is the patch-grid mask of all its pixels (every instance). Scores:
area under the precision-recall curve (average precision) of the last block's CLS->patch attention
and of the segmentation head's logits on the patch grid, per (mosaic, class) pair. Averaging: over
all pairs; per class over that class's pairs. The mosaic list is seeded and saved for reuse.
"""
from __future__ import annotations

import random

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .datasets import VOC_VOID, VocSplit
from .features import read_label_png
from .metrics import average_precision, patch_grid_mask
from .report import markdown_table, mean

PAPER = {"attention PR-AUC": {"DINOv2": 14.3, "SteerViT": 50.2}}


def make_mosaics(voc: VocSplit, num: int, seed: int) -> list[list[str]]:
    """`num` mosaics of four distinct images each, drawn at random; an image may recur across mosaics."""
    if len(voc.ids) < 4:
        raise ValueError(f"a mosaic needs 4 images, the split has {len(voc.ids)}")
    rng = random.Random(seed)
    return [rng.sample(voc.ids, 4) for _ in range(num)]


def pad_square(image: Image.Image, fill) -> Image.Image:
    side = max(image.size)
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return canvas


def compose(voc: VocSplit, ids: list[str], size: int) -> tuple[Image.Image, np.ndarray]:
    """The 2x2 mosaic (size x size RGB) and its class-index mask (order: top-left, top-right, bottom-left,
    bottom-right)."""
    tile = size // 2
    image = Image.new("RGB", (size, size))
    mask = np.zeros((size, size), dtype=np.int64)
    for n, image_id in enumerate(ids):
        picture = pad_square(voc.image(image_id).open(), (0, 0, 0)).resize((tile, tile), Image.BICUBIC)
        labels = Image.fromarray(read_label_png(voc.class_mask_path(image_id)).astype(np.uint8))
        labels = pad_square(labels, 0).resize((tile, tile), Image.NEAREST)
        y, x = (n // 2) * tile, (n % 2) * tile
        image.paste(picture, (x, y))
        mask[y:y + tile, x:x + tile] = np.asarray(labels)
    return image, mask


def present_classes(mask: np.ndarray) -> list[int]:
    return [int(c) for c in np.unique(mask) if c not in (0, VOC_VOID)]


@torch.no_grad()
def evaluate(model, voc: VocSplit, mosaics: list[list[str]], *, text: bool = True, head_pooling: str = "mean",
             remove_sinks: bool = True, min_coverage: float = 0.5, batch_size: int = 32) -> dict:
    """PR-AUC (percent) of attention and head maps for every (mosaic, class) pair."""
    size = model.image_size
    preprocessing = model.preprocessing
    names = voc.classes
    prompts = [f"the {name}" for name in names]
    embedding = model.encode_text(prompts[1:]) if text else None  # row c - 1 is class c
    grid = (size // model.patch_size, size // model.patch_size)

    pairs, pending = [], []

    def flush():
        x = torch.stack([p["x"] for p in pending])
        texts = None if embedding is None else embedding[[p["class"] - 1 for p in pending]]
        attention = model.get_attention_heatmaps(x, texts, head_pooling=head_pooling, remove_sinks=remove_sinks,
                                                 interpolate=False)
        logits = model.segmentation_logits(x, texts).reshape(len(pending), *grid)
        for p, att, head in zip(pending, attention, logits):
            pairs.append({"mosaic": p["mosaic"], "class": names[p["class"]], "patches": int(p["gt"].sum()),
                          "attention": 100 * average_precision(att, p["gt"]),
                          "head": 100 * average_precision(head, p["gt"])})
        pending.clear()

    for m, ids in enumerate(tqdm(mosaics, desc="mosaics", unit="mosaic", disable=None, leave=False)):
        image, mask = compose(voc, ids, size)
        x = preprocessing.to_tensor(image)
        for c in present_classes(mask):
            if c >= len(names):
                raise ValueError(f"mosaic {m} ({', '.join(ids)}) has label {c}, but the class list names only "
                                 f"{len(names) - 1} classes; pass --classes")
            gt = patch_grid_mask(mask == c, patch_size=model.patch_size, min_coverage=min_coverage)
            pending.append({"mosaic": m, "class": c, "x": x, "gt": gt})
            if len(pending) == batch_size:
                flush()
    if pending:
        flush()

    per_class = {}
    for name in names[1:]:
        rows = [p for p in pairs if p["class"] == name]
        if rows:
            per_class[name] = {"pairs": len(rows), "attention": mean([r["attention"] for r in rows]),
                               "head": mean([r["head"] for r in rows])}
    return {
        "benchmark": "mosaic",
        "metric": "PR-AUC (average precision) on the patch grid, percent",
        "averaging": "mean over (mosaic, class) pairs; per class over that class's pairs",
        "mosaics": len(mosaics),
        "pairs": len(pairs),
        "attention": mean([p["attention"] for p in pairs]),
        "head": mean([p["head"] for p in pairs]),
        "per_class": per_class,
        "per_pair": pairs,
        "classes": list(names[1:]),
        "paper": PAPER,
    }


def table(results: dict) -> str:
    rows = [[name, c["pairs"], c["attention"], c["head"]] for name, c in results["per_class"].items()]
    rows.append(["all", results["pairs"], results["attention"], results["head"]])
    return markdown_table(["class", "pairs", "attention PR-AUC", "head PR-AUC"], rows)
