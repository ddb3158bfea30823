"""An independent reading of the generated expressions: is the phrase true of its item, and of no other?

Written apart from the generator: it parses the text with its own patterns and judges it from the
masks alone (box centres, areas), with strict comparisons rather than the generator's margins.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from steervit.offline import fashion_mnist as fm
from steervit.offline import photos
from steervit.offline.scenes import CANVAS, PALETTE

COLOURS = tuple(PALETTE) + ("white", "grey")
GENERIC = "*"


@dataclass(eq=False)
class Obj:
    category: str
    source: str
    colour: str | None
    mask: np.ndarray

    @property
    def box(self):
        ys, xs = np.nonzero(self.mask)
        return xs.min(), ys.min(), xs.max(), ys.max()

    @property
    def centre(self):
        x0, y0, x1, y1 = self.box
        return (x0 + x1 + 1) / 2, (y0 + y1 + 1) / 2

    @property
    def area(self):
        return int(self.mask.sum())


def _strip_colours(text: str) -> tuple[str, list[str]]:
    found = re.findall(r"\b(" + "|".join(COLOURS) + r")\b ", text)
    return re.sub(r"\b(" + "|".join(COLOURS) + r")\b ", "", text), found


def _vocabulary() -> dict[str, str]:
    words = {}
    for cls in fm.CLASSES:
        for noun in cls.nouns:
            words[noun] = cls.nouns[0]
    for obj in photos.PHOTO_OBJECTS:
        for name in obj.names:
            words[_strip_colours(name)[0]] = obj.key
    for generic in ("item", "object", "thing"):
        words[generic] = GENERIC
    return words


VOCAB = _vocabulary()
KINDS = {c.supercategory for c in fm.CLASSES} | {o.kind for o in photos.PHOTO_OBJECTS if o.kind}


def kind_of(category: str) -> str | None:
    if category in photos.OBJECTS_BY_KEY:
        return photos.OBJECTS_BY_KEY[category].kind
    return next(c.supercategory for c in fm.CLASSES if c.nouns[0] == category)
N = "(?P<n>" + "|".join(re.escape(w) for w in sorted(VOCAB, key=len, reverse=True)) + ")"
A = "(?P<anchor>" + "|".join(re.escape(w) for w in sorted(VOCAB, key=len, reverse=True)) + ")"
PATTERNS = [
    ("far", rf"^the {N} on the far (?P<side>left|right)$"),
    ("side", rf"^(?:the )?{N} on the (?P<side>left|right)$"),
    ("side", rf"^(?:the )?{N} at the (?P<side>top|bottom)$"),
    ("most", rf"^the (?P<side>left|right|top|bottom)most {N}$"),
    ("pair", rf"^the (?P<side>left|right|upper|lower) {N}$"),
    ("second", rf"^the second {N} from the (?P<side>left|right)$"),
    ("middle", rf"^the middle {N}$"),
    ("corner", rf"^(?:the )?{N} in the (?P<v>top|bottom) (?P<h>left|right) corner$"),
    ("centre", rf"^(?:the )?{N} in the middle$"),
    ("relation", rf"^the {N} (?P<rel>to the left of|left of|to the right of|right of|above|below|under) (?:the )?{A}$"),
    ("size", rf"^the (?P<w>big|bigger|biggest|large|larger|largest|small|smaller|smallest) {N}$"),
    ("name", rf"^(?:the |a |an )?{N}$"),
    ("kind", r"^the (?P<k>" + "|".join(re.escape(k) for k in KINDS) + ")$"),
]
SIDES = {"left": (0, -1), "upper": (1, -1), "top": (1, -1), "right": (0, 1), "lower": (1, 1), "bottom": (1, 1)}


def _extreme(ref: Obj, group: list[Obj], side: str) -> bool:
    axis, sign = SIDES[side]
    return all(sign * (ref.centre[axis] - o.centre[axis]) > 0 for o in group if o is not ref)


def _relation(a: Obj, b: Obj, rel: str) -> bool:
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    if "left" in rel:
        return ax1 < bx0
    if "right" in rel:
        return bx1 < ax0
    if rel == "above":
        return ay1 < by0
    return by1 < ay0  # below, under


def check(text: str, ref_index: int, objs: list[Obj]) -> list[str]:
    """Problems with `text` as a reference to objs[ref_index] (empty list = true and unique)."""
    ref = objs[ref_index]
    plain, colours = _strip_colours(text)
    if ref.source == "photo":
        obj = photos.OBJECTS_BY_KEY[ref.category]
        if text == obj.description:
            return []
        colours = []  # colour words in a photo's name belong to the name
    for kind, pattern in PATTERNS:
        m = re.match(pattern, plain)
        if m:
            break
    else:
        return [f"unparsed: {text!r}"]
    if kind == "kind":
        same_kind = [o for o in objs if kind_of(o.category) == m.group("k")]
        return [] if same_kind == [ref] else [f"{len(same_kind)} items are a {m.group('k')}, or not this one"]
    category = VOCAB[m.group("n")]
    group = [o for o in objs if category in (GENERIC, o.category)]
    problems = []
    if ref not in group:
        problems.append(f"{m.group('n')!r} does not name a {ref.category}")
    if colours:
        if colours != [ref.colour]:
            problems.append(f"colour {colours} but the item is {ref.colour}")
    neutral = ("white", "grey")

    def colour_group(o):
        return "neutral" if o.colour in neutral else o.colour

    if kind == "name":
        rivals = [o for o in group if o is not ref]
        if colours:
            rivals = [o for o in rivals if colour_group(o) == colour_group(ref)]
        if rivals:
            problems.append("not the only one of its kind" + (" and colour" if colours else ""))
    elif kind in ("far", "most", "pair", "side"):
        side = m.group("side")
        if not _extreme(ref, group, side):
            problems.append(f"not the {side}most of {len(group)}")
        if kind == "pair" and len(group) != 2:
            problems.append(f"'the {side} X' with {len(group)} of them")
        if kind in ("most", "far") and len(group) < 2:
            problems.append("an extreme of one")
        if kind == "side" and len(group) == 1:
            axis, sign = SIDES[side]
            if sign * (ref.centre[axis] - CANVAS / 2) <= 0:
                problems.append(f"the only one, but not on the {side} side")
    elif kind == "second":
        side = m.group("side")
        axis, sign = SIDES[side]
        ahead = [o for o in group if o is not ref and sign * (o.centre[axis] - ref.centre[axis]) > 0]
        if len(group) < 3 or len(ahead) != 1:
            problems.append(f"not second from the {side}")
    elif kind == "middle":
        xs = sorted(o.centre[0] for o in group)
        if len(group) != 3 or ref.centre[0] != xs[1]:
            problems.append("not the middle one of three")
    elif kind == "corner":
        def quadrant(o):
            return ("top" if o.centre[1] < CANVAS / 2 else "bottom"), ("left" if o.centre[0] < CANVAS / 2 else "right")

        corner = (m.group("v"), m.group("h"))
        if quadrant(ref) != corner:
            problems.append(f"not in the {corner} quarter")
        if any(quadrant(o) == corner for o in group if o is not ref):
            problems.append(f"another one in the {corner} quarter")
    elif kind == "centre":
        cx, cy = ref.centre
        if len(group) != 1 or not (0.35 * CANVAS < cx < 0.65 * CANVAS and 0.35 * CANVAS < cy < 0.65 * CANVAS):
            problems.append("not the only one, in the middle")
    elif kind == "relation":
        anchors = [o for o in objs if o.category == VOCAB[m.group("anchor")]]
        if len(anchors) != 1:
            problems.append(f"{len(anchors)} possible anchors")
        else:
            rel = m.group("rel")
            if not _relation(ref, anchors[0], rel):
                problems.append(f"not {rel} the anchor")
            if any(_relation(o, anchors[0], rel) for o in group if o is not ref):
                problems.append(f"another one {rel} the anchor")
    elif kind == "size":
        others = [o.area for o in group if o is not ref]
        big = m.group("w") in ("big", "bigger", "biggest", "large", "larger", "largest")
        if not others or (big and ref.area <= max(others)) or (not big and ref.area >= min(others)):
            problems.append(f"not the {m.group('w')} one")
    return problems
