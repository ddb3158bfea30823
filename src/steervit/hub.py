"""SteerViT on the Hugging Face Hub: which names are repos, downloads through the hub's cache, model cards.

A steervit repo holds what `save_pretrained` writes, and nothing else: `config.json`,
`model.safetensors` (the adapter: cross-attention, connector, head) and `README.md` (the model card).
The frozen trunk and text encoder stay where they come from (timm, transformers, local files).

Downloads go through huggingface_hub (`snapshot_download`, `hf_hub_download`), so its cache
(`HF_HUB_CACHE` or `cache_dir=`), revisions, tokens and offline mode (`HF_HUB_OFFLINE=1`,
`local_files_only=True`) work as for any other hub library; a revision that is a commit pins the files.

How a model name is read (`SteerViT.from_pretrained`, `--model`); the first rule that matches wins:

1. an existing local path (a published `.pth`, a `save_pretrained` folder): local, whatever its form;
2. a registered name (`steervit.pretrained.REGISTRY`);
3. `hf-hub:org/repo` (or `hf-hub:repo`): always a hub repo;
4. `org/repo`: one slash, only the characters repo ids allow, not ending in `.pth`/`.pt`: a hub repo;
5. anything else: a published file name in `JonaRuthardt/SteerViT`, or else a missing local path.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .checkpoint import CONFIG_FILE, WEIGHTS_FILE, CheckpointError
from .io import atomic_path
from .pretrained import HUB_REPO

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

    from .model import SteerViT

HUB_PREFIX = "hf-hub:"
CARD_FILE = "README.md"
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE)  # a steervit repo: exactly what save_pretrained writes
LIBRARY_NAME = "steervit"
TAGS = ("steervit", "vision", "vision-transformer", "gated-cross-attention", "referring-segmentation",
        "image-feature-extraction")
PIPELINE_TAG = "image-feature-extraction"
_CHECKPOINT_SUFFIXES = (".pth", ".pt")


@dataclass(frozen=True)
class HubOptions:
    """How to reach the hub; passed unchanged to huggingface_hub's downloads."""

    revision: str | None = None  # branch, tag or commit (a commit pins the files)
    cache_dir: str | os.PathLike | None = None  # default: huggingface_hub's (HF_HUB_CACHE)
    token: str | bool | None = None
    local_files_only: bool = False
    force_download: bool = False

    def download_kwargs(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _is_repo_id(name: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def hub_repo_id(name_or_path: str | os.PathLike) -> str | None:
    """The hub repo a model name points at, or None when it is a local path or a registered name
    (the rules in this module's docstring). A `Path` object is always local."""
    from .pretrained import REGISTRY

    if not isinstance(name_or_path, str):
        return None
    if name_or_path.startswith(HUB_PREFIX):
        repo_id = name_or_path[len(HUB_PREFIX):]
        if not _is_repo_id(repo_id):
            raise ValueError(f"{name_or_path!r} does not name a hub repo: write hf-hub:org/repo")
        return repo_id
    if Path(name_or_path).expanduser().exists() or name_or_path in REGISTRY:
        return None
    if (name_or_path.count("/") == 1 and not name_or_path.endswith(_CHECKPOINT_SUFFIXES)
            and _is_repo_id(name_or_path)):
        return name_or_path
    return None


def _cache_dir(options: HubOptions) -> str:
    from huggingface_hub import constants

    return str(options.cache_dir or constants.HF_HUB_CACHE)


def _why_offline(options: HubOptions, err: Exception) -> str:
    from huggingface_hub import constants

    if options.local_files_only:
        return "local_files_only=True"
    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE=1"
    cause = err.__cause__ or err
    return f"the hub could not be reached: {type(cause).__name__}"


def download_model(repo_id: str, options: HubOptions = HubOptions()) -> Path:
    """The local folder (a snapshot in the hub cache) holding a steervit repo's files at `options.revision`.

    Only `MODEL_FILES` are fetched, whatever else the repo holds."""
    from huggingface_hub import errors, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    # Newer huggingface_hub says when a cached snapshot lacks files; older ones have no such error.
    incomplete = getattr(errors, "IncompleteSnapshotError", ())
    revision = options.revision or "main"
    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=list(MODEL_FILES), **options.download_kwargs()))
    except incomplete:
        raise  # its own message says which files are missing from the cached snapshot
    except LocalEntryNotFoundError as err:
        raise FileNotFoundError(
            f"hub repo {repo_id} (revision {revision}) is not in the hub cache {_cache_dir(options)} and cannot be "
            f"downloaded ({_why_offline(options, err)}): run once online to cache it, or pass a local folder "
            "written by save_pretrained") from err
    except RevisionNotFoundError as err:
        raise FileNotFoundError(f"hub repo {repo_id} has no revision {revision!r}: pass a branch, tag or commit "
                                "it has") from err
    except RepositoryNotFoundError as err:
        raise FileNotFoundError(f"no hub repo {repo_id} (or it is private: pass token=), and no local path of "
                                "that name") from err
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"hub repo {repo_id} (revision {revision}) holds no steervit model: "
                                f"{', '.join(missing)} missing; a steervit repo holds what save_pretrained writes")
    return folder


