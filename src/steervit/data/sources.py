"""Build records (or a weighted mixture) from a config: one mapping per source.

    sources:
      - {name: refcoco, type: refer, refer_root: /data/refer, dataset: refcoco, split: train,
         coco_root: /data/coco, weight: 1.0}
      - {name: lvis, type: lvis, annotations_json: /data/lvis/lvis_v1_train.json, coco_root: /data/coco}
      - {name: steervit, type: steervit_hf, path: /data/hf/SteerViT, split: train, coco_root: ...,
         vg_root: ..., mapillary_root: ...}
      - {name: mine, type: manifest, path: /data/mine/train.jsonl, weight: 0.5}

`type` picks the reader; every other key except `name` and `weight` is passed to it. A missing
weight means "in proportion to size" for all sources (weights are all given or all omitted).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from .hf_steervit import read_steervit_hf
from .lvis import read_lvis
from .manifest import read_manifest
from .mapillary import read_mapillary
from .mixture import Mixture
from .records import Record
from .refer import read_refer
from .visual_genome import read_visual_genome

READERS: dict[str, Callable[..., list[Record]]] = {
    "steervit_hf": read_steervit_hf,
    "refer": read_refer,
    "lvis": read_lvis,
    "visual_genome": read_visual_genome,
    "mapillary": read_mapillary,
    "manifest": read_manifest,
}


def read_source(spec: Mapping[str, Any]) -> list[Record]:
    """Run the reader named by `spec["type"]` with the spec's other keys."""
    kwargs = {k: v for k, v in dict(spec).items() if k not in ("type", "name", "weight")}
    kind = spec.get("type")
    if kind not in READERS:
        raise ValueError(f"unknown source type {kind!r}; expected one of {sorted(READERS)}")
    return list(READERS[kind](**kwargs))


def load_mixture(specs: Iterable[Mapping[str, Any]]) -> Mixture:
    """Read every source and weight them as configured."""
    specs = [dict(s) for s in specs]
    names = [str(s.get("name") or s.get("type")) for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"source names must be unique: {names}")
    has_weight = [s.get("weight") is not None for s in specs]
    if any(has_weight) and not all(has_weight):
        raise ValueError("give a weight for every source or for none")
    sources = {name: read_source(spec) for name, spec in zip(names, specs)}
    weights = {name: float(spec["weight"]) for name, spec in zip(names, specs)} if all(has_weight) else None
    return Mixture.from_sources(sources, weights)
