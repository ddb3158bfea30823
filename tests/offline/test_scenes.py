"""Scene composition and expressions: exact masks, and phrases true of their item and of no other."""
from __future__ import annotations

import numpy as np
import pytest

from steervit.offline import fashion_mnist as fm
from steervit.offline import photos
from steervit.offline import scenes
from steervit.offline.scenes import CANVAS, Item, Placed, Scene, compose, expressions, fashion_item, \
    fashion_scene, photo_item, photo_scene, place

from .expression_check import Obj, check


def fake(category: str, colour: str = "grey", kind: str | None = None) -> Item:
    cls = next((c for c in fm.CLASSES if c.nouns[0] == category), None)
    return Item(key=f"fake-{category}", source="fashion_mnist", category=category,
                names=cls.nouns if cls else (category,), kind=kind, colour=colour)


def at(item: Item, x: int, y: int, w: int = 30, h: int = 30) -> Placed:
    mask = np.zeros((CANVAS, CANVAS), bool)
    mask[y:y + h, x:x + w] = True
    return Placed(item, (x, y, w, h), mask, max(w, h), False)


def scene(*placed: Placed) -> Scene:
    blank = np.zeros((CANVAS, CANVAS, 3), np.uint8)
    return Scene(blank, blank, "black", list(placed))


def all_phrases(s: Scene, i: int) -> set[str]:
    return {t for texts in expressions(s, i).values() for t in texts}


def test_left_and_right_pick_the_extreme_of_their_class():
    s = scene(at(fake("sneaker"), 10, 100), at(fake("sneaker"), 150, 100), at(fake("bag"), 80, 10))
    left, right, bag = (all_phrases(s, i) for i in range(3))
    assert {"the sneaker on the left", "the leftmost sneaker", "the left sneaker"} <= left
    assert {"the sneaker on the right", "the rightmost sneaker", "the right sneaker"} <= right
    assert "the sneaker" not in left | right  # two sneakers: the bare noun names neither
    assert {"the bag", "a bag", "the bag at the top", "the topmost item"} <= bag
    assert "the sneaker to the left of the bag" in left and "the sneaker to the right of the bag" in right


def test_no_position_words_when_the_difference_is_not_visible():
    s = scene(at(fake("sneaker"), 100, 20), at(fake("sneaker"), 108, 150))  # 8 px apart in x
    phrases = all_phrases(s, 0) | all_phrases(s, 1)
    assert not any(w in p for p in phrases for w in ("left", "right"))
    assert "the sneaker at the top" in all_phrases(s, 0) and "the lower sneaker" in all_phrases(s, 1)


def test_colour_tells_apart_only_different_colours():
    s = scene(at(fake("coat", "red"), 10, 10), at(fake("coat", "grey"), 150, 150))
    assert "the red coat" in all_phrases(s, 0) and "the grey coat" in all_phrases(s, 1)
    s = scene(at(fake("coat", "white"), 10, 10), at(fake("coat", "grey"), 150, 150))
    assert not any(p in all_phrases(s, 0) for p in ("the white coat", "the grey coat"))


def test_relation_needs_a_unique_anchor_and_a_unique_target():
    s = scene(at(fake("bag"), 10, 100), at(fake("bag"), 60, 100), at(fake("coat"), 150, 100))
    # both bags are left of the coat: "the bag left of the coat" would name two
    assert not any("left of" in p for p in all_phrases(s, 0) | all_phrases(s, 1))
    s = scene(at(fake("bag"), 10, 100), at(fake("bag"), 190, 100), at(fake("coat"), 100, 100))
    assert "the bag to the left of the coat" in all_phrases(s, 0)
    assert "the bag to the right of the coat" in all_phrases(s, 1)


def test_ordinal_and_size():
    s = scene(at(fake("dress"), 10, 100), at(fake("dress"), 90, 100, 60, 60), at(fake("dress"), 180, 100))
    assert {"the second dress from the left", "the second dress from the right", "the middle dress",
            "the biggest dress"} <= all_phrases(s, 1)


def test_place_never_overlaps():
    rng = np.random.default_rng(0)
    for layout in ("scatter", "row", "column", "grid"):
        for _ in range(30):
            shapes = [tuple(int(v) for v in rng.integers(20, 60, size=2)) for _ in range(int(rng.integers(2, 6)))]
            boxes = place(shapes, rng, layout)
            if boxes is None:
                continue
            canvas = np.zeros((CANVAS, CANVAS), int)
            for x, y, w, h in boxes:
                assert 0 <= x and 0 <= y and x + w <= CANVAS and y + h <= CANVAS
                canvas[y:y + h, x:x + w] += 1
            assert canvas.max() == 1


def _objs(s: Scene) -> list[Obj]:
    return [Obj(p.item.category, p.item.source, p.item.colour, p.mask) for p in s.placed]


