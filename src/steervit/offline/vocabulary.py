"""The words of the offline referring expressions, with a held-out part for an out-of-distribution test.

The first offline data named each thing with two or three nouns and built every phrase from a
handful of fixed patterns, so the bundled model learned the patterns, not the words. This module
is the richer vocabulary: for every product class and photo object the offline data uses, at
least five names, a description or two and the broader kind it belongs to; synonyms for every
attribute word (colour, size, position, relation); and many phrasing templates.

Every table is split in two by hand, in the data itself: `train` words and templates may appear
in training expressions; `ood` ones (about one in five names, and at least one entry of every
group) are never used in training and make up the out-of-distribution (OOD) phrasing suite. A
held-out entry is never a word sequence inside a training entry, so `is_held_out` can tell from
the text alone whether an expression used anything held out.

Every word must be true of what it names in every picture: the tints of the palette are bright,
so there is no "navy" for blue; names of Fashion-MNIST products hold a colour word nowhere (they
are tinted at will); names and descriptions carry no position or relation word ("top", "left",
"under") that a parser of the expressions could misread.

Use: `names(key, split)`, `describe(rng, key, split)`, `phrase(rng, template_split, word_split,
**slots)` (one phrase, drawn), `all_phrases(...)` (every phrase), `held_out_words()`,
`is_held_out(expression)`. Keys are the photo objects' keys ("quokka") and short product keys
("sneaker"); `resolve` also accepts what the scene code has at hand (the Fashion-MNIST label, its
class name, an `Item.category` such as "pair of trousers").
"""
from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass

import numpy as np

from . import fashion_mnist as fm

SPLITS = ("train", "ood", "all")


@dataclass(frozen=True)
class Words:
    """Alternative wordings of one thing: `train` ones (the first is the plain one) and held-out `ood` ones."""

    train: tuple[str, ...]
    ood: tuple[str, ...] = ()

    def split(self, split: str = "train") -> tuple[str, ...]:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
        return self.train + self.ood if split == "all" else getattr(self, split)


@dataclass(frozen=True)
class Noun:
    """A product class or photo object: its names, its descriptions (noun phrases) and its kind (a KINDS key)."""

    names: Words
    descriptions: Words
    kind: str


def W(*train: str, ood: tuple[str, ...] | str = ()) -> Words:
    """Shorthand for the tables below: W("red", "scarlet", ood="crimson")."""
    return Words(tuple(train), (ood,) if isinstance(ood, str) else tuple(ood))


# --------------------------------------------------------------------------- things

