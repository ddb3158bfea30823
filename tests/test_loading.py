"""Loading and saving: safe, strict, exact; and clear errors for every kind of bad input."""
from __future__ import annotations

import os
import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from support import OFFICIAL, TINY_ROBERTA, TRUNK
from steervit import SteerViT
from steervit.checkpoint import CheckpointError, adapter_to_published, published_to_adapter, read_published

IMAGES = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(3))
PROMPTS = ["the red car", "zebra"]


def load(path, **kwargs):
    kwargs.setdefault("backbone_weights", TRUNK)
    kwargs.setdefault("text_encoder", TINY_ROBERTA)
    return SteerViT.from_pretrained(path, **kwargs)


def write_published(path, state, config):
    torch.save({"state_dict": state, "config": config, "training_step": 1}, path)


def published_dict_config():
    return {"vision_encoder": {"model_name": "test_vit", "resolution": 160, "feature_aggregation": "cls",
                               "cross_attn_layers": list(range(1, 26, 2)), "use_ffn": False,
                               "cross_attn_ffn_mult": 2},
            "text_encoder": "tiny-roberta"}


@torch.no_grad()
def test_save_load_round_trip_is_exact(golden_model, tmp_path):
    golden_model.save_pretrained(tmp_path / "model")
    assert sorted(os.listdir(tmp_path / "model")) == ["README.md", "config.json", "model.safetensors"]  # card: test_hub
    again = load(tmp_path / "model")
    golden_model.text_encoder.clear_cache()  # same prompt batches on both sides, so outputs are bitwise equal
    for k, v in golden_model.adapter_state_dict().items():
        assert torch.equal(again.adapter_state_dict()[k], v), k
    assert torch.equal(again.get_global_features(IMAGES, PROMPTS), golden_model.get_global_features(IMAGES, PROMPTS))
    assert again.config.trunk_weights_sha256 == golden_model.config.trunk_weights_sha256


def test_published_key_mapping_is_invertible():
    data = read_published(OFFICIAL)
    ours = published_to_adapter(data["state_dict"])
    assert "seg_head.weight" in ours and "cross_attn_layers.3.cross_attn.to_kv.weight" in ours
    assert adapter_to_published(ours).keys() == data["state_dict"].keys()


def test_plain_dict_config_is_accepted(tmp_path):
    data = read_published(OFFICIAL)
    write_published(tmp_path / "plain.pth", data["state_dict"], published_dict_config())
    model = load(tmp_path / "plain.pth")
    assert list(model.cross_attn_layers) == ["1", "3", "5"]


