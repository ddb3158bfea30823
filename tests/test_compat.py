"""Code written for the authors' package runs on ours through steervit.compat, with the same results.

The usage is the authors' README quick start and their forward's own steps (tokenizer -> text_model ->
connector -> vision_model), written as downstream code writes it, on the golden tiny checkpoint."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from support import OFFICIAL, TINY_ROBERTA, TRUNK
from test_parity import ATTENTION_TOL, EXPECTED, IMAGES, TEXTS, close

from steervit.compat import AuthorsSteerViT


@pytest.fixture(scope="module")
def authors():
    SteerViT = AuthorsSteerViT  # as downstream code would alias it
    device = "cpu"
    # the README's call, plus the local files that replace its downloads (tests never download)
    return SteerViT.from_pretrained(str(OFFICIAL), device=device, backbone_weights=TRUNK, text_encoder=TINY_ROBERTA)


def a_photo() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (120, 180, 3), dtype=np.uint8))


def test_the_readme_quick_start_runs_and_equals_the_native_api(authors, golden_model):
    model = authors
    transform = model.get_transforms()

    image = a_photo()  # README: Image.open("path/to/image.jpg").convert("RGB")
    image_tensor = transform(image).unsqueeze(0)

    prompt = ["the red car"]

    global_features = model.get_global_features(image_tensor, texts=prompt)
    dense_features = model.get_dense_features(image_tensor, texts=prompt)
    heatmaps = model.get_heatmaps(image_tensor, texts=prompt)
    attention_heatmaps = model.get_attention_heatmaps(image_tensor, texts=prompt)

    # the README's shapes: (B, D), (B, N_patches, D), (B, 1, H, W), (B, H, W) at image_size
    assert global_features.shape == (1, model.feature_dim)
    assert dense_features.shape == (1, model.num_img_tokens - 1, model.feature_dim)
    assert heatmaps.shape == (1, 1, *model.image_size)
    assert attention_heatmaps.shape == (1, *model.image_size)
    # the native API on an identically loaded model runs the same operations: identical results
    native = golden_model
    assert torch.equal(image_tensor, native.get_transforms()(image).unsqueeze(0))
    assert torch.equal(global_features, native.get_global_features(image_tensor, prompt))
    assert torch.equal(dense_features, native.get_dense_features(image_tensor, prompt))
    assert torch.equal(heatmaps, native.get_heatmaps(image_tensor, prompt))
    assert torch.equal(attention_heatmaps, native.get_attention_heatmaps(image_tensor, prompt))
    assert not global_features.requires_grad  # the authors' get_* run without autograd


def test_the_authors_conventions_reproduce_the_reference_outputs(authors):
    model = authors
    with torch.no_grad():
        close(model(IMAGES), "plain_tokens")
        close(model(IMAGES, TEXTS), "steered_tokens")
        logits = model(IMAGES, TEXTS, return_segmentation_logits=True)  # the logits alone, not a tuple
        close(logits, "heatmap_logits")
        close(model.get_heatmap_logits(model(IMAGES, TEXTS)), "heatmap_logits")
    close(model.get_dense_features(IMAGES, texts=TEXTS), "steered_dense")
    close(model.get_global_features(IMAGES, texts=None), "plain_global")
    close(model.get_heatmaps(IMAGES, texts=TEXTS), "heatmaps")
    close(model.get_attention_heatmaps(IMAGES, texts=TEXTS, head_pooling="max", remove_sinks=False),
          "attention_heatmaps_max_nosink", ATTENTION_TOL)
    with pytest.raises(ValueError, match="3 images"):  # the authors assert one prompt per image too
        model.get_global_features(IMAGES, texts=TEXTS[:2])


def test_set_gate_factor_matches_the_reference(authors):
    model = authors
    try:
        model.set_gate_factor(0.5)
        close(model.get_global_features(IMAGES, TEXTS), "steered_global_gate0.5")
        close(model.get_heatmaps(IMAGES, TEXTS), "heatmaps_gate0.5")
        model.set_gate_factor(0.0)
        close(model.get_global_features(IMAGES, TEXTS), "steered_global_gate0")
        assert model.model.gate_factor == 0.0
    finally:
        model.set_gate_factor(1.0)
    close(model.get_global_features(IMAGES, TEXTS), "steered_global")  # the trained gates were kept


@torch.no_grad()
def test_downstream_code_reaching_into_the_internals(authors):
    """The authors' forward, step by step, through the attributes downstream projects use."""
    model = authors
    assert model.image_size == (160, 160) and model.vision_model.resolution == 160
    assert model.num_img_tokens == (160 // 16) ** 2 + model.vision_model.trunk.num_prefix_tokens == 101
    assert model.feature_aggregation == "cls" and model.visual_dim == 64 and model.text_dim == 48
    assert model.config["vision_encoder"]["resolution"] == 160
    assert model.config["vision_encoder"]["model_name"] == "test_vit"
    assert not model.training and not any(p.requires_grad for p in model.parameters())  # frozen, as published

    batch = model.tokenizer(TEXTS, padding=True, truncation=True, max_length=512, return_tensors="pt")
    assert torch.equal(batch["input_ids"], EXPECTED["input_ids"])
    batch = {k: v.to(model.text_model.device) for k, v in batch.items()}
    text_feats = model.text_model(**batch).last_hidden_state
    attn_mask = batch["attention_mask"].bool()
    text_feats = model.connector(F.normalize(text_feats, dim=-1))
    attn_mask = torch.cat((torch.ones(text_feats.size(0), model.num_img_tokens).bool(), attn_mask), dim=-1)
    img_feats = model.vision_model(IMAGES, text_feats, attn_mask=attn_mask)
    # the prompts encoded padded together here, one by one natively: float rounding differs slightly
    close(img_feats, "steered_tokens")
    assert img_feats.shape[1] == model.num_img_tokens
    close(model.lin_seg_head(img_feats[:, model.vision_model.trunk.num_prefix_tokens:]).squeeze(-1), "heatmap_logits")
    close(model.vision_model(IMAGES), "plain_tokens")


@torch.no_grad()
def test_the_config_constructor_builds_a_fresh_model():
    """The authors' `SteerViT(config)`: a fresh model (gates at 0) is the frozen trunk, with or without text."""
    from steervit.checkpoint import read_published

    config = read_published(OFFICIAL)["config"]
    fresh = AuthorsSteerViT(config, backbone_weights=TRUNK, text_encoder=TINY_ROBERTA)
    assert fresh.image_size == (160, 160) and fresh.num_img_tokens == 101
    assert torch.equal(fresh(IMAGES, TEXTS), fresh(IMAGES))
    close(fresh(IMAGES), "plain_tokens")
    with pytest.raises(TypeError, match="published config dict"):
        AuthorsSteerViT("steervit_dinov2_base.pth")
