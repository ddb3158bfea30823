"""The tiny build, read back from disk: manifest, exact masks, true expressions, held-out material,
disjoint splits, determinism, and the three evaluation sets' layouts."""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from steervit.data import read_manifest
from steervit.data.records import decode_mask
from steervit.offline import eval_sets, photos
from steervit.offline import fashion_mnist as fm
from steervit.offline.build import STATEMENT, build_offline

from .conftest import SEED, TINY, tiny_build
from .expression_check import Obj, check

HELD_PHOTOS = {o.key for o in photos.PHOTO_OBJECTS if o.held_out}


def png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def scene_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "scenes.jsonl").read_text().splitlines()]


def rerender(item: dict) -> tuple[np.ndarray, np.ndarray]:
    """Render an item again from its key alone (which photo, which Fashion-MNIST index)."""
    if item["source"] == "photo":
        return photos.render_cutout(photos.cutout(item["key"][len("photo-"):]), item["size"], item["flip"])
    _, split, index = item["key"].split("-")
    grey = fm.load_fashion_mnist(split).images[int(index)]
    return fm.render_item(grey, item["size"], tuple(item["tint"]) if item["tint"] else None, item["flip"])


def test_summary_and_statement(built):
    out, summary = built
    assert STATEMENT in (out / "README.md").read_text()
    assert summary["quokka_cutout_iou"] >= 0.9
    assert summary["counts"]["images"] == {"train": TINY.train, "validation": TINY.validation, "test": TINY.test}
    assert summary["held_out_share"] >= 0.25


def test_manifest_reads_and_every_mask_decodes(built):
    out, _ = built
    for split, images in (("train", TINY.train), ("validation", TINY.validation), ("test", TINY.test)):
        records = read_manifest(out / "manifest.jsonl", split)
        assert images <= len(records) <= images * TINY.expressions
        assert {r.source for r in records} <= {"offline_fashion_scenes", "offline_photo_composites"}
        for r in records:
            with Image.open(r.image) as im:
                assert im.size == (224, 224) and im.mode == "RGB"
            mask = decode_mask(r.mask, 224, 224)
            assert mask.any() and not mask.all()
            assert set(np.unique(png(Path(r.mask.path))).tolist()) <= {0, 255}
    assert len({(r.image_id, r.expression) for r in read_manifest(out / "manifest.jsonl")}) == \
        len(read_manifest(out / "manifest.jsonl"))  # no phrase twice for one image


def test_masks_are_exactly_the_pasted_items(built):
    """Each mask file is the non-zero region of its item, rendered again from the item's key, at its box,
    and the image shows that item's pixels there; on black, nothing else is drawn."""
    out, _ = built
    for line in scene_lines(out):
        image = png(out / line["image"])
        union = np.zeros((224, 224), bool)
        for item in line["items"]:
            mask = png(out / item["mask"]) > 0
            rgb, item_mask = rerender(item)
            np.testing.assert_array_equal(rgb.max(axis=2) > 0, item_mask)
            x, y, w, h = item["box"]
            ys, xs = np.nonzero(item_mask)
            expected = np.zeros((224, 224), bool)
            expected[ys - ys.min() + y, xs - xs.min() + x] = True
            np.testing.assert_array_equal(mask, expected, err_msg=f"{line['image_id']} {item['key']}")
            np.testing.assert_array_equal(image[mask], rgb[item_mask])
            assert not (union & mask).any()
            union |= mask
        if line["background"] == "black":
            assert not image[~union].any()


def test_expressions_are_true_of_their_item_only(built):
    out, _ = built
    problems, count = [], 0
    for line in scene_lines(out):
        objs = [Obj(i["category"], i["source"], i["colour"], png(out / i["mask"]) > 0) for i in line["items"]]
        for e in line["expressions"]:
            count += 1
            problems += [f"{line['image_id']} {e['text']!r}: {p}" for p in check(e["text"], e["item"], objs)]
    assert count > 0 and not problems, "\n".join(problems[:20])
    # the manifest says the same as the scene list
    by_mask = {(l["image_id"], i["mask"]): (l, k) for l in scene_lines(out) for k, i in enumerate(l["items"])}
    for r in read_manifest(out / "manifest.jsonl"):
        line, k = by_mask[(r.image_id, Path(r.mask.path).relative_to(out).as_posix())]
        assert {"item": k, "text": r.expression} in line["expressions"]


