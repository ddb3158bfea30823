"""Each benchmark reader on a small fixture in its dataset's exact on-disk layout."""
from __future__ import annotations

import json

import numpy as np
import pytest

from steervit.evaluation import datasets as ds
from steervit.evaluation.features import read_label_png, resize_mask

from .conftest import (CORE_BASES, CORE_SCENES, VOC_BOXES, make_core_folder, make_core_parquet, make_coco,
                       make_image_folder, make_pods, make_waterbirds)


def test_core_parquet_and_folder_layouts_read_the_same(tmp_path):
    parquet = ds.read_core(make_core_parquet(tmp_path / "pq"))
    folder = ds.read_core(make_core_folder(tmp_path / "folder"))
    n = sum(len(o) for o in CORE_SCENES.values()) * CORE_BASES
    assert len(parquet) == len(folder) == n
    for a, b in zip(parquet, folder):
        assert (a.scene, a.object, a.image_id, a.prompt) == (b.scene, b.object, b.image_id, b.prompt)
        assert np.array_equal(np.asarray(a.image.open()), np.asarray(b.image.open()))
    assert parquet[0].image.path is None and parquet[0].image.data  # decoded from the HF Image struct
    # a single parquet file works too, and the split filter picks the test file
    file = tmp_path / "pq" / "data" / "test-00000-of-00001.parquet"
    assert len(ds.read_core(file)) == n


def test_core_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="parquet"):
        ds.read_core(tmp_path)
    root = make_core_folder(tmp_path / "f")
    next((root / "images").rglob("*.png")).unlink()
    with pytest.raises(FileNotFoundError, match="CORE image not found"):
        ds.read_core(root)


def test_voc_split_and_palette_masks(voc_data):
    voc = ds.read_voc(voc_data, "val")
    assert voc.ids == list(VOC_BOXES)
    assert ds.read_voc(voc_data.parent, "train").ids == ["2007_000001", "2007_000002"]  # parent of VOCdevkit
    mask = read_label_png(voc.class_mask_path("2007_000002"))
    assert mask.shape == (80, 60)
    assert set(np.unique(mask)) == {0, 12, 15, 255}  # palette indices, not colours
    assert mask[30, 20] == 15 and mask[0, 0] == 12
    assert voc.image("2007_000002").open().size == (60, 80)
    assert len(ds.VOC_NAMES) == len(ds.VOC_CLASSES) == 21 and ds.VOC_NAMES[11] == "dining table"


def test_voc_class_list(voc_data, tmp_path):
    assert ds.read_voc(voc_data, "val").classes == ds.VOC_NAMES  # no classes.txt: VOC's own
    assert ds.read_class_list("cat, dog") == ("background", "cat", "dog")
    listing = tmp_path / "names.txt"
    listing.write_text("t-shirt\nankle boot\n\n")
    assert ds.read_class_list(listing) == ("background", "t-shirt", "ankle boot")
    assert ds.read_voc(voc_data, "val", classes=listing).classes[2] == "ankle boot"
    listing.write_text("t-shirt\n\nbag\n")
    with pytest.raises(ValueError, match="non-empty name"):
        ds.read_class_list(listing)
    with pytest.raises(FileNotFoundError, match="class list file not found"):
        ds.read_class_list(tmp_path / "missing.txt")


def test_image_folder_and_waterbirds(tmp_path):
    root = make_image_folder(tmp_path / "woof", classes=3, per_class=2)
    train = ds.read_image_folder(root, "train")
    assert train.classes == ["class_0", "class_1", "class_2"]
    assert train.labels == [0, 0, 1, 1, 2, 2]
    assert train.refs[0].key == "train/class_0/0.jpg"

    birds = make_waterbirds(tmp_path / "birds")
    train, test = ds.read_waterbirds(birds, "train"), ds.read_waterbirds(birds, "test")
    assert len(train.refs) == len(test.refs) == 4
    assert train.labels == [0, 0, 1, 1] and train.groups == [0, 1, 2, 3]
    assert all("_test" in r.key for r in test.refs)
    # a parent folder holding the dataset folder is accepted
    assert len(ds.read_waterbirds(tmp_path, "train").refs) == 4
    with pytest.raises(ValueError, match="no val rows"):
        ds.read_waterbirds(birds, "val")


