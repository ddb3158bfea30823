"""The `steervit` command line, run in-process on the golden tiny model (offline, fast)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from steervit import SteerViT
from steervit import overlay as ov
from steervit.cli import main
from steervit.io import open_rgb

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GOLDEN = SHARED / "golden"
CHECKPOINT = GOLDEN / "official-tiny" / "steervit_official.pth"
TRUNK = GOLDEN / "official-tiny" / "trunk.safetensors"
TEXT_ENCODER = GOLDEN / "tiny-roberta"
SIZE = 160  # the tiny checkpoint's resolution

pytestmark = pytest.mark.skipif(not CHECKPOINT.is_file(), reason=f"golden files not found under {GOLDEN}")

OFFLINE = ["--backbone-weights", str(TRUNK), "--text-encoder", str(TEXT_ENCODER)]
MODEL = ["--model", str(CHECKPOINT), *OFFLINE]


@pytest.fixture(scope="module")
def model() -> SteerViT:
    return SteerViT.from_pretrained(CHECKPOINT, backbone_weights=TRUNK, text_encoder=TEXT_ENCODER)


@pytest.fixture(scope="module")
def golden_images() -> torch.Tensor:
    return load_file(str(GOLDEN / "official-tiny" / "expected.safetensors"))["images"]


def make_images(folder: Path) -> list[Path]:
    """Three small images of odd sizes and different modes (RGB gradient, grey, RGBA noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:131, 0:203]
    rgb = np.stack([xx * 255 // 202, yy * 255 // 130, (xx + yy) % 256], -1).astype(np.uint8)
    paths = [folder / "gradient.png", folder / "grey.JPG", folder / "sub" / "noise.png"]
    paths[2].parent.mkdir(exist_ok=True)
    Image.fromarray(rgb).save(paths[0])
    Image.fromarray(rng.integers(0, 256, (173, 97), dtype=np.uint8)).save(paths[1])  # mode L
    Image.fromarray(rng.integers(0, 256, (149, 149, 4), dtype=np.uint8)).save(paths[2])  # RGBA
    return paths


def model_inputs(model: SteerViT, paths: list[Path]) -> torch.Tensor:
    transform = model.get_transforms()
    return torch.stack([transform(open_rgb(p)) for p in paths])


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "expected an error message on stderr"
    return err[-1]


# ------------------------------------------------------------------------------ entry point
def test_console_entry_point_runs():
    script = Path(sys.executable).with_name("steervit")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "steervit.cli"]
    result = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for name in ("heatmap", "embed", "convert", "info"):
        assert name in result.stdout


# ------------------------------------------------------------------------------ heatmap
def test_heatmap_one_png_per_image_and_prompt(tmp_path, capsys):
    images = make_images(tmp_path / "in")[:2]
    prompts = ["the red car", "zebra"]
    out = tmp_path / "maps"
    assert main(["heatmap", *map(str, images), "--prompt", *prompts, "--out", str(out), *MODEL]) == 0

    written = [Path(line) for line in capsys.readouterr().out.split()]
    assert len(written) == len(images) * len(prompts)
    assert sorted(written) == sorted(out.glob("*.png"))
    for path in written:
        with Image.open(path) as im:
            assert im.format == "PNG" and im.mode == "RGB"
            assert im.size == (4 * SIZE, SIZE)  # image | head | attention steered | attention plain

    def panels(path: Path) -> list[np.ndarray]:
        pixels = np.asarray(Image.open(path))
        return [pixels[:, i * SIZE:(i + 1) * SIZE] for i in range(4)]

    car, zebra = panels(out / "gradient_the-red-car.png"), panels(out / "gradient_zebra.png")
    assert not np.array_equal(car[1], zebra[1]), "head heatmaps should depend on the prompt"
    assert not np.array_equal(car[2], zebra[2]), "steered attention should depend on the prompt"
    assert np.array_equal(car[3], zebra[3]), "the plain attention panel must not depend on the prompt"


def test_heatmap_names_do_not_collide(tmp_path, capsys):
    a, b = tmp_path / "a" / "same.png", tmp_path / "b" / "same.png"
    for path in (a, b):
        path.parent.mkdir()
        Image.new("RGB", (40, 50), "white").save(path)
    assert main(["heatmap", str(a), str(b), "--prompt", "zebra", "--out", str(tmp_path / "o"), *MODEL]) == 0
    written = capsys.readouterr().out.split()
    assert len(set(written)) == 2 and all(Path(p).is_file() for p in written)


def test_heatmap_missing_image_is_a_clean_error(tmp_path, capsys):
    code = main(["heatmap", str(tmp_path / "nope.jpg"), "--prompt", "zebra", "--out", str(tmp_path), *MODEL])
    assert code == 2
    line = error_line(capsys)
    assert line.startswith("steervit: error:") and "nope.jpg" in line


# ------------------------------------------------------------------------------ embed
def test_embed_matches_model_and_skips_corrupt_files(tmp_path, capsys, model):
    images = make_images(tmp_path / "in")
    (tmp_path / "in" / "broken.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path / "in" / "notes.txt").write_text("ignored: not an image extension")
    out = tmp_path / "features.safetensors"
    prompt = "the red car"
    code = main(["embed", str(tmp_path / "in"), "--prompt", prompt, "--dense", "--batch-size", "2",
                 "--out", str(out), *MODEL])
    assert code == 0
    captured = capsys.readouterr()
    assert str(out) in captured.out
    assert "broken.jpg" in captured.err and "skipped" in captured.err

    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    paths = json.loads(meta["paths"])
    assert paths == sorted(p.relative_to(tmp_path / "in").as_posix() for p in images)
    assert json.loads(meta["prompt"]) == prompt

    saved = load_file(str(out))
    x = model_inputs(model, [tmp_path / "in" / p for p in paths])
    with torch.no_grad():
        expected_global = model.get_global_features(x, [prompt] * len(paths))
        expected_dense = model.get_dense_features(x, [prompt] * len(paths))
    assert saved["global"].shape == (3, model.feature_dim)
    torch.testing.assert_close(saved["global"], expected_global, atol=1e-5, rtol=0)
    torch.testing.assert_close(saved["dense"], expected_dense, atol=1e-5, rtol=0)


def test_embed_plain_to_npy_with_sidecar(tmp_path, capsys, model):
    images = make_images(tmp_path / "in")
    out = tmp_path / "plain.npy"
    assert main(["embed", str(tmp_path / "in"), "--out", str(out), *MODEL]) == 0
    features = np.load(out)
    paths = json.loads(out.with_suffix(".json").read_text())["paths"]
    assert len(paths) == len(images)
    with torch.no_grad():
        expected = model.get_global_features(model_inputs(model, [tmp_path / "in" / p for p in paths]))
    np.testing.assert_allclose(features, expected.numpy(), atol=1e-5, rtol=0)
    assert not list(tmp_path.glob(".*.tmp")), "atomic writes must not leave temp files"


def test_embed_refuses_dense_npy_and_empty_folders(tmp_path, capsys):
    make_images(tmp_path / "in")
    assert main(["embed", str(tmp_path / "in"), "--dense", "--out", str(tmp_path / "f.npy"), *MODEL]) == 2
    assert "--dense" in error_line(capsys)
    (tmp_path / "empty").mkdir()
    assert main(["embed", str(tmp_path / "empty"), "--out", str(tmp_path / "f.npy"), *MODEL]) == 2
    assert "no images" in error_line(capsys)


# ------------------------------------------------------------------------------ convert
@pytest.mark.parametrize("with_text_encoder", [True, False])
def test_convert_round_trip_gives_identical_outputs(tmp_path, capsys, golden_images, with_text_encoder):
    out_dir = tmp_path / "converted"
    extra = ["--text-encoder", str(TEXT_ENCODER)] if with_text_encoder else []
    assert main(["convert", str(CHECKPOINT), str(out_dir), "--backbone-weights", str(TRUNK), *extra]) == 0
    assert (out_dir / "config.json").is_file() and (out_dir / "model.safetensors").is_file()
    config = json.loads((out_dir / "config.json").read_text())["config"]
    assert config["text_dim"] == 48
    if not with_text_encoder:  # the checkpoint's own name is kept
        assert config["text_encoder"] == "tiny-roberta"

    # Both models fresh: the text encoder's per-prompt cache keeps states from whichever batch first
    # encoded a prompt, which differ from another batch's in the last bits.
    original = SteerViT.from_pretrained(CHECKPOINT, backbone_weights=TRUNK, text_encoder=TEXT_ENCODER)
    converted = SteerViT.from_pretrained(out_dir, backbone_weights=TRUNK, text_encoder=TEXT_ENCODER)
    texts = json.loads((GOLDEN / "official-tiny" / "inputs.json").read_text())["texts"]
    with torch.no_grad():
        for method in ("get_global_features", "get_heatmaps", "get_attention_heatmaps"):
            a = getattr(original, method)(golden_images, texts)
            b = getattr(converted, method)(golden_images, texts)
            assert torch.equal(a, b), method


# ------------------------------------------------------------------------------ info
def test_info_prints_layers_gates_and_sizes(capsys, model):
    assert main(["info", str(CHECKPOINT), *OFFLINE]) == 0
    out = capsys.readouterr().out
    assert "cross-attention layers: [1, 3, 5]" in out
    assert "test_vit" in out and "width 64" in out and "depth 6" in out and "patch size 16" in out
    assert "image size 160" in out and "(width 48)" in out
    for block, raw in ((1, 0.7), (3, -0.4), (5, 1.1)):  # the golden checkpoint's gates
        assert f"block {block} attn_gate: raw {raw:.4f}  tanh {math.tanh(raw):.4f}" in out
    trainable = sum(p.numel() for p in model.trainable_parameters().values())
    assert f"trainable:    {trainable:,}" in out
    assert f"frozen trunk: {sum(p.numel() for p in model.trunk.parameters()):,}" in out


def test_info_shows_effective_gates_with_gate_factor(capsys):
    assert main(["info", str(CHECKPOINT), *OFFLINE, "--gate-factor", "0.5"]) == 0
    assert f"effective {math.tanh(0.5 * 0.7):.4f}" in capsys.readouterr().out


# ------------------------------------------------------------------------------ errors
def test_missing_checkpoint_exits_2_with_one_line(tmp_path, capsys):
    missing = tmp_path / "missing.pth"
    assert main(["info", str(missing), *OFFLINE]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("steervit: error:") and "missing.pth" in err


def test_corrupt_checkpoint_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00garbage" * 100)
    assert main(["info", str(bad), *OFFLINE]) == 2
    line = error_line(capsys)
    assert line.startswith("steervit: error:") and "bad.pth" in line and "corrupt" in line


def test_bad_arguments_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["info", str(CHECKPOINT), "--gate-factor", "-1"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main(["embed", "somewhere", "--model", "m", "--batch-size", "0"])
    assert main(["info", str(CHECKPOINT), *OFFLINE, "--device", "nonsense"]) == 2
    assert "--device" in error_line(capsys)


# ------------------------------------------------------------------------------ overlay helpers
def test_colormaps_and_overlay():
    for name in ov.COLORMAPS:
        table = ov.colormap(name)
        assert table.shape == (256, 3) and table.dtype == np.uint8
        assert not np.array_equal(table[0], table[-1])
    with pytest.raises(ValueError):
        ov.colormap("viridis-ish")

    image = Image.new("RGB", (30, 20), (10, 20, 30))
    heat = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)  # smaller than the image: resized
    blended = ov.overlay(image, heat, alpha=1.0)
    assert blended.size == (30, 20)
    pixels = np.asarray(blended)
    assert not np.array_equal(pixels[0, 0], pixels[-1, -1])
    flat = ov.overlay(image, np.full((20, 30), 7.0), alpha=0.0)  # alpha 0 leaves the image; no NaN from 0/0
    assert np.array_equal(np.asarray(flat), np.asarray(image))
    labelled = ov.add_label(image, "a very long label that cannot fit into thirty pixels")
    assert labelled.size == image.size and not np.array_equal(np.asarray(labelled), np.asarray(image))
    assert ov.hstack([image, labelled]).size == (60, 20)
