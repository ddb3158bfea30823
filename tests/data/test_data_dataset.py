"""The torch dataset: tensors as promised, reproducible, bad samples skipped and counted."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from steervit.data import (
    BoxMask,
    Mixture,
    PngMask,
    Record,
    ReferringSegmentationDataset,
    SkipCounter,
    Skipped,
    collate,
)

SIZE = 32


@pytest.fixture
def records(tmp_path, helpers):
    good = [helpers.save_image(tmp_path / f"img{i}.jpg", 80, 60, seed=i) for i in range(4)]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"this is not a jpeg")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good[0].read_bytes()[:300])
    return [
        Record(str(good[0]), "the cup", BoxMask((10, 10, 30, 30)), "a"),
        Record(str(good[1]), "the left cup", BoxMask((40, 5, 30, 40)), "b"),
        Record(str(tmp_path / "missing.jpg"), "a ghost", BoxMask((0, 0, 10, 10)), "a"),
        Record(str(corrupt), "noise", BoxMask((0, 0, 10, 10)), "b"),
        Record(str(truncated), "half an image", BoxMask((0, 0, 10, 10)), "b"),
        Record(str(good[2]), "a speck", BoxMask((1, 1, 1, 1)), "a"),  # vanishes when resized to 32 px
        Record(str(good[3]), "no such mask", PngMask(str(tmp_path / "nope.png")), "a"),
    ]


def test_sample_tensors(records):
    dataset = ReferringSegmentationDataset(records, SIZE, train=False, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    sample = dataset[0]
    assert sample["image"].shape == (3, SIZE, SIZE) and sample["image"].dtype == torch.float32
    assert -1.0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.0
    assert sample["mask"].shape == (SIZE, SIZE) and set(sample["mask"].unique().tolist()) == {0.0, 1.0}
    # plain resize 80x60 -> 32x32: box x 10..39, y 10..39 -> columns 4..15, rows 5..20
    ys, xs = torch.nonzero(sample["mask"], as_tuple=True)
    assert (int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())) == (4, 15, 5, 20)
    assert (sample["expression"], sample["source"]) == ("the cup", "a")


def test_skips_are_counted_by_reason(records):
    dataset = ReferringSegmentationDataset(records, SIZE, train=False)
    samples = [dataset[i] for i in range(len(records))]
    reasons = [s.reason for s in samples if isinstance(s, Skipped)]
    assert reasons == ["image_missing", "image_unreadable", "image_unreadable", "mask_emptied", "mask_unreadable"]
    assert not samples[2] and samples[0]
    assert dataset.skip_counts == {"image_missing": 1, "image_unreadable": 2, "mask_emptied": 1, "mask_unreadable": 1}
    batch = collate(samples)
    assert batch["images"].shape == (2, 3, SIZE, SIZE) and batch["masks"].shape == (2, SIZE, SIZE)
    assert batch["expressions"] == ["the cup", "the left cup"] and batch["sources"] == ["a", "b"]
    assert batch["skipped"] == dict(dataset.skip_counts)


def test_all_skipped_batch_and_plain_none():
    batch = collate([Skipped("image_missing", 0, SIZE), None])
    assert batch["images"].shape == (0, 3, SIZE, SIZE) and batch["masks"].shape == (0, SIZE, SIZE)
    assert batch["skipped"] == {"image_missing": 1, "unknown": 1}


def test_counts_come_back_from_worker_processes(records):
    dataset = ReferringSegmentationDataset(records, SIZE, train=True, seed=0)
    loader = DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate)
    counter, kept = SkipCounter(), 0
    for batch in loader:
        counter.add(batch["skipped"])
        kept += len(batch["expressions"])
    assert counter.total() + kept == len(records)
    assert counter["image_missing"] == 1 and counter["image_unreadable"] == 2 and counter["mask_unreadable"] == 1


def test_non_empty_target_is_kept_by_training_augmentation(records):
    dataset = ReferringSegmentationDataset(records[:2], SIZE, train=True, seed=1)
    for epoch in range(5):
        dataset.set_epoch(epoch)
        for i in range(2):
            assert dataset[i]["mask"].sum() > 0


def test_reproducible_with_the_same_seed(records):
    a, b, c = (ReferringSegmentationDataset(records[:2], SIZE, train=True, seed=s) for s in (0, 0, 1))
    for i in range(2):
        assert torch.equal(a[i]["image"], b[i]["image"]) and torch.equal(a[i]["mask"], b[i]["mask"])
    assert not all(torch.equal(a[i]["image"], c[i]["image"]) for i in range(2))
    a.set_epoch(1)
    assert not all(torch.equal(a[i]["image"], b[i]["image"]) for i in range(2))


def test_mixture_sampler_batches_do_not_depend_on_workers(records):
    mixture = Mixture.from_sources({"a": records[:1], "b": records[1:2]}, {"a": 1.0, "b": 1.0})
    dataset = ReferringSegmentationDataset(mixture.records, SIZE, train=True)

    def run(workers):
        loader = DataLoader(dataset, batch_size=4, sampler=mixture.sampler(8, seed=11), num_workers=workers, collate_fn=collate)
        return [(b["images"], b["masks"], b["expressions"]) for b in loader]

    for (img0, mask0, expr0), (img2, mask2, expr2) in zip(run(0), run(2)):
        assert expr0 == expr2 and torch.equal(img0, img2) and torch.equal(mask0, mask2)
    exprs = [e for _, _, batch in run(0) for e in batch]
    assert len(exprs) == 8 and set(exprs) <= {"the cup", "the left cup"}
    # repeated draws of the same record get different augmentations
    images = [img for img, _, _ in run(0)]
    flat = torch.cat(images)
    assert len({tuple(np.round(x.flatten()[:50].numpy(), 4)) for x in flat}) == 8
