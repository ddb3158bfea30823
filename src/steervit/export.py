"""ONNX export of the image side of a SteerViT, with the prompt baked in or given as an input.

The exported graph maps normalised images to four named outputs (B = image batch, dynamic; N patches
of the fixed export resolution; D = model width):

    global_features  (B, D)     CLS token or mean of patch tokens, as `get_global_features`
    patch_features   (B, N, D)  patch tokens after the final norm, as `get_dense_features`
    heatmap_logits   (B, N)     the segmentation head's per-patch logits, as `segmentation_logits`
    heatmap_probs    (B, N)     their softmax over patches: `get_heatmaps` before the grid reshape and
                                upsampling, which a caller does at whatever size it needs

Inputs: `images` (B, 3, H, W) float32, and with the text as an input also `text_tokens` (T, L, D)
float32 and `text_mask` (T, L) bool (True = real token), where T is 1 (one prompt for every image) or
B, and L is dynamic. These are exactly a `TextEmbedding`'s `tokens` and `mask`, so a deployment can
ship saved embeddings (`SteerViT.save_text_embedding`) and drop the text encoder.

The gates are baked in at the model's current gate factor. The cross-attention is written out
explicitly here (an additive float mask, no data-dependent branch) rather than calling the model's
layer, whose short-prompt path picks its arithmetic from the prompt length, which a traced graph
would freeze at the example's length; the numbers are the same function of the same weights.
At an image size other than the model's, the resampled position embedding is computed once at
export time (timm's antialiased bicubic resampling has no ONNX operator).

The file is written by torch's dynamo-based exporter (`torch.onnx.export(..., dynamo=True)`:
torch.export captures the graph with symbolic batch, text batch and prompt length; onnxscript's
torchlib writes the operators, opset 18 or later), not the deprecated TorchScript exporter.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Sequence, Union

import torch
from torch import nn

from .cross_attention import CrossAttention, GatedCrossAttention, gate_value
from .text import TextEmbedding
from .trunk import embed

OUTPUT_NAMES = ("global_features", "patch_features", "heatmap_logits", "heatmap_probs")
TEXT_INPUT_NAMES = ("text_tokens", "text_mask")
DEFAULT_OPSET = 18
MIN_OPSET = 18  # the lowest opset torch's ONNX operator library (torchlib) is written for
Prompt = Union[None, str, TextEmbedding]


def _attention(ca: CrossAttention, x: torch.Tensor, text: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """`CrossAttention.forward_direct` with an additive (B, L) mask: one text row per image."""
    q = ca.to_q(ca.norm(x)).unflatten(-1, (ca.heads, ca.head_dim)).transpose(1, 2)  # (B, H, N, e)
    k, v = ca.to_kv(text).chunk(2, dim=-1)
    k = k.unflatten(-1, (ca.heads, ca.head_dim)).transpose(1, 2)  # (B, H, L, e)
    v = v.unflatten(-1, (ca.heads, ca.head_dim)).transpose(1, 2)
    scores = (q @ k.transpose(-2, -1)) * ca.head_dim**-0.5 + bias[:, None, None, :]
    out = scores.softmax(-1) @ v  # (B, H, N, e)
    return ca.to_out(out.transpose(1, 2).flatten(2))


def _gated(layer: GatedCrossAttention, x: torch.Tensor, text: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """`GatedCrossAttention.forward` around `_attention`."""
    if layer.gate_factor == 0.0:
        return x
    x = x + gate_value(layer.gate_kind, layer.attn_gate, layer.gate_factor) * _attention(layer.cross_attn, x, text, bias)
    if layer.ff is not None:
        x = x + gate_value(layer.gate_kind, layer.ff_gate, layer.gate_factor) * layer.ff(x)
    return x


def mask_bias(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Bool mask (True = keep) -> additive bias (0 or -inf), the ONNX-friendly form of `masked_fill`."""
    return torch.where(mask.to(torch.bool), 0.0, float("-inf")).to(dtype)


