"""ONNX export of the image side: onnxruntime must match PyTorch, for any batch and prompt length."""
from __future__ import annotations

import warnings

import pytest
import torch

from steervit import SteerViT
from steervit.cli import main
from steervit.export import OUTPUT_NAMES, check_onnx, export_onnx
from steervit.pretrained import BUNDLED_DIR, DEFAULT_MODEL
from support import OFFICIAL, TINY_ROBERTA, TRUNK, make_tiny_model

pytest.importorskip("onnxruntime")

TOL = 1e-4
PROMPT = "the red car"
PROMPTS = ["zebra", "a small black TV remote on the sofa next to the books", "the red car"]  # lengths differ
OFFLINE = ["--backbone-weights", str(TRUNK), "--text-encoder", str(TINY_ROBERTA)]


def images(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def assert_close(diffs: dict[str, float], logit_tol: float = TOL) -> None:
    assert set(diffs) == set(OUTPUT_NAMES)
    for name, diff in diffs.items():
        assert diff <= (logit_tol if name == "heatmap_logits" else TOL), diffs


def export_both_modes(model: SteerViT, folder) -> tuple:
    """(baked-prompt file, text-as-input file)."""
    return (export_onnx(model, folder / "baked.onnx", prompt=PROMPT),
            export_onnx(model, folder / "text.onnx", text_as_input=True))


def check_both_modes(model: SteerViT, baked, text_in, logit_tol: float = TOL) -> None:
    """Baked prompt and text as input, batches 1 and 3, one shared prompt and one prompt per image."""
    size = model.image_size
    for batch in (1, 3):
        x = images(batch, size, seed=batch)
        assert_close(check_onnx(model, baked, x, PROMPT), logit_tol)
        assert_close(check_onnx(model, text_in, x, [PROMPTS[1]]), logit_tol)  # one prompt for every image
        assert_close(check_onnx(model, text_in, x, PROMPTS[:batch]), logit_tol)


@pytest.fixture(scope="module")
def tiny():
    return make_tiny_model()


@pytest.fixture(scope="module")
def tiny_files(tiny, tmp_path_factory):
    """The tiny model's two exports, made once (each export takes seconds)."""
    return export_both_modes(tiny, tmp_path_factory.mktemp("tiny"))


def test_tiny_model_matches_onnxruntime(tiny, tiny_files):
    check_both_modes(tiny, *tiny_files)


def test_text_batch_other_than_one_or_the_batch_is_an_error(tiny, tiny_files):
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(tiny_files[1]), providers=["CPUExecutionProvider"])
    text = tiny.encode_text(PROMPTS[:2])
    feeds = {"images": images(3, 64).numpy(), "text_tokens": text.tokens.detach().numpy(),
             "text_mask": text.mask.numpy().astype(np.bool_)}
    with pytest.raises(Exception, match="invalid index"):  # 2 prompts for 3 images: no silent mix-up
        session.run(None, feeds)


def test_golden_model_matches_onnxruntime(golden_model, tmp_path):
    check_both_modes(golden_model, *export_both_modes(golden_model, tmp_path))


@pytest.mark.parametrize("variant", [{"fusion": "late"}, {"use_ffn": True, "pooling": "mean"}, {"gate": "sigmoid"}])
def test_variants_and_gate_factor(variant, tmp_path):
    model = make_tiny_model(**variant)
    model.set_gate_factor(0.5)  # baked in at export
    path = export_onnx(model, tmp_path / "v.onnx", prompt=PROMPT)
    assert_close(check_onnx(model, path, images(3, 64), None))  # None: the prompt recorded in the file


def test_baked_prompt_is_a_constant(tiny, tiny_files):
    import onnxruntime as ort

    path = tiny_files[0]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == list(OUTPUT_NAMES)
    with pytest.raises(ValueError, match="baked in"):
        check_onnx(tiny, path, images(1, 64), "another prompt")


