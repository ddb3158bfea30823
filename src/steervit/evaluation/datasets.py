"""Readers for the benchmark datasets, each in its standard on-disk layout (see docs/evaluation.md).

A reader only lists what is there (file paths, labels, prompts); images are opened later, in batches.
Readers fail early with a message naming the file or folder that is missing, before a model loads.
"""
from __future__ import annotations

import csv
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from .features import ImageRef

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _dir(path: str | Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def readable(name: str) -> str:
    """A folder or class name as words: "metal_nut" -> "metal nut", "pcb1" -> "pcb"."""
    return re.sub(r"\s+", " ", re.sub(r"[_\-]+|\d+$", " ", name)).strip()


# ------------------------------------------------------------------------------------------ CORE
@dataclass
class CoreRecord:
    scene: str
    object: str
    image_id: str
    prompt: str
    image: ImageRef


def read_core(path: str | Path, split: str = "test") -> list[CoreRecord]:
    """CORE (`JonaRuthardt/CORE`) as downloaded parquet files, or an image-folder copy.

    Parquet: a .parquet file, or a folder searched recursively for them (files whose name or folder
    names `split` are preferred when any exist), columns scene, object, image_id, prompt and image
    (a Hugging Face Image struct {bytes, path}). Image folder: `<root>/metadata.jsonl`, one JSON
    object per line with scene, object, image_id, prompt and file (relative to root).
    """
    path = Path(path).expanduser()
    if path.is_dir() and (path / "metadata.jsonl").is_file():
        records = []
        for n, line in enumerate((path / "metadata.jsonl").read_text().splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            try:
                file = path / row["file"]
                records.append(CoreRecord(str(row["scene"]), str(row["object"]), str(row["image_id"]),
                                          str(row["prompt"]), ImageRef(key=row["file"], path=file)))
            except KeyError as err:
                raise ValueError(f"{path / 'metadata.jsonl'} line {n}: missing field {err}") from err
            if not file.is_file():
                raise FileNotFoundError(f"CORE image not found: {file}")
    else:
        records = [r for f in _parquet_files(path, split) for r in _read_core_parquet(f)]
    if not records:
        raise ValueError(f"no CORE records found in {path}")
    return records


def _parquet_files(path: Path, split: str) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(_dir(path, "CORE data").rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no metadata.jsonl and no .parquet files under {path}")
    chosen = [f for f in files if split in f.stem.split("-") or split in f.relative_to(path).parts[:-1]]
    return chosen or files


def _read_core_parquet(file: Path) -> list[CoreRecord]:
    import pyarrow.parquet as pq

    columns = ["scene", "object", "image_id", "prompt", "image"]
    table = pq.read_table(file)
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"{file} lacks the CORE columns {missing} (has {table.column_names})")
    rows = table.select(columns).to_pylist()
    records = []
    for i, row in enumerate(rows):
        image = row["image"]
        data = image.get("bytes") if isinstance(image, dict) else image
        if not data:
            raise ValueError(f"{file} row {i}: the image has no bytes")
        records.append(CoreRecord(str(row["scene"]), str(row["object"]), str(row["image_id"]),
                                  str(row["prompt"]), ImageRef.encoded(data)))
    return records


# ------------------------------------------------------------------------------------ PASCAL VOC
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
# The names as prompts read them ("the <name>").
VOC_NAMES = (
    "background", "airplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "dining table", "dog", "horse", "motorbike", "person", "potted plant", "sheep", "sofa", "train", "tv monitor",
)
VOC_VOID = 255


@dataclass
class VocSplit:
    """PASCAL VOC segmentation images of one split (`VOCdevkit/VOC2012` layout).

    `classes[i]` names label i in SegmentationClass (0 = background); VOC's 20 unless a class list is given.
    """

    root: Path
    ids: list[str]
    classes: tuple[str, ...] = VOC_NAMES

    def image(self, image_id: str) -> ImageRef:
        # read as stored: VOC's label PNGs are in the JPEG's stored pixel coordinates
        return ImageRef.file(self.root / "JPEGImages" / f"{image_id}.jpg", self.root, upright=False)

    def class_mask_path(self, image_id: str) -> Path:
        return self.root / "SegmentationClass" / f"{image_id}.png"


def read_class_list(spec: str | Path) -> tuple[str, ...]:
    """Class names for labels 1, 2, ...: a text file with one name per line, or "name,name,...".

    Returned with "background" at index 0, so `names[label]` is the label's name.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        while names and not names[-1]:
            names.pop()
        where = str(path)
    elif "," in str(spec) or not path.suffix:
        names, where = [n.strip() for n in str(spec).split(",")], "the class list"
    else:
        raise FileNotFoundError(f"class list file not found: {path}")
    if not names or any(not n for n in names):
        raise ValueError(f"{where}: every class needs a non-empty name (line or comma-separated item)")
    if len(names) >= VOC_VOID:
        raise ValueError(f"{where}: at most {VOC_VOID - 1} classes (label {VOC_VOID} is void)")
    return ("background", *names)


def read_voc(root: str | Path, split: str = "val", classes: str | Path | None = None) -> VocSplit:
    """`root` is VOCdevkit, VOCdevkit/VOC2012, or a folder holding VOCdevkit.

    `classes`: a class list (see `read_class_list`); by default `classes.txt` beside ImageSets when
    there is one, else VOC's 20 classes.
    """
    root = _dir(root, "PASCAL VOC folder")
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "ImageSets" / "Segmentation").is_dir():
            root = candidate
            break
    else:
        raise FileNotFoundError(f"no ImageSets/Segmentation under {root} (expected VOCdevkit/VOC2012)")
    listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not listing.is_file():
        raise FileNotFoundError(f"VOC split list not found: {listing}")
    ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    if classes is None and (root / "classes.txt").is_file():
        classes = root / "classes.txt"
    voc = VocSplit(root, ids, read_class_list(classes) if classes is not None else VOC_NAMES)
    for image_id in ids:
        for path in (voc.image(image_id).path, voc.class_mask_path(image_id)):
            if not path.is_file():
                raise FileNotFoundError(f"VOC file not found: {path}")
    return voc


# ------------------------------------------------------------------------ classification folders
@dataclass
class LabelledImages:
    refs: list[ImageRef]
    labels: list[int]
    classes: list[str]
    groups: list[int] = field(default_factory=list)  # Waterbirds: 2 * y + place


def read_image_folder(root: str | Path, split: str) -> LabelledImages:
    """`<root>/<split>/<class>/*.jpg` (ImageWoof, StanfordCars as image folders); classes sorted."""
    folder = _dir(Path(root) / split, f"{split} folder")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    refs, labels = [], []
    for label, name in enumerate(classes):
        for path in _images(folder / name):
            refs.append(ImageRef.file(path, root))
            labels.append(label)
    if not refs:
        raise ValueError(f"no images in class folders under {folder}")
    return LabelledImages(refs, labels, classes)


WATERBIRDS_SPLITS = {"train": 0, "val": 1, "test": 2}


def read_waterbirds(root: str | Path, split: str) -> LabelledImages:
    """Waterbirds: `<root>/metadata.csv` (img_id, img_filename, y, split, place, place_filename);
    split 0/1/2 = train/val/test; y 0 = landbird, 1 = waterbird; images at `<root>/<img_filename>`."""
    root = _dir(root, "Waterbirds folder")
    if not (root / "metadata.csv").is_file():
        found = sorted(root.glob("*/metadata.csv"))
        if not found:
            raise FileNotFoundError(f"Waterbirds metadata.csv not found under {root}")
        root = found[0].parent
    refs, labels, groups = [], [], []
    with open(root / "metadata.csv", newline="") as f:
        for row in csv.DictReader(f):
            if int(row["split"]) != WATERBIRDS_SPLITS[split]:
                continue
            path = root / row["img_filename"]
            if not path.is_file():
                raise FileNotFoundError(f"Waterbirds image not found: {path}")
            refs.append(ImageRef.file(path, root))
            labels.append(int(row["y"]))
            groups.append(2 * int(row["y"]) + int(row["place"]))
    if not refs:
        raise ValueError(f"no {split} rows in {root / 'metadata.csv'}")
    return LabelledImages(refs, labels, ["landbird", "waterbird"], groups)


def read_labelled_images(root: str | Path) -> LabelledImages:
    """Every image under `root` (recursively); the label is its first-level folder ("" when flat)."""
    root = _dir(root, "image folder")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"no images under {root}")
    names = [p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 1 else "" for p in paths]
    classes = sorted(set(names))
    return LabelledImages([ImageRef.file(p, root) for p in paths], [classes.index(n) for n in names], classes)


# ------------------------------------------------------------------------------------------ ADE20K
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag",
)  # annotation value i (1..150) is ADE20K_CLASSES[i - 1]; 0 = "other", ignored
ADE20K_SPLITS = {"train": "training", "val": "validation"}


def read_ade20k(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """(image, annotation) pairs of `ADEChallengeData2016/{images,annotations}/{training,validation}`."""
    root = _dir(root, "ADE20K folder")
    if not (root / "images").is_dir() and (root / "ADEChallengeData2016").is_dir():
        root = root / "ADEChallengeData2016"
    sub = ADE20K_SPLITS.get(split, split)
    images = _images(_dir(root / "images" / sub, "ADE20K images folder"))
    pairs = []
    for image in images:
        annotation = root / "annotations" / sub / f"{image.stem}.png"
        if not annotation.is_file():
            raise FileNotFoundError(f"ADE20K annotation not found: {annotation}")
        pairs.append((image, annotation))
    if not pairs:
        raise ValueError(f"no ADE20K images in {root / 'images' / sub}")
    return pairs


# ------------------------------------------------------------------------------------------ PODS
PODS_PARTS = ("reference", "positive", "negative")


@dataclass
class PodsData:
    root: Path
    objects: dict[str, dict[str, list[ImageRef]]]  # object -> part -> images
    descriptions: dict[str, dict[str, str]]  # object -> {"supercategory", "name", "description"}


def read_pods(root: str | Path) -> PodsData:
    """`<root>/<object>/{reference,positive,negative}/*` and optional `<root>/descriptions.json`."""
    root = _dir(root, "PODS folder")
    objects = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        parts = {part: [ImageRef.file(p, root) for p in _images(folder / part)] if (folder / part).is_dir() else []
                 for part in PODS_PARTS}
        if not parts["reference"] or not parts["positive"]:
            raise ValueError(f"PODS object {folder.name} needs reference/ and positive/ images")
        objects[folder.name] = parts
    if not objects:
        raise ValueError(f"no object folders under {root}")
    descriptions = {}
    if (root / "descriptions.json").is_file():
        descriptions = json.loads((root / "descriptions.json").read_text())
    return PodsData(root, objects, descriptions)


# ------------------------------------------------------------------------------- MVTec AD, VisA
@dataclass
class AnomalySample:
    image: Path
    mask: Path | None  # None: a normal image (all-zero ground truth)
    defect: str  # "good" for normal images


def read_mvtec(root: str | Path) -> dict[str, list[AnomalySample]]:
    """MVTec AD test sets: `<cat>/test/<defect>/*.png`, masks `<cat>/ground_truth/<defect>/<stem>_mask.png`."""
    root = _dir(root, "MVTec AD folder")
    categories = {}
    for cat in sorted(p for p in root.iterdir() if (p / "test").is_dir()):
        samples = []
        for defect in sorted(p for p in (cat / "test").iterdir() if p.is_dir()):
            for image in _images(defect):
                mask = None
                if defect.name != "good":
                    mask = cat / "ground_truth" / defect.name / f"{image.stem}_mask.png"
                    if not mask.is_file():
                        raise FileNotFoundError(f"MVTec mask not found: {mask}")
                samples.append(AnomalySample(image, mask, defect.name))
        categories[cat.name] = samples
    if not categories:
        raise ValueError(f"no MVTec AD categories (folders with test/) under {root}")
    return categories


def read_visa(root: str | Path, split: str = "test") -> dict[str, list[AnomalySample]]:
    """VisA: `split_csv/1cls.csv` (object, split, label, image, mask; paths relative to root)."""
    root = _dir(root, "VisA folder")
    table = root / "split_csv" / "1cls.csv"
    if not table.is_file():
        raise FileNotFoundError(f"VisA split file not found: {table}")
    categories: dict[str, list[AnomalySample]] = {}
    with open(table, newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] != split:
                continue
            image = root / row["image"]
            anomalous = row["label"].strip().lower() in ("anomaly", "1", "abnormal")
            mask = root / row["mask"] if anomalous and row.get("mask") else None
            for path in (image, mask):
                if path is not None and not path.is_file():
                    raise FileNotFoundError(f"VisA file not found: {path}")
            categories.setdefault(row["object"], []).append(
                AnomalySample(image, mask, "anomaly" if anomalous else "good"))
    if not categories:
        raise ValueError(f"no {split} rows in {table}")
    return dict(sorted(categories.items()))


def read_anomaly(root: str | Path, layout: str = "auto") -> tuple[str, dict[str, list[AnomalySample]]]:
    """Either layout; "auto" picks VisA when `split_csv/1cls.csv` exists."""
    if layout == "auto":
        layout = "visa" if (Path(root) / "split_csv" / "1cls.csv").is_file() else "mvtec"
    return layout, read_visa(root) if layout == "visa" else read_mvtec(root)


# ------------------------------------------------------------------------------------------ GeneCIS
@dataclass
class GenecisSample:
    reference: ImageRef
    condition: str
    target: ImageRef
    gallery: list[ImageRef]  # distractors, target not included


def genecis_image(root: Path, entry: dict) -> ImageRef:
    """An image entry {"val_image_id"|"image_id": id} -> its file: COCO `<id:012d>.jpg` (in root or
    root/val2017) or Visual Genome `<id>.jpg` (in root, root/VG_100K or root/VG_100K_2)."""
    image_id = entry.get("val_image_id", entry.get("image_id")) if isinstance(entry, dict) else entry
    if image_id is None:
        raise ValueError(f"GeneCIS image entry without val_image_id / image_id: {entry}")
    names = [f"{int(image_id):012d}.jpg", f"{image_id}.jpg"] if str(image_id).isdigit() else [f"{image_id}.jpg"]
    for folder in (root, root / "val2017", root / "VG_100K", root / "VG_100K_2"):
        for name in names:
            if (folder / name).is_file():
                return ImageRef.file(folder / name, root)
    raise FileNotFoundError(f"GeneCIS image {image_id} not found under {root} (tried {', '.join(names)})")


def read_genecis(annotation: str | Path, image_root: str | Path) -> list[GenecisSample]:
    """The released `focus_object.json`: a list of {"reference", "condition", "target", "gallery"}."""
    annotation = Path(annotation).expanduser()
    if not annotation.is_file():
        raise FileNotFoundError(f"GeneCIS annotation file not found: {annotation}")
    root = _dir(image_root, "GeneCIS image folder")
    samples = []
    for i, row in enumerate(json.loads(annotation.read_text())):
        try:
            target = genecis_image(root, row["target"])
            gallery = [genecis_image(root, g) for g in row["gallery"]]
            samples.append(GenecisSample(genecis_image(root, row["reference"]), str(row["condition"]), target,
                                         [g for g in gallery if g.key != target.key]))
        except KeyError as err:
            raise ValueError(f"{annotation} sample {i}: missing field {err}") from err
    if not samples:
        raise ValueError(f"no samples in {annotation}")
    return samples


# ------------------------------------------------------------------------------------------ COCO
def read_coco_objects(root: str | Path, split: str = "val2017") -> list[tuple[ImageRef, list[str]]]:
    """COCO images with the names of the object categories present, from
    `<root>/annotations/instances_<split>.json` and `<root>/<split>/`; images without objects skipped."""
    root = _dir(root, "COCO folder")
    annotation = root / "annotations" / f"instances_{split}.json"
    if not annotation.is_file():
        raise FileNotFoundError(f"COCO annotation file not found: {annotation}")
    data = json.loads(annotation.read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    present: dict[int, set[str]] = {}
    for ann in data["annotations"]:
        present.setdefault(ann["image_id"], set()).add(names[ann["category_id"]])
    out = []
    for image in sorted(data["images"], key=lambda im: im["id"]):
        if image["id"] in present:
            path = root / split / image["file_name"]
            if not path.is_file():
                raise FileNotFoundError(f"COCO image not found: {path}")
            out.append((ImageRef.file(path, root), sorted(present[image["id"]])))
    if not out:
        raise ValueError(f"no annotated images in {annotation}")
    return out


def sample(items: list, n: int | None, seed: int) -> list:
    """At most n items, chosen at random with `seed` but kept in their original order."""
    if n is None or n >= len(items):
        return list(items)
    keep = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in keep]
