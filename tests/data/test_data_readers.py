"""Each reader on a small fixture in its source's exact on-disk layout."""
from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from steervit.data import (
    BoxMask,
    PngBytesMask,
    PngMask,
    RleMask,
    decode_mask,
    encode_rle,
    load_mixture,
    read_lvis,
    read_manifest,
    read_mapillary,
    read_refer,
    read_steervit_hf,
    read_visual_genome,
    records_from_rows,
    write_manifest,
)

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _png_bytes(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buffer, format="PNG")
    return buffer.getvalue()


def _area_and_box(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    return int(mask.sum()), (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


# --- Hugging Face `JonaRuthardt/SteerViT` ---------------------------------------------------------

HF_FEATURES = {
    "image_id": {"dtype": "string", "_type": "Value"},
    "dataset": {"dtype": "string", "_type": "Value"},
    "referential_expression": {"dtype": "string", "_type": "Value"},
    "mask": {"_type": "Image"},
}
HF_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("dataset", pa.string()),
        ("referential_expression", pa.string()),
        ("mask", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
    ],
    metadata={"huggingface": json.dumps({"info": {"features": HF_FEATURES}})},
)
W, H = 40, 30


def _hf_rows(helpers):
    boxes = [(2, 3, 5, 6), (10, 4, 8, 8), (0, 0, 4, 4), (20, 10, 6, 3), (30, 20, 10, 10)]
    ids = ["COCO_train2014_000000000009", "COCO_val2014_000000000042", "1", "2345", "abcDEF123"]
    sources = ["refcoco", "lvis", "visual genome", "visual genome", "mapillary vistas"]
    rows = []
    for k, (box, image_id, source) in enumerate(zip(boxes, ids, sources)):
        rows.append({
            "image_id": image_id, "dataset": source, "referential_expression": f"thing {k}",
            "mask": {"bytes": _png_bytes(helpers.rect(W, H, *box)), "path": None},
        })
    return rows, boxes


def _hf_roots(tmp_path):
    roots = {name: tmp_path / name for name in ("coco", "vg", "mapillary")}
    (roots["vg"] / "VG_100K_2").mkdir(parents=True)
    (roots["vg"] / "VG_100K_2" / "1.jpg").write_bytes(b"")  # id 1 lives in the second folder only
    return {"coco_root": roots["coco"], "vg_root": roots["vg"], "mapillary_root": roots["mapillary"]}


def _check_hf(records, boxes, tmp_path):
    assert [r.expression for r in records] == [f"thing {k}" for k in range(5)]
    assert [r.source for r in records] == ["refcoco", "lvis", "visual genome", "visual genome", "mapillary vistas"]
    assert [r.image for r in records] == [
        str(tmp_path / "coco/train2014/COCO_train2014_000000000009.jpg"),
        str(tmp_path / "coco/val2014/COCO_val2014_000000000042.jpg"),
        str(tmp_path / "vg/VG_100K_2/1.jpg"),
        str(tmp_path / "vg/VG_100K/2345.jpg"),
        str(tmp_path / "mapillary/abcDEF123.jpg"),
    ]
    for record, (x, y, w, h) in zip(records, boxes):
        assert isinstance(record.mask, PngBytesMask)
        mask = decode_mask(record.mask, W, H)
        assert _area_and_box(mask) == (w * h, (x, y, x + w, y + h))


def test_hf_parquet(tmp_path, helpers):
    rows, boxes = _hf_rows(helpers)
    data = tmp_path / "hf" / "data"
    data.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=HF_SCHEMA), data / "train-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(rows[:2], schema=HF_SCHEMA), data / "validation-00000-of-00001.parquet")
    roots = _hf_roots(tmp_path)
    _check_hf(read_steervit_hf(tmp_path / "hf", "train", **roots), boxes, tmp_path)
    assert len(read_steervit_hf(tmp_path / "hf", "validation", **roots)) == 2


