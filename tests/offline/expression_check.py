"""An independent reading of the generated expressions: is the phrase true of its item, and of no other?

Written apart from the generator (scenes.py): it takes only the word lists and templates of
vocabulary.py (every split, so training and held-out phrasings alike), parses the text with its
own patterns and judges it from the masks alone (box centres, areas), with strict comparisons
rather than the generator's margins. A phrase that parses in several ways (a photo's name
"white rocket" is also colour + name) is accepted if one reading is true and unique.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

from steervit.offline import vocabulary as v
from steervit.offline.scenes import CANVAS

NEUTRAL = ("white", "grey")  # untinted products: too alike to tell apart by colour


@dataclass(eq=False)
class Obj:
    category: str
    source: str
    colour: str | None
    mask: np.ndarray

    @functools.cached_property
    def box(self):
        ys, xs = np.nonzero(self.mask)
        return xs.min(), ys.min(), xs.max(), ys.max()

    @functools.cached_property
    def centre(self):
        x0, y0, x1, y1 = self.box
        return (x0 + x1 + 1) / 2, (y0 + y1 + 1) / 2

    @functools.cached_property
    def area(self):
        return int(self.mask.sum())

    @functools.cached_property
    def key(self) -> str:
        return v.resolve(self.category)

    @property
    def colour_group(self):
        return "neutral" if self.colour in NEUTRAL else self.colour


# --------------------------------------------------------------------------- what each word can mean


def _meanings(tables: dict[str, dict[str, v.Words]]) -> dict[str, list[tuple[str, str]]]:
    """lower-cased wording -> every (table, key) it belongs to, over all splits."""
    out: dict[str, list[tuple[str, str]]] = {}
    for table, entries in tables.items():
        for key, words in entries.items():
            for w in words.split("all"):
                out.setdefault(w.lower(), []).append((table, key))
    return out


NOUN_TABLES = {"noun": {k: n.names for k, n in v.NOUNS.items()}, "kind": v.KINDS, "generic": {"generic": v.GENERIC}}
SLOT_WORDS: dict[str, dict[str, list[tuple[str, str]]]] = {
    "name": _meanings(NOUN_TABLES),
    "description": _meanings({"description": {k: n.descriptions for k, n in v.NOUNS.items()}}),
    "where": _meanings({"side": v.SIDES, "region": v.REGIONS, "corner": v.CORNERS}),
    **{slot: _meanings({slot: v.ATTRIBUTES[slot]})
       for slot in ("colour", "size", "side_adj", "pair_adj", "relation", "ordinal", "end", "centre")},
}
SLOT_WORDS["other"] = SLOT_WORDS["other2"] = SLOT_WORDS["name"]


def _alternatives(words) -> str:
    """A pattern matching exactly these words, as a trie ("sneaker|sandal" -> "s(?:neaker|andal)"):
    a flat alternation of a few hundred names makes every match try them one by one."""
    trie: dict = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def pattern(node: dict) -> str:
        ends = "" in node
        branches = [re.escape(ch) + pattern(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if ends else body

    return pattern(trie)


def _pattern(template: str) -> re.Pattern:
    """The template as a full-match pattern over lower-cased text: "a" may read "an", and a
    determiner just before a slot may be missing (there is none before a proper name)."""
    regex = ""
    for part in re.split(r"(\{\w+\})", template.lower()):
        slot = re.fullmatch(r"\{(\w+)\}", part)
        if slot:
            regex += f"(?P<{slot.group(1)}>{_alternatives(SLOT_WORDS[slot.group(1)])})"
            continue
        words = part.split(" ")
        pieces = ["an?" if w == "a" else re.escape(w) for w in words]
        if len(words) >= 2 and words[-1] == "" and words[-2] in ("the", "a", "this"):
            regex += " ".join(pieces[:-2]) + (" " if len(words) > 2 else "") + f"(?:{pieces[-2]} )?"
        else:
            regex += " ".join(pieces)
    return re.compile(regex)


@functools.cache
def _templates() -> tuple[tuple[str, re.Pattern], ...]:
    """(family, pattern) of every template of every split."""
    return tuple((family, _pattern(text)) for family, words in v.TEMPLATES.items() for text in words.split("all"))


@functools.lru_cache(maxsize=250_000)
def parses(text: str) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """Every (family, ((slot, words), ...)) the text can be read as; empty if none."""
    plain = " ".join(text.strip().lower().split())
    found = {}
    for family, pattern in _templates():
        m = pattern.fullmatch(plain)
        if m:
            found[family, tuple(m.groupdict().items())] = None
    return tuple(found)


# --------------------------------------------------------------------------- geometry

SIDES = {"left": (0, -1), "top": (1, -1), "right": (0, 1), "bottom": (1, 1)}


def _extreme(ref: Obj, group: list[Obj], side: str) -> bool:
    axis, sign = SIDES[side]
    return all(sign * (ref.centre[axis] - o.centre[axis]) > 0 for o in group if o is not ref)


def _in_region(o: Obj, region: str) -> bool:
    """The picture's half on that side; "middle" the central 30 % square (looser than the generator)."""
    cx, cy = o.centre
    if region == "middle":
        return 0.35 * CANVAS < cx < 0.65 * CANVAS and 0.35 * CANVAS < cy < 0.65 * CANVAS
    axis, sign = SIDES[region]
    return sign * ((cx, cy)[axis] - CANVAS / 2) > 0


def _quadrant(o: Obj) -> str:
    return ("top" if o.centre[1] < CANVAS / 2 else "bottom") + " " + ("left" if o.centre[0] < CANVAS / 2 else "right")


