"""Tiny datasets in each benchmark's exact on-disk layout, built in temporary folders.

Several fixtures are "oracles": the images that should match are byte-identical copies, so any model
(the random golden one included) gives them identical features and the score is known in advance.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support import OFFICIAL, TINY_ROBERTA, TRUNK

MODEL_ARGS = ["--model", str(OFFICIAL), "--backbone-weights", str(TRUNK), "--text-encoder", str(TINY_ROBERTA),
              "--workers", "0"]


def noise(seed: int, size=(48, 64)) -> Image.Image:
    """A random RGB image (height, width) = size."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8))


def save(image: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ CORE
CORE_SCENES = {"kitchen": ["blender", "towel", "pizza"], "park": ["kite", "cone", "stroller"]}
CORE_BASES = 4


def core_rows(pixels: str) -> list[dict]:
    """pixels: "object" (an image depends only on its object: the oracle), "same" (all images equal) or
    "random" (every image different)."""
    rows = []
    for s, (scene, objects) in enumerate(CORE_SCENES.items()):
        for o, obj in enumerate(objects):
            for base in range(CORE_BASES):
                seed = {"same": 0, "object": 100 * s + o, "random": 1000 * s + 100 * o + base}[pixels]
                rows.append({"scene": scene, "object": obj, "image_id": f"{scene}_{base:03d}",
                             "prompt": f"the {obj}.", "image": noise(seed)})
    return rows


def make_core_parquet(root: Path, pixels: str = "object") -> Path:
    """The Hugging Face layout: data/test-00000-of-00001.parquet with an Image struct column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = core_rows(pixels)
    table = pa.table({
        "scene": [r["scene"] for r in rows], "object": [r["object"] for r in rows],
        "image_id": [r["image_id"] for r in rows], "prompt": [r["prompt"] for r in rows],
        "image": [{"bytes": png_bytes(r["image"]), "path": None} for r in rows],
    })
    path = root / "data" / "test-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return root


def make_core_folder(root: Path, pixels: str = "object") -> Path:
    """The image-folder copy: metadata.jsonl + files."""
    lines = []
    for i, r in enumerate(core_rows(pixels)):
        file = f"images/{r['scene']}/{i:04d}.png"
        save(r["image"], root / file)
        lines.append(json.dumps({k: r[k] for k in ("scene", "object", "image_id", "prompt")} | {"file": file}))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def core_data(tmp_path_factory):
    return make_core_parquet(tmp_path_factory.mktemp("core"))


# ------------------------------------------------------------------------------------ PASCAL VOC
VOC_PALETTE = [v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)]


def voc_mask(height: int, width: int, boxes: list[tuple[int, int, int, int, int]]) -> Image.Image:
    """A palette PNG of class indices: boxes (class, x, y, w, h) with a 255 (void) border of 2 pixels."""
    mask = np.zeros((height, width), dtype=np.uint8)
    for c, x, y, w, h in boxes:
        mask[max(y - 2, 0):y + h + 2, max(x - 2, 0):x + w + 2] = 255
        mask[y:y + h, x:x + w] = c
    im = Image.frombytes("P", (width, height), mask.tobytes())
    im.putpalette(VOC_PALETTE)
    return im


VOC_BOXES = {  # image id -> (height, width, boxes)
    "2007_000001": (60, 80, [(8, 10, 10, 30, 30)]),  # cat
    "2007_000002": (80, 60, [(15, 5, 20, 40, 50), (12, 0, 0, 10, 10)]),  # person, dog
    "2007_000003": (64, 64, [(8, 30, 30, 30, 30)]),  # cat
    "2007_000004": (50, 90, [(7, 0, 10, 90, 30)]),  # car
    "2007_000005": (70, 70, [(15, 20, 20, 30, 40)]),  # person
    "2007_000006": (64, 48, [(3, 4, 4, 20, 20)]),  # bird
}


def make_voc(root: Path) -> Path:
    voc = root / "VOCdevkit" / "VOC2012"
    for n, (image_id, (h, w, boxes)) in enumerate(VOC_BOXES.items()):
        save(noise(n, (h, w)), voc / "JPEGImages" / f"{image_id}.jpg")
        save(voc_mask(h, w, boxes), voc / "SegmentationClass" / f"{image_id}.png")
        save(voc_mask(h, w, [(i + 1, *b[1:]) for i, b in enumerate(boxes)]),
             voc / "SegmentationObject" / f"{image_id}.png")
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("2007_000001\n2007_000002\n")
    (lists / "val.txt").write_text("\n".join(VOC_BOXES) + "\n")
    return root / "VOCdevkit"


@pytest.fixture(scope="session")
def voc_data(tmp_path_factory):
    return make_voc(tmp_path_factory.mktemp("voc"))


# --------------------------------------------------------------------------------------- FG-CLS
def make_image_folder(root: Path, classes: int = 2, per_class: int = 3, seed: int = 0) -> Path:
    """`<root>/{train,val}/<class>/*.jpg`, val = byte copies of train (a probe that fits scores 100)."""
    for c in range(classes):
        for i in range(per_class):
            src = save(noise(seed + 10 * c + i), root / "train" / f"class_{c}" / f"{i}.jpg")
            copy(src, root / "val" / f"class_{c}" / f"{i}.jpg")
    return root


def make_waterbirds(root: Path) -> Path:
    """metadata.csv (img_id, img_filename, y, split, place, place_filename); test rows copy train rows."""
    rows, n = [], 0
    for y in (0, 1):
        for place in (0, 1):
            name = f"{y:03d}.{'Waterbird' if y else 'Landbird'}/img_{place}.jpg"
            save(noise(500 + 2 * y + place), root / name)
            for split in (0, 2):
                target = name if split == 0 else name.replace(".jpg", "_test.jpg")
                if split:
                    copy(root / name, root / target)
                n += 1
                rows.append([n, target, y, split, place, f"places/{place}.jpg"])
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["img_id", "img_filename", "y", "split", "place", "place_filename"])
        writer.writerows(rows)
    return root


@pytest.fixture(scope="session")
def fgcls_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fgcls")
    make_image_folder(root / "imagewoof", seed=0)
    make_image_folder(root / "stanford_cars", seed=50)
    make_waterbirds(root / "waterbirds")
    return root


# ------------------------------------------------------------------------------------------ ADE20K
def ade_annotation(size: int = 160) -> np.ndarray:
    """Vertical stripes on patch boundaries at 160 px: "other" (0), "wall" (1), "sky" (3)."""
    ann = np.ones((size, size), dtype=np.uint8)
    ann[:, size // 2:] = 3
    ann[:, :16] = 0
    return ann


def make_ade20k(root: Path, images: int = 3) -> Path:
    """ADEChallengeData2016 where every validation image is a byte copy of a training image (the oracle)."""
    ade = root / "ADEChallengeData2016"
    for i in range(images):
        train = save(noise(700 + i, (160, 160)), ade / "images" / "training" / f"ADE_train_{i + 1:08d}.jpg")
        copy(train, ade / "images" / "validation" / f"ADE_val_{i + 1:08d}.jpg")
        for split, stem in (("training", f"ADE_train_{i + 1:08d}"), ("validation", f"ADE_val_{i + 1:08d}")):
            save(Image.fromarray(ade_annotation()), ade / "annotations" / split / f"{stem}.png")
    return root


@pytest.fixture(scope="session")
def ade_data(tmp_path_factory):
    return make_ade20k(tmp_path_factory.mktemp("ade"))


# ------------------------------------------------------------------------------------------ PODS
PODS_OBJECTS = {"my_mug": ("mug", "coffee mug", "the white mug with a blue stripe."),
                "my_bag": ("bag", "red backpack", "the red backpack with a broken zip."),
                "old_bag": ("bag", "leather bag", "the brown leather bag with two buckles.")}


def make_pods(root: Path, descriptions: bool = True) -> Path:
    """Positives are byte copies of the references; negatives are other images (the oracle)."""
    for n, obj in enumerate(PODS_OBJECTS):
        ref = save(noise(800 + n), root / obj / "reference" / "0.jpg")
        copy(ref, root / obj / "reference" / "1.jpg")
        for i in range(2):
            copy(ref, root / obj / "positive" / f"{i}.jpg")
            save(noise(900 + 10 * n + i), root / obj / "negative" / f"{i}.jpg")
    if descriptions:
        (root / "descriptions.json").write_text(json.dumps({
            obj: {"supercategory": s, "name": name, "description": d} for obj, (s, name, d) in PODS_OBJECTS.items()}))
    return root


@pytest.fixture(scope="session")
def pods_data(tmp_path_factory):
    return make_pods(tmp_path_factory.mktemp("pods"))


# ------------------------------------------------------------------------------- MVTec AD, VisA
def defect_mask(size: int = 64) -> Image.Image:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[20:36, 10:30] = 255
    return Image.fromarray(mask)


def make_mvtec(root: Path) -> Path:
    for c, cat in enumerate(("metal_nut", "bottle")):
        save(noise(1000 + c, (64, 64)), root / cat / "train" / "good" / "000.png")
        for i in range(2):
            save(noise(1010 + 10 * c + i, (64, 64)), root / cat / "test" / "good" / f"{i:03d}.png")
            save(noise(1050 + 10 * c + i, (64, 64)), root / cat / "test" / "scratch" / f"{i:03d}.png")
            save(defect_mask(), root / cat / "ground_truth" / "scratch" / f"{i:03d}_mask.png")
    (root / "license.txt").write_text("not a category")
    return root


def make_visa(root: Path) -> Path:
    rows = [["object", "split", "label", "image", "mask"]]
    for c, cat in enumerate(("candle", "pcb1")):
        for i in range(2):
            normal = f"{cat}/Data/Images/Normal/{i:04d}.JPG"
            anomaly = f"{cat}/Data/Images/Anomaly/{i:03d}.JPG"
            mask = f"{cat}/Data/Masks/Anomaly/{i:03d}.png"
            save(noise(1100 + 10 * c + i, (48, 64)), root / normal)
            save(noise(1150 + 10 * c + i, (48, 64)), root / anomaly)
            m = np.zeros((48, 64), dtype=np.uint8)
            m[10:20, 30:50] = 1  # VisA masks mark defects with non-zero values
            save(Image.fromarray(m), root / mask)
            rows += [[cat, "test", "normal", normal, ""], [cat, "test", "anomaly", anomaly, mask],
                     [cat, "train", "normal", normal, ""]]
    (root / "split_csv").mkdir(parents=True)
    with open(root / "split_csv" / "1cls.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return root


@pytest.fixture(scope="session")
def mvtec_data(tmp_path_factory):
    return make_mvtec(tmp_path_factory.mktemp("mvtec"))


@pytest.fixture(scope="session")
def visa_data(tmp_path_factory):
    return make_visa(tmp_path_factory.mktemp("visa"))


# ------------------------------------------------------------------------------------------ GeneCIS
def make_genecis(root: Path) -> tuple[Path, Path]:
    """COCO-named images (<id:012d>.jpg) plus one Visual Genome image; each target copies its reference."""
    images = root / "images"
    samples = []
    for s in range(3):
        ref, target = 10 * s + 1, 10 * s + 2
        src = save(noise(1200 + s), images / f"{ref:012d}.jpg")
        copy(src, images / f"{target:012d}.jpg")
        gallery = []
        for g in range(3):
            gid = 10 * s + 3 + g
            save(noise(1300 + gid), images / f"{gid:012d}.jpg")
            gallery.append({"val_image_id": gid})
        samples.append({"reference": {"val_image_id": ref}, "condition": ["dog", "car", "umbrella"][s],
                        "target": {"val_image_id": target}, "gallery": gallery})
    save(noise(1400), images / "VG_100K" / "2345.jpg")
    samples[0]["gallery"].append({"image_id": 2345})  # a Visual Genome style entry
    annotation = root / "focus_object.json"
    annotation.write_text(json.dumps(samples))
    return annotation, images


@pytest.fixture(scope="session")
def genecis_data(tmp_path_factory):
    return make_genecis(tmp_path_factory.mktemp("genecis"))


# ------------------------------------------------------------------------------------------ COCO
def make_coco(root: Path, images: int = 3) -> Path:
    cats = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 3, "name": "car"}]
    data = {"images": [], "annotations": [], "categories": cats}
    for i in range(images):
        name = f"{i + 1:012d}.jpg"
        save(noise(1500 + i), root / "val2017" / name)
        data["images"].append({"id": i + 1, "file_name": name, "height": 48, "width": 64})
        for j, cat in enumerate(cats[: i + 1]):
            data["annotations"].append({"id": 10 * i + j, "image_id": i + 1, "category_id": cat["id"]})
    data["images"].append({"id": 99, "file_name": "000000000099.jpg", "height": 48, "width": 64})  # no objects
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    return root


@pytest.fixture(scope="session")
def coco_data(tmp_path_factory):
    return make_coco(tmp_path_factory.mktemp("coco"))


def read_results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())
