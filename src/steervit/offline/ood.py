"""The out-of-distribution (OOD) suite: held-out scenes that differ from training along one axis each.

Generalisation is only worth reporting on data made differently from the training data, so each
part changes one thing and keeps the rest as in the in-distribution test split:

    backgrounds   backgrounds from photo packages never used in training (offline/backgrounds.py)
    layouts_9     nine items per scene, items down to about two patches wide, touching and partly
                  hidden by each other (exact visible masks)
    layouts_12    the same with twelve items
    phrasings     the test split's kind of scene, described with held-out names, words and templates
                  (offline/vocabulary.py) that training never uses
    instances     only held-out object instances (Fashion-MNIST test photos, held-out photo objects)
    core/         a CORE-style retrieval set (the published CORE layout) on the OOD backgrounds
    probe/        an FG-CLS-style linear-probe set: one Fashion-MNIST test product per image on an OOD
                  background, labelled with its class, in the image-folder layout `steervit eval fgcls`
                  reads (`probe/products/{train,test}/<class>/*.png`); its prompt is "the product"

Output (OUT_DIR): `manifest.jsonl` (split "test", one `source` per part: `ood_<part>`),
`scenes.jsonl`, `images/<part>/*.png`, `masks/<part>/*.png`, `core/`, `probe/`, `build_info.json`.
The photos are real, the scenes are made. `bench/offline_quality.py --ood OUT_DIR` reports every part
beside the in-distribution test split, with the plain trunk beside each.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..data.manifest import write_manifest
from ..data.records import PngMask, Record
from . import backgrounds as bg
from . import fashion_mnist as fm
from . import photos
from .build import save_scene
from .eval_sets import file_stem
from .scenes import CANVAS, PALETTE, Scene, choose_expressions, compose, fashion_item, fashion_items, \
    make_background, photo_item, save_png

PARTS = ("backgrounds", "layouts_9", "layouts_12", "phrasings", "instances")
PROBE_DATASET = "products"  # the probe's folder name; evaluation/fgcls.py knows it and its prompt
STATEMENT = "The photos are real, the scenes are made."


@dataclass(frozen=True)
class OodSizes:
    """Scene images per part (each gives `expressions` records), CORE-style scenes x bases, and the
    probe's images per class in its train and test split (0 skips the probe)."""

    scenes: int = 120
    expressions: int = 3
    core_scenes: int = 4
    core_bases: int = 8
    probe_train: int = 40
    probe_test: int = 20


@dataclass(frozen=True)
class _Material:
    test: fm.FashionMNIST
    pool: dict[int, np.ndarray]  # label -> Fashion-MNIST test photos (held out from training)
    seen: tuple[str, ...]  # photo objects training uses
    held: tuple[str, ...]  # photo objects training never uses
    ood_backgrounds: list[Path]


# --------------------------------------------------------------------------- one scene per part


def _ood_background(rng: np.random.Generator, material: _Material) -> tuple[np.ndarray, str]:
    path = material.ood_backgrounds[int(rng.integers(len(material.ood_backgrounds)))]
    return bg.random_background(rng, [path], CANVAS), f"ood:{path}"  # the full path: file names repeat


def _standard_scene(rng: np.random.Generator, material: _Material, background) -> Scene:
    """As the in-distribution test split: four products, or photo objects (one held out) with products."""
    if rng.random() < 1 / 3:
        keys = [str(rng.choice(material.held))]
        keys += [str(k) for k in rng.choice([k for k in material.seen + material.held if k not in keys],
                                              size=int(rng.integers(0, 3)), replace=False)]
        items = [photo_item(k) for k in keys] + fashion_items(rng, material.test, material.pool, int(rng.integers(0, 3)))
        sizes = [int(rng.integers(80, 131)) for _ in keys] + [int(rng.integers(40, 70)) for _ in items[len(keys):]]
    else:
        items = fashion_items(rng, material.test, material.pool, 4)
        sizes = [int(rng.integers(40, 91)) for _ in items]
    image, name = background(rng)
    return compose(image, name, items, sizes, rng, "scatter")


