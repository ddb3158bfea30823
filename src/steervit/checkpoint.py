"""Reading and writing SteerViT weights, safely.

Two formats:
- the published `.pth` (reference §2): a pickled dict with an OmegaConf config. It is read with
  `torch.load(weights_only=True)` and only OmegaConf's container classes allow-listed, so nothing
  in the file can run code; anything else is refused. Its config is never resolved: an OmegaConf
  interpolation (`${oc.env:HOME}`, `${other.key}`) in it is refused too.
- this project's directory: `config.json` + `model.safetensors` (trainable tensors only); the
  config records the sha256 of the weights file, checked on load.

Every value read from either is type-checked, so a bad file gives a `CheckpointError` naming the
field, never a traceback from deep inside the model or a silently coerced setting.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import pickle
import typing
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

from .config import SteerViTConfig
from .io import atomic_path, require_file
from .pretrained import HUB_REPO

FORMAT_NAME = "steervit"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

# Published key prefix -> ours. CA layers live in `cross_attn_layers.{block}` instead of inside timm's blocks.
_PUBLISHED_CA = "vision_model.trunk.blocks."
_PUBLISHED_HEAD = "lin_seg_head."


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: corrupt, truncated, unsafe or for another model."""


def _omegaconf_safe_globals() -> list[Any]:
    from omegaconf import DictConfig, ListConfig, nodes
    from omegaconf.base import ContainerMetadata, Metadata

    node_types = [getattr(nodes, n) for n in dir(nodes) if n.endswith("Node") and isinstance(getattr(nodes, n), type)]
    return [DictConfig, ListConfig, ContainerMetadata, Metadata, typing.Any, collections.defaultdict,
            collections.OrderedDict, dict, list, int, float, str, bool, *node_types]


def read_published(path: str | Path) -> dict[str, Any]:
    """Read a published `.pth` safely; returns the dict with `config` converted to plain containers."""
    path = require_file(path, "checkpoint")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is damaged
        raise CheckpointError(f"{path} is corrupt or truncated: not a torch zip archive")
    try:
        with torch.serialization.safe_globals(_omegaconf_safe_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refused to load {path}: it needs objects outside the safe allow-list "
            f"(tensors, plain containers, OmegaConf configs). Nothing from the file was executed.\n{err}"
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"{path} is corrupt or truncated: {err}") from err
    if not isinstance(data, dict) or "state_dict" not in data:
        raise CheckpointError(f"{path} is not a SteerViT checkpoint (no 'state_dict')")
    _check_tensors(path, data["state_dict"])
    config = data.get("config")
    if config is None:
        raise CheckpointError(f"{path} has no 'config'; cannot tell which trunk and text encoder it needs")
    return {**data, "config": _plain_config(path, config)}