# Ten Fashion-MNIST product classes, then the photo objects (photos.PHOTO_OBJECTS). Names are
# noun phrases without an article; the first training name is the one the scene code uses today
# (FashionClass.nouns[0], PhotoObject.names[0]) and every name in use today is a training name.
# Product names hold for every photo of the class (so no "jeans" or "gown", which fit only some),
# and no two things share a name. Descriptions are longer noun phrases, also without an article.
NOUNS: dict[str, Noun] = {
    "tshirt": Noun(
        W("t-shirt", "tee", "tee shirt", "casual tee", "cotton tee", "short-sleeved tee",
          ood=("jersey tee", "basic tee")),
        W("casual tee with short sleeves", ood="light tee for warm days"), "clothing"),
    "trousers": Noun(
        W("pair of trousers", "pair of pants", "trousers", "pants", "slacks", "pair of slacks", "long trousers",
          ood=("pair of long pants", "legwear")),
        W("pair of trousers with two long legs", ood="garment worn on the legs"), "clothing"),
    "pullover": Noun(
        W("pullover", "sweater", "jumper", "knit sweater", "long-sleeved sweater", "woolly jumper",
          ood=("sweatshirt", "warm jumper")),
        W("warm sweater with long sleeves", ood="knitted garment you pull over your head"), "clothing"),
    "dress": Noun(
        W("dress", "frock", "women's dress", "one-piece dress", "ladies' dress", ood="woman's frock"),
        W("one-piece garment for women", ood="women's garment in one piece"), "clothing"),
    "coat": Noun(
        W("coat", "jacket", "overcoat", "long-sleeved jacket", "outdoor jacket", ood="outer jacket"),
        W("jacket with long sleeves", ood="garment worn over other clothes"), "clothing"),
    "sandal": Noun(
        W("sandal", "strappy sandal", "open-toed shoe", "open shoe", "strappy shoe",
          ood=("summer sandal", "open-toe sandal")),
        W("open shoe held on by straps", ood="shoe with straps and open toes"), "footwear"),
    "shirt": Noun(
        W("shirt", "button-up shirt", "button shirt", "blouse", "buttoned shirt", ood=("casual shirt", "woven shirt")),
        W("shirt that buttons down the front", ood="garment with a row of buttons"), "clothing"),
    "sneaker": Noun(
        W("sneaker", "trainer", "running shoe", "gym shoe", "sports shoe", "athletic shoe",
          ood=("tennis shoe", "jogging shoe")),
        W("shoe with laces", "low sports shoe", ood="shoe you would wear to the gym"), "footwear"),
    "bag": Noun(
        W("bag", "handbag", "purse", "shoulder bag", "tote bag", ood=("satchel", "carryall")),
        W("bag for carrying things", ood="holder for carrying belongings"), "accessory"),
    "ankle_boot": Noun(
        W("ankle boot", "boot", "short boot", "bootie", "ankle-high boot", ood=("half boot", "ankle-length boot")),
        W("boot that reaches the ankle", ood="shoe that covers the ankle"), "footwear"),
    "astronaut": Noun(
        W("astronaut", "woman in the orange spacesuit", "smiling astronaut", "spacewoman", "woman in the flight suit",
          "space traveller", ood=("female astronaut", "space explorer")),
        W("smiling astronaut in an orange flight suit", ood="astronaut beaming in her orange suit"), "person"),
    "cat": Noun(
        W("cat", "tabby cat", "ginger cat", "cat's face", "tabby", "kitty", "domestic cat",
          ood=("feline", "orange tabby")),
        W("face of a ginger tabby cat with green eyes", ood="close-up of a striped ginger cat"), "animal"),
    "coffee": Noun(
        W("cup of coffee", "coffee cup", "red cup and saucer", "espresso", "espresso cup", "cup and saucer", "coffee",
          ood=("demitasse", "shot of espresso")),
        W("red cup of espresso on a red saucer with a spoon", ood="little red cup of coffee on its saucer"), "drink"),
    "rocket": Noun(
        W("rocket", "white rocket", "rocket on the launch pad", "space rocket", "carrier rocket",
          ood=("rocket ship", "launch rocket")),
        W("tall white rocket standing on its launch pad", ood="white rocket ready for lift-off"), "vehicle"),
    "coin": Noun(
        W("coin", "ancient coin", "grey coin", "old coin", "antique coin", ood="historic coin"),
        W("ancient Greek coin with a stamped head", ood="worn old coin bearing a head"), "money"),
    "pagoda": Noun(
        W("pagoda", "tower", "chinese temple", "tiered tower", "temple tower",
          ood=("chinese tower", "many-roofed temple")),
        W("tall Chinese pagoda with many green roofs", ood="tower with stacked green roofs"), "building"),
    "flower": Noun(
        W("flower", "orange dahlia", "dahlia", "orange flower", "blossom", "dahlia flower",
          ood=("blooming dahlia", "flower head")),
        W("orange dahlia in full bloom", ood="dahlia with many orange petals"), "plant"),
    "quokka": Noun(
        W("quokka", "grey marsupial", "quokka standing upright", "marsupial", "little marsupial",
          ood=("small wallaby", "short-tailed wallaby")),
        W("small grey-brown quokka standing on its hind legs", ood="furry animal standing on its back legs"), "animal"),
    "grace_hopper": Noun(
        W("woman in the navy uniform", "woman with glasses", "Grace Hopper", "naval officer", "elderly woman",
          "woman in the officer's cap", ood=("older lady in glasses", "navy officer")),
        W("elderly woman in a dark navy uniform and cap, wearing glasses",
          ood="officer in a navy uniform with her cap on"),
        "person"),
    "cameraman": Noun(
        W("cameraman", "man with the camera", "photographer", "man in the dark coat", "camera operator",
          "man behind the camera", ood=("man at the tripod", "cameraperson")),
        W("man in a dark coat looking into a camera", ood="man peering through a camera on a tripod"), "person"),
    # recipe v3 (photos.PHOTO_OBJECTS with since="v3")
    "bowl": Noun(
        W("red bowl", "bowl with a fig", "red dish", "bowl", "fruit bowl", "red fruit bowl", ood=("red basin", "scarlet bowl")),
        W("red bowl holding half a fig", ood="bright red dish with a cut fig in it"), "dish"),
    "lighthouse": Noun(
        W("lighthouse", "white lighthouse", "lantern room", "lighthouse lantern", "beacon tower", ood=("light tower", "coastal lighthouse")),
        W("white lantern room of a lighthouse", ood="glass-walled lantern of a lighthouse"), "building"),
    "nuthatch": Noun(
        W("nuthatch", "small songbird", "little grey bird", "songbird", "small bird", ood=("tiny bird", "garden bird")),
        W("small grey and orange songbird clinging to bark", ood="little bird with a grey back and orange belly"),
        "animal"),
    "dog": Noun(
        W("dog", "spaniel", "brown dog", "puppy", "cocker spaniel", "pet dog", ood=("hound", "doggy")),
        W("brown spaniel with long curly ears", ood="dog with floppy brown ears"), "animal"),
    "ornament": Noun(
        W("bird ornament", "wooden bird", "toy bird", "carved bird", "hanging bird", ood=("bird figurine", "bird decoration")),
        W("carved wooden bird with spread wings", ood="little wooden bird hanging from a string"), "decoration"),
    "dandelion": Noun(
        W("dandelion", "dandelion clock", "seed head", "dandelion puff", "blowball", ood=("puffball", "fluffy seed head")),
        W("round white dandelion seed head", ood="white fluffy ball of dandelion seeds"), "plant"),
}
FASHION_KEYS = ("tshirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot")
PHOTO_KEYS = tuple(k for k in NOUNS if k not in FASHION_KEYS)  # == photos.PHOTO_OBJECTS keys, in order

