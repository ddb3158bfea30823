"""`steervit demo` (what `make demo` runs): the bundled model on example scenes, several prompts each, as overlays and a web page.

Two kinds of scene. Made scenes: real photos (scikit-image, Fashion-MNIST products) pasted with
exact masks, scored by the share of the head heatmap's mass on the named object (the photos are
real, the scenes are made). Real photos: whole multi-object photos of the pointing game
(`evaluation.pointing`, boxes drawn by hand), scored by the mass inside the named object's box and
whether the peaks of the head map and of the steered and plain attention fall inside it.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import overlay
from .losses import probability_mass



@dataclass
class DemoScene:
    """A picture and its prompts, with what each prompt names: an exact mask (made scenes) or a
    hand-drawn box (real photos)."""

    name: str
    image: np.ndarray  # (H, W, 3) uint8: a made scene (224 x 224) or a whole real photo
    prompts: list[str]
    masks: list[np.ndarray] | None = None  # made scenes: the named object's exact mask
    boxes: list[tuple[int, int, int, int]] | None = None  # real photos: its box, x0 y0 x1 y1 in photo pixels

    @property
    def real(self) -> bool:
        return self.boxes is not None


# Real multi-object photos of the pointing game and the prompts the demo gives each (prompts of its
# entries): photos where the prompt moves the head map, and often the attention, between objects.
REAL_PHOTOS = (
    ("flower", ("the big flower in the middle", "the second flower, cut off at the bottom edge")),
    ("cameraman", ("the cameraman", "the man's head")),
    ("china", ("the pagoda", "the tree on the right edge")),
    ("quokka", ("the quokka", "the animal's face")),
)


def _scene(name, background, items, sizes, prompts, seed, layout="scatter") -> DemoScene:
    from .offline import scenes

    rng = np.random.default_rng(seed)
    made = scenes.compose(background, name, items, sizes, rng, layout)
    if made is None:
        raise RuntimeError(f"demo scene {name!r} did not fit")
    return DemoScene(name, made.image, prompts, [p.mask for p in made.placed])


def build_scenes() -> list[DemoScene]:
    """Three fixed scenes: photo objects on a texture, products on a photo, a mix on black.

    The quokka is a held-out object (never in training), and so is the word: "the quokka" lands on
    the astronaut, while the kind word every animal of the training data shares finds it."""
    from .offline import fashion_mnist as fm
    from .offline import photos, scenes

    rng = np.random.default_rng(0)
    grass = photos.random_crop(photos.load_texture("grass"), rng, scenes.CANVAS, 0.35)
    scenery = photos.scenery_crop("pagoda", rng, scenes.CANVAS)
    black = np.zeros_like(grass)
    data = fm.load_fashion_mnist("test")

    def product(label: int, colour: str | None = None):
        index = int(np.flatnonzero(data.labels == label)[3])
        return scenes.fashion_item(data, index, colour)

    photo = scenes.photo_item
    return [
        _scene("photos on grass", grass, [photo("quokka"), photo("coffee"), photo("astronaut")], [110, 70, 100],
               ["the animal", "the cup of coffee", "the astronaut"], seed=1),
        _scene("products on a photo", scenery if scenery is not None else grass,
               [product(7, "red"), product(8, "blue"), product(1, "green"), product(3, "yellow")],
               [70, 70, 80, 80], ["the red sneaker", "the blue bag", "the green pair of trousers", "the dress"],
               seed=2, layout="grid"),
        _scene("a mix on black", black, [photo("cat"), photo("rocket"), product(9)], [100, 110, 70],
               ["the cat", "the rocket", "the ankle boot"], seed=3),
    ]


def build_real_photos() -> list[DemoScene]:
    """The REAL_PHOTOS, whole, each prompt with the hand-drawn box of the object it names."""
    from .evaluation import pointing

    photos = {photo.id: photo for photo in pointing.read_photos()}
    scenes = []
    for photo_id, prompts in REAL_PHOTOS:
        photo = photos[photo_id]
        box_of = {prompt: obj.box for obj in photo.objects for prompt in obj.prompts}
        scenes.append(DemoScene(f"real photo: {photo_id}", np.array(pointing.load_photo(photo)), list(prompts),
                                boxes=[box_of[prompt] for prompt in prompts]))
    return scenes


def scaled_boxes(scene: DemoScene, size: tuple[int, int]) -> list[tuple[float, ...]]:
    """A real photo's boxes in the pixels of the model's (width, height) input, as the pointing game scales them."""
    from .evaluation import pointing

    photo_size = (scene.image.shape[1], scene.image.shape[0])
    return [pointing.scale_box(box, photo_size, size) for box in scene.boxes]


def box_masks(scene: DemoScene, size: tuple[int, int]) -> torch.Tensor:
    """(P, H, W) the scaled boxes as the pointing game's pixel masks."""
    from .evaluation import pointing

    return torch.stack([pointing.box_mask(box, size[1], size[0]) for box in scaled_boxes(scene, size)]).float()


