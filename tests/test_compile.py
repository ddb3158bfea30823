"""`SteerViT.compile`: every feature path runs compiled modules and gives the eager numbers.

Most checks use the `aot_eager` backend (dynamo traces each module and runs the captured ATen graph:
seconds on CPU); one check runs the real inductor backend, which generates and compiles C++ kernels
(about a minute on a cold cache on two cores). Together well over 20 s: the module is marked slow.
"""
from __future__ import annotations

import shutil

import pytest
import torch

from support import make_tiny_model

pytestmark = pytest.mark.slow

PROMPTS = ["the red car", "a small black TV remote on the sofa"]
# aot_eager runs the ATen ops dynamo captured, which may be decomposed differently from the eager
# calls: float rounding can differ in the last bits, nothing more.
AOT_TOL = 1e-5
# inductor fuses and reorders float operations (sums, layer norms, softmax): float32 rounding
# differences, amplified a little through six blocks.
INDUCTOR_TOL = 1e-4


def outputs(model, x, gate_factor=None):
    """Every kind of feature path: global, dense, heatmaps, and cross mode."""
    with torch.no_grad():
        return {
            "global": model.get_global_features(x, PROMPTS, gate_factor=gate_factor),
            "dense": model.get_dense_features(x, PROMPTS, gate_factor=gate_factor),
            "heatmaps": model.get_heatmaps(x, PROMPTS, gate_factor=gate_factor),
            # 2 images x 2 prompts in chunks of 2: two passes, each shaped like the plain batch
            "cross": model.get_global_features(x, PROMPTS, cross=True, chunk_size=2, gate_factor=gate_factor),
        }


def assert_close(got: dict, expected: dict, tol: float) -> None:
    for name in expected:
        assert got[name].shape == expected[name].shape, name
        assert torch.allclose(got[name], expected[name], atol=tol, rtol=0), (
            name, float((got[name] - expected[name]).abs().max()))


@pytest.fixture()
def images():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))


def test_compile_wraps_every_module_on_the_feature_path():
    model = make_tiny_model()
    assert model.compile(backend="aot_eager") is model
    trunk = model.trunk
    compiled = [trunk.patch_embed, *trunk.blocks, *model.cross_attn_layers.values(), trunk.norm]
    assert all(m._compiled_call_impl is not None for m in compiled)
    assert model.connector._compiled_call_impl is None  # text side: runs once per prompt, left eager


def test_compiled_outputs_equal_eager_and_gate_factor_changes_take_effect(images):
    model = make_tiny_model()
    eager = outputs(model, images)
    eager_half = outputs(model, images, gate_factor=0.5)
    model.compile(backend="aot_eager")
    assert_close(outputs(model, images), eager, AOT_TOL)
    # A new gate factor after compiling is honoured (the compiled code guards on it, no stale graph),
    # per call and as the model's default.
    assert_close(outputs(model, images, gate_factor=0.5), eager_half, AOT_TOL)
    assert not torch.allclose(eager_half["global"], eager["global"], atol=1e-3)  # the factor matters here
    with model.using_gate_factor(0.5):
        assert_close(outputs(model, images), eager_half, AOT_TOL)
    assert_close(outputs(model, images), eager, AOT_TOL)  # and back
    # Weights are graph inputs, not constants: loading other adapter weights also takes effect.
    retrained = make_tiny_model(seed=1).adapter_state_dict()
    reference = make_tiny_model()
    reference.load_adapter_state_dict(retrained)
    model.load_adapter_state_dict(retrained)
    after = outputs(model, images)
    assert_close(after, outputs(reference, images), AOT_TOL)
    assert not torch.allclose(after["global"], eager["global"], atol=1e-3)


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="inductor on CPU needs a C++ compiler")
def test_inductor_outputs_equal_eager(images):
    model = make_tiny_model()
    eager = outputs(model, images)
    model.compile()  # the default backend: inductor
    assert_close(outputs(model, images), eager, INDUCTOR_TOL)