# Broader kinds ("the shoe" when no other shoe is in the picture). The first training word is the
# one the scene code uses today (FashionClass.supercategory, PhotoObject.kind); "accessory",
# "drink" and "money" are new (the bag's kind was its own name; the coffee and the coin had none).
KINDS: dict[str, Words] = {
    "clothing": W("piece of clothing", "garment", "item of clothing", "clothing item", ood="article of clothing"),
    "footwear": W("shoe", "piece of footwear", ood="item of footwear"),
    "accessory": W("accessory", "fashion accessory", ood="personal accessory"),
    "person": W("person", "human", "individual", ood="human being"),
    "animal": W("animal", "creature", "mammal", ood="furry animal"),
    "vehicle": W("vehicle", "launch vehicle", "machine", ood="craft"),
    "building": W("building", "structure", ood="edifice"),
    "plant": W("plant", "garden plant", ood="flowering plant"),
    "drink": W("drink", "beverage", ood="hot drink"),
    "money": W("money", "piece of money", ood="piece of currency"),
    "dish": W("dish", "piece of tableware", ood="piece of crockery"),
    "decoration": W("decoration", "ornament", ood="adornment"),
}
GENERIC = W("item", "object", "thing", ood="element")  # any item at all: "the leftmost item"; key "generic"

# Names that take no "a" (plural or mass nouns); proper names (capitalised) take no article at all.
PLURAL = frozenset({"trousers", "pants", "slacks", "long trousers", "legwear"})

# --------------------------------------------------------------------------- attributes

