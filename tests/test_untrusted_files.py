"""Untrusted checkpoint and config files: every bad one is a CheckpointError naming what is wrong.

Nothing in a file is resolved against this machine (no OmegaConf interpolation), no value is
coerced into a type it does not have, and a saved folder's weights are checked against the hash
recorded beside them.
"""
from __future__ import annotations

import hashlib
import json

import pytest
import torch
from omegaconf import OmegaConf

from support import OFFICIAL, TINY_ROBERTA, TRUNK
from steervit import SteerViT
from steervit.checkpoint import CheckpointError, read_published

SECRET = "s3cret-value-from-the-environment"


def load(path, **kwargs):
    kwargs.setdefault("backbone_weights", TRUNK)
    kwargs.setdefault("text_encoder", TINY_ROBERTA)
    return SteerViT.from_pretrained(path, **kwargs)


def official_with(config, path):
    """The golden official checkpoint's tensors under another config, written as a `.pth`."""
    data = read_published(OFFICIAL)
    torch.save({**data, "config": config}, path)
    return path


def official_config():
    return read_published(OFFICIAL)["config"]


# ----------------------------------------------------------------------- 1. interpolations
def _env_in_trunk(c):
    c["vision_encoder"]["model_name"] = "${oc.env:STEERVIT_TEST_SECRET}"
    return OmegaConf.create(c), "config.vision_encoder.model_name"


def _other_key_in_pooling(c):
    c["vision_encoder"]["feature_aggregation"] = "${text_encoder}"
    return OmegaConf.create(c), "config.vision_encoder.feature_aggregation"


def _env_in_list(c):
    c["vision_encoder"]["cross_attn_layers"] = [1, "${oc.env:STEERVIT_TEST_SECRET}"]
    return OmegaConf.create(c), "config.vision_encoder.cross_attn_layers[1]"


def _env_in_unused_key(c):
    c["train"]["log_dir"] = "${oc.env:STEERVIT_TEST_SECRET}/logs"
    return OmegaConf.create(c), "config.train.log_dir"


def _env_in_nested_omegaconf_of_plain_dict(c):
    c["vision_encoder"]["model_name"] = "${oc.env:STEERVIT_TEST_SECRET}"
    return {**c, "vision_encoder": OmegaConf.create(c["vision_encoder"])}, "config.vision_encoder.model_name"


@pytest.mark.parametrize("inject", [_env_in_trunk, _other_key_in_pooling, _env_in_list, _env_in_unused_key,
                                    _env_in_nested_omegaconf_of_plain_dict])
def test_published_config_interpolation_is_refused_never_resolved(inject, tmp_path, monkeypatch):
    monkeypatch.setenv("STEERVIT_TEST_SECRET", SECRET)
    config, key = inject(official_config())
    path = official_with(config, tmp_path / "interpolated.pth")
    with pytest.raises(CheckpointError, match="interpolation") as err:
        load(path)
    assert key in str(err.value)
    assert SECRET not in str(err.value) and "tiny-roberta" not in str(err.value)
    with pytest.raises(CheckpointError, match="interpolation"):
        read_published(path)  # the reader itself refuses, not only model loading


def test_published_config_without_interpolation_still_loads(tmp_path):
    path = official_with(OmegaConf.create(official_config()), tmp_path / "plain.pth")
    assert list(load(path).cross_attn_layers) == ["1", "3", "5"]


# ----------------------------------------------------------------------- 2. wrong types
def _set(key, value):
    def change(meta):
        meta["config"][key] = value
    return change


def _set_top(key, value):
    def change(meta):
        meta[key] = value
    return change


def _drop_top(key):
    def change(meta):
        del meta[key]
    return change


BAD_SAVED_CONFIGS = {
    "format_version string": (_set_top("format_version", "2"), "format_version"),
    "format_version null": (_set_top("format_version", None), "format_version"),
    "format_version bool": (_set_top("format_version", True), "format_version"),
    "format_version missing": (_drop_top("format_version"), "format_version"),
    "image_size string": (_set("image_size", "160"), "image_size"),
    "image_size float": (_set("image_size", 160.5), "image_size"),
    "image_size bool": (_set("image_size", True), "image_size"),
    "image_size zero": (_set("image_size", 0), "image_size"),
    "cross_attn_heads string": (_set("cross_attn_heads", "16"), "cross_attn_heads"),
    "trunk int": (_set("trunk", 123), "trunk"),
    "use_ffn string": (_set("use_ffn", "false"), "use_ffn"),
    "use_ffn int": (_set("use_ffn", 0), "use_ffn"),
    "cross_attn_layers string item": (_set("cross_attn_layers", [1, "3"]), "cross_attn_layers"),
    "cross_attn_layers float item": (_set("cross_attn_layers", [1.0, 3]), "cross_attn_layers"),
    "cross_attn_layers int": (_set("cross_attn_layers", 5), "cross_attn_layers"),
    "text_dim string": (_set("text_dim", "32"), "text_dim"),
    "config missing": (_drop_top("config"), "config"),
    "config null": (_set_top("config", None), "config"),
    "config list": (_set_top("config", [1, 2]), "config"),
    "weights_sha256 int": (_set_top("weights_sha256", 123), "weights_sha256"),
}