def download_published(filename: str, options: HubOptions = HubOptions(), *, sha256: str | None = None) -> Path:
    """A published `.pth` from the hub repo `JonaRuthardt/SteerViT`, checked against `sha256` when given."""
    from huggingface_hub import hf_hub_download

    try:
        path = Path(hf_hub_download(HUB_REPO, filename, **options.download_kwargs()))
    except Exception as err:  # offline, not cached, no such file, no network: the same way out for all
        raise OSError(
            f"could not fetch {filename!r} from the Hugging Face Hub repo {HUB_REPO}: {err}\n"
            "Offline, pass local files: SteerViT.from_pretrained('/path/steervit_dinov2_base.pth', "
            "backbone_weights='/path/trunk.safetensors', text_encoder='/path/roberta-large')"
        ) from err
    if sha256 is not None:
        verify_sha256(path, sha256)
    return path


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
    """Refuse a file whose bytes (`sha256sum FILE`) are not the ones pinned."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != expected:
        raise CheckpointError(f"{path} has sha256 {h.hexdigest()}, not the pinned {expected}: the download is "
                              "damaged or the file was replaced; delete it from the hub cache and download again")


# ------------------------------------------------------------------------------------------------ model cards
def trunk_hub_id(trunk: str) -> str | None:
    """`timm/<arch>.<tag>` when the trunk names its pretrained weights; None for an architecture
    alone (`vit_small_patch14_dinov2`): its weights may come from any file, so which is not known."""
    if "." not in trunk:
        return None
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(trunk)
    except RuntimeError:  # a tag timm does not know
        return None
    hub_id = getattr(cfg, "hf_hub_id", None)
    return hub_id if hub_id and _is_repo_id(hub_id) else None


def text_encoder_hub_id(text_encoder: str) -> str | None:
    """The text encoder's hub id, or None when it is a local folder (or a description)."""
    if Path(text_encoder).expanduser().exists() or not _is_repo_id(text_encoder):
        return None
    return text_encoder


def model_card(model: "SteerViT", *, license: str = "unknown", metrics: Mapping[str, float] | None = None,
               dataset: str | None = None) -> "ModelCard":
    """The model card of a saved model: the hub's YAML metadata, then what the repo holds and how to load it.

    `license` is the adapter's (a hub license id; "unknown" unless given, as the weights' licence
    depends on their training data). `metrics` (name -> value) need the `dataset` they were measured on."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    if metrics and not dataset:
        raise ValueError("metrics need the dataset they were measured on: pass dataset= (a hub dataset id or name)")
    config = model.config
    base_model = [i for i in (trunk_hub_id(config.trunk), text_encoder_hub_id(config.text_encoder)) if i]
    model_name = f"steervit-{config.trunk}"
    results = [EvalResult(task_type="image-segmentation", dataset_type=dataset, dataset_name=dataset,
                          metric_type=name, metric_value=float(value)) for name, value in (metrics or {}).items()]
    data = ModelCardData(
        license=license, library_name=LIBRARY_NAME, tags=list(TAGS), pipeline_tag=PIPELINE_TAG,
        base_model=base_model or None, datasets=[dataset] if dataset else None,
        metrics=sorted(metrics) if metrics else None, model_name=model_name if results else None,
        eval_results=results or None,
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{_card_body(model, metrics, dataset)}")


def _card_body(model: "SteerViT", metrics: Mapping[str, float] | None, dataset: str | None) -> str:
    config = model.config
    where = (f"before blocks {', '.join(str(i) for i in config.cross_attn_layers)}" if config.fusion == "early"
             else f"{len(model.cross_attn_layers)} after the last block")
    adapter = sum(p.numel() for p in model.trainable_parameters().values())
    # A local folder is shown by its name only: a pushed card must not publish this machine's paths.
    text_encoder = text_encoder_hub_id(config.text_encoder) or Path(config.text_encoder).name
    lines = [
        f"# SteerViT: `{config.trunk}` steered by `{text_encoder}`",
        "",
        "Gated cross-attention layers that let a frozen Vision Transformer's tokens read text, so that its "
        "features and heatmaps follow a prompt (\"the red car\"). This repo holds only the trained adapter "
        f"({adapter:,} parameters in `{WEIGHTS_FILE}`, its sha256 in `{CONFIG_FILE}`); the frozen trunk and "
        "text encoder load from their own sources.",
        "",
        "| part | what |",
        "| --- | --- |",
        f"| trunk (frozen) | `{config.trunk}`, {config.image_size} px, width {model.feature_dim}, "
        f"{len(model.trunk.blocks)} blocks |",
        f"| text encoder (frozen) | `{text_encoder}` (width {config.text_dim}) |",
        f"| cross-attention ({config.fusion} fusion) | {where}; {config.cross_attn_heads} heads × "
        f"{config.cross_attn_head_dim}, gate `{config.gate}`, FFN {'on' if config.use_ffn else 'off'} |",
        f"| connector, head | `{config.connector}`; linear segmentation head |",
        "",
        "## Use",
        "",
        "```python",
        "from steervit import SteerViT",
        "",
        'model = SteerViT.from_pretrained("ORG/REPO", revision="COMMIT")  # or the folder holding this card',
        'images = model.get_transforms()(pil_image)[None]',
        'heatmaps = model.get_heatmaps(images, ["the red car"])  # (1, 1, H, W), sums to 1',
        "```",
        "",
        "Offline, pass the frozen parts as local files: `backbone_weights=FILE, text_encoder=FOLDER`.",
    ]
    if metrics:
        lines += ["", f"## Results ({dataset})", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {name} | {value:.4g} |" for name, value in metrics.items()]
    return "\n".join(lines) + "\n"


def write_model_card(card: "ModelCard", directory: str | os.PathLike) -> Path:
    """`README.md` in `directory`, written atomically like the model's other files."""
    path = Path(directory) / CARD_FILE
    with atomic_path(path) as tmp:
        card.save(tmp)
    return path
