"""Scene composition and expressions: exact masks, and phrases true of their item and of no other."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from steervit.offline import fashion_mnist as fm
from steervit.offline import photos
from steervit.offline import scenes
from steervit.offline import vocabulary as v
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


def all_phrases(s: Scene, i: int, split: str = "train") -> set[str]:
    return {t for texts in expressions(s, i, split).values() for t in texts}


def test_left_and_right_pick_the_extreme_of_their_class():
    s = scene(at(fake("sneaker"), 10, 100), at(fake("sneaker"), 150, 100), at(fake("bag"), 80, 10))
    left, right, bag = (all_phrases(s, i) for i in range(3))
    assert {"the sneaker on the left", "the leftmost sneaker", "the left sneaker"} <= left
    assert {"the sneaker on the right", "the rightmost sneaker", "the right sneaker"} <= right
    assert "the sneaker" not in left | right  # two sneakers: the bare noun names neither
    assert {"the bag", "a bag", "the bag at the top", "the topmost item"} <= bag
    assert "the sneaker to the left of the bag" in left and "the sneaker to the right of the bag" in right
    # synonyms say the same: any name of the class, any wording of the side, any training template
    assert {"the trainer furthest to the left", "the leftmost running shoe", "the gym shoe that is on the far left",
            "the left athletic shoe of the two", "the running shoe placed to the left of the handbag"} <= left
    assert {"the purse at the top", "the handbag in the picture", "the uppermost object"} <= bag


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


@functools.cache
def generated(split: str) -> list[tuple[int, int, str, str]]:
    """(scene, item, kind, phrase) for every candidate phrase of every item of 80 random scenes."""
    return [(n, i, kind, text) for n, s in enumerate(_random_scenes_80()) for i in range(len(s.placed))
            for kind, texts in expressions(s, i, split).items() for text in texts]


@functools.cache
def _random_scenes_80() -> tuple[Scene, ...]:
    return tuple(random_scenes(80))


@pytest.mark.parametrize("split", ["train", "ood"])
def test_every_generated_phrase_is_true_and_unique(fashion_mnist_installed, split):
    """All candidate phrases of all items of 80 random scenes, judged by the independent checker,
    in training wording and in the held-out wording of the out-of-distribution phrasing test."""
    objs = [_objs(s) for s in _random_scenes_80()]
    problems = [f"scene {n} item {i} {text!r}: {p}" for n, i, _, text in generated(split)
                for p in check(text, i, objs[n])]
    assert not problems, "\n".join(problems[:20])
    assert {"name", "colour", "position", "region", "relation", "scene position", "description", "kind", "size",
            "order"} <= {kind for _, _, kind, _ in generated(split)}


def test_training_phrases_hold_nothing_held_out_and_ood_phrases_always_do(fashion_mnist_installed):
    """The OOD phrasing test is only out of distribution if training never saw its words or templates.

    Every kind of phrase has held-out wording (each template family has held-out templates, each
    word group held-out words), so the ood split holds for all of them, none excepted.
    """
    train = {text for _, _, _, text in generated("train")}
    assert not [t for t in train if v.is_held_out(t)][:10]
    ood = {(kind, text) for _, _, kind, text in generated("ood")}
    assert not [t for _, t in ood if not v.is_held_out(t)][:10]
    assert all(v.held_out_template(t) for _, t in ood)  # not just a word: a held-out template too
    assert {kind for kind, _ in ood} == {kind for _, _, kind, _ in generated("train")}
    # the default is the training split, and the ood split is a different wording of the same facts
    s = _random_scenes_80()[0]
    assert all_phrases(s, 0) == {t for texts in expressions(s, 0, "train").values() for t in texts}
    assert expressions(s, 0).keys() == expressions(s, 0, "ood").keys()


def test_choose_expressions_draws_from_the_split(fashion_mnist_installed):
    s = _random_scenes_80()[1]
    for split, held in (("train", False), ("ood", True)):
        chosen = scenes.choose_expressions(s, 6, np.random.default_rng(0), split=split)
        assert chosen and all(v.is_held_out(text) == held for _, text in chosen)
        assert all(text in all_phrases(s, i, split) for i, text in chosen)


def test_synonyms_name_the_same_class():
    """"The pants" are the trousers: unique only while one pair of trousers is in the picture."""
    one = scene(at(fake("pair of trousers"), 10, 100), at(fake("coat"), 150, 100))
    two = scene(at(fake("pair of trousers"), 10, 100), at(fake("pair of trousers"), 150, 100), at(fake("coat"), 80, 10))
    assert {"the pants", "the slacks", "the pair of pants"} <= all_phrases(one, 0)
    assert not {"the pants", "the slacks", "the trousers"} & (all_phrases(two, 0) | all_phrases(two, 1))
    assert "the pants on the left" in all_phrases(two, 0) and "the slacks on the right" in all_phrases(two, 1)
    assert "the jacket" in all_phrases(two, 2) and "the overcoat" in all_phrases(one, 1)
    assert "the pair of long pants you can see" in all_phrases(one, 0, "ood")
    # a kind is unique only if no other item is of that kind: the coat is not "the garment" beside trousers
    assert not [p for p in all_phrases(one, 1) if "garment" in p or "clothing" in p]


def test_photo_objects_get_no_colour_words():
    """Photo objects keep their own colours: no "the red quokka", only names that hold one ("the white rocket")."""
    s = scene(at(photo_item("quokka"), 10, 100), at(photo_item("rocket"), 150, 100))
    colour_words = {w for t in v.COLOURS.values() for w in t.split("all")}
    names = " / ".join(n for key in ("quokka", "rocket") for n in v.names(key, "all") + v.descriptions(key, "all"))
    for i in range(2):
        for split in ("train", "ood"):
            phrases = expressions(s, i, split)
            assert "colour" not in phrases
            for text in (t for texts in phrases.values() for t in texts):
                assert not [w for w in colour_words if v.contains(text, w) and not v.contains(names, w)], text
    assert "the white rocket" in all_phrases(s, 1)


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