def _dense_scene(rng: np.random.Generator, material: _Material, count: int) -> Scene | None:
    """`count` items, 28-80 px (two patches and up), touching and partly hiding each other."""
    photo_keys = [str(k) for k in rng.choice(material.seen + material.held, size=int(rng.integers(0, 3)),
                                             replace=False)]
    items = [photo_item(k) for k in photo_keys]
    for label in rng.integers(10, size=count - len(items)):  # classes repeat: same-class distractors
        colour = str(rng.choice(list(PALETTE))) if rng.random() < 0.7 else None  # often in other colours
        items.append(fashion_item(material.test, int(rng.choice(material.pool[int(label)])), colour))
    sizes = [int(rng.integers(28, 81)) for _ in items]
    style = str(rng.choice(["black", "texture", "photo"]))
    image, name = make_background(rng, style, material.seen)
    return compose(image, name, items, sizes, rng, "scatter", overlap=0.3)


def _make_part(part: str, rng: np.random.Generator, material: _Material) -> tuple[Scene | None, str]:
    """(scene, expression split) of one image of `part`."""
    if part == "backgrounds":
        return _standard_scene(rng, material, lambda r: _ood_background(r, material)), "train"
    if part in ("layouts_9", "layouts_12"):
        return _dense_scene(rng, material, int(part.split("_")[1])), "train"
    in_distribution = lambda r: make_background(r, str(r.choice(["black", "texture", "photo"])), material.seen)
    return _standard_scene(rng, material, in_distribution), "ood" if part == "phrasings" else "train"


# --------------------------------------------------------------------------- the probe set


def probe_jobs(sizes: OodSizes) -> int:
    """Images the probe part writes (0: no probe)."""
    return len(fm.CLASSES) * (sizes.probe_train + sizes.probe_test)