def _real_photo_scores(heat, attn, plain_attn, masks) -> list[dict]:
    """Per prompt: head mass inside the box, and whether each map's peak is inside it."""
    from .evaluation import pointing

    rows = []
    for p, box in enumerate(masks.bool()):
        rows.append({"mass": pointing.mass_inside(heat[p], box),
                     "head_peak": pointing.pointing_hit(heat[p], box),
                     "attention_peak": pointing.pointing_hit(attn[p], box),
                     "plain_attention_peak": pointing.pointing_hit(plain_attn, box)})
    return rows


@torch.no_grad()
def run(model, scenes: list[DemoScene], out: Path) -> list[dict]:
    """Overlays for every (scene, prompt) and the mass of each heatmap on the named object (on a real
    photo: inside its box, plus where the peaks are)."""
    out.mkdir(parents=True, exist_ok=True)
    transform = model.get_transforms(crop=False)
    rows = []
    for s, scene in enumerate(scenes):
        picture = Image.fromarray(scene.image)
        images = transform(picture)[None]
        size = tuple(images.shape[-2:][::-1])  # (width, height) of the model's input
        prompts = model.encode_text(scene.prompts)
        heat = model.get_heatmaps(images, prompts, cross=True)[0, :, 0]
        attn = model.get_attention_heatmaps(images, prompts, cross=True)[0]
        plain_attn = model.get_attention_heatmaps(images)[0]
        if scene.real:
            masks = box_masks(scene, size)
            scores = _real_photo_scores(heat, attn, plain_attn, masks)
        else:
            masks = torch.from_numpy(np.stack([np.array(Image.fromarray(m).resize(size, Image.NEAREST))
                                               for m in scene.masks])).float()
            logits = model.segmentation_logits(images, prompts, cross=True)[0]  # (P, N)
            scores = [{"mass": float(m)} for m in probability_mass(logits, masks, model.patch_size)]
        view = picture.resize(size)
        where = "in its box" if scene.real else "on it"
        shown = ([_with_box(view, box) for box in scaled_boxes(scene, size)] if scene.real
                 else [view] * len(scene.prompts))
        for p, prompt in enumerate(scene.prompts):
            figure = overlay.four_panels(shown[p], prompt, heat[p], attn[p], plain_attn,
                                         head_label=f"head heatmap ({scores[p]['mass']:.0%} {where})",
                                         steered_label="attention, steered", plain_label="attention, plain")
            path = out / f"scene{s}_prompt{p}.png"
            figure.save(path)
            rows.append({"scene": scene.name, "prompt": prompt, "real": scene.real, **scores[p], "file": path.name})
    return rows


def _with_box(view: Image.Image, box: tuple[float, ...]) -> Image.Image:
    """The picture with the named object's box (x0, y0, x1, y1; x1 and y1 exclusive) outlined."""
    from PIL import ImageDraw

    x0, y0, x1, y1 = box
    framed = view.copy()
    ImageDraw.Draw(framed).rectangle([round(x0), round(y0), round(x1) - 1, round(y1) - 1],
                                     outline=(255, 255, 0), width=2)
    return framed


def describe(row: dict) -> str:
    """One line of what a row measured, for the index page and the console."""
    if not row.get("real"):
        return f"{row['mass']:.0%} of the head heatmap on the named object"
    def peak(key: str) -> str:
        return "in" if row[key] >= 0.5 else "out"

    return (f"{row['mass']:.0%} of the head heatmap in the object's box; peaks: head {peak('head_peak')}, "
            f"attention {peak('attention_peak')} (plain {peak('plain_attention_peak')})")


def write_index(rows: list[dict], out: Path, model_name: str) -> Path:
    items = "\n".join(
        f"<figure><img src='{html.escape(r['file'])}' alt='{html.escape(r['prompt'])}'>"
        f"<figcaption>{html.escape(r['scene'])}: <b>{html.escape(r['prompt'])}</b> "
        f"&mdash; {html.escape(describe(r))}</figcaption></figure>"
        for r in rows
    )
    page = (f"<!doctype html><meta charset='utf-8'><title>steervit demo</title>"
            f"<style>body{{font-family:sans-serif;max-width:1000px;margin:auto}}img{{width:100%}}</style>"
            f"<h1>steervit demo: {html.escape(model_name)}</h1>"
            f"<p>Each row: the scene, the head heatmap for the prompt, the last block's CLS attention "
            f"steered by the prompt, and the same attention without a prompt. In the made scenes the photos "
            f"are real, the scenes are made; the real photos are whole, with the named object's hand-drawn box "
            f"in yellow.</p>{items}")
    path = out / "index.html"
    path.write_text(page)
    return path