def _check_tensors(path: Path, state: Any) -> None:
    """A state dict must map names to tensors; anything else would fail later, far from the file."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: 'state_dict' must be a dict of tensors, got {type(state).__name__}")
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{path}: 'state_dict' names must be strings, got {key!r}")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: 'state_dict' entry {key!r} must be a tensor, got {type(value).__name__}")


def _plain_config(path: Path, value: Any, key: str = "config") -> Any:
    """The config as plain dicts and lists, with OmegaConf interpolations refused, never resolved.

    Resolving `${oc.env:HOME}` or `${other.key}` would let this machine's environment, or another
    key, pass for a setting of the file (written to config.json, sent to the hub as a repo id)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, (DictConfig, ListConfig)):
        try:
            value = OmegaConf.to_container(value, resolve=False)
        except Exception as err:  # a container unpickled with inconsistent internals fails in many ways
            raise CheckpointError(f"{path}: {key} is a damaged OmegaConf config: {err}") from err
    if isinstance(value, dict):
        return {k: _plain_config(path, v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_config(path, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        raise CheckpointError(f"{path}: {key} is an OmegaConf interpolation ({value!r}); checkpoint configs "
                              "are never resolved, so only literal values are accepted")
    return value


def published_to_adapter(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename published state-dict keys to this project's; unknown keys are kept (and later rejected)."""
    out = {}
    for key, value in state.items():
        new = key
        if key.startswith(_PUBLISHED_CA) and ".gated_cross_attn." in key:
            block, rest = key[len(_PUBLISHED_CA):].split(".gated_cross_attn.", 1)
            new = f"cross_attn_layers.{block}.{rest}"
        elif key.startswith(_PUBLISHED_HEAD):
            new = "seg_head." + key[len(_PUBLISHED_HEAD):]
        out[new] = value
    return out


def adapter_to_published(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `published_to_adapter`, for writing files the published code can read."""
    out = {}
    for key, value in state.items():
        if key.startswith("cross_attn_layers."):
            block, rest = key[len("cross_attn_layers."):].split(".", 1)
            key = f"{_PUBLISHED_CA}{block}.gated_cross_attn.{rest}"
        elif key.startswith("seg_head."):
            key = _PUBLISHED_HEAD + key[len("seg_head."):]
        out[key] = value
    return out


def sha256_file(path: str | Path) -> str:
    """Identity of a weights file. For safetensors: the tensor index and data, not the metadata
    (whose key order is not stable between writes of the same tensors); other files: all bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if str(path).endswith(".safetensors"):
            header_len = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(header_len))
            header.pop("__metadata__", None)
            h.update(json.dumps(header, sort_keys=True).encode())
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_model(model, directory: str | Path) -> None:
    """`config.json` + `model.safetensors`; each file written atomically (temp file + rename)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous().cpu() for k, v in model.adapter_state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT_NAME})
        weights_sha256 = hashlib.sha256(tmp.read_bytes()).hexdigest()
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        # Of the file's bytes (`sha256sum model.safetensors`), so altered weights never load silently.
        "weights_sha256": weights_sha256,
        "config": model.config.to_dict(),
        "trunk": {"name": model.config.trunk, "weights_sha256": model.config.trunk_weights_sha256,
                  "width": model.feature_dim, "depth": len(model.trunk.blocks)},
        "text_encoder": {"name": model.config.text_encoder, "width": model.config.text_dim},
    }
    with atomic_path(directory / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")


def read_saved(directory: str | Path) -> tuple[SteerViTConfig, dict[str, torch.Tensor]]:
    """Config and weights of a `save_model` directory, each checked before use."""
    directory = Path(directory)
    config_path = require_file(directory / CONFIG_FILE, "model config")
    weights_path = require_file(directory / WEIGHTS_FILE, "model weights")
    meta = _read_meta(config_path)
    try:
        config = SteerViTConfig.from_dict(meta["config"])
    except ValueError as err:
        raise CheckpointError(f"{config_path}: {err}") from err
    raw = weights_path.read_bytes()  # hashed and parsed from the same bytes, so no swap in between
    expected = meta.get("weights_sha256")
    if expected is not None and hashlib.sha256(raw).hexdigest() != expected:
        raise CheckpointError(f"{weights_path} does not match the sha256 recorded in {config_path}: "
                              "the weights were altered or damaged since they were saved")
    try:
        state = load_safetensors(raw)
    except Exception as err:  # safetensors raises its own error type for corrupt headers
        raise CheckpointError(f"{weights_path} is corrupt or truncated: {err}") from err
    return config, state


def _read_meta(config_path: Path) -> dict[str, Any]:
    """The parsed `config.json`, with the fields this module reads type-checked.

    `weights_sha256` may be absent: folders saved before it was recorded still load."""
    try:
        meta = json.loads(config_path.read_bytes())
    except (ValueError, RecursionError) as err:  # bad JSON, bad UTF-8, absurd nesting
        raise CheckpointError(f"{config_path} is not valid JSON: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f'{config_path} is not a steervit model config (no "format": "{FORMAT_NAME}")')
    version = meta.get("format_version")
    if type(version) is not int or version < 1:
        raise CheckpointError(f"{config_path}: format_version must be an integer from 1 to {FORMAT_VERSION}, "
                              f"got {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{config_path} has format version {version}; "
                              f"this steervit reads up to {FORMAT_VERSION}: upgrade steervit")
    if "weights_sha256" in meta and not _is_sha256(meta["weights_sha256"]):
        raise CheckpointError(f"{config_path}: weights_sha256 must be a sha256 as 64 lowercase hex digits, "
                              f"got {meta['weights_sha256']!r}")
    if not isinstance(meta.get("config"), dict):
        found = json.dumps(meta["config"])[:60] if "config" in meta else "nothing"
        raise CheckpointError(f"{config_path}: config must be a JSON object of model settings, got {found}")
    return meta


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def resolve_checkpoint(name_or_path: str | Path, hub=None, *, sha256: str | None = None) -> Path:
    """A local file or directory, or a file name in the hub repo (downloaded when a network is there).

    `hub` (`steervit.hub.HubOptions`: revision, cache, token, offline) and `sha256` (the file's
    pinned bytes, where known) apply to the download only."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    name = str(name_or_path)
    if "/" in name or "\\" in name or not name.endswith((".pth", ".pt")):
        raise FileNotFoundError(f"no model found at {path}")
    from .hub import HubOptions, download_published

    return download_published(name, hub or HubOptions(), sha256=sha256)


def build_from_checkpoint(cls, name_or_path, *, backbone_weights=None, text_encoder=None, device=None, dtype=None,
                          hub=None):
    """Build a model from a checkpoint (published `.pth` or saved directory) and load its weights strictly.

    A registered published name downloads at its pinned revision and is checked against its pinned
    sha256, where the registry knows them, unless `hub` asks for another revision."""
    from .pretrained import REGISTRY, bundled_files

    entry = REGISTRY.get(str(name_or_path))
    pinned_sha256 = None
    if entry is not None and entry.bundled:
        files = bundled_files(entry.name)
        name_or_path = files["adapter"]
        backbone_weights = backbone_weights or files["backbone_weights"]
        text_encoder = text_encoder if text_encoder is not None else files["text_encoder"]
    elif entry is not None:
        name_or_path = entry.hub_file
        if hub is None or hub.revision in (None, entry.revision):
            from .hub import HubOptions

            hub = dataclasses.replace(hub or HubOptions(), revision=entry.revision)
            pinned_sha256 = entry.sha256
    path = resolve_checkpoint(name_or_path, hub, sha256=pinned_sha256)
    if path.is_dir():
        config, state = read_saved(path)
    else:
        data = read_published(path)
        try:
            config = SteerViTConfig.from_published(data["config"])
        except (KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"{path}: cannot read its config: {err}") from err
        state = published_to_adapter(data["state_dict"])
    first = state.get("connector.mlp.0.weight")
    if config.text_dim is None and first is not None and first.ndim == 2:  # else the strict load says why
        config.text_dim = int(first.shape[1])
    if backbone_weights is not None:
        sha = sha256_file(require_file(backbone_weights, "backbone weights"))
        if config.trunk_weights_sha256 and config.trunk_weights_sha256 != sha:
            import warnings

            warnings.warn(f"backbone weights {backbone_weights} differ from those the model was saved with",
                          stacklevel=3)
        config.trunk_weights_sha256 = sha
    if text_encoder is not None and text_encoder is not False:
        config.text_encoder = str(text_encoder)
    model = cls(config, backbone_weights=backbone_weights,
                text_encoder=False if text_encoder is False else None)
    model.load_adapter_state_dict(state)
    model.eval()
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model