@pytest.mark.parametrize("change, field", BAD_SAVED_CONFIGS.values(), ids=BAD_SAVED_CONFIGS.keys())
def test_saved_config_with_wrong_types_is_a_checkpoint_error_naming_the_field(golden_model, tmp_path,
                                                                              change, field):
    golden_model.save_pretrained(tmp_path / "m")
    config_path = tmp_path / "m" / "config.json"
    meta = json.loads(config_path.read_text())
    change(meta)
    config_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as err:
        load(tmp_path / "m")
    assert err.type is CheckpointError and field in str(err.value)


def test_saved_config_that_is_not_an_object_is_refused(golden_model, tmp_path):
    golden_model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="not a steervit model config"):
        load(tmp_path / "m")


BAD_PUBLISHED = {
    "use_ffn string": (("vision_encoder", "use_ffn", "false"), "vision_encoder.use_ffn"),
    "resolution float": (("vision_encoder", "resolution", 160.5), "vision_encoder.resolution"),
    "resolution string": (("vision_encoder", "resolution", "160"), "vision_encoder.resolution"),
    "model_name int": (("vision_encoder", "model_name", 123), "vision_encoder.model_name"),
    "layers string item": (("vision_encoder", "cross_attn_layers", [1, "3"]), "vision_encoder.cross_attn_layers"),
    "text_encoder list": ((None, "text_encoder", ["tiny-roberta"]), "text_encoder"),
    "vision_encoder string": ((None, "vision_encoder", "test_vit"), "vision_encoder"),
}


@pytest.mark.parametrize("edit, field", BAD_PUBLISHED.values(), ids=BAD_PUBLISHED.keys())
def test_published_config_with_wrong_types_is_a_checkpoint_error_naming_the_field(tmp_path, edit, field):
    section, key, value = edit
    config = official_config()
    (config[section] if section else config)[key] = value
    with pytest.raises(CheckpointError) as err:
        load(official_with(OmegaConf.create(config), tmp_path / "bad.pth"))
    assert err.type is CheckpointError and field in str(err.value)


BAD_STATE_DICTS = {
    "list value": lambda s: {**s, "lin_seg_head.bias": [0.0]},
    "int value": lambda s: {**s, "lin_seg_head.bias": 3},
    "int name": lambda s: {**s, 7: torch.zeros(1)},
    "not a dict": lambda s: list(s.values()),
}


@pytest.mark.parametrize("damage", BAD_STATE_DICTS.values(), ids=BAD_STATE_DICTS.keys())
def test_published_state_dict_of_non_tensors_is_a_checkpoint_error(tmp_path, damage):
    data = read_published(OFFICIAL)
    torch.save({**data, "state_dict": damage(data["state_dict"])}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="state_dict") as err:
        load(tmp_path / "bad.pth")
    assert err.type is CheckpointError


# ----------------------------------------------------------------------- 3. weights hash
def _flip_tensor_byte(path):
    """Flip one byte inside the tensor data (past the safetensors header): still a valid file."""
    raw = bytearray(path.read_bytes())
    data_start = 8 + int.from_bytes(raw[:8], "little")
    raw[data_start + (len(raw) - data_start) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_saved_folder_records_the_weights_sha256(golden_model, tmp_path):
    golden_model.save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["weights_sha256"] == hashlib.sha256((tmp_path / "m" / "model.safetensors").read_bytes()).hexdigest()


def test_altered_saved_weights_are_refused(golden_model, tmp_path):
    golden_model.save_pretrained(tmp_path / "m")
    _flip_tensor_byte(tmp_path / "m" / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"model\.safetensors does not match the sha256"):
        load(tmp_path / "m")


def test_saved_folder_without_a_recorded_hash_still_loads(golden_model, tmp_path):
    """Folders written before the hash was recorded (like the bundled model's) load as before."""
    golden_model.save_pretrained(tmp_path / "m")
    config_path = tmp_path / "m" / "config.json"
    meta = json.loads(config_path.read_text())
    meta.pop("weights_sha256", None)
    config_path.write_text(json.dumps(meta, indent=2))
    again = load(tmp_path / "m")
    for k, v in golden_model.adapter_state_dict().items():
        assert torch.equal(again.adapter_state_dict()[k], v), k