def test_hf_rows_without_a_root_are_dropped(tmp_path, helpers):
    rows, _ = _hf_rows(helpers)
    path = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=HF_SCHEMA), path)
    records = read_steervit_hf(path, "train", coco_root=tmp_path / "coco")
    assert [r.source for r in records] == ["refcoco", "lvis"]


def test_hf_datasets_save_to_disk_arrow(tmp_path, helpers):
    rows, boxes = _hf_rows(helpers)
    split_dir = tmp_path / "saved" / "train"
    split_dir.mkdir(parents=True)
    table = pa.Table.from_pylist(rows, schema=HF_SCHEMA)
    with pa.OSFile(str(split_dir / "data-00000-of-00001.arrow"), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=2)
    (split_dir / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    (tmp_path / "saved" / "dataset_dict.json").write_text(json.dumps({"splits": ["train"]}))
    _check_hf(read_steervit_hf(tmp_path / "saved", "train", **_hf_roots(tmp_path)), boxes, tmp_path)


def test_hf_loaded_rows_with_pil_masks(tmp_path, helpers):
    rows, boxes = _hf_rows(helpers)
    for row in rows:
        row["mask"] = Image.open(io.BytesIO(row["mask"]["bytes"]))
    records = list(records_from_rows(rows, "train", **_hf_roots(tmp_path)))
    assert len(records) == 5
    x, y, w, h = boxes[1]
    assert _area_and_box(decode_mask(records[1].mask, W, H)) == (w * h, (x, y, x + w, y + h))


# --- RefCOCO / RefCOCO+ / RefCOCOg (refer toolkit) ------------------------------------------------

def _write_refer(root: Path, dataset: str, split_by: str, refs: list, instances: dict) -> None:
    folder = root / dataset
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"refs({split_by}).p").write_bytes(pickle.dumps(refs, protocol=2))
    (folder / "instances.json").write_text(json.dumps(instances))


def _coco_instances():
    images = [
        {"id": 9, "file_name": "COCO_train2014_000000000009.jpg", "height": 48, "width": 64},
        {"id": 25, "file_name": "COCO_train2014_000000000025.jpg", "height": 48, "width": 64},
    ]
    polygon = [[10, 20, 30, 20, 30, 40, 10, 40]]  # pixels x 10..29, y 20..39
    rle = encode_rle(np.pad(np.ones((5, 6), bool), ((2, 41), (3, 55))))  # x 3..8, y 2..6
    annotations = [
        {"id": 101, "image_id": 9, "category_id": 1, "segmentation": polygon, "bbox": [10, 20, 20, 20], "area": 400, "iscrowd": 0},
        {"id": 102, "image_id": 25, "category_id": 2, "segmentation": rle, "bbox": [3, 2, 6, 5], "area": 30, "iscrowd": 1},
    ]
    categories = [{"id": 1, "name": "person", "supercategory": "person"}, {"id": 2, "name": "cup", "supercategory": "kitchen"}]
    return {"images": images, "annotations": annotations, "categories": categories}


def _ref(ref_id, ann_id, image_id, split, sents, category_id):
    return {
        "ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "split": split, "category_id": category_id,
        "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg", "sent_ids": list(range(len(sents))),
        "sentences": [{"sent": s.lower(), "raw": s, "tokens": s.lower().split(), "sent_id": i} for i, s in enumerate(sents)],
    }