def test_ade20k_pairs_and_class_names(ade_data):
    pairs = ds.read_ade20k(ade_data, "val")
    assert [p[0].name for p in pairs] == ["ADE_val_00000001.jpg", "ADE_val_00000002.jpg", "ADE_val_00000003.jpg"]
    assert all(p[1].suffix == ".png" and p[1].stem == p[0].stem for p in pairs)
    assert set(np.unique(read_label_png(pairs[0][1]))) == {0, 1, 3}
    assert len(ds.ADE20K_CLASSES) == 150 and len(set(ds.ADE20K_CLASSES)) == 150
    assert ds.ADE20K_CLASSES[0] == "wall" and ds.ADE20K_CLASSES[2] == "sky" and ds.ADE20K_CLASSES[-1] == "flag"
    (pairs[0][1]).rename(pairs[0][1].with_suffix(".bak"))
    try:
        with pytest.raises(FileNotFoundError, match="annotation"):
            ds.read_ade20k(ade_data / "ADEChallengeData2016", "val")
    finally:
        pairs[0][1].with_suffix(".bak").rename(pairs[0][1])


def test_pods_objects_and_descriptions(tmp_path):
    data = ds.read_pods(make_pods(tmp_path / "p"))
    assert list(data.objects) == ["my_bag", "my_mug", "old_bag"]
    assert {k: len(v) for k, v in data.objects["my_mug"].items()} == {"reference": 2, "positive": 2, "negative": 2}
    assert data.descriptions["my_bag"]["supercategory"] == "bag"
    bare = ds.read_pods(make_pods(tmp_path / "bare", descriptions=False))
    assert bare.descriptions == {}


def test_mvtec_and_visa(mvtec_data, visa_data):
    mvtec = ds.read_mvtec(mvtec_data)
    assert list(mvtec) == ["bottle", "metal_nut"]
    samples = mvtec["metal_nut"]
    assert [s.defect for s in samples] == ["good", "good", "scratch", "scratch"]
    assert samples[0].mask is None and samples[2].mask.name == "000_mask.png"
    layout, visa = ds.read_anomaly(visa_data)
    assert layout == "visa" and list(visa) == ["candle", "pcb1"]
    assert [s.defect for s in visa["candle"]] == ["good", "anomaly", "good", "anomaly"]  # test rows only
    assert visa["candle"][1].mask.parts[-3:] == ("Masks", "Anomaly", "000.png")
    assert ds.read_anomaly(mvtec_data)[0] == "mvtec"
    assert ds.readable("metal_nut") == "metal nut" and ds.readable("pcb1") == "pcb"


def test_genecis_fields_and_image_resolution(genecis_data):
    annotation, images = genecis_data
    samples = ds.read_genecis(annotation, images)
    assert len(samples) == 3
    first = samples[0]
    assert first.condition == "dog"
    assert first.reference.key == "000000000001.jpg" and first.target.key == "000000000002.jpg"
    assert [g.key for g in first.gallery][-1] == "VG_100K/2345.jpg"
    assert len(first.gallery) == 4 and len(samples[1].gallery) == 3
    broken = json.loads(annotation.read_text())
    broken[0]["target"] = {"val_image_id": 424242}
    bad = annotation.with_name("bad.json")
    bad.write_text(json.dumps(broken))
    with pytest.raises(FileNotFoundError, match="424242"):
        ds.read_genecis(bad, images)


def test_coco_objects(tmp_path):
    items = ds.read_coco_objects(make_coco(tmp_path / "coco"))
    assert [names for _, names in items] == [["person"], ["dog", "person"], ["car", "dog", "person"]]


def test_resize_mask_keeps_labels():
    mask = np.array([[0, 3], [255, 7]])
    out = resize_mask(mask, 4)
    assert out.shape == (4, 4) and set(np.unique(out)) == {0, 3, 7, 255}


def test_dense_benchmark_images_are_read_as_stored_so_labels_line_up(tmp_path):
    """A JPEG with an EXIF rotation: retrieval reads it upright, dense benchmarks (labels in the
    stored coordinates) read it as stored."""
    import numpy as np
    from PIL import Image

    from steervit.evaluation.features import ImageRef

    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, exif=exif)
    assert ImageRef.file(path).open().size == (20, 40)
    assert ImageRef.file(path, upright=False).open().size == (40, 20)
