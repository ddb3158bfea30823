"""The published checkpoint loads and reproduces the reference implementation's outputs."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from support import GOLDEN

EXPECTED = load_file(str(GOLDEN / "official-tiny" / "expected.safetensors"))
TEXTS = json.loads((GOLDEN / "official-tiny" / "inputs.json").read_text())["texts"]
IMAGES = EXPECTED["images"]
FEATURE_TOL = 1e-4
ATTENTION_TOL = 1e-3


def close(actual: torch.Tensor, key: str, tol: float = FEATURE_TOL) -> None:
    expected = EXPECTED[key]
    assert actual.shape == expected.shape, (key, actual.shape, expected.shape)
    diff = (actual.float() - expected).abs().max().item()
    assert diff <= tol, f"{key}: max abs diff {diff:.2e} > {tol}"


def test_tokenizer_matches_reference(golden_model):
    batch = golden_model.text_encoder.tokenize(TEXTS)
    assert torch.equal(batch["input_ids"], EXPECTED["input_ids"])
    assert torch.equal(batch["attention_mask"], EXPECTED["attention_mask"])


@torch.no_grad()
def test_plain_outputs(golden_model):
    close(golden_model(IMAGES), "plain_tokens")
    close(golden_model.get_global_features(IMAGES), "plain_global")
    close(golden_model.get_attention_heatmaps(IMAGES, None), "attention_heatmaps_plain", ATTENTION_TOL)


@torch.no_grad()
def test_steered_outputs(golden_model):
    close(golden_model(IMAGES, TEXTS), "steered_tokens")
    close(golden_model.get_global_features(IMAGES, TEXTS), "steered_global")
    close(golden_model.get_dense_features(IMAGES, TEXTS), "steered_dense")
    close(golden_model.segmentation_logits(IMAGES, TEXTS), "heatmap_logits")
    close(golden_model.get_heatmaps(IMAGES, TEXTS), "heatmaps")
    # steering changes the output (the check would be vacuous otherwise)
    assert (EXPECTED["steered_global"] - EXPECTED["plain_global"]).abs().max() > 1e-2


@torch.no_grad()
def test_attention_heatmaps(golden_model):
    close(golden_model.get_attention_heatmaps(IMAGES, TEXTS), "attention_heatmaps", ATTENTION_TOL)
    close(
        golden_model.get_attention_heatmaps(IMAGES, TEXTS, head_pooling="max", remove_sinks=False),
        "attention_heatmaps_max_nosink",
        ATTENTION_TOL,
    )


@pytest.mark.parametrize("factor,keys", [(0.5, ["steered_global_gate0.5", "heatmaps_gate0.5"]),
                                         (0.0, ["steered_global_gate0"])])
@torch.no_grad()
def test_gate_factor_matches_reference(fresh_golden, factor, keys):
    fresh_golden.set_gate_factor(factor)
    outputs = {
        "steered_global_gate0.5": lambda: fresh_golden.get_global_features(IMAGES, TEXTS),
        "heatmaps_gate0.5": lambda: fresh_golden.get_heatmaps(IMAGES, TEXTS),
        "steered_global_gate0": lambda: fresh_golden.get_global_features(IMAGES, TEXTS),
    }
    for key in keys:
        close(outputs[key](), key)


@torch.no_grad()
def test_text_embedding_path_equals_strings(golden_model):
    embedding = golden_model.encode_text(TEXTS)
    close(golden_model.get_global_features(IMAGES, embedding), "steered_global")
    close(golden_model.get_heatmaps(IMAGES, embedding), "heatmaps")
