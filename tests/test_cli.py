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
from test_images import exif_jpeg, is_blue, is_red, strip_png

from support import GOLDEN, OFFICIAL as CHECKPOINT, TINY_ROBERTA as TEXT_ENCODER, TRUNK

SIZE = 160  # the tiny checkpoint's resolution

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
    for command in ([str(script)] if script.exists() else []) + [[sys.executable, "-m", "steervit"]]:
        command = [command] if isinstance(command, str) else command
        result = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        for name in ("heatmap", "embed", "convert", "info", "demo", "eval", "train", "data", "serve", "export"):
            assert name in result.stdout


def test_the_library_never_imports_the_command_line():
    """Only steervit.cli (and the `python -m` entry points) may import steervit.cli."""
    import ast

    root = Path(__file__).resolve().parents[1] / "src" / "steervit"
    offenders = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if rel.parts[0] == "cli" or rel.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = "." * node.level + (node.module or "")
                if target in ("steervit.cli", "..cli", ".cli") or target.startswith(("steervit.cli.", "..cli.", ".cli.")):
                    offenders.append(str(rel))
            elif isinstance(node, ast.Import) and any(a.name.startswith("steervit.cli") for a in node.names):
                offenders.append(str(rel))
    assert offenders == []


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
    assert code == 1  # done, but an input was skipped
    captured = capsys.readouterr()
    assert str(out) in captured.out
    assert "steervit: skipped:" in captured.err and "broken.jpg" in captured.err
    assert "3 of 4 images done, 1 skipped" in captured.err

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

    # Both models load the same weights and run the same operations in the same order: equal exactly.
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
    assert "cross-attention (early fusion): before block 1, before block 3, before block 5" in out
    assert "test_vit" in out and "width 64" in out and "depth 6" in out and "patch size 16" in out
    assert "image size 160" in out and "(width 48)" in out
    for block, raw in ((1, 0.7), (3, -0.4), (5, 1.1)):  # the golden checkpoint's gates
        assert f"before block {block} attn_gate: raw {raw:.4f}  tanh {math.tanh(raw):.4f}" in out
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


# ------------------------------------------------------------------------------ many images: skip, count, exit 1
def test_heatmap_skips_a_bad_image_goes_on_and_exits_1(tmp_path, capsys):
    a, _, b = make_images(tmp_path / "in")
    bad = tmp_path / "in" / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    out = tmp_path / "maps"
    code = main(["heatmap", str(a), str(bad), str(b), "--prompt", "zebra", "--out", str(out), *MODEL])
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert sorted(Path(p).name for p in captured.out.split()) == ["gradient_zebra.png", "noise_zebra.png"]
    skipped = [line for line in captured.err.splitlines() if line.startswith("steervit: skipped:")]
    assert len(skipped) == 1 and "bad.jpg" in skipped[0] and "unknown format" in skipped[0]
    assert "steervit: 2 of 3 images done, 1 skipped" in captured.err
    assert "Traceback" not in captured.err


def test_heatmap_skips_a_truncated_image_found_only_when_decoding(tmp_path, capsys):
    a = make_images(tmp_path / "in")[0]
    truncated = tmp_path / "in" / "truncated.png"
    truncated.write_bytes(a.read_bytes()[:200])  # the header is fine, the pixels are not
    code = main(["heatmap", str(truncated), str(a), "--prompt", "zebra", "--out", str(tmp_path / "o"), *MODEL])
    err = capsys.readouterr().err
    assert code == 1 and "truncated.png" in err and "1 of 2 images done, 1 skipped" in err
    assert (tmp_path / "o" / "gradient_zebra.png").is_file()


def test_heatmap_with_no_usable_image_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    code = main(["heatmap", str(bad), str(tmp_path / "missing.jpg"), "--prompt", "zebra",
                 "--out", str(tmp_path / "o"), *MODEL])
    assert code == 2
    assert error_line(capsys) == "steervit: error: none of the 2 images could be used (each is named above)"
    assert not (tmp_path / "o").exists()


def test_heatmap_and_embed_skip_an_8000x1_image(tmp_path, capsys):
    images = make_images(tmp_path / "in")
    strip = strip_png(tmp_path / "in" / "strip.png")
    code = main(["heatmap", str(images[0]), str(strip), "--prompt", "zebra", "--out", str(tmp_path / "o"), *MODEL])
    err = capsys.readouterr().err
    assert code == 1 and "strip.png is 8000×1 (aspect 8000:1); at most 20:1 is supported — crop it first" in err
    assert "1 of 2 images done, 1 skipped" in err

    out = tmp_path / "f.safetensors"
    assert main(["embed", str(tmp_path / "in"), "--out", str(out), *MODEL]) == 1
    err = capsys.readouterr().err
    assert "strip.png is 8000×1" in err and "3 of 4 images done, 1 skipped" in err
    with safe_open(str(out), framework="pt") as f:
        assert "strip.png" not in json.loads(f.metadata()["paths"])
    # a single such image: nothing to do, exit 2 with the reason
    assert main(["heatmap", str(strip), "--prompt", "zebra", "--out", str(tmp_path / "o"), *MODEL]) == 2
    assert "8000×1" in error_line(capsys)


def test_heatmap_shows_a_photo_upright_by_its_exif_orientation(tmp_path, capsys):
    # stored 120 x 80 with the left half red, EXIF 6: displayed 80 x 120 with the top half red
    photo = exif_jpeg(tmp_path / "phone.jpg", 6, (120, 80))
    assert main(["heatmap", str(photo), "--prompt", "zebra", "--out", str(tmp_path / "o"), *MODEL]) == 0
    picture = np.asarray(Image.open(tmp_path / "o" / "phone_zebra.png"))[:, :SIZE]  # the image panel
    assert is_red(picture[40, SIZE - 10]) and is_blue(picture[SIZE - 10, 10])  # red on top, blue below


