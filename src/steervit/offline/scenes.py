"""Made scenes from real photos: items pasted onto backgrounds, with exact masks and true expressions.

An `Item` is something that can be pasted (a Fashion-MNIST product photo, tinted or not, or a
photo object's cut-out) together with the words that name it. `compose` pastes items without
overlap in one of a few layouts, so every pasted pixel belongs to exactly one item and each mask
is exactly the set of pixels that item put down. `expressions` lists every phrase that is true of
one item *and of no other* in its scene: names when the item is the only one of its kind, else
colour, position ("the sneaker on the left" = the leftmost sneaker), size, order or a relation
to another uniquely named item. Position words compare box centres with a margin, so they hold
visibly, not by a pixel. The words themselves (many names per class, synonyms, templates) come
from vocabulary.py, from its training part or, for the out-of-distribution phrasing test, its
held-out part; this module only decides which facts hold.
"""
from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
from PIL import Image

from . import fashion_mnist as fm
from . import photos, vocabulary

CANVAS = 224  # the bundled model's input size
GAP = 6  # px between pasted items
MARGIN = 20  # px by which an item must be further left (right, up, down) than the others
LOW, HIGH = 0.3, 0.7  # "on the left" of a lone item: centre in the left 30 % of the picture
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (225, 40, 40), "green": (40, 175, 70), "blue": (50, 100, 235), "yellow": (245, 215, 50),
    "orange": (250, 140, 30), "purple": (155, 70, 205), "pink": (250, 130, 195),
}
NEUTRAL = ("white", "grey")  # untinted products; one colour group, so never used to tell two apart
LAYOUTS = ("scatter", "row", "column", "grid")
MIN_VISIBLE = 0.6  # an item partly hidden by others keeps at least this share of its own pixels
# How often each kind of phrase is picked when several fit; generic ones ("the topmost item",
# "the shoe") fit very often and would crowd out the rest.
KIND_WEIGHTS = {"position": 1.5, "relation": 1.2, "kind": 0.4, "scene position": 0.4}


