"""Zero-shot anomaly segmentation on MVTec AD and VisA with an ensemble of ten prompts (reference §5).

Every test image (resized, not cropped, to the model's square input) is steered with each of ten
prompts naming its object; the segmentation head's patch logits are normalised per prompt, averaged
over the prompts and upsampled bilinearly to the input size. Masks are resized (nearest) to the same
size. Metrics over all test images of a category (WinCLIP protocol): pixel AUROC, PRO integrated to
FPR 0.3 and normalised, and pixel F1-max; and image AUROC (the MVTec convention), see `IMAGE_SCORE`.
Averaging: per category, then unweighted mean over categories.

Map normalisation (`--normalization`), default softmax:
- softmax: the published `get_heatmaps` map (unit mass per image). Each image spreads the same mass,
  so a normal image still shows a "peak"; what ranks high across images are peaked maps.
- sigmoid: the head's logits squashed per patch; keeps each image's absolute level, but the head was
  trained with a softmax over patches (shift-invariant), so levels are not calibrated across images.
- logits: raw logits averaged over prompts; same ranking as sigmoid for one prompt, but a confident
  prompt weighs more in the average.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from .datasets import AnomalySample, readable
from .features import ImageRef, batches, read_label_png, resize_mask, square_transform
from .metrics import auroc, f1_max, pro_score
from .report import BenchmarkResult, markdown_table, mean

# The published style is the first prompt; the other nine are ours.
PROMPTS = (
    "the anomaly in the {}.",
    "the defect on the {}.",
    "the damaged part of the {}.",
    "the scratch or crack on the {}.",
    "the broken area of the {}.",
    "the flaw in the {}.",
    "the contamination on the {}.",
    "the missing or deformed part of the {}.",
    "the unusual region of the {}.",
    "the abnormal spot on the {}.",
)
OBJECT_NAMES = {"metal_nut": "metal nut", "chewinggum": "chewing gum", "pipe_fryum": "pipe fryum",
                "pcb1": "printed circuit board", "pcb2": "printed circuit board", "pcb3": "printed circuit board",
                "pcb4": "printed circuit board"}
NORMALIZATIONS = ("softmax", "sigmoid", "logits")
METRICS = ("pixel_auroc", "pro", "f1_max", "image_auroc")
IMAGE_SCORE = ("image score = maximum of the image's anomaly map, the map the pixel metrics score "
               "(prompt-averaged, bilinearly upsampled, no further smoothing); label = the image has a defect pixel")
PAPER = {
    "MVTec AD pixel-AUROC / PRO / F1max": {"SteerViT": [87.8, 82.1, 35.6], "FADE": [89.6, 84.5, 39.8],
                                            "WinCLIP": [85.1, 64.6, 31.7], "SAM3": [79.9, 54.5, 24.1]},
    "VisA pixel-AUROC / PRO / F1max": {"SteerViT": [92.1, 82.0, 18.3], "FADE": [91.5, 79.3, 16.7]},
}


def object_name(category: str) -> str:
    return OBJECT_NAMES.get(category, readable(category))


def prompts_for(category: str) -> list[str]:
    return [p.format(object_name(category)) for p in PROMPTS]


def normalise(logits: torch.Tensor, how: str) -> torch.Tensor:
    """(..., patches) head logits -> scores, per prompt, before averaging."""
    if how == "softmax":
        return logits.softmax(-1)
    if how == "sigmoid":
        return logits.sigmoid()
    if how == "logits":
        return logits
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {how!r}")


@torch.no_grad()
def anomaly_maps(model, samples: list[AnomalySample], prompts: list[str] | None, how: str = "softmax", *,
                 batch_size: int = 32, workers: int = 0, desc: str = "") -> torch.Tensor:
    """(N, S, S) maps: per-prompt normalised head scores averaged over prompts, upsampled bilinearly."""
    size = model.image_size
    grid = (size // model.patch_size, size // model.patch_size)
    if model.gate_factor == 0.0:
        prompts = None  # every prompt gives the plain map exactly; averaging copies would only add rounding
    embedding = None if prompts is None else model.encode_text(prompts)
    maps = []
    for x in batches([ImageRef.file(s.image, upright=False) for s in samples], square_transform(model), batch_size, workers, desc):
        logits = model.segmentation_logits(x, embedding, cross=embedding is not None).float()
        scores = normalise(logits, how)
        if embedding is not None:
            scores = scores.mean(1)  # average over prompts
        grid_maps = scores.view(-1, 1, *grid)
        maps.append(F.interpolate(grid_maps, size=(size, size), mode="bilinear", align_corners=False)[:, 0].cpu())
    return torch.cat(maps)


def ground_truth(samples: list[AnomalySample], size: int) -> np.ndarray:
    """(N, S, S) boolean masks; normal images are all False."""
    return np.stack([np.zeros((size, size), bool) if s.mask is None
                     else resize_mask(read_label_png(s.mask), size) > 0 for s in samples])


def image_scores(maps) -> np.ndarray:
    """(N,) image-level scores: the maximum of each (N, S, S) map (`IMAGE_SCORE`), the MVTec convention.

    The very map the pixel metrics score, whose only smoothing is the bilinear upsampling of the
    patch grid; the maximum lets one confident spot flag an image, as defects are often small."""
    return np.asarray(maps).reshape(len(maps), -1).max(1)


def score(maps, masks, max_fpr: float = 0.3) -> dict[str, float]:
    """Pixel AUROC, PRO, F1-max and image AUROC in percent (None where undefined, e.g. no anomalous pixel)."""
    anomalous = np.asarray(masks).reshape(len(masks), -1).any(1)
    values = {"pixel_auroc": auroc(maps, masks), "pro": pro_score(maps, masks, max_fpr), "f1_max": f1_max(maps, masks),
              "image_auroc": auroc(image_scores(maps), anomalous)}
    return {k: None if np.isnan(v) else 100 * v for k, v in values.items()}


@dataclass
class AnomalyResults(BenchmarkResult):
    """Pixel AUROC, PRO, pixel F1-max and image AUROC (percent), per category and their mean."""

    benchmark: ClassVar[str] = "anomaly"
    averaging: ClassVar[str] = ("per category over all its test pixels (image AUROC: over its test images); "
                                "mean = unweighted mean over categories")
    paper: ClassVar[dict] = PAPER
    normalization: str
    max_fpr: float
    image_score: str  # the image-level scoring rule, in words
    prompts: list[str] | None  # None: the plain trunk (--no-text)
    mean: dict[str, float | None]
    per_category: dict[str, dict]

    @property
    def metric(self) -> str:  # type: ignore[override]  # names this run's PRO limit
        return f"pixel AUROC, PRO (to FPR {self.max_fpr}, normalised), pixel F1-max, image AUROC; percent"


def evaluate(model, categories: dict[str, list[AnomalySample]], *, text: bool = True, normalization: str = "softmax",
             max_fpr: float = 0.3, batch_size: int = 32, workers: int = 0) -> AnomalyResults:
    per_category = {}
    for category, samples in categories.items():
        prompts = prompts_for(category) if text else None
        maps = anomaly_maps(model, samples, prompts, normalization, batch_size=batch_size, workers=workers,
                            desc=category)
        entry = score(maps.numpy(), ground_truth(samples, model.image_size), max_fpr)
        entry.update(images=len(samples), anomalous=sum(s.mask is not None for s in samples),
                     object=object_name(category))
        per_category[category] = entry
    return AnomalyResults(
        normalization=normalization, max_fpr=max_fpr, image_score=IMAGE_SCORE,
        prompts=list(PROMPTS) if text else None,
        mean={m: mean([c[m] for c in per_category.values()]) for m in METRICS}, per_category=per_category)


def table(results: dict) -> str:
    rows = [[cat, c["images"], *(c[m] for m in METRICS)] for cat, c in results["per_category"].items()]
    rows.append(["mean", "", *(results["mean"][m] for m in METRICS)])
    return markdown_table(["category", "images", "pixel AUROC", "PRO", "F1-max", "image AUROC"], rows)