def build_probe(out: Path, seed: int, sizes: OodSizes, material: _Material) -> Iterator[int]:
    """Write probe/products/{train,test}/<class>/*.png and probe/sources.json; yields per image.

    Each image is one Fashion-MNIST test product (tinted or left grey, at a random size and
    position) on an OOD background, as the other parts paste their items. Per class the products
    are drawn without replacement, so no product is in both the probe's train and test split.
    """
    if (out / "probe").exists():  # the reader lists every file in the class folders: no stale ones
        shutil.rmtree(out / "probe")
    root = out / "probe" / PROBE_DATASET
    sources = {}
    for label, cls in enumerate(fm.CLASSES):
        picks = np.random.default_rng([seed, 600, label]).permutation(material.pool[label])
        picks = picks[:sizes.probe_train + sizes.probe_test]
        if len(picks) < sizes.probe_train + sizes.probe_test:
            raise ValueError(f"only {len(picks)} Fashion-MNIST test photos of {cls.name!r}; ask for fewer "
                             f"probe images per class")
        for k, index in enumerate(picks):
            rng = np.random.default_rng([seed, 601, label, k])
            colour = str(rng.choice(list(PALETTE))) if rng.random() < 0.55 else None  # as fashion_items
            image, name = _ood_background(rng, material)
            scene = compose(image, name, [fashion_item(material.test, int(index), colour)],
                            [int(rng.integers(64, 161))], rng, "scatter")
            if scene is None:  # one item of at most 160 px always fits a 224 px canvas; guard anyway
                raise RuntimeError(f"could not place Fashion-MNIST test photo {index}")
            split, i = ("train", k) if k < sizes.probe_train else ("test", k - sizes.probe_train)
            file = Path(split) / file_stem(cls.name) / f"{i:03d}.png"
            save_png(scene.image, root / file)
            placed = scene.placed[0]
            sources[file.as_posix()] = {"item": placed.item.key, "label": label, "class": cls.name,
                                        "colour": placed.item.colour, "box": list(placed.box),
                                        "background": scene.background_name}
            yield 1
    (out / "probe" / "sources.json").write_text(json.dumps(sources, indent=1) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- the build


def build_ood(out_dir: str | Path, seed: int = 0, sizes: OodSizes = OodSizes(), *, overwrite: bool = False,
              progress: bool = True, fashion_root: str | None = None,
              parts: tuple[str, ...] = PARTS) -> dict:
    """Write the OOD suite into `out_dir`; returns the summary also written to build_info.json."""
    from tqdm import tqdm

    from .eval_sets import CoreSizes, build_core

    start = time.time()
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; pass overwrite=True (--overwrite) to replace it")
    if (sizes.probe_train == 0) != (sizes.probe_test == 0):
        raise ValueError("the probe needs images in both its splits: give probe_train and probe_test both > 0, "
                         "or both 0 to skip it")
    fm.require_fashion_mnist(fashion_root)
    material = _material(fashion_root)
    records, lines, counts = [], [], {}
    bar = tqdm(total=len(parts) * sizes.scenes + sizes.core_scenes * sizes.core_bases + probe_jobs(sizes),
               desc="OOD suite", unit="img", disable=not progress)
    for code, part in enumerate(parts):
        made = 0
        for i in range(sizes.scenes):
            rng = np.random.default_rng([seed, 500 + PARTS.index(part), i])
            scene, split = _make_part(part, rng, material)
            bar.update(1)
            if scene is None:
                continue
            image_id = f"{part}-{i:05d}"
            new_records, line = _save(out, part, image_id, scene, choose_expressions(
                scene, sizes.expressions, rng, split=split))
            records += new_records
            lines.append({**line, "expression_split": split})
            made += 1
        counts[part] = {"images": made, "records": sum(r.source == f"ood_{part}" for r in records)}
    write_manifest(records, out / "manifest.jsonl")
    with open(out / "scenes.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    core_sizes = CoreSizes(scenes=sizes.core_scenes, bases=sizes.core_bases)
    for _ in build_core(out / "core", seed, material.test, material.pool, core_sizes,
                        background=lambda r: _ood_background(r, material)):
        bar.update(1)
    probe = None
    if probe_jobs(sizes):
        for _ in build_probe(out, seed, sizes, material):
            bar.update(1)
        probe = {"images": probe_jobs(sizes), "classes": len(fm.CLASSES), "train_per_class": sizes.probe_train,
                 "test_per_class": sizes.probe_test}
    bar.close()
    summary = {"seed": seed, "sizes": asdict(sizes), "parts": counts, "probe": probe,
               "seconds": round(time.time() - start, 1),
               "ood_background_files": len(material.ood_backgrounds), "statement": STATEMENT}
    (out / "build_info.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def _material(fashion_root: str | None) -> _Material:
    test = fm.load_fashion_mnist("test", fashion_root)
    pool = {label: np.flatnonzero(test.labels == label) for label in range(10)}
    objects = photos.objects_for("v2")  # the suite stays as first built, whatever the training recipe
    seen = tuple(o.key for o in objects if not o.held_out)
    held = tuple(o.key for o in objects if o.held_out)
    return _Material(test, pool, seen, held, bg.background_files("ood"))


def _save(out: Path, part: str, image_id: str, scene: Scene, chosen) -> tuple[list[Record], dict]:
    """The build's own scene writer (image, one mask per item), then this part's records and index line."""
    image_path, items = save_scene(out, part, image_id, scene)
    records = [Record(image=str(image_path), expression=text, mask=PngMask(str(out / items[k]["mask"])),
                      source=f"ood_{part}", image_id=image_id, split="test") for k, text in chosen]
    line = {"image_id": image_id, "part": part, "image": image_path.relative_to(out).as_posix(),
            "background": scene.background_name, "items": items,
            "expressions": [{"item": k, "text": text} for k, text in chosen]}
    return records, line