def random_scenes(count: int, seed: int = 0):
    data = fm.load_fashion_mnist("train")
    pool = {label: data.indices_of(label)[:300] for label in range(10)}
    seen = tuple(o.key for o in photos.PHOTO_OBJECTS)
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        if i % 4 == 3:
            extra = [fashion_item(data, int(rng.choice(pool[int(rng.integers(10))])))] if i % 8 == 3 else []
            yield photo_scene(rng, seen, seen, extra=extra)
        else:
            yield fashion_scene(rng, data, pool, int(rng.integers(2, 6)), seen)


def test_every_generated_phrase_is_true_and_unique(fashion_mnist_installed):
    """All candidate phrases of all items of 80 random scenes, judged by the independent checker."""
    problems, kinds = [], set()
    for n, s in enumerate(random_scenes(80)):
        objs = _objs(s)
        for i in range(len(s.placed)):
            for kind, texts in expressions(s, i).items():
                kinds.add(kind)
                for text in texts:
                    problems += [f"scene {n} item {i} {text!r}: {p}" for p in check(text, i, objs)]
    assert not problems, "\n".join(problems[:20])
    assert {"name", "colour", "position", "region", "relation", "scene position", "description"} <= kinds


def test_composed_masks_are_exactly_the_pasted_pixels(fashion_mnist_installed):
    for s in random_scenes(16, seed=1):
        union = np.zeros((CANVAS, CANVAS), bool)
        for p in s.placed:
            rgb, mask = p.item.render(p.size, p.flip)
            x, y, w, h = p.box
            assert not (union & p.mask).any()  # items never overlap
            union |= p.mask
            # the mask is the rendered item's non-zero region, at its place
            ys, xs = np.nonzero(mask)
            shifted = np.zeros_like(p.mask)
            shifted[ys - ys.min() + y, xs - xs.min() + x] = True
            np.testing.assert_array_equal(shifted, p.mask)
            np.testing.assert_array_equal(s.image[p.mask], rgb[mask])
        np.testing.assert_array_equal(s.image[~union], s.background[~union])


def test_variants_add_one_item_and_keep_the_base(fashion_mnist_installed):
    data = fm.load_fashion_mnist("test")
    rng = np.random.default_rng(5)
    base = compose(np.zeros((CANVAS, CANVAS, 3), np.uint8), "black",
                   [fashion_item(data, i) for i in (0, 1, 2)], [80, 80, 80], rng)
    variant = compose(base.background, "black", [photo_item("quokka")], [80], rng, base=base)
    added = variant.placed[-1].mask
    assert len(variant.placed) == 4 and added.any()
    np.testing.assert_array_equal(variant.image[~added], base.image[~added])
    assert not any((p.mask & added).any() for p in base.placed)


@pytest.mark.parametrize("key", ["quokka", "grace_hopper"])
def test_photo_items_are_named_by_hand(key):
    item = photo_item(key)
    assert item.held_out and item.description and item.names[0]


def test_partly_hidden_items_have_exact_visible_masks(fashion_mnist_installed):
    """With overlap, later items cover earlier ones: masks are disjoint, each is exactly the pixels
    that show its item, every item keeps at least MIN_VISIBLE of itself, and boxes fit the visible part."""
    data = fm.load_fashion_mnist("test")
    pool = {label: np.flatnonzero(data.labels == label) for label in range(10)}
    rng = np.random.default_rng(5)
    overlapping = 0
    for _ in range(12):
        items = scenes.fashion_items(rng, data, pool, 8)
        background = np.zeros((scenes.CANVAS, scenes.CANVAS, 3), np.uint8)
        scene = scenes.compose(background, "black", items, [int(rng.integers(40, 90)) for _ in items], rng,
                               "scatter", overlap=0.35)
        assert scene is not None and len(scene.placed) == 8
        union = np.zeros((scenes.CANVAS, scenes.CANVAS), int)
        for p in scene.placed:
            union += p.mask
            assert p.box == scenes.tight_box(p.mask)
            rgb, own = p.item.render(p.size, p.flip)
            assert p.mask.sum() >= scenes.MIN_VISIBLE * own.sum() - 1
            assert (scene.image[p.mask].max(axis=1) > 0).all()  # every visible pixel shows the item
        assert union.max() == 1  # no pixel belongs to two items
        boxes = [p.box for p in scene.placed]
        overlapping += any(not scenes._fits(a, [b]) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert overlapping > 0  # some items really touch or hide each other


def test_default_composition_is_unchanged_by_the_overlap_option(fashion_mnist_installed):
    data = fm.load_fashion_mnist("test")
    pool = {label: np.flatnonzero(data.labels == label) for label in range(10)}
    background = np.zeros((scenes.CANVAS, scenes.CANVAS, 3), np.uint8)
    made = []
    for kwargs in ({}, {"overlap": 0.0}):
        rng = np.random.default_rng(3)
        items = scenes.fashion_items(rng, data, pool, 4)
        made.append(scenes.compose(background, "black", items, [60, 70, 50, 80], rng, "grid", **kwargs))
    assert np.array_equal(made[0].image, made[1].image)
    assert [p.box for p in made[0].placed] == [p.box for p in made[1].placed]
