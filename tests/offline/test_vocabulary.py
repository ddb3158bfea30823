"""The offline vocabulary: enough names, a clean held-out split, and tidy, deterministic phrases."""
from __future__ import annotations

import re
import statistics

import numpy as np
import pytest

from steervit.offline import fashion_mnist as fm
from steervit.offline import photos, scenes
from steervit.offline import vocabulary as v

# Words a parser of the expressions reads as a position or a relation: never inside a name.
POSITION_WORDS = ("left", "right", "top", "bottom", "middle", "centre", "center", "upper", "lower", "corner",
                  "above", "below", "under", "beneath", "beside", "next to", "between")
COLOUR_WORDS = sorted({w for t in v.COLOURS.values() for w in t.split("all")})


def slot_cases() -> list[dict]:
    """Slots for every template family, over every thing (colours only for products, as in the scenes)."""
    keys = list(v.NOUNS)
    cases = []
    for i, key in enumerate(keys):
        other, other2 = keys[(i + 1) % len(keys)], keys[(i + 7) % len(keys)]
        colour = list(v.COLOURS)[i % len(v.COLOURS)]
        cases += [dict(name=key), dict(description=key), dict(name=key, relation=list(v.RELATIONS)[i % 5], other=other),
                  dict(name=key, other=other, other2=other2), dict(name=key, ordinal="second", end="right"),
                  dict(name=key, centre="middle"), dict(name=key, size=list(v.SIZES)[i % len(v.SIZES)])]
        for where in ("side", "region", "corner"):
            cases.append({"name": key, where: list(v.ATTRIBUTES[where])[i % len(v.ATTRIBUTES[where])]})
        for adj in ("side_adj", "pair_adj"):
            cases.append({"name": key, adj: list(v.ATTRIBUTES[adj])[i % 4]})
        if key in v.FASHION_KEYS:
            cases += [dict(name=key, colour=colour), dict(name=key, colour=colour, side="left"),
                      dict(name=key, colour=colour, side_adj="top"), dict(name=key, colour=colour, pair_adj="bottom")]
    cases += [dict(name=k) for k in [*v.KINDS, "generic"]] + [dict(name="generic", side_adj="left")]
    return cases


def sample(template_split: str, word_split: str | None = None, seeds=range(4)) -> list[str]:
    out = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        out += [v.phrase(rng, template_split, word_split, **slots) for slots in slot_cases()]
    return out


TRAIN = sample("train")


def test_covers_every_thing_the_offline_data_names():
    assert set(v.FASHION_KEYS) | set(v.PHOTO_KEYS) == set(v.NOUNS)
    assert v.PHOTO_KEYS == tuple(o.key for o in photos.PHOTO_OBJECTS)
    for cls in fm.CLASSES:
        key = v.FASHION_KEYS[cls.label]
        assert v.resolve(cls.label) == v.resolve(cls.name) == v.resolve(cls.nouns[0]) == key
        assert v.names(key)[0] == cls.nouns[0]
    for obj in photos.PHOTO_OBJECTS:
        assert v.resolve(obj.key) == obj.key and v.names(obj.key)[0] == obj.names[0]
    with pytest.raises(KeyError):
        v.resolve("unicorn")


def test_every_thing_has_five_names_descriptions_and_a_kind():
    for key, noun in v.NOUNS.items():
        assert len(v.names(key, "all")) >= 5, key
        assert v.descriptions(key, "train") and v.descriptions(key, "ood"), key
        assert noun.kind in v.KINDS, key


def test_every_thing_has_held_out_and_training_names_about_one_in_five():
    held = [len(v.names(k, "ood")) for k in v.NOUNS]
    for key in v.NOUNS:
        assert v.names(key, "train") and v.names(key, "ood"), key
        assert len(v.names(key, "ood")) <= len(v.names(key, "all")) / 3, key
    assert 0.15 <= sum(held) / sum(len(v.names(k, "all")) for k in v.NOUNS) <= 0.3


def test_every_attribute_kind_and_template_family_has_both_splits():
    tables = [*v.KINDS.values(), v.GENERIC, *v.TEMPLATES.values()]
    tables += [w for table in v.ATTRIBUTES.values() for w in table.values()]
    for words in tables:
        assert words.train and words.ood, words