# Colours: keys are the scene code's colour names (scenes.PALETTE and the untinted NEUTRAL pair).
# Synonyms stay true of the bright palette tints: no "navy", "maroon" or "olive".
COLOURS: dict[str, Words] = {
    "red": W("red", "scarlet", "cherry red", ood="crimson"),
    "green": W("green", "emerald green", "grass green", ood="leaf green"),
    "blue": W("blue", "royal blue", "bright blue", ood="cobalt blue"),
    "yellow": W("yellow", "lemon yellow", "bright yellow", ood="canary yellow"),
    "orange": W("orange", "bright orange", "carrot orange", ood="tangerine"),
    "purple": W("purple", "violet", "bright purple", ood="amethyst"),
    "pink": W("pink", "rose pink", "bright pink", ood="hot pink"),
    "white": W("white", "whitish", "pale", ood="snow-white"),
    "grey": W("grey", "gray", "greyish", ood="ash grey"),
}
# Sizes: absolute ("the big dress"), of two ("the bigger"), of three or more ("the biggest").
SIZES: dict[str, Words] = {
    "big": W("big", "large", ood="huge"), "small": W("small", "little", ood="tiny"),
    "bigger": W("bigger", "larger", ood="bulkier"), "smaller": W("smaller", ood="tinier"),
    "biggest": W("biggest", "largest", ood="bulkiest"), "smallest": W("smallest", ood="tiniest"),
}
# Positions. Three meanings, three tables, because a word that fits one can be false for another:
# SIDES: further to that side than the others alike ("the sneaker on the left" = the leftmost
# sneaker, wherever it is in the picture), so nothing here says "of the picture";
# REGIONS: where a lone item is in the picture (its centre in the outer 30 %, or near the middle);
# CORNERS: near that corner, with no look-alike in that quarter. All three follow the noun.
SIDES: dict[str, Words] = {
    "left": W("on the left", "on the left side", "furthest to the left", "on the far left",
              ood="on the left-hand side"),
    "right": W("on the right", "on the right side", "furthest to the right", "on the far right",
               ood="on the right-hand side"),
    "top": W("at the top", "nearest the top", "furthest up", ood="up at the very top"),
    "bottom": W("at the bottom", "nearest the bottom", "furthest down", ood="down at the very bottom"),
}
REGIONS: dict[str, Words] = {
    "left": W("on the left", "on the left side of the picture", "in the left part of the picture",
              ood="over on the left"),
    "right": W("on the right", "on the right side of the picture", "in the right part of the picture",
               ood="over on the right"),
    "top": W("at the top", "at the top of the picture", "near the top of the picture", ood="up at the top"),
    "bottom": W("at the bottom", "at the bottom of the picture", "near the bottom of the picture",
                ood="down at the bottom"),
    "middle": W("in the middle", "in the centre", "in the center", "in the middle of the picture",
                ood="at the very centre"),
}
CORNERS: dict[str, Words] = {
    f"{v} {h}": W(f"in the {v} {h} corner", f"in the {v}-{h} corner", f"at the {v} {h}",
                  ood=f"in the {'upper' if v == 'top' else 'lower'} {h} corner")
    for v in ("top", "bottom") for h in ("left", "right")
}
# Before the noun: furthest that way of all alike ("the leftmost sneaker"), or one of two ("the left sneaker").
SIDE_ADJECTIVES: dict[str, Words] = {
    "left": W("leftmost", ood="furthest-left"), "right": W("rightmost", ood="furthest-right"),
    "top": W("topmost", "uppermost", ood="highest"), "bottom": W("bottommost", "lowest", ood="lowermost"),
}
PAIR_ADJECTIVES: dict[str, Words] = {
    "left": W("left", ood="left-hand"), "right": W("right", ood="right-hand"),
    "top": W("upper", ood="higher"), "bottom": W("lower", ood="lower-down"),
}
# Relations to another item, by box: wholly left of (right of, above, below) it. "next to" is not
# yet computed by the scene code; "between" needs two anchors and has its own templates.
RELATIONS: dict[str, Words] = {
    "left of": W("to the left of", "left of", "on the left of", ood="on the left-hand side of"),
    "right of": W("to the right of", "right of", "on the right of", ood="on the right-hand side of"),
    "above": W("above", "further up than", ood="higher up than"),
    "below": W("below", "under", "beneath", "further down than", ood="underneath"),
    "next to": W("next to", "beside", "close to", ood="alongside"),
}
# Order along x among three or more alike: "the second dress from the left", "the middle dress".
ORDINALS: dict[str, Words] = {"second": W("second", ood="2nd")}
ENDS: dict[str, Words] = {"left": W("left", ood="left-hand end"), "right": W("right", ood="right-hand end")}
CENTRES: dict[str, Words] = {"middle": W("middle", "centre", ood="central")}

# Which table fills which slot. side=, region= and corner= all fill the template slot {where}.
ATTRIBUTES: dict[str, dict[str, Words]] = {
    "colour": COLOURS, "size": SIZES, "side": SIDES, "region": REGIONS, "corner": CORNERS,
    "side_adj": SIDE_ADJECTIVES, "pair_adj": PAIR_ADJECTIVES, "relation": RELATIONS,
    "ordinal": ORDINALS, "end": ENDS, "centre": CENTRES,
}
WHERE = ("side", "region", "corner")
NOUN_SLOTS = ("name", "other", "other2")  # filled by names(key); {description} by descriptions(key)

# --------------------------------------------------------------------------- templates

