"""Presets, overrides, the published-config translation, the schedule and the optimiser groups."""
from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from omegaconf import OmegaConf

from steervit.config import FILLED_IN, SteerViTConfig
from steervit.train.config import PRESETS, from_published, load_config, to_model_config
from steervit.train.optim import build_optimizer
from steervit.train.schedule import WarmupCosine, build_scheduler
from support import make_tiny_model


def test_paper_preset_is_the_recipe():
    cfg = load_config("paper")
    assert cfg.model.trunk == "vit_base_patch14_dinov2.lvd142m" and cfg.model.image_size == 336
    assert cfg.model.text_encoder == "roberta-large"
    assert (cfg.train.batch_size, cfg.train.train_iters, cfg.seed) == (12, 500_000, 42)
    o = cfg.train.optim
    assert (o.lr, o.min_lr, o.warmup_iters, o.decay_iters) == (3e-4, 3e-5, 5000, 40000)
    assert (o.weight_decay, o.connector_weight_decay, o.grad_clip, o.gate_lr_mult) == (0.1, 0.01, 1.0, 1.0)


def test_released_preset_has_no_warmup():
    o = load_config("released").train.optim
    assert (o.lr, o.min_lr, o.warmup_iters, o.decay_iters) == (6e-4, 6e-5, 0, 25000)
    assert (o.weight_decay, o.connector_weight_decay, o.grad_clip) == (0.1, 0.01, 1.0)


def test_every_preset_loads_and_builds_a_model_config():
    for name in PRESETS:
        cfg = load_config(name, ["data.manifest=x.jsonl"])
        assert to_model_config(cfg).image_size == cfg.model.image_size


def test_overrides_are_typed_and_checked(tmp_path):
    cfg = load_config("paper", ["train.batch_size=8", "train.optim.gate_lr_mult=20", "data.train.0.weight=2",
                                "model.cross_attn_layers=[1,3]"])
    assert cfg.train.batch_size == 8 and cfg.train.optim.gate_lr_mult == 20.0
    assert cfg.data.train[0].weight == 2 and list(cfg.model.cross_attn_layers) == [1, 3]
    with pytest.raises(ValueError, match="batch_sise.*Did you mean"):
        load_config("paper", ["train.batch_sise=8"])
    with pytest.raises(ValueError, match="could not be converted"):
        load_config("paper", ["train.batch_size=many"])
    with pytest.raises(ValueError, match="key=value"):
        load_config("paper", ["train.batch_size"])
    with pytest.raises(FileNotFoundError, match="presets"):
        load_config(tmp_path / "nope.yaml")


def test_published_training_config_is_translated(tmp_path):
    path = tmp_path / "default.yaml"
    path.write_text(
        "seed: 7\n"
        "vision_encoder: {model_name: vit_small_patch14_dinov2.lvd142m, resolution: 224, feature_aggregation: mean,\n"
        "                 cross_attn_layers: [1, 3, 5], use_ffn: true, cross_attn_ffn_mult: 4}\n"
        "text_encoder: roberta-base\n"
        "train: {batch_size: 6, train_iters: 1000, optim: {lr: 1.0e-4, weight_decay: 0.05, warmup_steps: 10,"
        " betas_schedule: x}}\n"
        "eval: {batch_size: 8}\n"
        "hydra: {run: x}\n"
    )
    with pytest.warns(UserWarning, match="betas_schedule.*hydra"):
        cfg = load_config(path)
    m = cfg.model
    assert (m.trunk, m.image_size, m.pooling, list(m.cross_attn_layers)) == ("vit_small_patch14_dinov2.lvd142m", 224,
                                                                              "mean", [1, 3, 5])
    assert (m.use_ffn, m.ffn_mult, m.text_encoder, cfg.seed) == (True, 4, "roberta-base", 7)
    assert (cfg.train.batch_size, cfg.train.train_iters, cfg.eval.batch_size) == (6, 1000, 8)
    assert (cfg.train.optim.lr, cfg.train.optim.weight_decay, cfg.train.optim.warmup_iters) == (1e-4, 0.05, 10)