def test_words_in_use_today_are_training_words():
    """Switching the scenes to this vocabulary keeps every phrase they make today in the training split."""
    for cls in fm.CLASSES:
        key = v.FASHION_KEYS[cls.label]
        assert set(cls.nouns) <= set(v.names(key)), key
        assert cls.supercategory in v.names(v.kind_of(key)) or cls.supercategory in v.names(key)
    for obj in photos.PHOTO_OBJECTS:
        assert set(obj.names) <= set(v.names(obj.key))
        assert re.sub(r"^(an?|the) ", "", obj.description) in v.descriptions(obj.key)
        assert obj.kind is None or obj.kind in v.names(v.kind_of(obj.key))
    assert set(scenes.GENERIC_NOUNS) <= set(v.GENERIC.train)
    for colour in [*scenes.PALETTE, *scenes.NEUTRAL]:
        assert colour in v.words("colour", colour)
    for side, formats in scenes.SIDE_WORDS.items():
        assert formats[0].replace("the {n} ", "") in v.words("side", side)
        assert formats[1].replace("the ", "").replace(" {n}", "") in v.words("side_adj", side)
        assert scenes.PAIR_WORDS[side].replace("the ", "").replace(" {n}", "") in v.words("pair_adj", side)
    for side in ("left", "right"):
        assert scenes.FAR_WORDS[side].replace("the {n} ", "") in v.words("side", side)
    for (vertical, horizontal), words in scenes.CORNERS.items():
        assert f"in the {words} corner" in v.words("corner", f"{vertical} {horizontal}")
    for needs, words in scenes.LONE_REGION_WORDS:
        assert words in (v.words("region", next(iter(needs))) if len(needs) == 1
                         else v.words("corner", " ".join(sorted(needs, key=lambda w: w not in ("top", "bottom")))))
    for rel, words in scenes.RELATION_WORDS.items():
        assert set(words) <= set(v.words("relation", rel))
    for size in ("big", "bigger", "biggest", "small", "smaller", "smallest"):
        assert size in v.words("size", size)
    assert {"larger", "largest", "large"} <= set(v.words("size", "bigger") + v.words("size", "biggest")
                                                + v.words("size", "big"))


def test_no_name_belongs_to_two_things():
    owners: dict[str, str] = {}
    for key in [*v.NOUNS, *v.KINDS, "generic"]:
        for name in v.names(key, "all"):
            assert owners.setdefault(name.lower(), key) == key, (name, owners[name.lower()], key)


def test_names_and_descriptions_hold_no_position_words_and_products_no_colour():
    for key in v.NOUNS:
        for text in v.names(key, "all") + v.descriptions(key, "all"):
            assert not [w for w in POSITION_WORDS if v.contains(text, w)], text
            if key in v.FASHION_KEYS:
                assert not [c for c in COLOUR_WORDS if v.contains(text, c)], text


def test_train_and_held_out_are_disjoint_everywhere():
    assert not v.training_words() & v.held_out_words()
    assert not set(v.templates("train")) & set(v.templates("ood"))
    for key in v.NOUNS:
        assert not set(v.names(key, "train")) & set(v.names(key, "ood"))
    for table in v.ATTRIBUTES.values():
        for words in table.values():
            assert not set(words.train) & set(words.ood)


def test_held_out_words_never_sit_inside_training_text():
    """Else a training expression would look held out: "pants" inside "pair of pants"."""
    training = list(v.training_words()) + list(v.templates("train"))
    for word in v.held_out_words():
        assert not [t for t in training if v.contains(t, word)], word


def test_held_out_templates_are_new_shapes():
    """A held-out template is not a training template with other slot names."""
    shape = lambda t: re.sub(r"\{\w+\}", "{}", t)  # noqa: E731
    assert not {shape(t) for t in v.templates("ood")} & {shape(t) for t in v.templates("train")}


def test_template_families_have_one_slot_set_each():
    sets = []
    for family, words in v.TEMPLATES.items():
        slots = {v.template_slots(t) for t in words.split("all")}
        assert len(slots) == 1, family
        sets.append(slots.pop())
    assert len(set(sets)) == len(sets)


def test_training_phrases_contain_nothing_held_out():
    assert not [p for p in TRAIN if v.is_held_out(p)]
    for phrase in TRAIN:
        assert not [w for w in v.held_out_words() if v.contains(phrase, w)], phrase


def _placed(category: str, colour: str, x: int, y: int, size: int = 30) -> scenes.Placed:
    cls = next(c for c in fm.CLASSES if c.nouns[0] == category)
    item = scenes.Item(key=f"fake-{category}-{x}", source="fashion_mnist", category=category, names=cls.nouns,
                       kind=cls.supercategory, colour=colour, plural_names=cls.plural_nouns)
    mask = np.zeros((scenes.CANVAS, scenes.CANVAS), bool)
    mask[y:y + size, x:x + size] = True
    return scenes.Placed(item, (x, y, size, size), mask, size, False)


def test_expressions_the_scenes_make_today_are_not_held_out():
    """Every phrase of a few hand-placed scenes (alike, lone, relations, order, size): none looks held out."""
    blank = np.zeros((scenes.CANVAS, scenes.CANVAS, 3), np.uint8)
    layouts = [[("sneaker", "red", 10, 100), ("sneaker", "grey", 150, 100), ("bag", "blue", 80, 10)],
               [("dress", "pink", 10, 100, 30), ("dress", "pink", 90, 100, 60), ("dress", "green", 180, 100, 30),
                ("pair of trousers", "white", 100, 180)],
               [("coat", "orange", 10, 10), ("ankle boot", "purple", 180, 180), ("t-shirt", None, 100, 100)]]
    phrases = set()
    for layout in layouts:
        s = scenes.Scene(blank, blank, "black", [_placed(*spec) for spec in layout])
        for i in range(len(s.placed)):
            phrases |= {t for texts in scenes.expressions(s, i).values() for t in texts}
    assert len(phrases) > 50
    assert not [p for p in phrases if v.is_held_out(p)]