# Phrasings, grouped into families by the slots they take; `phrase` picks the family from the slots
# it is given. Templates are plain noun phrases (no questions, no full stop). The held-out ones
# change the syntax, not just a word: "which" for "that", a fronted clause ("of the two, ..."),
# an appositive ("the one on the left, a sneaker"), "very", "you can see".
TEMPLATES: dict[str, Words] = {
    "name": W("the {name}", "a {name}", "the {name} in the picture", "the {name} in the image", "the {name} shown here",
              "this {name}", "the {name} here",
              ood=("the {name} you can see", "the pictured {name}", "the {name} in this shot")),
    "colour": W("the {colour} {name}", "a {colour} {name}", "the {name} that is {colour}", "the {name} in {colour}",
                "the {colour} coloured {name}", "{name}, the {colour} one", "the {name} coloured {colour}",
                ood=("the {name} which is {colour}", "the {name} with a {colour} tint")),
    "where": W("the {name} {where}", "the {name} that is {where}", "the {name} placed {where}", "a {name} {where}",
               ood=("the {name} which sits {where}", "the one {where}, a {name}")),
    "colour where": W("the {colour} {name} {where}", "a {colour} {name} {where}", "the {colour} {name} that is {where}",
                      ood="the {colour} {name} which sits {where}"),
    "side_adj": W("the {side_adj} {name}", "the {name} that is {side_adj}",
                  ood=("the very {side_adj} {name}", "the {side_adj} {name} of them all")),
    "colour side_adj": W("the {side_adj} {colour} {name}", ood="the very {side_adj} {colour} {name}"),
    "pair_adj": W("the {pair_adj} {name}", "the {pair_adj} {name} of the two", ood="of the two, the {pair_adj} {name}"),
    "colour pair_adj": W("the {pair_adj} {colour} {name}", ood="of the two, the {pair_adj} {colour} {name}"),
    "size": W("the {size} {name}", "the {name} that is {size}",
              ood=("the {name}, the {size} one", "the {name} which is {size}")),
    "relation": W("the {name} {relation} the {other}", "the {name} that is {relation} the {other}",
                  "the {name} placed {relation} the {other}", "a {name} {relation} the {other}",
                  ood=("the {name} which sits {relation} the {other}", "the one {relation} the {other}, a {name}")),
    "between": W("the {name} between the {other} and the {other2}",
                 ood=("the {name} in between the {other} and the {other2}",
                      "the {name} with the {other} on one side and the {other2} on the other")),
    "order": W("the {ordinal} {name} from the {end}", "the {name} {ordinal} from the {end}",
               "the {name} that is {ordinal} from the {end}", ood="counting from the {end}, the {ordinal} {name}"),
    "centre": W("the {centre} {name}", "the {centre} {name} of the three", ood="of the three, the {centre} {name}"),
    "description": W("the {description}", "a {description}", ood="the one that is a {description}"),
}

_SLOT = re.compile(r"\{(\w+)\}")
# Templates that count their noun ("a", "is", "one", "the second", "the middle", "the left ... of the two"),
# where a plural noun ("trousers") would not agree.
_SINGULAR = re.compile(r"\ban? \{|\bthis \{|\bis\b|\bone\b|\{(?:ordinal|centre|pair_adj)\}")
MASS_NOUNS = frozenset({"money"})  # no indefinite article: "a money" is not English


# --------------------------------------------------------------------------- look-ups


def resolve(key: str | int) -> str:
    """The NOUNS key for a key, a Fashion-MNIST label or class name, or an Item.category ("pair of trousers")."""
    if isinstance(key, (int, np.integer)):
        return FASHION_KEYS[int(key)]
    if key in NOUNS or key in KINDS or key == "generic":
        return key
    for cls in fm.CLASSES:
        if key in (cls.name, cls.nouns[0]):
            return FASHION_KEYS[cls.label]
    raise KeyError(f"no vocabulary entry for {key!r}")


def _noun_words(key: str | int) -> Words:
    key = resolve(key)
    return GENERIC if key == "generic" else KINDS[key] if key in KINDS else NOUNS[key].names


def names(key: str | int, split: str = "train") -> tuple[str, ...]:
    """Names of a thing (NOUNS key), of a kind (KINDS key) or of any item ("generic"); the first is the plain one."""
    return _noun_words(key).split(split)


def descriptions(key: str | int, split: str = "train") -> tuple[str, ...]:
    return NOUNS[resolve(key)].descriptions.split(split)