def test_refcoco_splits_and_masks(tmp_path):
    refs = [
        _ref(0, 101, 9, "train", ["Man on left", "guy in red"], 1),
        _ref(1, 102, 25, "testA", ["Cup"], 2),
        _ref(2, 101, 9, "val", ["person"], 1),
        _ref(3, 102, 25, "testB", ["white cup"], 2),
    ]
    _write_refer(tmp_path / "refer", "refcoco", "unc", refs, _coco_instances())
    coco = tmp_path / "coco"
    train = read_refer(tmp_path / "refer", "refcoco", "train", coco_root=coco)
    assert [r.expression for r in train] == ["man on left", "guy in red"]
    assert {r.source for r in train} == {"refcoco"} and {r.split for r in train} == {"train"}
    assert train[0].image == str(coco / "train2014" / "COCO_train2014_000000000009.jpg")
    assert _area_and_box(decode_mask(train[0].mask, 64, 48)) == (400, (10, 20, 30, 40))

    test_a = read_refer(tmp_path / "refer", "refcoco", "testA", coco_root=coco, sentence_field="raw")
    assert [r.expression for r in test_a] == ["Cup"]
    assert isinstance(test_a[0].mask, RleMask)
    assert _area_and_box(decode_mask(test_a[0].mask, 64, 48)) == (30, (3, 2, 9, 7))

    assert len(read_refer(tmp_path / "refer", "refcoco", ["testA", "testB"], coco_root=coco)) == 2
    assert len(read_refer(tmp_path / "refer", "refcoco", None, coco_root=coco)) == 5
    with pytest.raises(ValueError, match="testA"):
        read_refer(tmp_path / "refer", "refcoco", "test", coco_root=coco)


def test_refcocog_umd_and_refcoco_plus(tmp_path):
    _write_refer(tmp_path, "refcocog", "umd", [_ref(0, 101, 9, "test", ["the tall man"], 1)], _coco_instances())
    _write_refer(tmp_path, "refcoco+", "unc", [_ref(0, 102, 25, "val", ["mug"], 2)], _coco_instances())
    (rec,) = read_refer(tmp_path, "refcocog", "test", coco_root=tmp_path / "coco")
    assert (rec.expression, rec.source, rec.image_id) == ("the tall man", "refcocog", "9")
    (rec,) = read_refer(tmp_path, "refcoco+", "val", coco_root=tmp_path / "coco")
    assert (rec.expression, rec.source) == ("mug", "refcoco+")


# --- LVIS -----------------------------------------------------------------------------------------