def test_unsafe_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {}, "config": Exploit()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refused"):
        load(tmp_path / "evil.pth")
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_checkpoint_gives_clear_error(tmp_path, damage):
    raw = OFFICIAL.read_bytes()
    path = tmp_path / "bad.pth"
    path.write_bytes({"truncate": raw[: len(raw) // 2], "garbage": b"not a checkpoint" * 100, "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load(path)


def test_corrupt_saved_directory(golden_model, tmp_path):
    golden_model.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError):
        load(tmp_path / "m")


def test_wrong_or_missing_keys_are_listed(tmp_path):
    state = dict(read_published(OFFICIAL)["state_dict"])
    del state["lin_seg_head.bias"]
    state["vision_model.trunk.blocks.1.gated_cross_attn.bogus"] = torch.zeros(1)
    write_published(tmp_path / "bad.pth", state, published_dict_config())
    with pytest.raises(ValueError) as err:
        load(tmp_path / "bad.pth")
    assert "seg_head.bias" in str(err.value) and "cross_attn_layers.1.bogus" in str(err.value)


def golden_adapter_on(trunk_name: str, tmp_path):
    """The golden adapter in a published file whose config names another timm trunk, plus that trunk's weights."""
    import timm
    from safetensors.torch import save_file

    config = published_dict_config()
    config["vision_encoder"]["model_name"] = trunk_name
    # test_vit2 / test_vit3 have no CLS token (a register instead): they need mean pooling to build at all.
    config["vision_encoder"]["feature_aggregation"] = "mean"
    write_published(tmp_path / "other.pth", read_published(OFFICIAL)["state_dict"], config)
    trunk = timm.create_model(trunk_name, pretrained=False, num_classes=0, img_size=160)
    save_file(trunk.state_dict(), str(tmp_path / "trunk.safetensors"))
    return tmp_path / "other.pth", tmp_path / "trunk.safetensors"


def test_checkpoint_for_another_depth(tmp_path):
    """test_vit2 has 8 blocks, so it expects CA at block 7 too: the 6-block checkpoint does not fit."""
    checkpoint, trunk = golden_adapter_on("test_vit2", tmp_path)
    with pytest.raises(ValueError, match=r"missing \(\d+\): cross_attn_layers\.7"):
        load(checkpoint, backbone_weights=trunk)


def test_checkpoint_for_another_width(tmp_path):
    """test_vit3 is 96 wide: every CA and head tensor has the wrong shape, and the message says so."""
    checkpoint, trunk = golden_adapter_on("test_vit3", tmp_path)
    with pytest.raises(ValueError, match=r"wrong shape .*file \(64,\) vs model \(96,\)"):
        load(checkpoint, backbone_weights=trunk)


def test_backbone_weights_of_another_trunk_are_refused(tmp_path):
    import timm
    from safetensors.torch import save_file

    save_file(timm.create_model("test_vit3").state_dict(), str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="do not fit this trunk"):
        load(OFFICIAL, backbone_weights=tmp_path / "other.safetensors")


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope" / "model")
    with pytest.raises(FileNotFoundError, match="backbone weights not found"):
        load(OFFICIAL, backbone_weights=tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match="text encoder folder not found"):
        load(OFFICIAL, text_encoder=tmp_path / "no-such-encoder")


def test_hub_name_offline_says_how_to_use_local_files():
    with pytest.raises(OSError, match="Offline, pass local files"):
        SteerViT.from_pretrained("steervit_dinov2_base.pth")


@torch.no_grad()
def test_bad_image_tensors(golden_model):
    with pytest.raises(ValueError, match="prompts for 2 images"):
        golden_model.get_global_features(IMAGES, ["only one"])
    with pytest.raises(ValueError, match="not divisible by the patch size 16"):
        golden_model.get_global_features(torch.randn(1, 3, 150, 160))
    with pytest.raises(ValueError, match="3 channels"):
        golden_model.get_global_features(torch.randn(1, 4, 160, 160))
    with pytest.raises(ValueError, match="batched"):
        golden_model.get_global_features(torch.randn(3, 160, 160))
    with pytest.raises(TypeError, match="get_transforms"):
        golden_model.get_global_features(Image.new("RGB", (160, 160)))
    with pytest.raises(ValueError, match="layer 9 out of range"):
        golden_model.get_attention_heatmaps(IMAGES, layer=9)


def test_bad_prompts(golden_model):
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        golden_model.get_global_features(IMAGES, ["the car", ""])
    with pytest.raises(ValueError, match="prompt 0 is empty"):
        golden_model.get_global_features(IMAGES, ["   ", "x"])
    with pytest.raises(TypeError, match="single string"):
        golden_model.encode_text("the car")
    with pytest.raises(ValueError, match="no prompts"):
        golden_model.encode_text([])


def test_over_long_prompt_is_truncated_with_warning(golden_model):
    encoder = golden_model.text_encoder
    long_prompt = "the red car " * 400
    with pytest.warns(UserWarning, match="truncated"):
        emb = golden_model.encode_text([long_prompt, "zebra"])
    assert emb.tokens.shape[1] == encoder.max_length
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        golden_model.encode_text(["a short one"])


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "CMYK", "I;16"])
def test_transforms_convert_any_image_mode(golden_model, mode):
    array = (np.random.default_rng(0).random((120, 90)) * 255).astype(np.uint8)
    image = Image.fromarray(array).convert(mode) if mode != "I;16" else Image.fromarray(array.astype(np.uint16) * 200)
    tensor = golden_model.get_transforms()(image)
    assert tensor.shape == (3, 160, 160) and tensor.dtype == torch.float32
    assert torch.isfinite(tensor).all()


def test_pickled_state_in_saved_dir_is_never_loaded(golden_model, tmp_path):
    """Our own format has no pickle at all: a pickle dropped in place of the weights is rejected."""
    golden_model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError):
        load(tmp_path / "m")


def test_atomic_save_keeps_old_file_on_failure(golden_model, tmp_path, monkeypatch):
    golden_model.save_pretrained(tmp_path / "m")
    before = (tmp_path / "m" / "model.safetensors").read_bytes()
    import steervit.checkpoint as ck

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ck, "save_file", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        golden_model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    assert sorted(os.listdir(tmp_path / "m")) == ["README.md", "config.json", "model.safetensors"]


def test_uncropped_transform_squeezes_whole_image(golden_model):
    image = Image.new("RGB", (300, 100), (255, 0, 0))
    tensor = golden_model.get_transforms(crop=False)(image)
    mean, std = golden_model.normalization
    assert tensor.shape == (3, 160, 160)
    expected_red = (1.0 - mean[0]) / std[0]
    assert torch.allclose(tensor[0], torch.full((160, 160), expected_red), atol=1e-5)