def kind_of(key: str | int) -> str:
    """The KINDS key of a thing: "sneaker" -> "footwear"."""
    return NOUNS[resolve(key)].kind


def words(slot: str, key: str, split: str = "train") -> tuple[str, ...]:
    """Wordings of an attribute: words("colour", "red", "ood") -> ("crimson",)."""
    return ATTRIBUTES[slot][key].split(split)


def is_plural(name: str) -> bool:
    return name in PLURAL


def indefinite(name: str) -> str | None:
    """"an ankle boot", "a one-piece dress"; None for plural and proper names (no "a trousers", "a Grace Hopper")."""
    if is_plural(name) or name in MASS_NOUNS or name[:1].isupper():
        return None
    return f"{_article(name)} {name}"


def _article(word: str) -> str:
    w = word.lower()
    if w.startswith(("one", "uni", "use", "eu")):
        return "a"
    return "an" if w[:1] in "aeiou" or w.startswith(("hour", "honest")) else "a"


def template_slots(template: str) -> frozenset[str]:
    return frozenset(_SLOT.findall(template))


def templates(split: str = "train", family: str | None = None) -> tuple[str, ...]:
    """Templates of one family, or of all, in table order."""
    chosen = [TEMPLATES[family]] if family else TEMPLATES.values()
    return tuple(t for w in chosen for t in w.split(split))


# --------------------------------------------------------------------------- filling templates


def _fits(template: str, slot: str, word: str) -> bool:
    """May `word` fill `slot` here? Plural nouns need a template that does not count them (_SINGULAR);
    proper names need a bare slot after a determiner (dropped later) or at the start, with no clause after."""
    if slot in ("name", "description") and is_plural(word) and _SINGULAR.search(template):
        return False
    if word in MASS_NOUNS and re.search(r"\ban? \{" + slot + r"\}", template):
        return False
    if word[:1].isupper():
        at = template.index("{" + slot + "}")
        before, after = template[:at], template[at + len(slot) + 2:]
        if not re.search(r"^$|(?:^|\s)(?:the|a|this) $", before) or re.match(r" (that|which)\b", after):
            return False
    return True


def _options(slot: str, key, split: str) -> tuple[str, ...]:
    if slot == "description":
        return descriptions(key, split)
    if slot in NOUN_SLOTS:
        return names(key, split)
    return ATTRIBUTES[slot][key].split(split)


def _tidy(text: str) -> str:
    """Drop a determiner before a proper name, make "a" agree ("an orange"), squeeze spaces."""
    text = re.sub(r"\b(?:the|an?|this) (?=[A-Z])", "", text)
    text = re.sub(r"\b(?:a|an) (?=(\S+))", lambda m: _article(m.group(1)) + " ", text)
    return " ".join(text.split())


def phrase(rng: np.random.Generator, template_split: str = "train", word_split: str | None = None,
           **slots) -> str:
    """A referring expression from a template of `template_split`, its slots filled from `word_split` words.

    Slots are keys, not words: name="sneaker", colour="red", side="left" (or region=, corner=),
    side_adj=, pair_adj=, size="bigger", relation="left of", other="coat", other2=, ordinal="second",
    end="left", centre="middle", description="sneaker". The slots given choose the family of
    templates; colour only suits products (photo objects have their own fixed colours). The
    choice is deterministic for a generator state: one draw for the template, then one per slot
    in template order. word_split defaults to template_split.
    """
    usable = _usable(template_split, word_split or template_split, slots)
    template, choices = usable[int(rng.integers(len(usable)))]
    return _tidy(template.format(**{slot: words[int(rng.integers(len(words)))] for slot, words in choices.items()}))


def all_phrases(template_split: str = "train", word_split: str | None = None, **slots) -> list[str]:
    """Every phrase `phrase` can make from these slots, once each, in a fixed order (templates, then words)."""
    out: dict[str, None] = {}
    for template, choices in _usable(template_split, word_split or template_split, slots):
        for fill in itertools.product(*choices.values()):
            out[_tidy(template.format(**dict(zip(choices, fill))))] = None
    return list(out)