class SteeredVisionExport(nn.Module):
    """The image side of `model` as one traceable forward returning the four `OUTPUT_NAMES` tensors.

    With `text` (one prompt) the prompt is stored as buffers, so it becomes constants in the graph;
    without it, `forward` takes `text_tokens` and `text_mask` as inputs.
    """

    def __init__(self, model, text: TextEmbedding | None = None, image_size: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.baked = text is not None
        self.pos_embed = self._resampled_pos_embed(image_size or model.image_size)
        if text is not None:
            if len(text) != 1:
                raise ValueError(f"a baked-in prompt must be a single prompt, got {len(text)}")
            weight = model.connector.mlp[0].weight
            self.register_buffer("text_tokens", text.tokens.detach().to(weight.device, weight.dtype))
            self.register_buffer("text_bias", mask_bias(text.mask, weight.dtype).to(weight.device))

    def _resampled_pos_embed(self, size: int) -> torch.Tensor | None:
        """timm's position embedding for the export grid, computed once here: timm resamples it on
        every call with antialiased bicubic interpolation, which has no ONNX export. None: no resampling."""
        trunk = self.model.trunk
        grid = (size // self.model.patch_size,) * 2
        if trunk.pos_embed is None or tuple(trunk.patch_embed.grid_size) == grid:
            return None
        if not trunk.dynamic_img_size:
            raise ValueError(f"this trunk takes {trunk.patch_embed.img_size} images only, not {size}x{size}")
        from timm.layers import resample_abs_pos_embed

        with torch.no_grad():
            return resample_abs_pos_embed(
                trunk.pos_embed, new_size=grid, old_size=trunk.patch_embed.grid_size,
                num_prefix_tokens=0 if trunk.no_embed_class else trunk.num_prefix_tokens,
            )

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        """`trunk.embed` (timm's `_pos_embed` order), with the precomputed position embedding."""
        trunk = self.model.trunk
        if self.pos_embed is None:
            return embed(trunk, images)
        x = trunk.patch_embed(images).flatten(1, 2)  # (B, h, w, C) with dynamic image size -> tokens
        prefix = [t.expand(x.shape[0], -1, -1) for t in (trunk.cls_token, trunk.reg_token) if t is not None]
        if trunk.no_embed_class:
            x = torch.cat(prefix + [x + self.pos_embed], dim=1)
        else:
            x = torch.cat(prefix + [x], dim=1) + self.pos_embed
        return trunk.norm_pre(trunk.patch_drop(trunk.pos_drop(x)))

    def forward(self, images: torch.Tensor, text_tokens: torch.Tensor | None = None,
                text_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        model = self.model
        if self.baked:
            tokens, bias = self.text_tokens, self.text_bias
        else:
            if text_tokens is None or text_mask is None:
                raise ValueError("this export takes the text as input: pass text_tokens and text_mask")
            tokens, bias = text_tokens, mask_bias(text_mask, text_tokens.dtype)
        # Each image's text row: row 0 for every image (T = 1), else its own (T = B; a smaller T is
        # an index error in onnxruntime). A gather, not broadcasting: torch.export cannot keep a
        # graph where T may be 1 or equal to B, it would fix one of the two.
        one_prompt = torch.tensor(tokens.shape[0], device=images.device) == 1
        rows = torch.arange(images.shape[0], device=images.device) * ~one_prompt
        tokens, bias = tokens[rows], bias[rows]
        # The model's own block loop; only the cross-attention step is the export-friendly form.
        x = model.run_blocks(self._embed(images), lambda layer, h: _gated(layer, h, tokens, bias))
        x = model.trunk.norm(x)
        patches = x[:, model.num_prefix_tokens:]
        pooled = x[:, 0] if model.config.pooling == "cls" else patches.mean(1)
        logits = model.seg_head(patches).squeeze(-1)
        return pooled, patches, logits, logits.softmax(-1)


def _as_embedding(model, prompt: Prompt | Sequence[str]) -> TextEmbedding:
    if isinstance(prompt, TextEmbedding):
        return prompt.to(model.device, model.connector.mlp[0].weight.dtype)
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    with torch.no_grad():
        return model.encode_text(prompts)


def supported_opsets() -> tuple[int, int]:
    """(lowest, highest) opset `export_onnx` writes with the installed torch and onnx, read at run time.

    The lowest is the one torch's dynamo exporter writes its operators for (18); below it torch would
    run ONNX's version converter, which may fail or silently keep opset 18, so it is refused here. The
    highest is the exporter's maximum (23 with torch 2.14), capped by the installed onnx package.
    """
    import onnx
    from torch.onnx import _constants

    highest = getattr(_constants, "ONNX_MAX_OPSET", DEFAULT_OPSET)
    return MIN_OPSET, min(int(highest), int(onnx.defs.onnx_opset_version()))


def check_opset(opset: int) -> int:
    """`opset` if `export_onnx` can write it, else a ValueError naming the supported range."""
    low, high = supported_opsets()
    if not low <= opset <= high:
        why = f" (torch's ONNX exporter writes opset {low} or later)" if opset < low else ""
        raise ValueError(f"opset {opset} is not supported{why}: torch {torch.__version__} exports opsets "
                         f"{low} to {high} here; use one of those, e.g. {DEFAULT_OPSET} (the default)")
    return opset


def check_out_path(path: str | Path) -> Path:
    """Fail before the (slow) trace on a path that cannot take the file."""
    path = Path(path).expanduser()
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"the output file must end in .onnx, got {path}")
    if path.is_dir():
        raise ValueError(f"the output path {path} is a directory; give a file name ending in .onnx")
    if not path.parent.is_dir():
        if path.parent.exists():
            raise ValueError(f"cannot write {path}: {path.parent} is a file, not a folder")
        raise FileNotFoundError(f"the output folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {path}: no permission to create files in {path.parent}")
    return path


def export_onnx(model, path: str | Path, prompt: Prompt = None, text_as_input: bool = False,
                opset: int = DEFAULT_OPSET, image_size: int | None = None) -> Path:
    """Write the image side of `model` to `path` (ONNX), dynamic in the batch (and prompt length).

    Give exactly one of `prompt` (a string or a one-prompt `TextEmbedding`, baked in as constants)
    and `text_as_input=True`. Images are fixed at `image_size` (default: the model's). The prompt,
    gate factor and input/output names are recorded in the file's metadata.
    """
    import onnx

    from .families import check_exportable

    check_exportable(model, image_size)  # a trunk family this export cannot run is refused first

    if (prompt is None) == (not text_as_input):
        raise ValueError("give either a prompt to bake in or text_as_input=True (exactly one of them)")
    path = check_out_path(path)
    check_opset(opset)
    size = int(image_size or model.image_size)
    if size <= 0 or size % model.patch_size:
        raise ValueError(f"image size {size} must be a positive multiple of the patch size {model.patch_size}")

    text = None if prompt is None else _as_embedding(model, prompt)
    wrapper = SteeredVisionExport(model, text, size).eval()
    # Example inputs for torch.export; the batch, text batch and prompt length stay symbolic (Dim),
    # the image size is fixed. Example sizes differ from each other and from 1, so that no size is
    # specialised to its example value.
    images = torch.randn(2, 3, size, size, device=model.device, dtype=model.dtype)
    batch = torch.export.Dim("batch", min=1)
    kwargs: dict[str, torch.Tensor] = {}
    dynamic: dict[str, dict] = {"images": {0: batch}}
    input_names = ["images"]
    if text_as_input:
        length = 7  # any example length: the graph has no branch on it
        kwargs = {"text_tokens": torch.randn(3, length, model.feature_dim, device=model.device, dtype=model.dtype),
                  "text_mask": torch.ones(3, length, dtype=torch.bool, device=model.device)}
        text_dims = {0: torch.export.Dim("text_batch", min=1), 1: torch.export.Dim("text_length", min=1)}
        dynamic.update({name: text_dims for name in TEXT_INPUT_NAMES})
        input_names += list(TEXT_INPUT_NAMES)

    from .io import atomic_path

    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        # torch.export captures the graph (dynamo), torchlib writes the ONNX operators; one file
        # (no external data), optimised (constant folding) by the exporter. The two text inputs
        # share their axes by design, which the exporter's axis renaming reports as a warning.
        warnings.filterwarnings("ignore", message=r"# The axis name: text_", category=UserWarning)
        torch.onnx.export(wrapper, (images,), str(tmp), kwargs=kwargs, dynamo=True, opset_version=opset,
                          input_names=input_names, output_names=list(OUTPUT_NAMES),
                          dynamic_shapes=dynamic, external_data=False, verbose=False)
        proto = onnx.load(str(tmp))
        onnx.helper.set_model_props(proto, {
            "steervit.prompt": "" if text is None else text.prompts[0],
            "steervit.text_input": json.dumps(bool(text_as_input)),
            "steervit.image_size": str(size),
            "steervit.gate_factor": repr(model.gate_factor),
            "steervit.outputs": json.dumps(list(OUTPUT_NAMES)),
        })
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    return path


def check_onnx(model, path: str | Path, images: torch.Tensor, text: Prompt | Sequence[str] = None) -> dict[str, float]:
    """Run the exported file with onnxruntime and the PyTorch model on `images`: max |diff| per output.

    `text` is one prompt (applied to every image) or one per image, as strings or a `TextEmbedding`.
    For a baked-in export it must be the baked prompt; None reads that prompt from the file.
    The PyTorch side is the model's own forward (not the export wrapper), so this checks the export
    against the reference path.
    """
    import numpy as np
    import onnx
    import onnxruntime as ort

    from .io import require_file

    path = require_file(path, "ONNX file")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    text_input = "text_tokens" in {i.name for i in session.get_inputs()}
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    size = int(meta.get("steervit.image_size", images.shape[-1]))
    if tuple(images.shape[-2:]) != (size, size):
        raise ValueError(f"{path} was exported for {size}x{size} images, got {tuple(images.shape[-2:])}")
    if not text_input:
        baked = meta.get("steervit.prompt", "")
        text = baked if text is None else text
        prompts = [text] if isinstance(text, str) else list(getattr(text, "prompts", text))
        if baked and prompts != [baked]:
            raise ValueError(f"{path} has the prompt {baked!r} baked in; check it with that prompt, got {prompts}")
    if text is None:
        raise ValueError("pass the text to check with")
    embedding = _as_embedding(model, text)
    b = images.shape[0]
    if len(embedding) not in (1, b):
        raise ValueError(f"give one prompt, or one per image ({b}); got {len(embedding)}")

    feeds = {"images": images.detach().float().cpu().numpy()}
    if text_input:
        feeds["text_tokens"] = embedding.tokens.detach().float().cpu().numpy()
        feeds["text_mask"] = embedding.mask.cpu().numpy().astype(np.bool_)
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))

    reference = embedding if len(embedding) == b else embedding.repeat_interleave(b)
    with torch.no_grad():
        tokens, logits = model(images, reference, return_logits=True)
    expected = {
        "global_features": model._pool(tokens),
        "patch_features": tokens[:, model.num_prefix_tokens:],
        "heatmap_logits": logits,
        "heatmap_probs": logits.float().softmax(-1),
    }
    return {name: float(np.abs(got[name] - expected[name].float().cpu().numpy()).max()) for name in OUTPUT_NAMES}
