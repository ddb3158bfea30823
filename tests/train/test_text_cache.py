"""The text-feature cache: layout, reads equal to live encoding, same loss, training without an encoder."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from steervit.data import collate, read_manifest
from steervit.text import TextEncoder
from steervit.train import TextCache, Trainer, build_text_cache
from steervit.train.text_cache import unique_expressions
from support import TINY_ROBERTA, make_tiny_model

from .conftest import tiny_config


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder(str(TINY_ROBERTA))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory, manifest, encoder):
    expressions = unique_expressions([read_manifest(manifest)])
    # 4 rows per shard: several shards, and batches of 3 that straddle them
    return build_text_cache(encoder, expressions, tmp_path_factory.mktemp("cache"), batch_size=3, shard_rows=4,
                            progress=False)


def test_layout_and_reads_match_the_live_encoder(cache_dir, manifest, encoder):
    index = json.loads((cache_dir / "index.json").read_text())
    expressions = unique_expressions([read_manifest(manifest)])
    assert sorted(index["entries"]) == expressions and len(index["shards"]) == -(-len(expressions) // 4)
    assert index["dim"] == encoder.dim == 48 and index["dtype"] == "float16"
    with safe_open(str(cache_dir / index["shards"][0]), framework="pt") as f:
        assert f.get_tensor("states").dtype == torch.float16 and f.get_tensor("lengths").shape == (4,)

    cache = TextCache(cache_dir)
    assert len(cache) == len(expressions)
    batch = [expressions[5], expressions[0], "cat 0", expressions[-1]]
    states, mask = cache.encode(batch)
    live_states, live_mask = encoder.encode(batch)
    assert torch.equal(mask, live_mask) and states.dtype == torch.float32
    torch.testing.assert_close(states, live_states, atol=5e-3, rtol=2e-3)
    with pytest.raises(KeyError, match="cache-text"):
        cache.encode(["an expression nobody cached"])


def _batch(manifest, trainer, n=4):
    from steervit.data import ReferringSegmentationDataset

    records = read_manifest(manifest, split="train")
    dataset = ReferringSegmentationDataset(records, 64, train=False)
    return collate([dataset[i] for i in range(n)])


def test_cached_and_live_text_give_the_same_loss(tmp_path, manifest, cache_dir):
    live = Trainer(tiny_config(manifest, tmp_path / "live"), model=make_tiny_model())
    cached = Trainer(tiny_config(manifest, tmp_path / "cached", f"data.text_cache={cache_dir}"),
                     model=make_tiny_model())
    assert cached.text_cache is not None and live.text_cache is None
    batch = _batch(manifest, live)
    a, b = live.train_step(batch), cached.train_step(batch)
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-3)
    assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-3)


def test_training_from_the_cache_builds_no_text_encoder(tmp_path, manifest, cache_dir):
    cfg = tiny_config(manifest, tmp_path / "run", f"data.text_cache={cache_dir}", "train.train_iters=2",
                      "model.cross_attn_heads=4", "model.cross_attn_head_dim=16")
    trainer = Trainer(cfg)  # built from the config: test_vit, random trunk
    assert trainer.model.text_encoder is None and trainer.model.config.text_dim == 48
    summary = trainer.fit()
    assert summary["step"] == 2
    saved = json.loads((tmp_path / "run" / "final_model" / "config.json").read_text())
    assert saved["text_encoder"] == {"name": str(TINY_ROBERTA), "width": 48}


def test_stale_cache_is_refused(tmp_path, manifest, encoder):
    partial = build_text_cache(encoder, ["cat 0", "dog 1"], tmp_path / "partial", progress=False)
    trainer = Trainer(tiny_config(manifest, tmp_path / "run", f"data.text_cache={partial}"), model=make_tiny_model())
    with pytest.raises(ValueError, match="not in the text cache"):
        trainer.fit()
    with pytest.raises(FileNotFoundError, match="cache-text"):
        TextCache(tmp_path / "nothing-here")