@dataclass(frozen=True, eq=False)
class Item:
    """A pasteable thing and its words. `category` decides which items count as "the same kind".

    `expressions` words an item from vocabulary.py by its category; `names`, `kind` and
    `description` are the plain words the evaluation sets' prompts use.
    """

    key: str  # unique: "fmnist-test-123", "photo-quokka"
    source: str  # "fashion_mnist" or "photo"
    category: str
    names: tuple[str, ...]
    kind: str | None = None  # broader noun ("shoe", "animal")
    colour: str | None = None
    description: str | None = None
    held_out: bool = False
    plural_names: tuple[str, ...] = ()
    grey: np.ndarray | None = None  # Fashion-MNIST pixels (28 x 28)
    tint: tuple[int, int, int] | None = None

    @property
    def colour_group(self) -> str | None:
        return "neutral" if self.colour in NEUTRAL else self.colour

    def render(self, size: int, flip: bool = False, home: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(RGB, mask) with the longer side `size` px; zero outside the mask, non-zero inside."""
        if self.source == "fashion_mnist":
            return fm.render_item(self.grey, size, self.tint, flip)
        return photos.render_cutout(photos.cutout(self.category, home), size, flip)


def fashion_item(data: fm.FashionMNIST, index: int, colour: str | None = None) -> Item:
    """A Fashion-MNIST product, tinted with a palette colour or left grey ("white" if bright)."""
    label = int(data.labels[index])
    cls = fm.CLASSES[label]
    grey = data.images[index]
    if colour is None:
        colour = "white" if fm.brightness(grey) > 0.7 else "grey"
    return Item(
        key=f"fmnist-{data.split}-{index}", source="fashion_mnist", category=cls.nouns[0], names=cls.nouns,
        kind=cls.supercategory, colour=colour, held_out=data.split == "test", plural_names=cls.plural_nouns,
        grey=grey, tint=PALETTE.get(colour),
    )


def photo_item(key: str) -> Item:
    obj = photos.OBJECTS_BY_KEY[key]
    return Item(key=f"photo-{key}", source="photo", category=key, names=obj.names, kind=obj.kind,
                description=obj.description, held_out=obj.held_out)


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """[x, y, w, h] of the mask's pixels (None if empty): what the eye sees, not the pasted square."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


@dataclass(eq=False)
class Placed:
    """An item as pasted: the box [x, y, w, h] around its mask, and the mask over the whole canvas."""

    item: Item
    box: tuple[int, int, int, int]
    mask: np.ndarray
    size: int
    flip: bool

    @property
    def centre(self) -> tuple[float, float]:
        x, y, w, h = self.box
        return x + w / 2, y + h / 2

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass(eq=False)
class Scene:
    image: np.ndarray  # (CANVAS, CANVAS, 3) uint8
    background: np.ndarray  # the same without the items
    background_name: str
    placed: list[Placed]


# --------------------------------------------------------------------------- backgrounds


def make_background(rng: np.random.Generator, style: str, scenery_keys: tuple[str, ...],
                    home: str | None = None) -> tuple[np.ndarray, str]:
    """A (CANVAS, CANVAS, 3) background and its name: "black", "texture:brick", "photo:rocket"."""
    if style == "photo" and scenery_keys:
        for key in rng.permutation(np.array(scenery_keys)):
            crop = photos.scenery_crop(str(key), rng, CANVAS, home)
            if crop is not None:
                return crop, f"photo:{key}"
        style = "texture"
    if style == "texture" or style == "photo":
        texture = photos.TEXTURES[int(rng.integers(len(photos.TEXTURES)))]
        return photos.random_crop(photos.load_texture(texture.key), rng, CANVAS, 0.35), f"texture:{texture.key}"
    return np.zeros((CANVAS, CANVAS, 3), np.uint8), "black"


# --------------------------------------------------------------------------- composition


def _fits(box, boxes, overlap: float = 0.0) -> bool:
    """No box closer than GAP to another; with `overlap` > 0 boxes may instead cover up to that share
    of the smaller one (items touching or partly hiding each other)."""
    x, y, w, h = box
    if overlap <= 0:
        return all(x + w + GAP <= bx or bx + bw + GAP <= x or y + h + GAP <= by or by + bh + GAP <= y
                   for bx, by, bw, bh in boxes)
    for bx, by, bw, bh in boxes:
        inter = max(0, min(x + w, bx + bw) - max(x, bx)) * max(0, min(y + h, by + bh) - max(y, by))
        if inter > overlap * min(w * h, bw * bh):
            return False
    return True


def place(shapes: list[tuple[int, int]], rng: np.random.Generator, layout: str,
          occupied: list[tuple[int, int, int, int]] = (), overlap: float = 0.0) -> list[tuple[int, int, int, int]] | None:
    """Boxes [x, y, w, h] for shapes (h, w) in a layout, or None if they do not fit. Non-overlapping,
    unless `overlap` > 0 (scatter only): then a box may cover up to that share of a smaller one."""
    n = len(shapes)
    boxes: list[tuple[int, int, int, int]] = []
    if layout in ("row", "column") and n > 1:
        along = 0 if layout == "row" else 1  # 0: items side by side in x
        cell = CANVAS / n
        line = rng.uniform(0.3, 0.7) * CANVAS
        for i, (h, w) in enumerate(shapes):
            size_along, size_across = (w, h) if along == 0 else (h, w)
            if size_along + GAP > cell or size_across > CANVAS:
                return None
            start = i * cell + rng.uniform(0, cell - size_along - GAP) + GAP / 2
            across = np.clip(line - size_across / 2 + rng.uniform(-12, 12), 0, CANVAS - size_across)
            x, y = (start, across) if along == 0 else (across, start)
            boxes.append((int(x), int(y), w, h))
    elif layout == "grid" and n > 1:
        rows = 2 if n <= 4 else 3
        cols = int(np.ceil(n / rows)) if n > 2 else 2
        cells = rng.permutation(rows * cols)[:n]
        ch, cw = CANVAS / rows, CANVAS / cols
        for cell_index, (h, w) in zip(cells, shapes):
            r, c = divmod(int(cell_index), cols)
            if w + GAP > cw or h + GAP > ch:
                return None
            x = c * cw + GAP / 2 + rng.uniform(0, cw - w - GAP)
            y = r * ch + GAP / 2 + rng.uniform(0, ch - h - GAP)
            boxes.append((int(x), int(y), w, h))
    else:  # scatter: largest first, random positions, rejection
        order = sorted(range(n), key=lambda i: -shapes[i][0] * shapes[i][1])
        found: dict[int, tuple[int, int, int, int]] = {}
        for i in order:
            h, w = shapes[i]
            if w > CANVAS or h > CANVAS:
                return None
            for _ in range(200):
                box = (int(rng.integers(0, CANVAS - w + 1)), int(rng.integers(0, CANVAS - h + 1)), w, h)
                if _fits(box, [*occupied, *found.values()], overlap):
                    found[i] = box
                    break
            else:
                return None
        return [found[i] for i in range(n)]
    return boxes if all(_fits(b, [*occupied, *boxes[:i]]) for i, b in enumerate(boxes)) else None


def compose(background: np.ndarray, background_name: str, items: list[Item], sizes: list[int],
            rng: np.random.Generator, layout: str = "scatter", home: str | None = None,
            base: Scene | None = None, overlap: float = 0.0, min_visible: float = MIN_VISIBLE) -> Scene | None:
    """Paste items (each at its longer side `sizes[i]`) onto a background, or onto `base`'s image.

    Sizes shrink by 15 % and the layout falls back to scatter until the items fit; None if they
    never do. With `base`, the new items keep clear of the base's items. With `overlap` > 0 items
    may touch and partly cover each other (later ones on top): each mask is then exactly the item's
    *visible* pixels, and a placement that leaves an item less than `min_visible` of its own pixels
    is tried again.
    """
    flips = [bool(rng.integers(2)) for _ in items]
    occupied = [p.box for p in base.placed] if base else []
    for attempt in range(8):
        scale = 0.85 ** attempt
        rendered = [item.render(max(12, int(s * scale)), flip, home) for item, s, flip in zip(items, sizes, flips)]
        boxes = place([m.shape for _, m in rendered], rng, layout if attempt < 3 else "scatter", occupied,
                      overlap if attempt < 6 else 0.0)
        if boxes is not None and _visible_enough(rendered, boxes, min_visible):
            break
    else:
        return None
    image = (base.image if base else background).copy()
    placed = list(base.placed) if base else []
    for item, (rgb, mask), box, flip in zip(items, rendered, boxes, flips):
        x, y, w, h = box
        full = np.zeros((CANVAS, CANVAS), bool)
        full[y:y + h, x:x + w] = mask
        image[full] = rgb[mask]
        if overlap > 0:  # what this item covers is no longer visible of the earlier ones
            placed = [_hidden_by(earlier, full) for earlier in placed]
        placed.append(Placed(item, tight_box(full) or box, full, max(mask.shape), flip))
    return Scene(image, base.background if base else background, base.background_name if base else background_name,
                 placed)


def _hidden_by(earlier: Placed, cover: np.ndarray) -> Placed:
    """`earlier` with the pixels under `cover` taken out of its mask (a new object: a base scene keeps its own)."""
    mask = earlier.mask & ~cover
    return Placed(earlier.item, tight_box(mask) or earlier.box, mask, earlier.size, earlier.flip)


def _visible_enough(rendered, boxes, min_visible: float) -> bool:
    """Each item keeps at least `min_visible` of its pixels once the later items are pasted on top."""
    covered = np.zeros((CANVAS, CANVAS), bool)
    for (_, mask), (x, y, w, h) in reversed(list(zip(rendered, boxes))):
        full = np.zeros((CANVAS, CANVAS), bool)
        full[y:y + h, x:x + w] = mask
        own = int(full.sum())
        if own == 0 or (full & ~covered).sum() < min_visible * own:
            return False
        covered |= full
    return True


# --------------------------------------------------------------------------- expressions


def the(name: str) -> str:
    return name if name[:1].isupper() else f"the {name}"


def with_colour(colour: str, noun: str) -> str:
    """"red" + "sneaker" -> "red sneaker"; "pair of trousers" -> "pair of red trousers"."""
    if noun.startswith("pair of "):
        return f"pair of {colour} {noun[len('pair of '):]}"
    return f"{colour} {noun}"


def a(name: str, plural: tuple[str, ...] = ()) -> str | None:
    if name[:1].isupper() or name in plural:
        return None
    return ("an " if name[0] in "aeiou" else "a ") + name


def _region(p: Placed) -> set[str]:
    cx, cy = p.centre
    where = set()
    if cx < LOW * CANVAS:
        where.add("left")
    if cx > HIGH * CANVAS:
        where.add("right")
    if cy < LOW * CANVAS:
        where.add("top")
    if cy > HIGH * CANVAS:
        where.add("bottom")
    if 0.38 * CANVAS < cx < 0.62 * CANVAS and 0.38 * CANVAS < cy < 0.62 * CANVAS:
        where.add("middle")
    return where


def quadrant(p: Placed) -> tuple[str, str]:
    cx, cy = p.centre
    return ("top" if cy < CANVAS / 2 else "bottom"), ("left" if cx < CANVAS / 2 else "right")


def beyond(p: Placed, others: list[Placed], side: str) -> bool:
    """Is p further to `side` ("left", "right", "top", "bottom") than every other by MARGIN?"""
    axis, sign = {"left": (0, 1), "right": (0, -1), "top": (1, 1), "bottom": (1, -1)}[side]
    return all(sign * (o.centre[axis] - p.centre[axis]) >= MARGIN for o in others)


def _relation(p: Placed, anchor: Placed, rel: str) -> bool:
    px, py, pw, ph = p.box
    ax, ay, aw, ah = anchor.box
    return {"left of": px + pw <= ax, "right of": ax + aw <= px,
            "above": py + ph <= ay, "below": ay + ah <= py}[rel]


SIDES = ("left", "right", "top", "bottom")
CORNERS = {("top", "left"): "top left", ("top", "right"): "top right",
           ("bottom", "left"): "bottom left", ("bottom", "right"): "bottom right"}  # -> vocabulary.CORNERS keys
RELATIONS = ("left of", "right of", "above", "below")  # the relations computed here (vocabulary.RELATIONS keys)
LONE_REGIONS = (  # (regions of the picture a lone item's centre must be in, vocabulary slot), in the order offered
    *(({side}, {"region": side}) for side in SIDES),
    *((set(corner), {"corner": key}) for corner, key in CORNERS.items()),
    ({"middle"}, {"region": "middle"}),
)
SIZE_RATIO = 1.6  # "the bigger X": at least this many times the area of every other X

# The plain wording of each fact, as the scenes phrased it before vocabulary.py gave the words;
# not used to phrase anything any more, kept as the reference that tests/offline/test_vocabulary.py
# checks is still a training wording of the vocabulary.
GENERIC_NOUNS = ("item", "object", "thing")
SIDE_WORDS = {
    "left": ("the {n} on the left", "the leftmost {n}"), "right": ("the {n} on the right", "the rightmost {n}"),
    "top": ("the {n} at the top", "the topmost {n}"), "bottom": ("the {n} at the bottom", "the bottommost {n}"),
}
FAR_WORDS = {"left": "the {n} on the far left", "right": "the {n} on the far right",
             "top": "the topmost {n}", "bottom": "the bottommost {n}"}
PAIR_WORDS = {"left": "the left {n}", "right": "the right {n}", "top": "the upper {n}", "bottom": "the lower {n}"}
RELATION_WORDS = {"left of": ("to the left of", "left of"), "right of": ("to the right of", "right of"),
                  "above": ("above",), "below": ("below", "under")}
LONE_REGION_WORDS = (
    ({"left"}, "on the left"), ({"right"}, "on the right"), ({"top"}, "at the top"), ({"bottom"}, "at the bottom"),
    ({"top", "left"}, "in the top left corner"), ({"top", "right"}, "in the top right corner"),
    ({"bottom", "left"}, "in the bottom left corner"), ({"bottom", "right"}, "in the bottom right corner"),
    ({"middle"}, "in the middle"),
)

Facts = Iterator[tuple[str, dict[str, str]]]  # (kind of phrase, vocabulary.phrase slots: name="sneaker", ...)


def expressions(scene: Scene, index: int, split: str = "train") -> dict[str, list[str]]:
    """Every phrase that picks out item `index` and nothing else, grouped by kind of phrase.

    A lone item (the only one of its category) is named outright; one of several alike is told
    apart from its look-alikes by colour, position, size or order. Either may be placed relative
    to a lone item of another category, or among all items with a generic noun ("the leftmost
    item"). The geometry below decides which facts hold; vocabulary.py words each fact in every
    way its `split` allows ("train": training names, words and templates only; "ood": held-out
    ones only, for the out-of-distribution phrasing test). Synonyms name the same category, so
    "the pants" is as unique as "the trousers". The order of kinds and of phrases is part of the
    result: `choose_expressions` draws from it with a random stream, so reordering would change
    every build.
    """
    p = scene.placed[index]
    others = [o for i, o in enumerate(scene.placed) if i != index]
    same = [o for o in others if o.item.category == p.item.category]
    if same:
        own = chain(_colour_among_alike(p, same), _sides_among_alike(p, same), _corners_among_alike(p, same),
                    _sizes_among_alike(p, same), _order_among_alike(p, same))
    else:
        own = chain(_names_of_lone(p, others), _regions_of_lone(p))
    return _worded(chain(own, _relations(p, others, same), _scene_positions(p, others)), split)


def _worded(facts: Facts, split: str) -> dict[str, list[str]]:
    """Every wording of every fact, by kind in the order first found, each phrase once; no empty kinds."""
    out: dict[str, dict[str, None]] = {}
    for kind, slots in facts:
        out.setdefault(kind, {}).update(dict.fromkeys(_phrasings(split, tuple(slots.items()))))
    return {kind: list(texts) for kind, texts in out.items() if texts}


@functools.lru_cache(maxsize=4096)
def _phrasings(split: str, slots: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """vocabulary.all_phrases, remembered: the same facts ("the sneaker left of the bag") recur in
    scene after scene, and a fact has up to a thousand training wordings."""
    return tuple(vocabulary.all_phrases(split, split, **dict(slots)))


def _key(item: Item) -> str:
    """The item's vocabulary key ("trousers" for the category "pair of trousers", "quokka" for a photo)."""
    return vocabulary.resolve(item.category)


def _colour_of(item: Item) -> str | None:
    """A product's tint (or white/grey); photo objects have their own fixed colours, so none."""
    return item.colour if item.source == "fashion_mnist" else None


def _names_of_lone(p: Placed, others: list[Placed]) -> Facts:
    """The only one of its category: its names, its coloured names and its descriptions all fit.

    The broader kind ("the shoe") only fits if no other item is of that kind either.
    """
    key, colour = _key(p.item), _colour_of(p.item)
    yield "name", {"name": key}
    if colour:
        yield "colour", {"name": key, "colour": colour}
    yield "description", {"description": key}
    kind = vocabulary.kind_of(key)
    if not any(vocabulary.kind_of(_key(o.item)) == kind for o in others):
        yield "kind", {"name": kind}


def _regions_of_lone(p: Placed) -> Facts:
    """Where a lone item is in the picture: "the bag on the left" needs no other bag to compare with."""
    where = _region(p)
    for needs, slot in LONE_REGIONS:
        if needs <= where:
            yield "region", {"name": _key(p.item), **slot}


def _colour_among_alike(p: Placed, same: list[Placed]) -> Facts:
    """"The red coat" if no other coat shares its colour group (white and grey count as one)."""
    group, colour = p.item.colour_group, _colour_of(p.item)
    if colour and all(o.item.colour_group != group for o in same):
        yield "colour", {"name": _key(p.item), "colour": colour}


def _sides_among_alike(p: Placed, same: list[Placed]) -> Facts:
    """"The leftmost sneaker": further to one side than every other sneaker, by MARGIN.

    With just two alike, "the left sneaker" (or upper, lower, right) says the same. Its colour
    may be said too ("the red sneaker on the left"): true, though it tells nothing more.
    """
    key, colour = _key(p.item), _colour_of(p.item)
    for side in SIDES:
        if beyond(p, same, side):
            slots = [{"side": side}, {"side_adj": side}] + ([{"pair_adj": side}] if len(same) == 1 else [])
            for slot in slots:
                yield "position", {"name": key, **slot}
                if colour:
                    yield "position", {"name": key, "colour": colour, **slot}


def _corners_among_alike(p: Placed, same: list[Placed]) -> Facts:
    """"The sneaker in the top left corner": it is near that corner and no other sneaker is in that quarter."""
    where = _region(p)
    for corner, key in CORNERS.items():
        if set(corner) <= where and not any(quadrant(o) == corner for o in same):
            yield "position", {"name": _key(p.item), "corner": key}


def _sizes_among_alike(p: Placed, same: list[Placed]) -> Facts:
    """"The bigger (biggest) dress": at least SIZE_RATIO times every other's area; "smaller": at most 1 / SIZE_RATIO."""
    ratios = [p.area / max(1, o.area) for o in same]
    if min(ratios) >= SIZE_RATIO:
        for size in ("bigger" if len(same) == 1 else "biggest", "big"):
            yield "size", {"name": _key(p.item), "size": size}
    if max(ratios) <= 1 / SIZE_RATIO:
        for size in ("smaller" if len(same) == 1 else "smallest", "small"):
            yield "size", {"name": _key(p.item), "size": size}


def _order_among_alike(p: Placed, same: list[Placed]) -> Facts:
    """"The second dress from the left", "the middle dress": three or more alike, MARGIN apart in x."""
    if len(same) < 2:
        return
    xs = sorted(o.centre[0] for o in [p, *same])
    if not all(b - a_ >= MARGIN for a_, b in zip(xs, xs[1:])):
        return
    rank, key = xs.index(p.centre[0]), _key(p.item)
    if rank == 1:
        yield "order", {"name": key, "ordinal": "second", "end": "left"}
    if rank == len(xs) - 2:
        yield "order", {"name": key, "ordinal": "second", "end": "right"}
    if len(xs) == 3 and rank == 1:
        yield "order", {"name": key, "centre": "middle"}


def _has_alike(anchor: Placed, placed: list[Placed]) -> bool:
    """Does another item share the anchor's category? Then "the coat" would not say which one."""
    return any(o.item.category == anchor.item.category for o in placed if o is not anchor)


def _relations(p: Placed, others: list[Placed], same: list[Placed]) -> Facts:
    """"The bag left of the coat": the anchor must be the only coat, and no other bag left of it."""
    for anchor in others:
        if anchor.item.category == p.item.category or _has_alike(anchor, others):
            continue
        for rel in RELATIONS:
            if _relation(p, anchor, rel) and not any(_relation(o, anchor, rel) for o in same):
                yield "relation", {"name": _key(p.item), "relation": rel, "other": _key(anchor.item)}


def _scene_positions(p: Placed, others: list[Placed]) -> Facts:
    """"The leftmost item": furthest to one side of all items in the scene, whatever their kind."""
    if not others:  # alone in the picture: "the leftmost item" would be vacuously true
        return
    for side in SIDES:
        if beyond(p, others, side):
            yield "scene position", {"name": "generic", "side": side}
            yield "scene position", {"name": "generic", "side_adj": side}


def choose_expressions(scene: Scene, count: int, rng: np.random.Generator,
                       prefer: list[int] | None = None, split: str = "train") -> list[tuple[int, str]]:
    """`count` (item index, expression) pairs, different items first, kinds of phrase drawn by KIND_WEIGHTS.

    Words, names and templates come from vocabulary.py's `split` ("train", or "ood" for the
    held-out phrasing test).
    """
    order = list(prefer or []) + [int(i) for i in rng.permutation(len(scene.placed)) if int(i) not in (prefer or [])]
    chosen: list[tuple[int, str]] = []
    seen: set[str] = set()
    options_of: dict[int, dict[str, list[str]]] = {}  # an item's phrases do not change between turns
    for turn in range(count * 3):
        if len(chosen) == count:
            break
        index = order[turn % len(order)]
        if index not in options_of:
            options_of[index] = expressions(scene, index, split)
        options = options_of[index]
        kinds = [k for k, texts in options.items() if any(t not in seen for t in texts)]
        if not kinds:
            continue
        weights = np.array([KIND_WEIGHTS.get(k, 1.0) for k in kinds])
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        texts = [t for t in options[kind] if t not in seen]
        text = texts[int(rng.integers(len(texts)))]
        seen.add(text)
        chosen.append((index, text))
    return chosen


# --------------------------------------------------------------------------- scene recipes


def fashion_items(rng: np.random.Generator, data: fm.FashionMNIST, pool: dict[int, np.ndarray], count: int,
                  labels: list[int] | None = None, repeat: bool | None = None,
                  tint_share: float = 0.55) -> list[Item]:
    """`count` products from `pool` (label -> indices): distinct classes, or with one class repeated."""
    available = sorted(labels if labels is not None else pool)
    if repeat is None:
        repeat = count >= 2 and rng.random() < 0.5
    chosen: list[int] = []
    if repeat:
        twice = int(rng.choice(available))
        chosen += [twice] * int(rng.integers(2, min(3, count) + 1))
    rest = [c for c in available if c not in chosen]
    chosen += [int(c) for c in rng.choice(rest, size=min(len(rest), count - len(chosen)), replace=False)]
    same_colour = rng.random() < 0.5  # repeated products: alike, or told apart by colour
    shared = _colour(rng, tint_share)
    items = []
    for label in chosen:
        index = int(rng.choice(pool[label]))
        colour = shared if (repeat and same_colour and chosen.count(label) > 1) else _colour(rng, tint_share)
        items.append(fashion_item(data, index, colour))
    return [items[i] for i in rng.permutation(len(items))]


def _colour(rng: np.random.Generator, tint_share: float) -> str | None:
    return str(rng.choice(list(PALETTE))) if rng.random() < tint_share else None


def fashion_scene(rng: np.random.Generator, data: fm.FashionMNIST, pool: dict[int, np.ndarray], count: int,
                  scenery_keys: tuple[str, ...], home: str | None = None) -> Scene:
    """Several products (some of one class) in a random layout on black, a texture or a photo."""
    style = str(rng.choice(["black", "texture", "photo"], p=[0.35, 0.35, 0.3]))
    background, name = make_background(rng, style, scenery_keys, home)
    items = fashion_items(rng, data, pool, count)
    top = {1: 140, 2: 120, 3: 100, 4: 90, 5: 80}.get(count, 70)
    sizes = [int(rng.integers(40, top + 1)) for _ in items]
    layout = str(rng.choice(LAYOUTS))
    scene = compose(background, name, items, sizes, rng, layout, home)
    if scene is None:  # cannot happen at these sizes (the last attempt is tiny); guard anyway
        raise RuntimeError(f"could not place {count} items")
    return scene


def photo_scene(rng: np.random.Generator, object_keys: tuple[str, ...], scenery_keys: tuple[str, ...],
                must_include: tuple[str, ...] = (), extra: list[Item] = (), home: str | None = None) -> Scene:
    """1-3 photo objects (one of `must_include` among them, if given) and `extra` items on a photo or texture."""
    count = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
    keys: list[str] = []
    if must_include:
        keys.append(str(rng.choice(must_include)))
    rest = [k for k in object_keys if k not in keys]
    keys += [str(k) for k in rng.choice(rest, size=min(len(rest), count - len(keys)), replace=False)]
    used = set(keys)
    style = "photo" if rng.random() < 0.5 else "texture"
    background, name = make_background(rng, style, tuple(k for k in scenery_keys if k not in used), home)
    items = [photo_item(k) for k in keys] + list(extra)
    top = {1: 170, 2: 130, 3: 110}[count]
    sizes = [int(rng.integers(80, top + 1)) for _ in keys] + [int(rng.integers(40, 70)) for _ in extra]
    scene = compose(background, name, items, sizes, rng, str(rng.choice(LAYOUTS)), home)
    if scene is None:
        raise RuntimeError(f"could not place {len(items)} items")
    return scene


def save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")


def save_mask(mask: np.ndarray, path: Path) -> None:
    """Binary mask as an 8-bit PNG with values 0 and 255."""
    save_png(mask.astype(np.uint8) * 255, path)
