"""Evaluation sets made only from held-out material, in the on-disk layouts the evaluation suite reads.

Held-out material = Fashion-MNIST *test* photos and the held-out photo objects; backgrounds are
black, the real textures, or crops of held-out photos. None of it is in the training manifest.

- CORE-style conditional retrieval (`core/`): per scene (a background), base images with a few
  products, and for each base five variants that each add one of the scene's five objects (four
  specific products with a colour, one held-out photo object). A prompt names the added object;
  the gallery is every variant of that scene, so chance P@1 = 1/5.
- MVTec-AD-style anomalies (`anomaly/`): real textures; train/good and test/good are crops from
  two different halves of the texture; defects (scratch, foreign texture, stain, hole) are pasted
  with exact 0/255 masks.
- PODS-style personal objects (`pods/`): one specific item shown alone (reference), in cluttered
  scenes (positive), and other items of the same class and colour in like scenes (negative).
- MOSAIC-style images (`mosaic/VOCdevkit/VOC2012`): PASCAL VOC's layout (JPEGImages, palette PNGs in
  SegmentationClass and SegmentationObject, ImageSets/Segmentation/val.txt) with 1-3 held-out items
  per image and `classes.txt` naming the classes; `steervit eval mosaic` stitches them 2x2.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageDraw

from . import fashion_mnist as fm
from . import photos
from .scenes import CANVAS, PALETTE, Item, Scene, a, compose, fashion_item, fashion_items, make_background, \
    photo_item, save_mask, save_png, the, with_colour

CORE_SCENES = (("studio", None), ("brick wall", "brick"), ("lawn", "grass"), ("gravel path", "gravel"),
               ("tissue slide", "tissue"), ("night sky", "deep_field"))
DEFECTS = ("scratch", "foreign_texture", "stain", "hole")
ANOMALY_CATEGORIES = ("brick", "grass", "gravel", "tissue", "deep_field")


def file_stem(text: str) -> str:
    """A name as a file-name part with underscores (the offline sets' file names)."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _write_json(data, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _background(rng: np.random.Generator, texture: str | None) -> tuple[np.ndarray, str]:
    if texture is None:
        return np.zeros((CANVAS, CANVAS, 3), np.uint8), "black"
    return photos.random_crop(photos.load_texture(texture), rng, CANVAS, 0.35), f"texture:{texture}"


def _held_out_scenery() -> tuple[str, ...]:
    return tuple(o.key for o in photos.PHOTO_OBJECTS if o.held_out)


# --------------------------------------------------------------------------- CORE


@dataclass(frozen=True)
class CoreSizes:
    scenes: int = 6
    bases: int = 8  # base images per scene; each gives 5 variants


def core_jobs(sizes: CoreSizes) -> int:
    return sizes.scenes * sizes.bases


def build_core(out: Path, seed: int, test: fm.FashionMNIST, pool: dict[int, np.ndarray],
               sizes: CoreSizes = CoreSizes(), home: str | None = None,
               background: Callable[[np.random.Generator], tuple[np.ndarray, str]] | None = None) -> Iterator[int]:
    """Write core/: metadata.jsonl, images/ (variants), bases/, masks/ (the added object), sources.json.

    A generator: yields after each base image (for the progress bar). `background(rng)` replaces the
    scenes' own backgrounds (the OOD suite's CORE set uses backgrounds never seen in training).
    """
    held = [o.key for o in photos.PHOTO_OBJECTS if o.held_out]
    lines, sources = [], {"objects": {}, "bases": {}}
    for s in range(sizes.scenes):
        rng = np.random.default_rng([seed, 101, s])
        name, texture = CORE_SCENES[s % len(CORE_SCENES)]
        if s >= len(CORE_SCENES):
            name = f"{name} {s // len(CORE_SCENES) + 1}"
        labels = [int(v) for v in rng.permutation(10)]
        object_labels, base_labels = labels[:4], labels[4:]
        colours = [str(c) for c in rng.choice(list(PALETTE), size=4, replace=False)]
        objects = [fashion_item(test, int(rng.choice(pool[lab])), col) for lab, col in zip(object_labels, colours)]
        objects.append(photo_item(held[s % len(held)]))
        names = {obj.key: with_colour(obj.colour, obj.names[0]) if obj.colour else obj.names[0] for obj in objects}
        sources["objects"][name] = {names[obj.key]: obj.key for obj in objects}
        for b in range(sizes.bases):
            image, _ = _background(rng, texture) if background is None else background(rng)
            items = fashion_items(rng, test, pool, 3, labels=base_labels, repeat=False)
            base = compose(image, name, items, [int(rng.integers(60, 86)) for _ in items], rng, "scatter", home)
            if base is None:
                raise RuntimeError(f"could not place the base items of {name}")
            image_id = f"{file_stem(name)}_{b:03d}"
            save_png(base.image, out / "bases" / f"{image_id}.png")
            sources["bases"][image_id] = [p.item.key for p in base.placed]
            for obj in objects:
                size = int(rng.integers(64, 85)) if obj.source == "photo" else int(rng.integers(50, 65))
                variant = compose(base.background, name, [obj], [size], rng, "scatter", home, base=base)
                if variant is None:
                    raise RuntimeError(f"no room for {names[obj.key]} in {image_id}")
                file = f"images/{image_id}_{file_stem(names[obj.key])}.png"
                save_png(variant.image, out / file)
                save_mask(variant.placed[-1].mask, out / "masks" / Path(file).name)
                lines.append({"scene": name, "object": names[obj.key], "image_id": image_id,
                              "prompt": the(names[obj.key]) + ".", "file": file})
            yield 1
    with open(out / "metadata.jsonl", "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    _write_json(sources, out / "sources.json")


# --------------------------------------------------------------------------- anomalies


@dataclass(frozen=True)
class AnomalySizes:
    train: int = 24  # train/good per category
    good: int = 8  # test/good per category
    per_defect: int = 6


def anomaly_jobs(sizes: AnomalySizes) -> int:
    return len(ANOMALY_CATEGORIES) * (sizes.train + sizes.good + sizes.per_defect * len(DEFECTS))


def texture_tile(key: str, rng: np.random.Generator, half: str) -> np.ndarray:
    """A CANVAS x CANVAS crop at native scale from the top ("train") or bottom ("test") half, turned/flipped."""
    texture = photos.load_texture(key)
    h, w = texture.shape[:2]
    top = 0 if half == "train" else h - h // 2
    region = texture[top:top + h // 2]
    y = int(rng.integers(0, region.shape[0] - CANVAS + 1))
    x = int(rng.integers(0, w - CANVAS + 1))
    tile = np.rot90(region[y:y + CANVAS, x:x + CANVAS], int(rng.integers(4)))
    return np.ascontiguousarray(tile[:, ::-1] if rng.integers(2) else tile)


def blob_mask(rng: np.random.Generator, radius: tuple[int, int] = (10, 28)) -> np.ndarray:
    """An irregular blob: a few overlapping ellipses around a random centre."""
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy = rng.integers(40, CANVAS - 40, size=2)
    for _ in range(int(rng.integers(2, 6))):
        ox, oy = rng.integers(-14, 15, size=2)
        rx, ry = rng.integers(*radius, size=2)
        draw.ellipse([cx + ox - rx, cy + oy - ry, cx + ox + rx, cy + oy + ry], fill=1)
    return np.asarray(canvas).astype(bool)


def add_defect(tile: np.ndarray, defect: str, rng: np.random.Generator, category: str) -> tuple[np.ndarray, np.ndarray]:
    """(image with the defect, its exact mask): pixels change only inside the mask."""
    image = tile.astype(np.float32)
    if defect == "scratch":
        canvas = Image.new("L", (CANVAS, CANVAS), 0)
        draw = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(1, 4))):
            start = rng.integers(20, CANVAS - 20, size=2)
            points = [tuple(start)]
            for _ in range(int(rng.integers(2, 5))):
                step = rng.normal(0, 25, size=2) + rng.choice([-1, 1], size=2) * 15
                points.append(tuple(np.clip(np.array(points[-1]) + step, 0, CANVAS - 1)))
            draw.line([tuple(int(v) for v in p) for p in points], fill=1, width=int(rng.integers(2, 5)))
        mask = np.asarray(canvas).astype(bool)
        level = 235.0 if image.mean() < 128 else 20.0
        image[mask] = level
    elif defect == "foreign_texture":
        mask = blob_mask(rng)
        other = str(rng.choice([c for c in ANOMALY_CATEGORIES if c != category]))
        image[mask] = texture_tile(other, rng, "test").astype(np.float32)[mask]
    elif defect == "stain":
        mask = blob_mask(rng, (8, 22))
        colour = np.array(list(PALETTE.values())[int(rng.integers(len(PALETTE)))], np.float32)
        image[mask] = 0.45 * image[mask] + 0.55 * colour
    elif defect == "hole":
        canvas = Image.new("L", (CANVAS, CANVAS), 0)
        cx, cy = rng.integers(30, CANVAS - 30, size=2)
        rx, ry = rng.integers(6, 18, size=2)
        ImageDraw.Draw(canvas).ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=1)
        mask = np.asarray(canvas).astype(bool)
        # a dark pit; on a dark texture (the night sky) a pale burn, so it is visible either way
        image[mask] = 0.12 * image[mask] + 4 if tile.mean() > 60 else 0.3 * image[mask] + 170
    else:
        raise ValueError(f"unknown defect {defect!r}")
    out = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return out, mask