def test_held_out_material_never_in_train_or_validation(built):
    out, _ = built
    keys: dict[str, set[str]] = {"train": set(), "validation": set(), "test": set()}
    for line in scene_lines(out):
        keys[line["split"]] |= {i["key"] for i in line["items"]}
        if line["split"] != "test":
            assert line["background"] not in {f"photo:{k}" for k in HELD_PHOTOS}
        elif line["kind"] == "fashion":
            assert len(line["items"]) == 4  # test: four products, the phrase names one
        else:
            assert any(i["key"][len("photo-"):] in HELD_PHOTOS for i in line["items"])
    for split in ("train", "validation"):
        assert all(k.startswith("fmnist-train-") or (k.startswith("photo-") and k[6:] not in HELD_PHOTOS)
                   for k in keys[split]), split
    assert not keys["train"] & keys["validation"]
    assert all(k.startswith("fmnist-test-") or k.startswith("photo-") for k in keys["test"])
    assert any(k[6:] in HELD_PHOTOS for k in keys["test"])
    # the evaluation sets: held-out material only
    core = json.loads((out / "core" / "sources.json").read_text())
    pods = json.loads((out / "pods" / "sources.json").read_text())
    eval_keys = {k for objs in core["objects"].values() for k in objs.values()}
    eval_keys |= {k for ks in core["bases"].values() for k in ks}
    eval_keys |= {k for entry in pods.values() for k in [entry["object"], *entry["negatives"]]}
    assert all(k.startswith("fmnist-test-") or k[6:] in HELD_PHOTOS for k in eval_keys)
    assert not eval_keys & (keys["train"] | keys["validation"] | keys["test"]) - {f"photo-{k}" for k in HELD_PHOTOS}


def test_splits_are_disjoint_by_base_image(built):
    out, _ = built
    ids: dict[str, set[str]] = {}
    hashes: dict[str, set[str]] = {}
    for line in scene_lines(out):
        ids.setdefault(line["split"], set()).add(line["image_id"])
        hashes.setdefault(line["split"], set()).add(hashlib.sha256((out / line["image"]).read_bytes()).hexdigest())
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert not ids[a] & ids[b] and not hashes[a] & hashes[b]
    for r in read_manifest(out / "manifest.jsonl"):
        assert r.image_id in ids[r.split] and Path(r.image).parent.name == r.split


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in ("build_info.json", "README.md")}


def test_same_seed_same_files(built, tmp_path):
    out, _ = built
    tiny_build(tmp_path / "again", seed=SEED)
    assert tree_digest(tmp_path / "again") == tree_digest(out)
    small = replace(TINY, train=4, validation=1, test=2)
    build_offline(tmp_path / "other", seed=SEED + 1, sizes=small, eval_sets_too=False, progress=False)
    assert (tmp_path / "other" / "manifest.jsonl").read_bytes() != (out / "manifest.jsonl").read_bytes()