def test_held_out_phrases_are_recognised():
    assert all(v.held_out_template(p) for p in sample("ood", "train"))
    assert all(v.is_held_out(p) for p in sample("train", "ood"))
    assert v.is_held_out("The tennis shoe on the left.")
    assert not v.is_held_out("the sneaker on the left")


def test_all_phrases_lists_what_phrase_draws():
    slots = dict(name="trousers", colour="red", side="left")
    every = v.all_phrases("train", **slots)
    assert len(every) == len(set(every)) > 50
    rng = np.random.default_rng(0)
    assert all(v.phrase(rng, "train", **slots) in every for _ in range(50))
    assert not [p for p in every if v.is_held_out(p)]
    assert all(v.is_held_out(p) for p in v.all_phrases("ood", "train", **slots))
    hopper = v.all_phrases("train", name="grace_hopper", relation="above", other="cat")
    assert "Grace Hopper above the cat" in hopper and not [p for p in hopper if "the Grace" in p]


def test_phrases_are_deterministic_for_a_seed():
    assert sample("train", seeds=[5]) == sample("train", seeds=[5])
    assert sample("ood", seeds=[5]) == sample("ood", seeds=[5])
    assert sample("train", seeds=[5]) != sample("train", seeds=[6])


def test_phrases_are_tidy():
    for phrase in TRAIN + sample("ood") + sample("train", "ood") + sample("all", "all", seeds=[9]):
        assert phrase and isinstance(phrase, str)
        assert "{" not in phrase and "}" not in phrase and "  " not in phrase and phrase == phrase.strip(), phrase
        assert not re.search(r"\ba [aeiou]|\ban [^aeiou2\s]", phrase.replace("a one-", "")), phrase
        assert not re.search(r"\b(the|a|an|this) [A-Z]", phrase), phrase
        assert not re.search(r"\ba (trousers|pants|slacks|long trousers|legwear)\b", phrase), phrase


def test_plural_and_proper_names_get_no_article():
    assert v.indefinite("ankle boot") == "an ankle boot" and v.indefinite("one-piece dress") == "a one-piece dress"
    assert v.indefinite("trousers") is None and v.indefinite("Grace Hopper") is None
    assert v.PLURAL <= {n for k in v.NOUNS for n in v.names(k, "all")}
    rng = np.random.default_rng(0)
    plural = r"(trousers|pants|slacks|long trousers|legwear)"
    for _ in range(100):
        assert not v.phrase(rng, "all", name="trousers").startswith("a trousers")
        for slots in (dict(ordinal="second", end="left"), dict(centre="middle"), dict(pair_adj="top")):
            text = v.phrase(rng, "all", name="trousers", **slots)
            assert not re.search(r"\b(second|2nd|middle|centre|central|upper|higher|left) " + plural + r"\b", text)


def test_held_out_phrasing_really_differs():
    assert len(v.templates("train")) >= 30 and len(v.templates("ood")) >= 15
    used = {v.held_out_template(p) for p in sample("ood", seeds=range(8))}
    assert len(used) >= 15
    train_names = {n for k in v.NOUNS for n in v.names(k, "train")}
    ood_names = {n for k in v.NOUNS for n in v.names(k, "ood")}
    assert len(ood_names) >= 20 and not train_names & ood_names
    sizes = [len(v.names(k, "all")) for k in v.NOUNS]
    assert min(sizes) >= 5 and statistics.median(sizes) >= 6


def test_bad_arguments_are_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        v.names("sneaker", "test")
    with pytest.raises(ValueError):
        v.phrase(rng, name="sneaker", side="left", region="left")
    with pytest.raises(ValueError):
        v.phrase(rng, colour="red")
    assert v.names("sneaker", "all") == v.names("sneaker", "train") + v.names("sneaker", "ood")
    assert v.describe(np.random.default_rng(1), "sneaker") == v.describe(np.random.default_rng(1), "sneaker")


def test_no_counted_plurals_and_no_article_on_mass_nouns():
    """'this trousers' and 'a money' are not English: plural names only go where nothing counts them."""
    for template_split in ("train", "ood"):
        phrases = v.all_phrases(template_split, name="trousers") + v.all_phrases(
            template_split, name="money")
        assert phrases
        for text in phrases:
            for bad in ("this trousers", "this pants", "this slacks", "a trousers", "a money", "a piece of money s"):
                assert bad not in text, text