def build_anomaly(out: Path, seed: int, sizes: AnomalySizes = AnomalySizes()) -> Iterator[int]:
    """Write anomaly/<category>/{train/good, test/good, test/<defect>, ground_truth/<defect>}."""
    for c, category in enumerate(ANOMALY_CATEGORIES):
        rng = np.random.default_rng([seed, 202, c])
        root = out / category
        for i in range(sizes.train):
            save_png(texture_tile(category, rng, "train"), root / "train" / "good" / f"{i:03d}.png")
            yield 1
        for i in range(sizes.good):
            save_png(texture_tile(category, rng, "test"), root / "test" / "good" / f"{i:03d}.png")
            yield 1
        for defect in DEFECTS:
            for i in range(sizes.per_defect):
                image, mask = add_defect(texture_tile(category, rng, "test"), defect, rng, category)
                save_png(image, root / "test" / defect / f"{i:03d}.png")
                save_mask(mask, root / "ground_truth" / defect / f"{i:03d}_mask.png")
                yield 1


# --------------------------------------------------------------------------- PODS


@dataclass(frozen=True)
class PodsSizes:
    products: int = 10  # one product per class, cycling
    reference: int = 3
    positive: int = 5
    negative: int = 5


def pods_jobs(sizes: PodsSizes) -> int:
    persons = len([o for o in photos.PHOTO_OBJECTS if o.held_out and o.kind == "person"])
    return (sizes.products + persons) * (sizes.reference + sizes.positive + sizes.negative)