def test_lvis(tmp_path):
    lvis = {
        "images": [
            {"id": 391895, "coco_url": "http://images.cocodataset.org/train2017/000000391895.jpg", "height": 48, "width": 64},
            {"id": 139, "coco_url": "http://images.cocodataset.org/val2017/000000000139.jpg", "height": 48, "width": 64},
        ],
        "categories": [
            {"id": 1, "name": "aerosol_can", "synonyms": ["aerosol_can", "spray_can"], "frequency": "c"},
            {"id": 2, "name": "teddy_bear", "synonyms": ["teddy_bear"], "frequency": "f"},
        ],
        "annotations": [
            {"id": 1, "image_id": 391895, "category_id": 1, "segmentation": [[10, 20, 30, 20, 30, 40, 10, 40]], "bbox": [10, 20, 20, 20], "area": 400},
            {"id": 2, "image_id": 139, "category_id": 2, "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]], "bbox": [0, 0, 4, 4], "area": 16},
        ],
    }
    path = tmp_path / "lvis_v1_val.json"
    path.write_text(json.dumps(lvis))
    records = read_lvis(path, coco_root=tmp_path / "coco")
    assert [r.expression for r in records] == ["aerosol can", "teddy bear"]
    assert [r.image for r in records] == [
        str(tmp_path / "coco/train2017/000000391895.jpg"), str(tmp_path / "coco/val2017/000000000139.jpg")]
    assert _area_and_box(decode_mask(records[0].mask, 64, 48)) == (400, (10, 20, 30, 40))
    assert _area_and_box(decode_mask(records[1].mask, 64, 48)) == (16, (0, 0, 4, 4))
    assert len(read_lvis(path, coco_root=tmp_path, min_area=100)) == 1


# --- Visual Genome --------------------------------------------------------------------------------

def _write_vg(tmp_path):
    image_data = [
        {"width": 64, "url": "https://cs.stanford.edu/people/rak248/VG_100K_2/1.jpg", "height": 48, "image_id": 1, "coco_id": None, "flickr_id": None},
        {"width": 64, "url": "https://cs.stanford.edu/people/rak248/VG_100K/10.jpg", "height": 48, "image_id": 10, "coco_id": 5, "flickr_id": None},
    ]
    regions = [
        {"id": 1, "regions": [
            {"region_id": 1382, "width": 20, "height": 10, "image_id": 1, "phrase": "the clock is green in colour", "y": 5, "x": 4},
            {"region_id": 1383, "width": 8, "height": 8, "image_id": 1, "phrase": "shade is along the street ", "y": 30, "x": 50},
        ]},
        {"id": 10, "regions": [
            {"region_id": 5000, "width": 0, "height": 8, "image_id": 10, "phrase": "degenerate", "y": 0, "x": 0},
            {"region_id": 5001, "width": 6, "height": 7, "image_id": 10, "phrase": "a man", "y": 1, "x": 2},
        ]},
    ]
    (tmp_path / "image_data.json").write_text(json.dumps(image_data))
    (tmp_path / "region_descriptions.json").write_text(json.dumps(regions))


def test_visual_genome_box_masks(tmp_path):
    _write_vg(tmp_path)
    records = read_visual_genome(tmp_path / "region_descriptions.json", tmp_path / "image_data.json", vg_root=tmp_path / "vg")
    assert [r.expression for r in records] == ["the clock is green in colour", "shade is along the street", "a man"]
    assert [r.image for r in records] == [
        str(tmp_path / "vg/VG_100K_2/1.jpg"), str(tmp_path / "vg/VG_100K_2/1.jpg"), str(tmp_path / "vg/VG_100K/10.jpg")]
    assert all(isinstance(r.mask, BoxMask) for r in records)
    assert _area_and_box(decode_mask(records[0].mask, 64, 48)) == (200, (4, 5, 24, 15))


def test_visual_genome_precomputed_masks(tmp_path, helpers):
    _write_vg(tmp_path)
    sam = helpers.rect(64, 48, 6, 7, 3, 4)
    (tmp_path / "sam2.jsonl").write_text(json.dumps({"region_id": 1382, "rle": encode_rle(sam)}) + "\n")
    args = (tmp_path / "region_descriptions.json", tmp_path / "image_data.json")
    only_masked = read_visual_genome(*args, vg_root=tmp_path, masks_jsonl=tmp_path / "sam2.jsonl")
    assert [r.expression for r in only_masked] == ["the clock is green in colour"]
    np.testing.assert_array_equal(decode_mask(only_masked[0].mask, 64, 48), sam)
    with_boxes = read_visual_genome(*args, vg_root=tmp_path, masks_jsonl=tmp_path / "sam2.jsonl", fallback_to_box=True)
    assert [type(r.mask) for r in with_boxes] == [RleMask, BoxMask, BoxMask]


# --- Mapillary Vistas + synthetic expressions -----------------------------------------------------

def test_mapillary_jsonl(tmp_path, helpers):
    car = helpers.rect(64, 48, 1, 2, 3, 4)
    helpers.save_mask_png(tmp_path / "ann" / "masks" / "b.png", helpers.rect(64, 48, 10, 10, 5, 5))
    lines = [
        {"image": "__CRyFzoDOXn6unQ6a3DnQ", "expression": "a red car", "mask": {"rle": encode_rle(car)}, "split": "train"},
        {"image": "b2.jpg", "expression": "a street sign", "mask": "masks/b.png", "split": "validation"},
    ]
    jsonl = tmp_path / "ann" / "expressions.jsonl"
    jsonl.write_text("".join(json.dumps(x) + "\n" for x in lines))
    records = read_mapillary(jsonl, images_root=tmp_path / "vistas" / "training" / "images")
    assert [r.image for r in records] == [
        str(tmp_path / "vistas/training/images/__CRyFzoDOXn6unQ6a3DnQ.jpg"), str(tmp_path / "vistas/training/images/b2.jpg")]
    assert [r.source for r in records] == ["mapillary", "mapillary"]
    np.testing.assert_array_equal(decode_mask(records[0].mask, 64, 48), car)
    assert records[1].mask == PngMask(str(tmp_path / "ann" / "masks" / "b.png"))
    assert _area_and_box(decode_mask(records[1].mask, 64, 48)) == (25, (10, 10, 15, 15))
    assert [r.expression for r in read_mapillary(jsonl, images_root=tmp_path, split="validation")] == ["a street sign"]


# --- generic JSONL manifest -----------------------------------------------------------------------

def _write_manifest(tmp_path, helpers) -> Path:
    root = tmp_path / "mine"
    helpers.save_mask_png(root / "masks" / "0.png", helpers.rect(64, 48, 0, 0, 8, 8))
    lines = [
        {"image": "images/0.jpg", "expression": "the dog", "mask": "masks/0.png", "source": "pets", "split": "train"},
        {"image": "images/1.jpg", "expression": "the cat", "mask": {"polygon": [[10, 20, 30, 20, 30, 40, 10, 40]]}, "source": "pets", "split": "train"},
        {"image": "images/2.jpg", "expression": "a bird", "mask": {"rle": encode_rle(helpers.rect(64, 48, 5, 5, 2, 9))}, "source": "birds", "split": "validation"},
        {"image": "/abs/3.jpg", "expression": "a box", "mask": {"box": [1, 2, 3, 4]}, "source": "boxes"},
    ]
    path = root / "manifest.jsonl"
    path.write_text("# comment\n" + "".join(json.dumps(x) + "\n" for x in lines) + "\n")
    return path


def test_manifest(tmp_path, helpers):
    path = _write_manifest(tmp_path, helpers)
    records = read_manifest(path)
    root = tmp_path / "mine"
    assert [r.image for r in records] == [str(root / "images/0.jpg"), str(root / "images/1.jpg"), str(root / "images/2.jpg"), "/abs/3.jpg"]
    assert [r.source for r in records] == ["pets", "pets", "birds", "boxes"]
    areas = [_area_and_box(decode_mask(r.mask, 64, 48)) for r in records]
    assert areas == [(64, (0, 0, 8, 8)), (400, (10, 20, 30, 40)), (18, (5, 5, 7, 14)), (12, (1, 2, 4, 6))]
    assert [r.expression for r in read_manifest(path, "train")] == ["the dog", "the cat"]


def test_manifest_round_trip(tmp_path, helpers):
    records = read_manifest(_write_manifest(tmp_path, helpers))
    out = tmp_path / "mine" / "copy.jsonl"
    assert write_manifest(records, out) == 4
    assert json.loads(out.read_text().splitlines()[0])["image"] == "images/0.jpg"
    assert read_manifest(out) == records


def test_manifest_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"image": "a.jpg", "expression": "x", "mask": {"ellipse": 1}}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_manifest(path)


def test_load_mixture_from_config(tmp_path, helpers):
    path = _write_manifest(tmp_path, helpers)
    _write_vg(tmp_path)
    mixture = load_mixture([
        {"name": "mine", "type": "manifest", "path": str(path), "weight": 3},
        {"name": "vg", "type": "visual_genome", "region_descriptions_json": str(tmp_path / "region_descriptions.json"),
         "image_data_json": str(tmp_path / "image_data.json"), "vg_root": str(tmp_path / "vg"), "weight": 1},
    ])
    assert mixture.names == ["mine", "vg"] and mixture.sizes == [4, 3]
    assert mixture.probabilities() == {"mine": 0.75, "vg": 0.25}
    with pytest.raises(ValueError, match="unknown source type"):
        load_mixture([{"type": "nope"}])