def _usable(template_split: str, word_split: str, slots: dict) -> list[tuple[str, dict[str, tuple[str, ...]]]]:
    """(template, words that fit each of its slots, in template order) for the family these slots choose."""
    if len([s for s in WHERE if s in slots]) > 1:
        raise ValueError("give at most one of side=, region=, corner=")
    choices = {("where" if slot in WHERE else slot): _options(slot, key, word_split) for slot, key in slots.items()}
    family = next((f for f in TEMPLATES if template_slots(TEMPLATES[f].train[0]) == set(choices)), None)
    if family is None:
        raise ValueError(f"no templates take exactly the slots {sorted(choices)}")
    usable = []
    for template in TEMPLATES[family].split(template_split):
        fitting = {s: tuple(w for w in choices[s] if _fits(template, s, w)) for s in _SLOT.findall(template)}
        if all(fitting.values()):
            usable.append((template, fitting))
    if not usable:
        raise ValueError(f"no {template_split} template of family {family!r} fits the words {choices}")
    return usable


def describe(rng: np.random.Generator, key: str | int, split: str = "train") -> str:
    """A description of a thing as an expression: "the shoe with laces", "a tall white rocket standing ..."."""
    return phrase(rng, split, description=key)


# --------------------------------------------------------------------------- held-out checks


def _all_tables() -> list[Words]:
    return ([n.names for n in NOUNS.values()] + [n.descriptions for n in NOUNS.values()] + list(KINDS.values())
            + [GENERIC] + [w for table in ATTRIBUTES.values() for w in table.values()])


def training_words() -> frozenset[str]:
    return frozenset(w for t in _all_tables() for w in t.train)


def held_out_words() -> frozenset[str]:
    """Every held-out name, description, kind, generic noun and attribute wording."""
    return frozenset(w for t in _all_tables() for w in t.ood)


def contains(text: str, word: str) -> bool:
    """Is `word` in `text` as whole words ("tee" is not in "teeth"), ignoring case?"""
    return re.search(r"(?<![\w-])" + re.escape(word.lower()) + r"(?![\w-])", text.lower()) is not None


@functools.cache
def _held_out_word_pattern() -> re.Pattern:
    alternatives = "|".join(re.escape(w.lower()) for w in sorted(held_out_words(), key=len, reverse=True))
    return re.compile(r"(?<![\w-])(?:" + alternatives + r")(?![\w-])")


@functools.cache
def _held_out_template_patterns() -> tuple[re.Pattern, ...]:
    """One full-match pattern per held-out template, each slot matching any wording of any split."""
    fills = {"where": [w for s in WHERE for t in ATTRIBUTES[s].values() for w in t.split("all")],
             "description": [w for n in NOUNS.values() for w in n.descriptions.split("all")]}
    nouns = [w for k in [*NOUNS, *KINDS, "generic"] for w in names(k, "all")]
    fills.update({s: nouns for s in NOUN_SLOTS})
    fills.update({s: [w for t in table.values() for w in t.split("all")] for s, table in ATTRIBUTES.items()
                  if s not in WHERE})
    patterns = []
    for template in templates("ood"):
        parts = re.split(r"(\{\w+\})", template)
        regex = ""
        for i, part in enumerate(parts):
            slot = _SLOT.fullmatch(part)
            if slot:
                options = sorted({w.lower() for w in fills[slot.group(1)]}, key=len, reverse=True)
                regex += "(?:" + "|".join(re.escape(w) for w in options) + ")"
            else:
                regex += _literal_pattern(part, before_slot=i + 1 < len(parts))
        patterns.append(re.compile(regex))
    return tuple(patterns)


def _literal_pattern(part: str, before_slot: bool) -> str:
    """A template's fixed words as a pattern: "a" may have become "an", and a determiner just before a
    slot may be gone (it is dropped before a proper name)."""
    words = part.split(" ")
    escaped = ["an?" if w == "a" else re.escape(w) for w in words]
    if before_slot and len(words) >= 2 and words[-1] == "" and words[-2] in ("the", "a", "this"):
        head = " ".join(escaped[:-2]) + " " if len(words) > 2 else ""
        return head + f"(?:{escaped[-2]} )?"
    return " ".join(escaped)


def held_out_template(expression: str) -> str | None:
    """The held-out template that could have produced `expression`, or None."""
    text = " ".join(expression.strip().rstrip(".!?").lower().split())
    for template, pattern in zip(templates("ood"), _held_out_template_patterns()):
        if pattern.fullmatch(text):
            return template
    return None


def is_held_out(expression: str) -> bool:
    """Does the expression use a held-out word or a held-out template? Training expressions must not."""
    text = expression.lower()
    return _held_out_word_pattern().search(text) is not None or held_out_template(expression) is not None
