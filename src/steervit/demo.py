"""`steervit demo` (what `make demo` runs): the bundled model on example scenes, several prompts each, as overlays and a web page.

The scenes are made from real photos (scikit-image, imgaug's quokka, Fashion-MNIST products) pasted
with exact masks, so each prompt's heatmap can be scored: the share of its mass on the named object.
The photos are real, the scenes are made.
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
    name: str
    image: np.ndarray  # (224, 224, 3) uint8
    prompts: list[str]
    masks: list[np.ndarray]  # the object each prompt names


def _scene(name, background, items, sizes, prompts, seed, layout="scatter") -> DemoScene:
    from .offline import scenes

    rng = np.random.default_rng(seed)
    made = scenes.compose(background, name, items, sizes, rng, layout)
    if made is None:
        raise RuntimeError(f"demo scene {name!r} did not fit")
    return DemoScene(name, made.image, prompts, [p.mask for p in made.placed])


def build_scenes() -> list[DemoScene]:
    """Three fixed scenes: photo objects on a texture, products on a photo, a mix on black."""
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
               ["the quokka", "the cup of coffee", "the astronaut"], seed=1),
        _scene("products on a photo", scenery if scenery is not None else grass,
               [product(7, "red"), product(8, "blue"), product(1, "green"), product(3, "yellow")],
               [70, 70, 80, 80], ["the red sneaker", "the blue bag", "the green pair of trousers", "the dress"],
               seed=2, layout="grid"),
        _scene("a mix on black", black, [photo("cat"), photo("rocket"), product(9)], [100, 110, 70],
               ["the cat", "the rocket", "the ankle boot"], seed=3),
    ]


@torch.no_grad()
def run(model, scenes: list[DemoScene], out: Path) -> list[dict]:
    """Overlays for every (scene, prompt) and the mass of each heatmap on the named object."""
    out.mkdir(parents=True, exist_ok=True)
    transform = model.get_transforms(crop=False)
    size = model.image_size
    rows = []
    for s, scene in enumerate(scenes):
        picture = Image.fromarray(scene.image)
        images = transform(picture)[None]
        prompts = model.encode_text(scene.prompts)
        logits = model.segmentation_logits(images, prompts, cross=True)[0]  # (P, N)
        heat = model.get_heatmaps(images, prompts, cross=True)[0, :, 0]
        attn = model.get_attention_heatmaps(images, prompts, cross=True)[0]
        plain_attn = model.get_attention_heatmaps(images)[0]
        masks = torch.from_numpy(np.stack([np.array(Image.fromarray(m).resize((size, size), Image.NEAREST))
                                           for m in scene.masks])).float()
        mass = probability_mass(logits, masks, model.patch_size)
        view = picture.resize(tuple(images.shape[-2:][::-1]))
        for p, prompt in enumerate(scene.prompts):
            figure = overlay.four_panels(view, prompt, heat[p], attn[p], plain_attn,
                                         head_label=f"head heatmap ({mass[p]:.0%} on it)",
                                         steered_label="attention, steered", plain_label="attention, plain")
            path = out / f"scene{s}_prompt{p}.png"
            figure.save(path)
            rows.append({"scene": scene.name, "prompt": prompt, "mass": float(mass[p]), "file": path.name})
    return rows


def write_index(rows: list[dict], out: Path, model_name: str) -> Path:
    items = "\n".join(
        f"<figure><img src='{html.escape(r['file'])}' alt='{html.escape(r['prompt'])}'>"
        f"<figcaption>{html.escape(r['scene'])}: <b>{html.escape(r['prompt'])}</b> "
        f"&mdash; {r['mass']:.0%} of the head heatmap on the named object</figcaption></figure>"
        for r in rows
    )
    page = (f"<!doctype html><meta charset='utf-8'><title>steervit demo</title>"
            f"<style>body{{font-family:sans-serif;max-width:1000px;margin:auto}}img{{width:100%}}</style>"
            f"<h1>steervit demo: {html.escape(model_name)}</h1>"
            f"<p>Each row: the scene, the head heatmap for the prompt, the last block's CLS attention "
            f"steered by the prompt, and the same attention without a prompt. The photos are real, the scenes "
            f"are made.</p>{items}")
    path = out / "index.html"
    path.write_text(page)
    return path