def _clutter_scene(rng: np.random.Generator, item: Item, test: fm.FashionMNIST, pool: dict[int, np.ndarray],
                   home: str | None) -> Scene:
    """The item among 2-3 products of other classes on black, a texture or a held-out photo's scenery."""
    style = str(rng.choice(["black", "texture", "photo"], p=[0.3, 0.4, 0.3]))
    background, name = make_background(rng, style, _held_out_scenery(), home)
    other_labels = [lab for lab in pool if fm.CLASSES[lab].nouns[0] != item.category]
    others = fashion_items(rng, test, pool, int(rng.integers(2, 4)), labels=other_labels, repeat=False)
    size = int(rng.integers(90, 131)) if item.source == "photo" else int(rng.integers(60, 91))
    scene = compose(background, name, [item, *others], [size] + [int(rng.integers(45, 76)) for _ in others],
                    rng, "scatter", home)
    if scene is None:
        raise RuntimeError(f"could not place {item.key}")
    return scene


def _reference(rng: np.random.Generator, item: Item, k: int, home: str | None) -> Scene:
    """The item alone and large: on black, then on textures."""
    texture = None if k == 0 else photos.TEXTURES[int(rng.integers(len(photos.TEXTURES)))].key
    background, name = _background(rng, texture)
    return compose(background, name, [item], [int(rng.integers(130, 181))], rng, "scatter", home)


def build_pods(out: Path, seed: int, test: fm.FashionMNIST, pool: dict[int, np.ndarray],
               sizes: PodsSizes = PodsSizes(), home: str | None = None) -> Iterator[int]:
    """Write pods/<object>/{reference, positive, negative}/*.png, descriptions.json and sources.json."""
    rng = np.random.default_rng([seed, 303])
    entries: list[tuple[str, Item, list[Item], dict]] = []
    for k in range(sizes.products):
        label = k % 10
        cls = fm.CLASSES[label]
        colour = str(rng.choice(list(PALETTE)))
        picks = [int(v) for v in rng.choice(pool[label], size=1 + sizes.negative, replace=False)]
        item = fashion_item(test, picks[0], colour)
        negatives = [fashion_item(test, i, colour) for i in picks[1:]]
        name = with_colour(colour, cls.nouns[0])
        info = {"supercategory": cls.supercategory, "name": name, "description": a(name)}
        entries.append((f"{file_stem(cls.nouns[0])}_{k:02d}", item, negatives, info))
    persons = [o for o in photos.PHOTO_OBJECTS if o.held_out and o.kind == "person"]
    for obj in persons:  # only one photo of each: the other held-out person is the negative
        other = [photo_item(o.key) for o in persons if o.key != obj.key]
        negatives = [other[i % len(other)] for i in range(sizes.negative)]
        info = {"supercategory": "person", "name": obj.names[0], "description": obj.description}
        entries.append((file_stem(obj.key), photo_item(obj.key), negatives, info))

    descriptions, sources = {}, {}
    for folder, item, negatives, info in entries:
        root = out / folder
        descriptions[folder] = info
        sources[folder] = {"object": item.key, "negatives": [n.key for n in negatives]}
        for k in range(sizes.reference):
            save_png(_reference(rng, item, k, home).image, root / "reference" / f"{k:03d}.png")
            yield 1
        for k in range(sizes.positive):
            save_png(_clutter_scene(rng, item, test, pool, home).image, root / "positive" / f"{k:03d}.png")
            yield 1
        for k in range(sizes.negative):
            scene = _clutter_scene(rng, negatives[k % len(negatives)], test, pool, home)
            save_png(scene.image, root / "negative" / f"{k:03d}.png")
            yield 1
    _write_json(descriptions, out / "descriptions.json")
    _write_json(sources, out / "sources.json")


