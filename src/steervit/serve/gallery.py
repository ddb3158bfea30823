"""The example gallery: real sample photos plus a few Fashion-MNIST composites.

The real photos are scikit-image's samples and the pointing game's multi-object photos
(`evaluation.pointing`); a photo of the pointing game suggests prompts that name its objects, so a
user sees the heatmap and the attention move from one object to another.

The gallery doubles as the pictures a user can pick and as the search space of the steered
nearest-neighbour search. Its images are embedded once, when the app starts; steered features
depend on the prompt and gate factor, so they are computed on first use and cached.
Nothing here locks the model: callers hold the app's model lock.
"""
from __future__ import annotations

import base64
import io
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from PIL import Image

EXAMPLE_SIDE = 512  # longest side kept per example; plenty for a 224 px model view
THUMB_SIDE = 128
# scikit-image ships these files in its wheel, so no download is needed (key, loader name, title).
SKIMAGE_PHOTOS = (
    ("astronaut", "astronaut", "Astronaut (NASA, public domain)"),
    ("cat", "chelsea", "Cat: Chelsea (CC0)"),
    ("coffee", "coffee", "Cup of coffee (CC0)"),
    ("rocket", "rocket", "Rocket on the launch pad (public domain)"),
    ("coins", "coins", "Ancient coins (no known restrictions)"),
    ("cameraman", "camera", "Cameraman (CC0)"),
)
# Multi-object photos of the pointing game beyond the scikit-image ones above (pointing photo ids).
POINTING_PHOTOS = ("flower", "china", "quokka", "motorcycle", "grace_hopper")
# Fashion-MNIST composites: (key, [(class label, colour name), ...]) laid out on a 2x2 grid.
COMPOSITES = (
    ("fashion-1", [(7, "red"), (8, "blue"), (3, "green"), (9, None)]),
    ("fashion-2", [(0, "yellow"), (5, None), (1, "purple"), (4, "orange")]),
    ("fashion-3", [(9, "red"), (2, "green"), (8, None), (7, "blue")]),
)


@dataclass(frozen=True)
class Example:
    key: str
    title: str
    image: Image.Image  # RGB
    prompts: tuple[str, ...] = ()  # suggested prompts, one per object the photo shows


def _thumbnail(image: Image.Image, side: int) -> Image.Image:
    image = image.convert("RGB")
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return image


def data_url(image: Image.Image, fmt: str = "PNG") -> str:
    """An image as a `data:` URL, so JSON answers carry pictures without extra requests."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _suggested_prompts() -> dict:
    """Pointing photo id -> (the photo, the first prompt of each of its objects)."""
    from ..evaluation import pointing

    return {photo.id: (photo, tuple(obj.prompts[0] for obj in photo.objects)) for photo in pointing.read_photos()}


def photo_examples() -> list[Example]:
    """scikit-image's sample photos, then the pointing game's other multi-object photos."""
    import skimage.data

    from ..evaluation import pointing

    suggested = _suggested_prompts()
    examples = []
    for key, name, title in SKIMAGE_PHOTOS:
        array = np.asarray(getattr(skimage.data, name)())
        prompts = suggested[key][1] if key in suggested else ()
        examples.append(Example(key, title, _thumbnail(Image.fromarray(array), EXAMPLE_SIDE), prompts))
    for key in POINTING_PHOTOS:
        photo, prompts = suggested[key]
        try:
            picture = Image.fromarray(np.asarray(pointing.load_photo(photo)))
        except (ImportError, FileNotFoundError) as err:  # its package is not installed: an example fewer
            warnings.warn(f"gallery: leaving out the example {key!r}: {err}", stacklevel=2)
            continue
        examples.append(Example(key, f"{photo.title} ({photo.licence.split(';')[0]})",
                                _thumbnail(picture, EXAMPLE_SIDE), prompts))
    return examples


def fashion_examples() -> list[Example]:
    """Composites of real Fashion-MNIST products, tinted; [] where the data set is not installed."""
    try:
        from ..offline import fashion_mnist as fm
        from ..offline.scenes import PALETTE

        data = fm.load_fashion_mnist("test")
    except (ImportError, FileNotFoundError, ValueError):
        return []
    cell = 112
    examples = []
    for key, items in COMPOSITES:
        canvas = np.full((2 * cell, 2 * cell, 3), 40, dtype=np.uint8)
        words = []
        for slot, (label, colour) in enumerate(items):
            grey = data.images[data.indices_of(label)[slot]]
            rgb, mask = fm.render_item(grey, cell - 12, PALETTE.get(colour) if colour else None)
            y, x = (slot // 2) * cell + 6, (slot % 2) * cell + 6
            region = canvas[y:y + cell - 12, x:x + cell - 12]
            region[mask] = rgb[mask]
            words.append(f"{colour or 'white'} {fm.CLASSES[label].nouns[0]}")
        examples.append(Example(key, "Fashion-MNIST: " + ", ".join(words), Image.fromarray(canvas)))
    return examples


def default_examples() -> list[Example]:
    return photo_examples() + fashion_examples()


class Gallery:
    """Examples with their model inputs and plain features, and an LRU cache of steered features."""

    def __init__(self, model, examples: list[Example], cache_size: int = 64) -> None:
        import torch
        import torch.nn.functional as F

        if not examples:
            raise ValueError("the gallery needs at least one example")
        self.model = model
        self.examples = {e.key: e for e in examples}
        self.keys = [e.key for e in examples]
        self.thumbnails = {e.key: data_url(_thumbnail(e.image, THUMB_SIDE), "JPEG") for e in examples}
        transform = model.get_transforms()
        self.inputs = torch.stack([transform(e.image) for e in examples])
        with torch.no_grad():
            self.plain = F.normalize(model.get_global_features(self.inputs).float(), dim=-1)
        self.cache_size = cache_size
        self._steered: OrderedDict[tuple[str, float], "torch.Tensor"] = OrderedDict()

    def describe(self) -> list[dict]:
        return [{"key": k, "title": self.examples[k].title, "thumbnail": self.thumbnails[k],
                 "prompts": list(self.examples[k].prompts)} for k in self.keys]

    def steered(self, prompts: list[str], gate_factor: float):
        """(P, N, D) unit-length steered features of every example, per prompt, at this gate factor
        (passed to the model for these calls only; also part of the cache key)."""
        import torch
        import torch.nn.functional as F

        missing = list(dict.fromkeys(p for p in prompts if (p, gate_factor) not in self._steered))
        if missing:
            with torch.no_grad():
                feats = self.model.get_global_features(self.inputs, self.model.encode_text(missing), cross=True,
                                                       gate_factor=gate_factor)
            for j, prompt in enumerate(missing):
                self._steered[(prompt, gate_factor)] = F.normalize(feats[:, j].float(), dim=-1)
        for prompt in prompts:
            self._steered.move_to_end((prompt, gate_factor))
        result = torch.stack([self._steered[(p, gate_factor)] for p in prompts])
        while len(self._steered) > self.cache_size:
            self._steered.popitem(last=False)
        return result

    def rank(self, scores, exclude: str | None, k: int) -> list[dict]:
        """The k best examples by cosine score, leaving out the query itself when it is an example."""
        order = [i for i in scores.argsort(descending=True).tolist() if self.keys[i] != exclude][:k]
        return [{"key": self.keys[i], "title": self.examples[self.keys[i]].title,
                 "score": round(float(scores[i]), 4)} for i in order]
