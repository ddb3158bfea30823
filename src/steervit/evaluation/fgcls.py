"""FG-CLS: a linear probe on frozen global features, to check steering keeps the representation good.

Per dataset, train and test images are encoded with one generic prompt ("the dog", "the car", "the
bird"); a linear layer is trained with Adam and cross-entropy on the train features (300 epochs, lr
1e-3, batch 128, no weight decay, raw features) and scored by top-1 accuracy on the test split.
Averaging: the mean is the unweighted mean over datasets. Waterbirds also reports worst-group accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from .datasets import LabelledImages, read_image_folder, read_waterbirds
from .features import FeatureCache, global_features
from .report import BenchmarkResult, markdown_table, mean

# "products": the offline OOD suite's probe (`steervit data build-ood` writes OUT/probe/products), real
# Fashion-MNIST product photos on unseen backgrounds, with one generic prompt as the paper's "the dog".
PROMPTS = {"imagewoof": "the dog", "stanford_cars": "the car", "waterbirds": "the bird", "products": "the product"}
FOLDER_NAMES = {"imagewoof": ("imagewoof", "imagewoof2"), "stanford_cars": ("stanford_cars", "stanfordcars",
                "stanford-cars", "cars"), "waterbirds": ("waterbirds", "waterbird_complete95_forest2water2"),
                "products": ("products",)}
PAPER = {"mean accuracy": {"DINOv2": 89.0, "SteerViT": 87.7, "late fusion": 91.8}}


def find_datasets(root: str | Path | None, explicit: dict[str, str | None]) -> dict[str, Path]:
    """Dataset name -> folder: explicit options first, else a known sub-folder name of `root`."""
    found = {name: Path(path) for name, path in explicit.items() if path}
    if root is not None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"FG-CLS data folder not found: {root}")
        for name, aliases in FOLDER_NAMES.items():
            for alias in aliases:
                if name not in found and (root / alias).is_dir():
                    found[name] = root / alias
    if not found:
        raise ValueError("no FG-CLS dataset found: give --data with imagewoof/, stanford_cars/, waterbirds/ "
                         "or products/ (an OOD build's probe/) inside, or --imagewoof / --stanford-cars / --waterbirds")
    return {name: found[name] for name in PROMPTS if name in found}


def read_splits(name: str, root: Path) -> tuple[LabelledImages, LabelledImages]:
    """(train, test): image folders use train/ and val/ (or test/); Waterbirds its split 0 and 2."""
    if name == "waterbirds":
        return read_waterbirds(root, "train"), read_waterbirds(root, "test")
    test = "val" if (root / "val").is_dir() else "test"
    return read_image_folder(root, "train"), read_image_folder(root, test)


def train_probe(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, epochs: int = 300, lr: float = 1e-3,
                batch_size: int = 128, seed: int = 0, device="cpu") -> nn.Linear:
    """A linear classifier trained with Adam + cross-entropy on fixed features (shuffled mini-batches)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    probe = nn.Linear(x.shape[1], num_classes).to(device)
    optimizer = torch.optim.Adam(probe.parameters(), lr=lr)
    x, y = x.to(device), y.to(device)
    with torch.enable_grad():
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=generator).split(batch_size):
                loss = nn.functional.cross_entropy(probe(x[idx]), y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    return probe


def evaluate(model, data: dict[str, tuple[LabelledImages, LabelledImages]], *, text: bool = True,
             epochs: int = 300, lr: float = 1e-3, probe_batch_size: int = 128, seed: int = 0,
             batch_size: int = 32, workers: int = 0, cache: FeatureCache | None = None) -> "FgclsResults":
    """Accuracy (percent) per dataset and their mean."""
    per_dataset = {}
    for name, (train, test) in data.items():
        prompt = [PROMPTS[name]] if text else None
        feats = [global_features(model, split.refs, prompt, batch_size=batch_size, workers=workers, cache=cache,
                                 desc=f"{name} {part}") for split, part in ((train, "train"), (test, "test"))]
        if text:
            feats = [f[:, 0] for f in feats]
        classes = len(train.classes)
        probe = train_probe(feats[0], torch.tensor(train.labels), classes, epochs=epochs, lr=lr,
                            batch_size=probe_batch_size, seed=seed, device=model.device)
        with torch.no_grad():
            predicted = probe(feats[1].to(model.device)).argmax(1).cpu().numpy()
        correct = predicted == np.array(test.labels)
        entry = {"prompt": PROMPTS[name] if text else None, "classes": classes, "train": len(train.refs),
                 "test": len(test.refs), "accuracy": 100 * float(correct.mean())}
        if test.groups:
            groups = np.array(test.groups)
            entry["worst_group_accuracy"] = 100 * min(float(correct[groups == g].mean()) for g in np.unique(groups))
        per_dataset[name] = entry
    return FgclsResults(
        mean=mean([d["accuracy"] for d in per_dataset.values()]), per_dataset=per_dataset,
        probe={"epochs": epochs, "lr": lr, "batch_size": probe_batch_size, "optimizer": "Adam", "seed": seed})


@dataclass
class FgclsResults(BenchmarkResult):
    """Linear-probe accuracy (percent) per dataset and their unweighted mean."""

    benchmark: ClassVar[str] = "fgcls"
    metric: ClassVar[str] = "top-1 accuracy of a linear probe, percent"
    averaging: ClassVar[str] = "mean = unweighted mean over datasets"
    paper: ClassVar[dict] = PAPER
    mean: float | None
    per_dataset: dict[str, dict]
    probe: dict

    def accuracy(self, dataset: str) -> float:
        return self.per_dataset[dataset]["accuracy"]


def table(results: dict) -> str:
    rows = [[name, d["prompt"] or "(none)", d["train"], d["test"], d["accuracy"]]
            for name, d in results["per_dataset"].items()]
    rows.append(["mean", "", "", "", results["mean"]])
    return markdown_table(["dataset", "prompt", "train", "test", "accuracy"], rows)