# --------------------------------------------------------------------------- MOSAIC (VOC layout)


@dataclass(frozen=True)
class MosaicSizes:
    images: int = 60
    photo_share: float = 0.25  # of images holding a held-out photo object


def mosaic_jobs(sizes: MosaicSizes) -> int:
    return sizes.images


def mosaic_classes() -> tuple[str, ...]:
    """Class 1.. of the offline VOC set, as prompts read them: the products, then the held-out photo objects."""
    return tuple(c.nouns[0] for c in fm.CLASSES) + tuple(o.names[0] for o in photos.PHOTO_OBJECTS if o.held_out)


@lru_cache(maxsize=1)
def voc_palette() -> tuple[int, ...]:
    """PASCAL VOC's label colours (index bits spread over R, G, B from the high bit down), flat for PIL."""
    palette = []
    for index in range(256):
        rgb, c = [0, 0, 0], index
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((c >> channel) & 1) << shift
            c >>= 3
        palette += rgb
    return tuple(palette)


def _save_label_png(labels: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(list(voc_palette()))
    image.save(path, format="PNG")


def build_mosaic(out: Path, seed: int, test: fm.FashionMNIST, pool: dict[int, np.ndarray],
                 sizes: MosaicSizes = MosaicSizes(), home: str | None = None) -> Iterator[int]:
    """Write mosaic/VOCdevkit/VOC2012 with held-out products and photo objects; yields per image."""
    root = out / "VOCdevkit" / "VOC2012"
    classes = mosaic_classes()
    index = {name: i + 1 for i, name in enumerate(classes)}
    held = [o.key for o in photos.PHOTO_OBJECTS if o.held_out]
    ids, sources = [], {}
    for i in range(sizes.images):
        rng = np.random.default_rng([seed, 404, i])
        style = str(rng.choice(["black", "texture", "photo"], p=[0.4, 0.35, 0.25]))
        with_photo = rng.random() < sizes.photo_share
        photo = [photo_item(str(rng.choice(held)))] if with_photo else []
        used = {p.category for p in photo}
        background, name = make_background(rng, style, tuple(k for k in held if k not in used), home)
        count = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25])) - len(photo)
        products = fashion_items(rng, test, pool, count) if count > 0 else []
        items = photo + products
        top = {1: 190, 2: 140, 3: 115}[len(items)]
        scene = compose(background, name, items, [int(rng.integers(90, top + 1)) for _ in items], rng,
                        "scatter", home)
        if scene is None:
            raise RuntimeError(f"could not place the items of mosaic image {i}")
        image_id = f"offline_{i:05d}"
        class_mask = np.zeros((CANVAS, CANVAS), np.uint8)
        object_mask = np.zeros((CANVAS, CANVAS), np.uint8)
        for k, placed in enumerate(scene.placed):
            class_mask[placed.mask] = index[placed.item.names[0]]  # as in mosaic_classes
            object_mask[placed.mask] = k + 1
        jpeg = root / "JPEGImages" / f"{image_id}.jpg"
        jpeg.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(scene.image).save(jpeg, format="JPEG", quality=95)
        _save_label_png(class_mask, root / "SegmentationClass" / f"{image_id}.png")
        _save_label_png(object_mask, root / "SegmentationObject" / f"{image_id}.png")
        ids.append(image_id)
        sources[image_id] = {"background": scene.background_name, "items": [p.item.key for p in scene.placed]}
        yield 1
    listing = root / "ImageSets" / "Segmentation" / "val.txt"
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")
    _write_json(sources, out / "sources.json")
