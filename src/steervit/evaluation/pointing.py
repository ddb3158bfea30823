"""Pointing game on real photos: is the heatmap's peak inside the named object's box?

An out-of-distribution check on real multi-object photos (whole photos, not composites), read from
the sample photos that installed packages ship (scikit-image, scikit-learn, matplotlib, imgaug), with
boxes drawn by hand (`steervit/offline/pointing_photos.json`; see docs/pointing-game.md). Every
(photo, object, prompt) is one entry. The whole photo is resized to the model's square input
(`preprocessing.transform(crop=False)`, no crop, so every box survives) and its box is scaled alike.

Scores, in percent, each the mean over entries (per photo over that photo's entries):
- `head_pointing`: the peak (argmax) of the head heatmap `get_heatmaps` lies inside the box;
- `head_mass`: share of the head heatmap's mass inside the box;
- `attention_pointing`: the peak of the CLS attention heatmap `get_attention_heatmaps` lies inside;
- `chance`: the box's share of the image, the expected score of a uniformly random peak and the
  head mass of a uniform map.
`steered` is the model with the entry's prompt at its own gate factor; `plain` is the trunk without a
prompt (attention with `texts=None`; head at gate factor 0, which is the head on the plain trunk's
tokens and so the same map for every prompt of a photo). A pixel is inside a box when its centre
is; should several pixels share the peak value, the score is the share of them inside (so a flat
map scores the chance level, not the top-left corner's luck).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from .report import markdown_table, mean

PHOTOS_JSON = Path(__file__).resolve().parents[1] / "offline" / "pointing_photos.json"
# Reserved for evaluation outside the project: never a source here.
RESERVED_PACKAGES = ("mate-backgrounds", "opencv-doc")
RESERVED_PATHS = ("/usr/share/backgrounds", "/usr/share/doc/opencv-doc", "/usr/share/opencv")
SOURCE_KINDS = ("skimage", "sklearn", "matplotlib", "package_file")
METRICS = ("head_pointing", "head_mass", "attention_pointing")


# --------------------------------------------------------------------------------------- the photos
@dataclass(frozen=True)
class PointingObject:
    name: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the photo's pixels, x1 and y1 exclusive
    prompts: tuple[str, ...]


@dataclass(frozen=True)
class PointingPhoto:
    id: str
    title: str
    source: tuple[tuple[str, Any], ...]  # the JSON "source" object as sorted items (hashable)
    size: tuple[int, int]  # width, height
    sha256: str  # of the loaded (H, W, 3) uint8 pixels
    licence: str
    used_in_training: bool
    training_note: str
    objects: tuple[PointingObject, ...]

    @property
    def source_dict(self) -> dict[str, Any]:
        return dict(self.source)


@dataclass(frozen=True)
class PointingEntry:
    """One (photo, object, prompt)."""

    photo: PointingPhoto
    object: str
    prompt: str
    box: tuple[int, int, int, int]

    @property
    def photo_id(self) -> str:
        return self.photo.id


def check_source(source: Mapping[str, Any]) -> None:
    """Refuse unknown kinds and the packages reserved for evaluation outside the project."""
    kind = source.get("kind")
    if kind not in SOURCE_KINDS:
        raise ValueError(f"unknown photo source kind {kind!r}; expected one of {SOURCE_KINDS}")
    text = json.dumps(dict(source)).lower()
    for reserved in RESERVED_PACKAGES + RESERVED_PATHS:
        if reserved in text:
            raise ValueError(f"photo source {dict(source)} uses {reserved!r}, which is reserved for evaluation "
                             "outside the project")


def read_photos(path: str | Path | None = None) -> list[PointingPhoto]:
    """The photos and their hand-drawn boxes (default: the packaged pointing_photos.json), checked."""
    doc = json.loads(Path(path or PHOTOS_JSON).read_text(encoding="utf-8"))
    photos, seen = [], set()
    for p in doc["photos"]:
        if p["id"] in seen:
            raise ValueError(f"photo id {p['id']!r} appears twice")
        seen.add(p["id"])
        check_source(p["source"])
        width, height = (int(v) for v in p["size"])
        objects = []
        for o in p["objects"]:
            x0, y0, x1, y1 = (int(v) for v in o["box"])
            if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                raise ValueError(f"{p['id']}/{o['name']}: box {o['box']} is empty or outside the "
                                 f"{width}x{height} photo")
            if not o["prompts"]:
                raise ValueError(f"{p['id']}/{o['name']}: no prompts")
            objects.append(PointingObject(str(o["name"]), (x0, y0, x1, y1), tuple(str(t) for t in o["prompts"])))
        used = p["used_in_training"]
        photos.append(PointingPhoto(
            id=str(p["id"]), title=str(p.get("title", p["id"])), source=tuple(sorted(p["source"].items())),
            size=(width, height), sha256=str(p.get("sha256", "")), licence=str(p["licence"]),
            used_in_training=bool(used["used"]), training_note=str(used.get("what", "")), objects=tuple(objects)))
    return photos


def read_entries(path: str | Path | None = None, photos: Sequence[PointingPhoto] | None = None) -> list[PointingEntry]:
    """Every (photo, object, prompt), in file order."""
    photos = read_photos(path) if photos is None else photos
    return [PointingEntry(p, o.name, prompt, o.box) for p in photos for o in p.objects for prompt in o.prompts]


# ----------------------------------------------------------------------------------- loading pixels
def _rgb(array: Any) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.dtype != np.uint8:
        raise TypeError(f"expected an 8-bit photo, got {array.dtype}")
    return np.ascontiguousarray(array[..., :3])


def load_skimage(name: str, index: int | None = None) -> np.ndarray:
    """`skimage.data.<name>()` (item `index` of what it returns, e.g. 0 = stereo_motorcycle's left view)."""
    import skimage.data

    data = getattr(skimage.data, name)()
    return _rgb(data if index is None else data[index])


def load_sklearn(name: str) -> np.ndarray:
    """`sklearn.datasets.load_sample_image(name)` ("china.jpg", "flower.jpg")."""
    from sklearn.datasets import load_sample_image

    return _rgb(load_sample_image(name))


def load_matplotlib(name: str) -> np.ndarray:
    """A file of matplotlib's sample data (`cbook.get_sample_data(name)`), as RGB."""
    from matplotlib import cbook

    with Image.open(cbook.get_sample_data(name, asfileobj=False)) as im:
        return _rgb(im.convert("RGB"))


def package_folder(package: str) -> Path:
    """An installed package's folder, found without importing the package (imgaug's imports need opencv)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the package {package!r} is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def load_package_file(package: str, file: str) -> np.ndarray:
    """An image file shipped inside an installed package (imgaug's quokka.jpg), as RGB."""
    with Image.open(package_folder(package) / file) as im:
        return _rgb(im.convert("RGB"))


_LOADERS: dict[str, Callable[[Mapping[str, Any]], np.ndarray]] = {
    "skimage": lambda s: load_skimage(s["name"], s.get("index")),
    "sklearn": lambda s: load_sklearn(s["name"]),
    "matplotlib": lambda s: load_matplotlib(s["name"]),
    "package_file": lambda s: load_package_file(s["package"], s["file"]),
}


def load_source(source: Mapping[str, Any]) -> np.ndarray:
    """The photo a JSON "source" names, as (H, W, 3) uint8 (grey photos repeated over 3 channels)."""
    check_source(source)
    return _LOADERS[source["kind"]](source)


def pixel_sha256(array: np.ndarray) -> str:
    """SHA-256 of the pixels and their shape: the same photo gives the same digest on any machine."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return hashlib.sha256(array.tobytes() + str(array.shape).encode()).hexdigest()


@functools.lru_cache(maxsize=None)
def load_photo(photo: PointingPhoto, check: bool = True) -> np.ndarray:
    """The photo's pixels; with `check`, fails when its size or pixels differ from those the boxes were
    drawn on (a package that changed its sample photo)."""
    array = load_source(photo.source_dict)
    height, width = array.shape[:2]
    if (width, height) != photo.size:
        raise ValueError(f"photo {photo.id!r} is {width}x{height}, its boxes were drawn on "
                         f"{photo.size[0]}x{photo.size[1]}")
    if check and photo.sha256 and pixel_sha256(array) != photo.sha256:
        raise ValueError(f"photo {photo.id!r} ({photo.source_dict.get('call', photo.source_dict)}) has other pixels "
                         "than the ones its boxes were drawn on; check the boxes and update sha256")
    array.setflags(write=False)
    return array


# -------------------------------------------------------------------------------------------- metrics
def scale_box(box: Sequence[float], size: tuple[int, int], out_size: tuple[int, int]) -> tuple[float, ...]:
    """A box in a (width, height) photo, in the pixels of the same photo resized to `out_size` (w, h)."""
    (w, h), (out_w, out_h) = size, out_size
    x0, y0, x1, y1 = box
    return (x0 * out_w / w, y0 * out_h / h, x1 * out_w / w, y1 * out_h / h)


def box_mask(box: Sequence[float], height: int, width: int, tolerance: float = 0.0) -> torch.Tensor:
    """(height, width) bool: the pixels whose centres lie in the box (grown by `tolerance` pixels)."""
    x0, y0, x1, y1 = box
    xs = torch.arange(width, dtype=torch.float64) + 0.5
    ys = torch.arange(height, dtype=torch.float64) + 0.5
    inside_x = (xs >= x0 - tolerance) & (xs < x1 + tolerance)
    inside_y = (ys >= y0 - tolerance) & (ys < y1 + tolerance)
    return inside_y[:, None] & inside_x[None, :]


def peak_mask(heatmap: torch.Tensor, rtol: float = 1e-6) -> torch.Tensor:
    """The pixels holding the map's maximum (within `rtol` of its range): a flat map is all peak."""
    heatmap = heatmap.double()
    top, bottom = heatmap.max(), heatmap.min()
    return heatmap >= top - rtol * (top - bottom)


def pointing_hit(heatmap: torch.Tensor, mask: torch.Tensor) -> float:
    """1.0 when the map's peak is inside `mask`, 0.0 when not; the share inside for tied peaks."""
    peaks = peak_mask(heatmap)
    return float((peaks & mask).sum()) / float(peaks.sum())


def mass_inside(heatmap: torch.Tensor, mask: torch.Tensor) -> float:
    """Share of the (non-negative) map's sum inside `mask`; NaN for an all-zero map."""
    heatmap = heatmap.double().clamp_min(0)
    total = float(heatmap.sum())
    return float(heatmap[mask].sum()) / total if total > 0 else float("nan")


def pointing_accuracy(heatmaps: torch.Tensor, masks: torch.Tensor) -> float:
    """Mean `pointing_hit` over a batch of (H, W) maps and masks, in percent."""
    return 100.0 * float(np.mean([pointing_hit(h, m) for h, m in zip(heatmaps, masks)]))


# ----------------------------------------------------------------------------------------- evaluate
def _chunks(items: Sequence, size: int):
    for lo in range(0, len(items), size):
        yield items[lo:lo + size]


def _scores(head: torch.Tensor, attention: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    return {"head_pointing": 100.0 * pointing_hit(head, mask), "head_mass": 100.0 * mass_inside(head, mask),
            "attention_pointing": 100.0 * pointing_hit(attention, mask)}


def _group(rows: list[dict], text: bool) -> dict[str, Any]:
    """Means of a group of entry rows: entries, photos, chance, steered (None without text), plain."""
    out: dict[str, Any] = {"entries": len(rows), "photos": len({r["photo"] for r in rows}),
                           "chance": mean([r["chance"] for r in rows])}
    for mode in ("steered", "plain"):
        if mode == "steered" and not text:
            out[mode] = None
            continue
        out[mode] = {m: mean([r[mode][m] for r in rows]) for m in METRICS}
    return out


@torch.no_grad()
def evaluate(model, entries: Sequence[PointingEntry] | None = None, *, text: bool = True, batch_size: int = 8,
             tolerance: float = 0.0, images: Mapping[str, np.ndarray | Image.Image] | None = None) -> dict:
    """The pointing game (percent): overall, on the photos not used in training, on those used, per photo,
    and per entry. `entries` default to every entry of the packaged photos. `text=False` leaves out the
    prompted (steered) scores. `tolerance` grows every box by that many input pixels (0: strict).
    `images` (photo id -> picture) replaces loading a photo from its source."""
    entries = list(read_entries() if entries is None else entries)
    if not entries:
        raise ValueError("no pointing entries")
    size = int(model.image_size)
    transform = model.preprocessing.transform(crop=False)
    photos: dict[str, PointingPhoto] = {}
    for e in entries:
        if photos.setdefault(e.photo.id, e.photo) != e.photo:
            raise ValueError(f"two different photos share the id {e.photo.id!r}")

    def picture(photo: PointingPhoto) -> Image.Image:
        given = None if images is None else images.get(photo.id)
        if given is None:
            return Image.fromarray(load_photo(photo))
        return given if isinstance(given, Image.Image) else Image.fromarray(_rgb(given))

    inputs = {pid: transform(picture(p)) for pid, p in photos.items()}
    masks = [box_mask(scale_box(e.box, e.photo.size, (size, size)), size, size, tolerance) for e in entries]

    # The plain trunk: one pass per photo (no prompt; the head at gate factor 0 is the same for all prompts).
    plain: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for ids in _chunks(list(photos), batch_size):
        x = torch.stack([inputs[i] for i in ids])
        head = model.get_heatmaps(x, None, gate_factor=0.0)[:, 0].float().cpu()
        attention = model.get_attention_heatmaps(x, None).float().cpu()
        for k, i in enumerate(ids):
            plain[i] = head[k], attention[k]

    steered: list[tuple[torch.Tensor, torch.Tensor]] = []
    if text:
        for chunk in _chunks(entries, batch_size):
            x = torch.stack([inputs[e.photo.id] for e in chunk])
            embedding = model.encode_text([e.prompt for e in chunk])
            head = model.get_heatmaps(x, embedding)[:, 0].float().cpu()
            attention = model.get_attention_heatmaps(x, embedding).float().cpu()
            steered += list(zip(head, attention))

    rows = []
    for n, (e, mask) in enumerate(zip(entries, masks)):
        row = {"photo": e.photo.id, "object": e.object, "prompt": e.prompt,
               "used_in_training": e.photo.used_in_training, "box": list(e.box),
               "chance": 100.0 * float(mask.double().mean())}
        if text:
            row["steered"] = _scores(*steered[n], mask)
        row["plain"] = _scores(*plain[e.photo.id], mask)
        rows.append(row)

    by_photo: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_photo[r["photo"]].append(r)
    unused = [r for r in rows if not r["used_in_training"]]
    used = [r for r in rows if r["used_in_training"]]
    return {
        "benchmark": "pointing",
        "metric": "pointing game (%): the heatmap's peak inside the named object's hand-drawn box; head mass (%) "
                  "inside the box; chance = the box's share of the image",
        "averaging": "mean over (photo, object, prompt) entries; per photo over its entries",
        "image_size": size,
        "tolerance": float(tolerance),
        "text": bool(text),
        **_group(rows, text),
        "not_in_training": _group(unused, text) if unused else None,
        "in_training": _group(used, text) if used else None,
        "per_photo": {pid: {"used_in_training": photos[pid].used_in_training, "licence": photos[pid].licence,
                            **_group(group, text)} for pid, group in by_photo.items()},
        "per_entry": rows,
    }


# ----------------------------------------------------------------------------------------- reporting
def _metric_rows(label: str, group: dict | None) -> list[list]:
    if group is None:
        return []
    chance = group["chance"]
    rows = [[label, "chance (box area)", group["entries"], chance, chance, chance]]
    for mode, name in (("steered", "steered (prompt)"), ("plain", "plain trunk (gate 0 / no prompt)")):
        if group.get(mode) is not None:
            rows.append([label, name, group["entries"], *(group[mode][m] for m in METRICS)])
    return rows


def table(results: dict) -> str:
    """Markdown: the three groups (all, not in training, in training), then one row per photo."""
    headers = ["photos", "map", "entries", "head pointing", "head mass in box", "attention pointing"]
    rows = _metric_rows(f"all ({results['photos']})", results)
    for key, label in (("not_in_training", "not in training"), ("in_training", "in training")):
        group = results.get(key)
        if group is not None:
            rows += _metric_rows(f"{label} ({group['photos']})", group)
    text = markdown_table(headers, rows)
    photo_headers = ["photo", "in training", "entries", "chance", "head pointing", "head mass", "attention pointing",
                     "plain head pointing", "plain head mass", "plain attention pointing"]
    photo_rows = []
    for pid, g in results["per_photo"].items():
        steered = g.get("steered") or {}
        photo_rows.append([pid, "yes" if g["used_in_training"] else "no", g["entries"], g["chance"],
                           *(steered.get(m) for m in METRICS), *(g["plain"][m] for m in METRICS)])
    return text + "\n" + markdown_table(photo_headers, photo_rows)


def summary(results: dict) -> str:
    """One line: the overall numbers."""
    from .report import fmt

    parts = [f"{results['entries']} entries on {results['photos']} photos, chance {fmt(results['chance'])}"]
    if results.get("steered"):
        s = results["steered"]
        parts.append(f"steered head pointing {fmt(s['head_pointing'])} (mass {fmt(s['head_mass'])}), "
                     f"attention pointing {fmt(s['attention_pointing'])}")
    p = results["plain"]
    parts.append(f"plain head pointing {fmt(p['head_pointing'])}, attention pointing {fmt(p['attention_pointing'])}")
    return "pointing: " + "; ".join(parts)


def render_boxes(photo: PointingPhoto, image: np.ndarray | Image.Image | None = None, width: int = 3) -> Image.Image:
    """The photo with its boxes and object names drawn on (to check the boxes by eye)."""
    from PIL import ImageDraw

    from ..overlay import _font

    picture = (Image.fromarray(load_photo(photo)) if image is None else
               image if isinstance(image, Image.Image) else Image.fromarray(_rgb(image))).convert("RGB")
    draw = ImageDraw.Draw(picture)
    font = _font(max(240, picture.height * 2 // 3))  # text about 1/30 of the height
    colours = [(255, 40, 40), (40, 220, 40), (40, 120, 255), (255, 200, 0), (255, 0, 255), (0, 230, 230)]
    labels: list[tuple[float, float, float, float]] = []
    for n, o in enumerate(photo.objects):
        colour = colours[n % len(colours)]
        x0, y0, x1, y1 = o.box
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=colour, width=width)
        # The name in the box's top-left corner, or its bottom-left one where another name sits already.
        top = draw.textbbox((x0 + width + 1, y0 + width + 1), o.name, font=font)
        bottom = draw.textbbox((x0 + width + 1, y1 - width - 1 - (top[3] - top[1]) - 2), o.name, font=font)
        bbox = next((b for b in (top, bottom) if not any(_overlap(b, other) for other in labels)), top)
        labels.append(bbox)
        draw.rectangle(bbox, fill=(0, 0, 0))
        draw.text((bbox[0], bbox[1] - (top[1] - y0 - width - 1)), o.name, fill=colour, font=font)
    return picture


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@torch.no_grad()
def plot_photo(model, photo: PointingPhoto, path: str | Path, *, image: np.ndarray | Image.Image | None = None,
               alpha: float = 0.5) -> Path:
    """One PNG row per prompt: the steered head heatmap, the steered attention and the plain attention,
    each over the resized photo with the object's box (white) and the peak (a red cross)."""
    from PIL import ImageDraw

    from ..io import atomic_path
    from ..overlay import heat_panel

    size = int(model.image_size)
    picture = (Image.fromarray(load_photo(photo)) if image is None else
               image if isinstance(image, Image.Image) else Image.fromarray(_rgb(image))).convert("RGB")
    x = model.preprocessing.transform(crop=False)(picture)[None]
    shown = model.preprocessing.resize_square(picture)
    plain = model.get_attention_heatmaps(x, None)[0].float().cpu()
    rows = []
    for o in photo.objects:
        box = scale_box(o.box, photo.size, (size, size))
        for prompt in o.prompts:
            embedding = model.encode_text([prompt])
            maps = [(model.get_heatmaps(x, embedding)[0, 0].float().cpu(), f"head: {prompt}"),
                    (model.get_attention_heatmaps(x, embedding)[0].float().cpu(), "attention (steered)"),
                    (plain, "attention (plain)")]
            panels = []
            for heat, label in maps:
                panel = heat_panel(shown, heat, label, alpha=alpha)
                draw = ImageDraw.Draw(panel)
                draw.rectangle([box[0], box[1], box[2] - 1, box[3] - 1], outline=(255, 255, 255), width=2)
                py, px = divmod(int(torch.argmax(heat)), heat.shape[-1])
                draw.line([px - 5, py - 5, px + 5, py + 5], fill=(255, 0, 0), width=2)
                draw.line([px - 5, py + 5, px + 5, py - 5], fill=(255, 0, 0), width=2)
                panels.append(panel)
            rows.append(panels)
    canvas = Image.new("RGB", (3 * size, len(rows) * size))
    for r, panels in enumerate(rows):
        for c, panel in enumerate(panels):
            canvas.paste(panel, (c * size, r * size))
    path = Path(path)
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path
