"""A tiny referential-segmentation data set on disk and configs that train the tiny model on it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from steervit.data import BoxMask, PngMask, Record, write_manifest
from steervit.train.config import load_config
from support import TINY_ROBERTA

WORDS = ["cat", "dog", "red car", "blue cup", "tree", "the lamp", "a chair", "small box", "bird", "the sofa"]


def make_manifest(root: Path, n_train: int = 24, n_val: int = 8) -> Path:
    """Random images (72x56) with box or PNG masks, two sources, train and val lines."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(n_train + n_val):
        image = root / "images" / f"{i}.jpg"
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (56, 72, 3), dtype=np.uint8)).save(image, quality=95)
        x, y = int(rng.integers(0, 40)), int(rng.integers(0, 24))
        w, h = int(rng.integers(16, 32)), int(rng.integers(16, 32))
        if i % 3 == 0:  # some PNG masks too
            mask = np.zeros((56, 72), dtype=np.uint8)
            mask[y:y + h, x:x + w] = 255
            path = root / "masks" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(path)
            spec = PngMask(str(path))
        else:
            spec = BoxMask((x, y, w, h))
        split = "train" if i < n_train else "val"
        records.append(Record(str(image), f"{WORDS[i % len(WORDS)]} {i % 5}", spec,
                              source="alpha" if i % 2 else "beta", split=split))
    manifest = root / "data.jsonl"
    write_manifest(records, manifest)
    return manifest


@pytest.fixture(scope="session")
def manifest(tmp_path_factory) -> Path:
    return make_manifest(tmp_path_factory.mktemp("data"))


def tiny_config(manifest: Path, out_dir: Path, *overrides: str):
    """The smoke preset on the tiny data: a few steps, everything logged, tiny RoBERTa."""
    return load_config("smoke", [
        f"data.manifest={manifest}",
        f"model.text_encoder={TINY_ROBERTA}",
        f"train.out_dir={out_dir}",
        "train.batch_size=4",
        "train.train_iters=4",
        "train.log_every=1",
        "train.val_every=2",
        "train.save_every=2",
        "train.progress=false",
        "train.tensorboard=false",
        "train.optim.warmup_iters=2",
        "train.optim.decay_iters=8",
        *overrides,
    ])