def test_dynamo_exporter_with_named_dynamic_axes(tiny, tmp_path):
    """Written by the dynamo exporter at the requested opset (no TorchScript deprecation warning), with
    the batch, text batch and prompt length as named symbolic axes."""
    import onnx

    from steervit.export import supported_opsets

    opset = supported_opsets()[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = export_onnx(tiny, tmp_path / "text.onnx", text_as_input=True, opset=opset)
    assert not [w for w in caught if issubclass(w.category, DeprecationWarning) or "TorchScript" in str(w.message)]
    proto = onnx.load(str(path))
    assert {(o.domain, o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {("", opset)}
    axes = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert axes == {"images": ["batch", 3, 64, 64], "text_tokens": ["text_batch", "text_length", tiny.feature_dim],
                    "text_mask": ["text_batch", "text_length"]}
    assert all(o.type.tensor_type.shape.dim[0].dim_param == "batch" for o in proto.graph.output)
    assert_close(check_onnx(tiny, path, images(2, 64), PROMPTS[:2]))  # this opset runs in onnxruntime too


def test_export_errors(tiny, tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        export_onnx(tiny, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="exactly one"):
        export_onnx(tiny, tmp_path / "m.onnx", prompt=PROMPT, text_as_input=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_onnx(tiny, tmp_path / "missing" / "m.onnx", prompt=PROMPT)
    with pytest.raises(ValueError, match=r"\.onnx"):
        export_onnx(tiny, tmp_path / "m.txt", prompt=PROMPT)
    with pytest.raises(ValueError, match="opset"):
        export_onnx(tiny, tmp_path / "m.onnx", prompt=PROMPT, opset=11)
    with pytest.raises(ValueError, match="patch size"):
        export_onnx(tiny, tmp_path / "m.onnx", prompt=PROMPT, image_size=70)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_opset_outside_the_supported_range_is_a_clear_error(tiny, tmp_path):
    from steervit.export import check_opset, supported_opsets

    low, high = supported_opsets()
    assert low == 18 and high >= 18  # torchlib's opset, up to the installed torch's dynamo-exporter maximum
    for opset in (99, high + 1, low - 1):
        with pytest.raises(ValueError, match=rf"opset {opset} is not supported.* {low} to {high}"):
            export_onnx(tiny, tmp_path / "m.onnx", prompt=PROMPT, opset=opset)
    assert check_opset(high) == high
    assert not list(tmp_path.iterdir())


def test_out_path_under_a_file_is_refused(tiny, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        export_onnx(tiny, blocker / "m.onnx", prompt=PROMPT)


def test_cli_export_check(tmp_path, capsys):
    out = tmp_path / "golden.onnx"
    model = ["--model", str(OFFICIAL), *OFFLINE]
    # 128 px is not the checkpoint's 160: the position embedding is resampled at export time.
    code = main(["export", str(out), *model, "--text-input", "--image-size", "128", "--check"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert out.is_file() and "check passed" in printed and "batch 3 patch_features" in printed
    code = main(["export", str(out), *model, "--prompt", PROMPT, "--check", "--tolerance", "1e-12"])
    assert code == 2
    assert "ABOVE TOLERANCE" in capsys.readouterr().out


def test_cli_errors(tmp_path, capsys):
    model = ["--model", str(OFFICIAL), *OFFLINE]
    assert main(["export", str(tmp_path / "nope" / "m.onnx"), *model, "--prompt", PROMPT]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # neither --prompt nor --text-input
        main(["export", str(tmp_path / "m.onnx"), *model])
    assert exit_info.value.code == 2
    assert "--prompt" in capsys.readouterr().err


BUNDLED_CONFIG = BUNDLED_DIR / DEFAULT_MODEL / "config.json"


@pytest.mark.skipif(not BUNDLED_CONFIG.is_file(), reason=f"bundled adapter not trained yet: {BUNDLED_CONFIG}")
def test_bundled_model_matches_onnxruntime(tmp_path):
    model = SteerViT.from_pretrained(DEFAULT_MODEL)
    path = export_onnx(model, tmp_path / "bundled.onnx", text_as_input=True)
    x = images(3, model.image_size)
    diffs = check_onnx(model, path, x, PROMPTS)
    with torch.no_grad():
        logit_scale = max(1.0, float(model.segmentation_logits(x, PROMPTS).abs().max()))
    assert_close(diffs, logit_tol=TOL * logit_scale)  # float error in logits grows with their size
    path = export_onnx(model, tmp_path / "bundled_baked.onnx", prompt=PROMPT)
    assert_close(check_onnx(model, path, x[:1], PROMPT), logit_tol=TOL * logit_scale)
