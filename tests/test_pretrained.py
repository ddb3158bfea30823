"""The model registry and the bundled offline default (real weights: DINOv2 ViT-S/14 + MiniLM)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from steervit import SteerViT
from steervit.pretrained import BUNDLED_DIR, DEFAULT_MODEL, REGISTRY, list_models


@pytest.fixture(scope="module")
def bundled():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # e.g. "backbone weights ... differ": the trunk must match
        return SteerViT.from_pretrained(DEFAULT_MODEL)


def test_registry_names():
    assert DEFAULT_MODEL in list_models() and REGISTRY[DEFAULT_MODEL].bundled
    assert REGISTRY["steervit_dinov2_base"].hub_file == "steervit_dinov2_base.pth"


def test_published_names_fail_offline_with_local_file_hint():
    with pytest.raises(OSError, match="Offline, pass local files"):
        SteerViT.from_pretrained("steervit_dinov2_base")


def test_bundled_adapter_is_small_and_fp16():
    weights = BUNDLED_DIR / DEFAULT_MODEL / "model.safetensors"
    assert weights.stat().st_size <= 24 * 1024 * 1024
    from safetensors.torch import load_file

    assert {v.dtype for v in load_file(str(weights)).values()} == {torch.float16}
    assert (BUNDLED_DIR / DEFAULT_MODEL / "MODEL_CARD.md").is_file()


def test_bundled_model_loads_offline(bundled):
    assert bundled.config.trunk == "vit_small_patch14_dinov2"
    assert bundled.image_size == 224 and bundled.feature_dim == 384 and bundled.config.text_dim == 384
    assert bundled.dtype == torch.float32


@torch.no_grad()
def test_bundled_model_steers_towards_the_named_object(bundled):
    """On the demo scenes (real photos, exact masks): for every object, the prompt that names it puts
    more heatmap mass on it than any other prompt does, and on average far more than the plain trunk."""
    from PIL import Image

    from steervit.demo import build_scenes
    from steervit.losses import probability_mass

    steered_diag, plain_diag = [], []
    for scene in build_scenes():
        images = bundled.get_transforms(crop=False)(Image.fromarray(scene.image))[None]
        masks = torch.from_numpy(np.stack(scene.masks)).float()
        prompts = bundled.encode_text(scene.prompts)
        n = len(scene.prompts)
        mass = {}
        for mode, factor in (("steered", 1.0), ("plain", 0.0)):
            bundled.set_gate_factor(factor)
            logits = bundled.segmentation_logits(images, prompts, cross=True)[0]
            # mass[p, o]: share of prompt p's heatmap on object o
            mass[mode] = torch.stack([probability_mass(logits, masks[o:o + 1].expand(n, -1, -1), 14)
                                      for o in range(n)], 1)
        bundled.set_gate_factor(1.0)
        steered = mass["steered"]
        assert (steered.diagonal() == steered.max(0).values).all(), (scene.name, steered)
        steered_diag += steered.diagonal().tolist()
        plain_diag += mass["plain"].diagonal().tolist()
    assert np.mean(steered_diag) > np.mean(plain_diag) + 0.15, (steered_diag, plain_diag)


def test_weights_identity_ignores_safetensors_metadata(tmp_path):
    from safetensors.torch import save_file

    from steervit.checkpoint import sha256_file

    tensors = {"a": torch.arange(6.0), "b": torch.ones(2, 2)}
    save_file(tensors, str(tmp_path / "x.safetensors"), metadata={"k": "1", "source": "s"})
    save_file(tensors, str(tmp_path / "y.safetensors"), metadata={"source": "s", "k": "1", "other": "2"})
    save_file({**tensors, "b": torch.zeros(2, 2)}, str(tmp_path / "z.safetensors"))
    assert sha256_file(tmp_path / "x.safetensors") == sha256_file(tmp_path / "y.safetensors")
    assert sha256_file(tmp_path / "x.safetensors") != sha256_file(tmp_path / "z.safetensors")


@torch.no_grad()
def test_bundled_model_moves_between_objects_of_a_real_photo(bundled):
    """On the demo's real photos (whole photos, hand-drawn boxes): every prompt puts the head map's peak
    inside its own object's box, and each box gets more of the head's mass from the prompt naming it
    than from any other prompt on that photo (except a prompt naming a part inside it: "the animal's
    face" puts mass inside the quokka's box too). The plain head is one map per photo, so it cannot."""
    from PIL import Image

    from steervit.demo import box_masks, build_real_photos
    from steervit.evaluation import pointing

    for scene in build_real_photos():
        images = bundled.get_transforms(crop=False)(Image.fromarray(scene.image))[None]
        boxes = box_masks(scene, tuple(images.shape[-2:][::-1])).bool()
        heat = bundled.get_heatmaps(images, bundled.encode_text(scene.prompts), cross=True)[0, :, 0]
        # mass[p, o]: share of prompt p's head map inside object o's box
        mass = torch.tensor([[pointing.mass_inside(h, box) for box in boxes] for h in heat])
        for o, box in enumerate(boxes):
            rivals = [p for p in range(len(boxes)) if p != o and not (boxes[p] <= box).all()]  # not a part of o
            assert all(mass[o, o] > mass[p, o] for p in rivals), (scene.name, mass)
        assert [pointing.pointing_hit(h, box) for h, box in zip(heat, boxes)] == [1.0] * len(boxes), scene.name