def test_existing_output_is_not_clobbered(built, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        build_offline(tmp_path, sizes=replace(TINY, train=1, validation=1, test=1), progress=False)
    assert (tmp_path / "keep.txt").read_text() == "mine"


# --------------------------------------------------------------------------- evaluation sets


def test_core_layout(built):
    out, _ = built
    rows = [json.loads(line) for line in (out / "core" / "metadata.jsonl").read_text().splitlines()]
    assert rows and all(set(r) == {"scene", "object", "image_id", "prompt", "file"} for r in rows)
    scenes = {r["scene"] for r in rows}
    assert len(scenes) == TINY.core.scenes
    for scene in scenes:
        mine = [r for r in rows if r["scene"] == scene]
        objects = {r["object"] for r in mine}
        assert len(objects) == 5  # chance P@1 = 1/5
        by_base: dict[str, list[dict]] = {}
        for r in mine:
            by_base.setdefault(r["image_id"], []).append(r)
        assert len(by_base) == TINY.core.bases
        for image_id, variants in by_base.items():
            assert sorted(v["object"] for v in variants) == sorted(objects)  # each object once per base
            base = png(out / "core" / "bases" / f"{image_id}.png")
            for v in variants:
                assert v["prompt"].endswith(".") and v["object"].split()[-1] in v["prompt"]
                image = png(out / "core" / v["file"])
                added = png(out / "core" / "masks" / Path(v["file"]).name) > 0
                assert added.any()
                np.testing.assert_array_equal(image[~added], base[~added])  # the variant adds only its object
                assert (image[added] != base[added]).any()
    prompts = {}
    for r in rows:  # one prompt per object
        assert prompts.setdefault((r["scene"], r["object"]), r["prompt"]) == r["prompt"]


@pytest.mark.parametrize("category", eval_sets.ANOMALY_CATEGORIES)
@pytest.mark.parametrize("defect", eval_sets.DEFECTS)
def test_anomaly_masks_cover_exactly_the_changed_pixels(category, defect):
    rng = np.random.default_rng(0)
    for _ in range(3):
        tile = eval_sets.texture_tile(category, rng, "test")
        image, mask = eval_sets.add_defect(tile, defect, rng, category)
        changed = np.any(image != tile, axis=2)
        assert mask.any() and not (changed & ~mask).any()  # nothing changes outside the mask
        assert changed[mask].mean() > 0.9  # and (almost) every mask pixel changes
        assert np.abs(image.astype(int) - tile.astype(int))[mask].mean() > 20  # visibly


def test_anomaly_layout(built):
    out, _ = built
    root = out / "anomaly"
    assert sorted(p.name for p in root.iterdir()) == sorted(eval_sets.ANOMALY_CATEGORIES)
    for category in eval_sets.ANOMALY_CATEGORIES:
        assert len(list((root / category / "train" / "good").glob("*.png"))) == TINY.anomaly.train
        assert len(list((root / category / "test" / "good").glob("*.png"))) == TINY.anomaly.good
        for defect in eval_sets.DEFECTS:
            images = sorted((root / category / "test" / defect).glob("*.png"))
            assert len(images) == TINY.anomaly.per_defect
            for image in images:
                mask = png(root / category / "ground_truth" / defect / f"{image.stem}_mask.png")
                assert mask.shape == (224, 224) and set(np.unique(mask).tolist()) == {0, 255}
    # train and test crops come from different halves of each texture
    train = {hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("train/good/*.png")}
    test = {hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("test/*/*.png")}
    assert not train & test


def test_pods_layout(built):
    out, _ = built
    root = out / "pods"
    descriptions = json.loads((root / "descriptions.json").read_text())
    sources = json.loads((root / "sources.json").read_text())
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert folders == sorted(descriptions) == sorted(sources)
    assert len(folders) == TINY.pods.products + 2  # + the two held-out people
    for folder in folders:
        info = descriptions[folder]
        assert set(info) == {"supercategory", "name", "description"} and all(info.values())
        for part, n in (("reference", TINY.pods.reference), ("positive", TINY.pods.positive),
                        ("negative", TINY.pods.negative)):
            files = sorted((root / folder / part).glob("*.png"))
            assert len(files) == n
            assert all(png(f).shape == (224, 224, 3) for f in files)
        obj, negatives = sources[folder]["object"], sources[folder]["negatives"]
        assert obj not in negatives
        if obj.startswith("fmnist-test-"):  # negatives: other products of the same class
            label = fm.load_fashion_mnist("test").labels
            assert all(label[int(n.split("-")[-1])] == label[int(obj.split("-")[-1])] for n in negatives)
        else:
            assert all(photos.OBJECTS_BY_KEY[n[6:]].kind == photos.OBJECTS_BY_KEY[obj[6:]].kind for n in negatives)


def test_the_evaluation_readers_accept_the_layouts(built):
    datasets = pytest.importorskip("steervit.evaluation.datasets")
    out, _ = built
    core = datasets.read_core(out / "core")
    assert len(core) == TINY.core.scenes * TINY.core.bases * 5
    pods = datasets.read_pods(out / "pods")
    assert len(pods.objects) == TINY.pods.products + 2
    mvtec = datasets.read_mvtec(out / "anomaly")
    assert set(mvtec) == set(eval_sets.ANOMALY_CATEGORIES)


def test_cli_registers_the_command():
    from steervit.cli import build_parser

    args = build_parser().parse_args(["data", "build-offline", "OUT", "--seed", "2", "--scale", "0.5"])
    assert args.out_dir == "OUT" and args.seed == 2 and args.scale == 0.5 and callable(args.func)


def test_cli_refuses_a_non_empty_folder(tmp_path, capsys, fashion_mnist_installed):
    from steervit.cli import main

    (tmp_path / "x").write_text("x")
    assert main(["data", "build-offline", str(tmp_path), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
