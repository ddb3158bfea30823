"""Analyses of what steering changes: layer-wise divergence and 2-D maps of global features.

Divergence (reference §5, ablations): `SteerViT.forward_intermediates` gives the tokens after every
block, once with the prompt and once without; after every block (and for the model's output),
1 - cosine between the steered and the plain token, for the CLS token and averaged over patch tokens,
then averaged over images. Blocks before the first cross-attention layer are 0 (up to float64
rounding); with late fusion every block is 0 and only the output differs. Values are fractions, as
in the paper (0.27 at block 9, 0.39 at block 10 for DINOv2).

Embedding map: global features of an image set, plain and under each prompt, each projected to 2-D
on its own (UMAP when installed, else PCA of the L2-normalised features), one PNG per panel, coloured
by the images' first-level folder. Each panel also reports leave-one-out 1-NN label accuracy in the
full feature space (percent), a number for how well the prompt separates the folders.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from .features import FeatureCache, ImageRef, batches, global_features

PAPER = {"DINOv2 SteerViT divergence": {"block 9": 0.27, "block 10": 0.39}}


# ------------------------------------------------------------------------------------ divergence
@torch.no_grad()
def block_outputs(model, images: torch.Tensor, text) -> list[torch.Tensor]:
    """Tokens after every trunk block, then the model's output (after late fusion, if any, and the
    final norm), from one `forward_intermediates` pass: cross-attention runs exactly where `forward`
    runs it. `text` is a TextEmbedding with one prompt per image, or None for the plain trunk."""
    final, states = model.forward_intermediates(images, text, return_final=True)
    return [*states, final]


def one_minus_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per token, in float64 so that identical tokens give 0 up to ~1e-16."""
    return 1.0 - torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)


@torch.no_grad()
def divergence(model, refs: list[ImageRef], prompts: list[str] | None, *, batch_size: int = 32,
               workers: int = 0) -> dict:
    """Per block (and after the final norm): mean over images of 1 - cosine, CLS and patch tokens."""
    depth = len(model.trunk.blocks)
    sums = {"cls": torch.zeros(depth + 1, dtype=torch.float64), "patches": torch.zeros(depth + 1, dtype=torch.float64)}
    start = 0
    for x in batches(refs, model.get_transforms(), batch_size, workers, "divergence"):
        text = None if prompts is None else model.encode_text(prompts[start:start + x.shape[0]])
        start += x.shape[0]
        plain = block_outputs(model, x, None)
        steered = plain if text is None else block_outputs(model, x, text)
        for i, (s, p) in enumerate(zip(steered, plain)):
            d = one_minus_cosine(s, p)  # (B, tokens)
            sums["cls"][i] += d[:, 0].sum().item()
            sums["patches"][i] += d[:, model.num_prefix_tokens:].mean(1).sum().item()
    n = len(refs)
    return {
        "benchmark": "divergence",
        "metric": "1 - cosine(steered, plain) per block, mean over images (fraction, not percent)",
        "images": n,
        "blocks": list(range(depth)),
        "cross_attn_blocks": sorted(int(i) for i in model.cross_attn_layers),
        "cls": (sums["cls"][:depth] / n).tolist(),
        "patches": (sums["patches"][:depth] / n).tolist(),
        "final_norm": {"cls": float(sums["cls"][depth] / n), "patches": float(sums["patches"][depth] / n)},
        "paper": PAPER,
    }


def divergence_inputs(root: Path, *, prompt: str | None = None, max_images: int = 200, seed: int = 0,
                      text: bool = True) -> tuple[list[ImageRef], list[str] | None]:
    """Images and one prompt each: COCO with a random present object (or `prompt`), or a folder with
    `prompt`. Prompts are None for the plain-trunk baseline (`text=False`)."""
    from .datasets import read_coco_objects, read_labelled_images, sample

    root = Path(root)
    if (root / "annotations").is_dir():
        items = sample(read_coco_objects(root), max_images, seed)
        rng = random.Random(seed)
        refs = [ref for ref, _ in items]
        prompts = [prompt or f"the {rng.choice(names)}" for _, names in items]
    else:
        refs = sample(read_labelled_images(root).refs, max_images, seed)
        if not prompt and text:
            raise ValueError("an image folder needs --prompt (COCO data picks a present object per image)")
        prompts = [prompt or ""] * len(refs)
    return refs, prompts if text else None


# ------------------------------------------------------------------------------------ embedding map
def project(features: torch.Tensor, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """(N, D) -> (N, 2) with UMAP (when installed and asked or "auto") or PCA; returns the method used."""
    x = torch.nn.functional.normalize(features.double(), dim=-1).numpy()
    if method in ("auto", "umap"):
        try:
            import umap
        except ImportError:
            if method == "umap":
                raise ValueError("--method umap needs the umap-learn package") from None
        else:
            reducer = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(x) - 1))
            return reducer.fit_transform(x), "umap"
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    if coords.shape[1] < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    return coords, "pca"


def nn_accuracy(features: torch.Tensor, labels: list[int]) -> float | None:
    """Leave-one-out 1-nearest-neighbour label accuracy (cosine), percent; None with one class."""
    if len(set(labels)) < 2:
        return None
    f = torch.nn.functional.normalize(features.double(), dim=-1)
    sim = f @ f.T
    sim.fill_diagonal_(-np.inf)
    y = torch.tensor(labels)
    return 100.0 * float((y[sim.argmax(1)] == y).double().mean())


def embedding_map(model, refs: list[ImageRef], labels: list[int], prompts: list[str], *, text: bool = True,
                  method: str = "auto", seed: int = 0, batch_size: int = 32, workers: int = 0,
                  cache: FeatureCache | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """Panels "plain" + one per prompt: 2-D coordinates and 1-NN accuracy; coordinates returned separately."""
    cache = cache if cache is not None else FeatureCache()
    plain = global_features(model, refs, None, batch_size=batch_size, workers=workers, cache=cache, desc="plain")
    steered = global_features(model, refs, prompts, batch_size=batch_size, workers=workers, cache=cache,
                              desc="prompts") if text and prompts else None
    panels, coords = {}, {}
    for j, name in enumerate(["plain", *prompts]):
        feats = plain if j == 0 or steered is None else steered[:, j - 1]
        coords[name], used = project(feats, method, seed)
        panels[name] = {"method": used, "nn_accuracy": nn_accuracy(feats, labels)}
    return panels, coords