def _relation(a: Obj, b: Obj, rel: str) -> bool:
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    return {"left of": ax1 < bx0, "right of": bx1 < ax0, "above": ay1 < by0, "below": by1 < ay0}[rel]


def _named(meaning: tuple[str, str], objs: list[Obj]) -> list[Obj]:
    """The objects a noun can mean: one thing's names, a kind ("shoe"), or any item."""
    table, key = meaning
    if table == "generic":
        return list(objs)
    if table == "kind":
        return [o for o in objs if v.kind_of(o.key) == key]
    return [o for o in objs if o.key == key]


# --------------------------------------------------------------------------- judging one reading


def _judge(family: str, words: dict[str, str], noun: tuple[str, str], ref: Obj, objs: list[Obj]) -> list[str]:
    """Problems with one reading (family, slot words, meaning of the noun) of a phrase about `ref`."""
    group = _named(noun, objs)
    if ref not in group:
        return [f"{words['name']!r} does not name a {ref.category}"]
    rivals = [o for o in group if o is not ref]
    problems = []
    if "colour" in words:
        colour = SLOT_WORDS["colour"][words["colour"]][0][1]
        if ref.source != "fashion_mnist":
            return [f"colour word {words['colour']!r} for a photo object"]
        if colour != ref.colour:
            problems.append(f"colour {colour} but the item is {ref.colour}")
    if family in ("name", "colour"):
        if "colour" in words:
            rivals = [o for o in rivals if o.colour_group == ref.colour_group]
        if rivals:
            problems.append("not the only one of its kind" + (" and colour" if "colour" in words else ""))
    elif family in ("where", "colour where"):
        meanings = SLOT_WORDS["where"][words["where"]]
        if not any(_where_holds(table, key, ref, group) for table, key in meanings):
            problems.append(f"not {words['where']!r} ({len(group)} of them)")
    elif family in ("side_adj", "colour side_adj", "pair_adj", "colour pair_adj"):
        slot = "side_adj" if "side_adj" in family else "pair_adj"
        side = SLOT_WORDS[slot][words[slot]][0][1]
        if len(group) < 2 or not _extreme(ref, group, side):
            problems.append(f"not the {side}most of {len(group)}")
        if slot == "pair_adj" and len(group) != 2:
            problems.append(f"'the {words[slot]} X' with {len(group)} of them")
    elif family == "size":
        size = SLOT_WORDS["size"][words["size"]][0][1]
        areas = [o.area for o in rivals]
        big = size in ("big", "bigger", "biggest")
        if not areas or (big and ref.area <= max(areas)) or (not big and ref.area >= min(areas)):
            problems.append(f"not the {words['size']} one")
        if size in ("bigger", "smaller") and len(group) != 2:
            problems.append(f"{words['size']!r} of {len(group)}")
    elif family == "order":
        axis, sign = SIDES[SLOT_WORDS["end"][words["end"]][0][1]]
        ahead = [o for o in rivals if sign * (o.centre[axis] - ref.centre[axis]) > 0]
        if len(group) < 3 or len(ahead) != 1:
            problems.append(f"not second from the {words['end']}")
    elif family == "centre":
        xs = sorted(o.centre[0] for o in group)
        if len(group) != 3 or ref.centre[0] != xs[1] or len(set(xs)) != 3:
            problems.append("not the middle one of three")
    elif family == "relation":
        problems += _relation_problems(words, ref, group, objs)
    else:
        problems.append(f"no judgement for {family!r} phrases")
    return problems


def _where_holds(table: str, key: str, ref: Obj, group: list[Obj]) -> bool:
    """"On the left" can mean the leftmost of several alike, or, of a lone item, in the left of the picture."""
    if table == "side":
        return len(group) >= 2 and _extreme(ref, group, key)
    if table == "region":
        return group == [ref] and _in_region(ref, key)
    return _quadrant(ref) == key and not any(_quadrant(o) == key for o in group if o is not ref)  # corner


def _relation_problems(words: dict[str, str], ref: Obj, group: list[Obj], objs: list[Obj]) -> list[str]:
    rel = SLOT_WORDS["relation"][words["relation"]][0][1]
    if rel not in ("left of", "right of", "above", "below"):
        return [f"no judgement for {rel!r}"]
    anchors = {id(o): o for meaning in SLOT_WORDS["other"][words["other"]] for o in _named(meaning, objs)}
    anchors = [o for o in anchors.values() if o is not ref]
    if len(anchors) != 1:
        return [f"{len(anchors)} possible anchors"]
    problems = []
    if not _relation(ref, anchors[0], rel):
        problems.append(f"not {rel} the anchor")
    if any(_relation(o, anchors[0], rel) for o in group if o is not ref):
        problems.append(f"another one {rel} the anchor")
    return problems


# --------------------------------------------------------------------------- the check


def check(text: str, ref_index: int, objs: list[Obj]) -> list[str]:
    """Problems with `text` as a reference to objs[ref_index] (empty list = true and unique)."""
    ref = objs[ref_index]
    readings = parses(text)
    if not readings:
        return [f"unparsed: {text!r}"]
    problems: list[str] = []
    for family, slots in readings:
        words = dict(slots)
        if family == "description":
            owners = [key for _, key in SLOT_WORDS["description"][words["description"]]]
            found = [] if ref.key in owners else [f"not a description of a {ref.category}"]
            if [o for o in objs if o.key == ref.key] != [ref]:
                found.append("not the only one of its kind")
        else:
            found = None
            for noun in SLOT_WORDS["name"][words["name"]]:
                found = _judge(family, words, noun, ref, objs)
                if not found:
                    break
        if not found:
            return []
        problems += found
    return problems