def test_model_section_is_the_model_config_plus_run_options():
    """Every user-settable SteerViTConfig field is in the run config with the model's own default."""
    cfg_model = load_config().model
    settable = [f for f in dataclasses.fields(SteerViTConfig) if not f.metadata.get(FILLED_IN)]
    assert {f.name for f in settable} >= {"trunk", "image_size", "text_encoder", "cross_attn_layers", "gate"}
    assert {f.name for f in dataclasses.fields(SteerViTConfig)} - {f.name for f in settable} == {
        "text_dim", "trunk_weights_sha256"}
    defaults = SteerViTConfig()
    for f in settable:
        assert f.name in cfg_model and cfg_model[f.name] == getattr(defaults, f.name), f.name
    assert cfg_model.image_size == 336
    assert "text_dim" not in cfg_model and "trunk_weights_sha256" not in cfg_model
    run_only = set(cfg_model) - {f.name for f in settable}
    assert run_only == {"backbone_weights", "pretrained_trunk", "init_adapter", "grad_checkpointing"}
    assert to_model_config(load_config()) == SteerViTConfig()


def test_model_config_translations_leave_their_input_alone():
    cfg = load_config("smoke", ["model.cross_attn_layers=[3,1]", "model.gate=sigmoid"])
    before = OmegaConf.to_container(cfg)
    model = to_model_config(cfg)
    assert (model.cross_attn_layers, model.gate) == ([1, 3], "sigmoid")
    model.cross_attn_layers.append(5)
    assert OmegaConf.to_container(cfg) == before
    published = {"vision_encoder": {"model_name": "vit_small_patch14_dinov2.lvd142m", "cross_attn_layers": [5, 1]},
                 "text_encoder": "roberta-base"}
    kept = copy.deepcopy(published)
    out = from_published(published)
    assert out["model"]["cross_attn_layers"] == [1, 5]
    out["model"]["cross_attn_layers"].append(7)
    assert published == kept
    assert SteerViTConfig().cross_attn_layers is None and SteerViTConfig().image_size == 336


def test_paper_schedule_warmup_cosine_constant():
    f = WarmupCosine(5000, 40000, 0.1)
    lr = lambda step: 3e-4 * f(step)  # noqa: E731
    assert lr(0) == pytest.approx(3e-4 / 5000)
    assert lr(4999) == pytest.approx(3e-4)
    assert lr(5000) == pytest.approx(3e-4)
    assert lr(22500) == pytest.approx(3e-5 + 0.5 * 2.7e-4)  # half-way down the cosine
    assert lr(40000) == pytest.approx(3e-5) and lr(400_000) == pytest.approx(3e-5)
    steps = range(5000, 40001, 500)
    assert all(lr(a) >= lr(b) for a, b in zip(steps, steps[1:]))


def test_released_schedule_starts_at_the_peak():
    f = WarmupCosine(0, 25000, 0.1)
    assert 6e-4 * f(0) == pytest.approx(6e-4)
    assert 6e-4 * f(12500) == pytest.approx(6e-5 + 0.5 * 5.4e-4)
    assert 6e-4 * f(25000) == pytest.approx(6e-5) and 6e-4 * f(10**6) == pytest.approx(6e-5)


def test_optimizer_groups_cover_exactly_the_adapter():
    model = make_tiny_model()
    cfg = load_config("paper", ["train.optim.gate_lr_mult=10"])
    optimizer = build_optimizer(model, cfg.train.optim)
    groups = {g["name"]: g for g in optimizer.param_groups}
    trainable = model.trainable_parameters()
    in_optimizer = [id(p) for g in optimizer.param_groups for p in g["params"]]
    trained = [id(p) for n, p in trainable.items() if n != "seg_head.bias"]  # its gradient is only noise
    assert sorted(in_optimizer) == sorted(trained)  # each exactly once
    assert not trainable["seg_head.bias"].requires_grad
    by_id = {id(p): n for n, p in trainable.items()}
    assert all(by_id[id(p)].startswith("connector.") for p in groups["connector"]["params"])
    assert sorted(by_id[id(p)] for p in groups["gates"]["params"]) == [f"cross_attn_layers.{i}.attn_gate"
                                                                        for i in (1, 3, 5)]
    assert groups["connector"]["weight_decay"] == 0.01
    assert groups["cross_attn_and_head"]["weight_decay"] == groups["gates"]["weight_decay"] == 0.1
    assert groups["gates"]["lr"] == pytest.approx(10 * groups["cross_attn_and_head"]["lr"])
    assert any(by_id[id(p)].startswith("seg_head.") for p in groups["cross_attn_and_head"]["params"])
    assert any(".norm." in by_id[id(p)] for p in groups["cross_attn_and_head"]["params"])

    scheduler = build_scheduler(optimizer, cfg.train.optim)
    for _ in range(5000):
        optimizer.step()
        scheduler.step()
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs["connector"] == pytest.approx(3e-4) and lrs["gates"] == pytest.approx(3e-3)
    assert math.isclose(scheduler.state_dict()["last_epoch"], 5000)
    assert torch.optim.AdamW is type(optimizer)