@pytest.fixture()
def no_model_load(monkeypatch):
    """Fail the test if a command gets as far as loading a model."""
    import steervit.loading

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was found")

    monkeypatch.setattr(steervit.loading, "load_model", refuse)


def test_unwritable_outputs_fail_in_one_line_before_the_model_loads(tmp_path, capsys, no_model_load):
    images = make_images(tmp_path / "in")
    blocker = tmp_path / "a-file.txt"
    blocker.write_text("a file where a folder is needed")
    cases = [
        ["heatmap", str(images[0]), "--prompt", "zebra", "--out", str(blocker)],
        ["heatmap", str(images[0]), "--prompt", "zebra", "--out", str(blocker / "maps")],
        ["embed", str(tmp_path / "in"), "--out", str(blocker / "f.safetensors")],
        ["embed", str(tmp_path / "in"), "--out", str(tmp_path / "in")],  # a folder
        ["export", str(blocker / "m.onnx"), "--prompt", "zebra"],
        ["export", str(tmp_path / "m.onnx"), "--prompt", "zebra", "--check", "--check-images",
         str(images[0]), str(tmp_path / "missing.jpg")],
        ["export", str(tmp_path / "m.onnx"), "--prompt", "zebra", "--check-images", str(images[0])],
    ]
    for argv in cases:
        assert main([*argv, *MODEL]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("steervit: error:"), (argv, err)
    assert not list(tmp_path.rglob("*.onnx")) and not list(tmp_path.rglob("*.safetensors"))


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="root may write anywhere")
def test_out_in_a_read_only_folder_fails_before_the_model_loads(tmp_path, capsys, no_model_load):
    image = make_images(tmp_path / "in")[0]
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(["heatmap", str(image), "--prompt", "z", "--out", str(locked / "maps"), *MODEL]) == 2
        assert "no permission" in error_line(capsys)
    finally:
        locked.chmod(0o700)


# ------------------------------------------------------------------------------ option bounds
@pytest.mark.parametrize("argv, words", [
    (["heatmap", "a.jpg", "--prompt", "p", "--alpha", "nan"], ["--alpha", "between 0 and 1"]),
    (["heatmap", "a.jpg", "--prompt", "p", "--alpha", "7"], ["--alpha", "between 0 and 1, got 7"]),
    (["heatmap", "a.jpg", "--prompt", "p", "--alpha", "-0.5"], ["--alpha", "between 0 and 1"]),
    (["heatmap", "a.jpg", "--prompt", "p", "--alpha", "half"], ["--alpha", "must be a number"]),
    (["heatmap", "a.jpg", "--prompt", "p", "--gate-factor", "inf"], ["--gate-factor", "finite number >= 0"]),
    (["embed", "dir", "--gate-factor", "nan"], ["--gate-factor", "finite"]),
    (["info", "--gate-factor", "1e999"], ["--gate-factor", "finite"]),
    (["serve", "--gate-factor", "inf"], ["--gate-factor", "finite"]),
    (["export", "m.onnx", "--prompt", "p", "--gate-factor", "inf"], ["--gate-factor", "finite"]),
    (["eval", "gate-sweep", "--data", "d", "--gates", "0", "inf"], ["--gates", "finite"]),
    (["ablate", "--config", "c", "--gates", "0,inf"], ["--gates", "finite"]),
])
def test_out_of_range_options_are_usage_errors(capsys, argv, words):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    for word in words:
        assert word in err, err


def test_alpha_bounds_are_inclusive(tmp_path, capsys):
    image = make_images(tmp_path / "in")[0]
    for alpha in ("0", "1"):
        assert main(["heatmap", str(image), "--prompt", "z", "--alpha", alpha, "--out", str(tmp_path / alpha),
                     *MODEL]) == 0


def test_export_opset_out_of_range_is_one_line_before_the_model_loads(tmp_path, capsys, no_model_load):
    from steervit.export import supported_opsets

    low, high = supported_opsets()
    assert (low, high) == (18, 23)  # torch 2.14's dynamo exporter: torchlib's opset 18 up to 23
    for opset in ("99", "17", str(high + 1)):
        assert main(["export", str(tmp_path / "m.onnx"), "--prompt", "p", "--opset", opset, *MODEL]) == 2
        line = error_line(capsys)
        assert f"opset {opset} is not supported" in line and f"{low} to {high}" in line, line


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


def test_info_names_late_fusion_layers_after_the_trunk(tmp_path, capsys):
    """Late-fusion layers run after the last block: info says so, not 'block 0'."""
    from safetensors.torch import save_file

    from support import make_tiny_model

    model = make_tiny_model(fusion="late")
    model.save_pretrained(tmp_path / "late")
    save_file({k: v.contiguous() for k, v in model.trunk.state_dict().items()}, str(tmp_path / "trunk.safetensors"))
    args = ["info", str(tmp_path / "late"), "--backbone-weights", str(tmp_path / "trunk.safetensors"),
            "--text-encoder", str(TEXT_ENCODER)]
    assert main(args) == 0
    out = capsys.readouterr().out
    k = len(model.late_layers)
    assert f"cross-attention (late fusion): after the trunk, 1 of {k}" in out
    assert "block 0" not in out and f"after the trunk, {k} of {k} attn_gate" in out
