"""Torch dataset of referential-segmentation samples, robust to bad files on long runs.

A sample whose image is missing or unreadable, whose mask cannot be decoded, or whose non-empty
mask became empty after augmentation/resizing is not an error: `__getitem__` returns a falsy
`Skipped(reason)` in its place, `collate` drops it and reports per-reason counts in the batch
(`batch["skipped"]`), which is how counts get out of DataLoader worker processes. In the main process
the dataset also keeps its own `skip_counts`.

Randomness: a key may be an index (augmentation seeded from (seed, epoch, index); call `set_epoch`)
or an `(index, sample_seed)` pair as yielded by `WeightedSourceSampler`; either way a sample depends
only on its key, never on which worker loads it.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..io import apply_orientation, read_image
from .augment import AugmentConfig, augment_pair, resize_pair
from .records import Record, decode_mask

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SKIP_REASONS = ("image_missing", "image_unreadable", "mask_unreadable", "mask_emptied")
_WARN_LIMIT = 5  # log the first few skips of each reason per process, then only count


@dataclass(frozen=True)
class Skipped:
    """Stands in for a sample that could not be used; falsy like None."""

    reason: str
    index: int
    image_size: int

    def __bool__(self) -> bool:
        return False


class SkipCounter(Counter):
    """Per-reason skip counts; `add` merges a batch's `skipped` dict, `total()` sums them."""

    def add(self, counts: Mapping[str, int]) -> None:
        self.update({k: int(v) for k, v in counts.items() if v})

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.items())) or "none"


class ReferringSegmentationDataset(Dataset):
    """Records -> dicts of image (3, S, S) normalised, mask (S, S) float {0, 1}, expression, source."""

    def __init__(
        self,
        records: Sequence[Record],
        image_size: int,
        *,
        train: bool,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        augment: AugmentConfig | None = None,
        seed: int = 0,
    ):
        self.records = records
        self.image_size = int(image_size)
        self.train = train
        self.augment = augment or AugmentConfig()
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.seed = int(seed)
        self.epoch = 0
        self.skip_counts = SkipCounter()
        self._warned: Counter[str] = Counter()

    def set_epoch(self, epoch: int) -> None:
        """Re-seed the augmentation of plain-index keys (no effect on `(index, seed)` keys)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> dict | Skipped:
        index, sample_seed = key if isinstance(key, (tuple, list)) else (key, None)
        index = int(index)
        record = self.records[index]
        try:  # as stored: the annotations (polygons, boxes, RLE, mask files) are in the file's stored pixels
            image, orientation = read_image(record.image, upright=False)
        except FileNotFoundError as err:
            return self._skip("image_missing", index, err)
        except (ValueError, OSError) as err:
            return self._skip("image_unreadable", index, err)
        try:
            mask = decode_mask(record.mask, image.width, image.height)
        except (OSError, ValueError, KeyError, TypeError) as err:
            return self._skip("mask_unreadable", index, err)
        if orientation != 1:  # upright by the EXIF orientation, as a viewer (and inference) shows it: both together
            image = apply_orientation(image, orientation)
            mask = np.asarray(apply_orientation(Image.fromarray(mask), orientation), dtype=bool)

        if self.train:
            generator = torch.Generator().manual_seed(self._sample_seed(index, sample_seed))
            image, out_mask, _ = augment_pair(image, mask, record.expression, self.image_size, generator, self.augment)
        else:
            image, out_mask = resize_pair(image, mask, self.image_size)
        if mask.any() and not out_mask.any():
            return self._skip("mask_emptied", index, f"{record.expression!r} in {record.image}")

        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div_(255)
        return {
            "image": (pixels - self.mean) / self.std,
            "mask": torch.from_numpy(np.ascontiguousarray(out_mask)).float(),
            "expression": record.expression,
            "source": record.source,
            "index": index,
        }

    def _sample_seed(self, index: int, sample_seed: int | None) -> int:
        if sample_seed is not None:
            return int(sample_seed)
        state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(2, np.uint32)
        return (int(state[0]) << 31) ^ int(state[1])

    def _skip(self, reason: str, index: int, detail) -> Skipped:
        self.skip_counts[reason] += 1
        self._warned[reason] += 1
        if self._warned[reason] <= _WARN_LIMIT:
            log.warning("skipping sample %d (%s): %s", index, reason, detail)
        return Skipped(reason, index, self.image_size)


def collate(samples: Sequence[dict | Skipped | None]) -> dict:
    """Stack usable samples; count the rest by reason (a plain None counts as `unknown`).

    Returns images (B, 3, S, S), masks (B, S, S), expressions, sources, indices, skipped {reason: n};
    B may be 0 when every sample of the batch was skipped."""
    kept = [s for s in samples if s]
    skipped = Counter(s.reason if isinstance(s, Skipped) else "unknown" for s in samples if not s)
    if kept:
        images = torch.stack([s["image"] for s in kept])
        masks = torch.stack([s["mask"] for s in kept])
    else:
        size = next((s.image_size for s in samples if isinstance(s, Skipped)), 0)
        images, masks = torch.zeros(0, 3, size, size), torch.zeros(0, size, size)
    return {
        "images": images,
        "masks": masks,
        "expressions": [s["expression"] for s in kept],
        "sources": [s["source"] for s in kept],
        "indices": [s["index"] for s in kept],
        "skipped": dict(skipped),
    }
