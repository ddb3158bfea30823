"""The training configuration: a typed OmegaConf schema, bundled presets, `key=value` overrides.

    cfg = load_config("paper", ["train.batch_size=8", "data.text_cache=/data/cache"])

`name_or_path` is a bundled preset (`paper`, `released`, `smoke`, see `steervit/configs/`) or a YAML
file. The schema catches typos and wrong types in files and overrides alike. A published training
config (`vision_encoder`, `text_encoder`, `train`, `eval`, ...; reference §2) is translated onto
this schema, so the authors' `configs/default.yaml` can be used as a starting point.
"""
from __future__ import annotations

import dataclasses
import types
import typing
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..config import SteerViTConfig, user_fields


@dataclass
class RunModelOptions:
    """The model section's settings that shape a run but are no part of the model's config."""

    backbone_weights: Optional[str] = None  # local trunk state dict (offline); else timm's pretrained weights
    pretrained_trunk: Optional[bool] = None  # None: pretrained unless backbone_weights is given; false: random
    # Start from the adapter of a saved model folder (or a bundled model's name) instead of fresh
    # initialisation: fine-tuning, or a second stage of a run. It must be the same variant.
    init_adapter: Optional[str] = None
    grad_checkpointing: bool = False  # recompute frozen trunk blocks in backward: less memory, ~30 % slower


_PLAIN_TYPES = (bool, int, float, str)


def _schema_type(kind: Any) -> Any:
    """A SteerViTConfig field type as an OmegaConf schema can declare it.

    OmegaConf types plain values and `Optional` of one; anything else (`list[int] | str | None`) is
    `Any` there and checked by SteerViTConfig itself (see check_config)."""
    if kind in _PLAIN_TYPES:
        return kind
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        rest = [k for k in typing.get_args(kind) if k is not type(None)]
        if len(rest) == 1 and rest[0] in _PLAIN_TYPES:
            return Optional[rest[0]]
    return Any


def _schema_field(f: dataclasses.Field) -> dataclasses.Field:
    """A fresh field with `f`'s default: the model's own field objects are left untouched."""
    if f.default_factory is not dataclasses.MISSING:
        return field(default_factory=f.default_factory)
    return field(default=f.default)


def _make_model_section() -> type:
    """The run config's `model` section: the model's config fields (declared once, in SteerViTConfig)
    followed by the run-only RunModelOptions."""
    model_types = typing.get_type_hints(SteerViTConfig)
    run_types = typing.get_type_hints(RunModelOptions)
    section = dataclasses.make_dataclass(
        "ModelSection",
        [(f.name, _schema_type(model_types[f.name]), _schema_field(f)) for f in user_fields()]
        + [(f.name, run_types[f.name], _schema_field(f)) for f in dataclasses.fields(RunModelOptions)],
    )
    section.__module__ = __name__
    return section


# The model fields a run config sets: every SteerViTConfig field a user chooses, with its default.
MODEL_FIELDS = tuple(f.name for f in user_fields())
ModelSection = _make_model_section()


@dataclass
class DataSection:
    # Source specs as read by steervit.data.load_mixture: {name, type, weight, <reader arguments>}.
    train: List[Dict[str, Any]] = field(default_factory=list)
    val: List[Dict[str, Any]] = field(default_factory=list)
    manifest: Optional[str] = None  # convenience for presets built on one JSONL manifest (see smoke)
    text_cache: Optional[str] = None  # folder written by `steervit cache-text`; None = encode text live
    num_workers: int = 4
    samples_per_epoch: Optional[int] = None  # global draws per epoch; None = number of train records
    augment: Dict[str, Any] = field(default_factory=dict)  # overrides of steervit.data.AugmentConfig


@dataclass
class OptimSection:
    lr: float = 3e-4  # peak learning rate
    min_lr: float = 3e-5  # reached at decay_iters, then held
    warmup_iters: int = 5000  # linear warm-up from lr/warmup_iters to lr
    decay_iters: int = 40000  # cosine from lr (at warmup_iters) to min_lr (at decay_iters)
    weight_decay: float = 0.1  # cross-attention layers and head
    connector_weight_decay: float = 0.01
    # The zero-initialised tanh gates move about one lr per Adam step; short runs open them faster
    # with a larger rate on the gates than on the projections.
    gate_lr_mult: float = 1.0
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global gradient norm; <= 0 disables clipping


@dataclass
class TrainSection:
    batch_size: int = 12  # per process (GPU)
    train_iters: int = 500_000
    out_dir: str = "runs/steervit"
    device: str = "auto"  # auto = cuda:LOCAL_RANK when available, else cpu
    # auto = bf16 autocast on GPU, fp32 on CPU | bf16 | fp32. bf16 autocast also runs on the CPU:
    # 1.3x the fp32 step on an AMX/AVX512-BF16 CPU, losses within 2e-3 (bench/train.py --bf16).
    precision: str = "auto"
    log_every: int = 50
    val_every: int = 5000
    save_every: int = 1000
    tensorboard: bool = True  # when the tensorboard package is importable
    progress: bool = True  # tqdm bar on rank 0
    # segmentation: the mask pooled per patch (the paper); pointing: a Gaussian of pointing_sigma
    # patches at the mask's box centre (the pointing ablation). Validation pmass uses the mask either way.
    supervision: str = "segmentation"
    pointing_sigma: float = 1.1
    optim: OptimSection = field(default_factory=OptimSection)


@dataclass
class EvalSection:
    batch_size: int = 32
    max_samples: Optional[int] = None  # validate on a fixed random subset of this size


@dataclass
class WandbSection:
    enabled: bool = False  # used only when wandb is importable too
    project: str = "steervit"
    name: Optional[str] = None
    mode: str = "online"  # online | offline


@dataclass
class RunConfig:
    seed: int = 42
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    wandb: WandbSection = field(default_factory=WandbSection)


PRESETS = ("paper", "released", "smoke", "offline")
SUPERVISIONS = ("segmentation", "pointing")


def preset_path(name: str) -> Path:
    return Path(str(resources.files("steervit") / "configs" / f"{name}.yaml"))


def load_config(name_or_path: str | Path | None = None, overrides: Sequence[str] = ()) -> DictConfig:
    """Schema defaults <- preset or YAML file <- `key=value` overrides; validated, not yet resolved."""
    cfg = OmegaConf.structured(RunConfig)
    if name_or_path is not None:
        path = Path(name_or_path).expanduser()
        if not path.is_file() and str(name_or_path) in PRESETS:
            path = preset_path(str(name_or_path))
        if not path.is_file():
            raise FileNotFoundError(f"config not found: {name_or_path} (presets: {', '.join(PRESETS)})")
        loaded = OmegaConf.load(path)
        if "vision_encoder" in loaded:
            loaded = from_published(OmegaConf.to_container(loaded, resolve=False))
        try:
            cfg = OmegaConf.merge(cfg, loaded)
        except OmegaConfBaseException as err:
            raise ValueError(f"{path}: {_first_line(err)}") from err
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """`a.b=value` items (YAML values; list items by index, e.g. `data.train.0.weight=2`)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} is not key=value")
        try:
            value = OmegaConf.from_dotlist([f"value={text}"])["value"]
            OmegaConf.update(cfg, key.strip(), value, merge=True)
        except OmegaConfBaseException as err:
            raise ValueError(f"override {item!r}: {_first_line(err)}") from err
    return cfg


def check_config(cfg: DictConfig) -> None:
    """Fail before any slow work on what a run cannot start with: unset `???` values, bad numbers."""
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        raise ValueError(f"config value {key} is not set: add {key}=..." if key else _first_line(err)) from err
    t, o = cfg.train, cfg.train.optim
    problems = [
        *_unset_source_values(cfg),
        *(f"train.{k} must be > 0" for k in ("batch_size", "train_iters", "log_every", "val_every", "save_every")
          if t[k] <= 0),
        *(["data.train lists no source"] if not cfg.data.train else []),
        *([f"train.precision must be auto, bf16 or fp32, not {t.precision!r}"]
          if t.precision not in ("auto", "bf16", "fp32") else []),
        *(["train.optim.lr must be > 0 and min_lr within [0, lr]"] if not (o.lr > 0 and 0 <= o.min_lr <= o.lr) else []),
        *(["train.optim.gate_lr_mult must be > 0"] if o.gate_lr_mult <= 0 else []),
        *([f"train.supervision must be segmentation or pointing, not {t.supervision!r}"]
          if t.supervision not in SUPERVISIONS else []),
        *(["train.pointing_sigma must be > 0"] if not t.pointing_sigma > 0 else []),
        *_model_problems(cfg),
    ]
    if problems:
        raise ValueError("; ".join(problems))


def _model_problems(cfg: DictConfig) -> list[str]:
    """The model section's variant fields, checked by the model's own config."""
    try:
        to_model_config(cfg)
    except (TypeError, ValueError) as err:
        return [f"model: {err}"]
    return []


def _unset_source_values(cfg: DictConfig) -> list[str]:
    """Source keys left empty, e.g. a preset's `path: ${data.manifest}` while data.manifest is unset."""
    out = []
    for split in ("train", "val"):
        raw = OmegaConf.to_container(cfg.data[split], resolve=False)
        for i, (spec, resolved) in enumerate(zip(raw, sources(cfg, split))):
            for key, value in resolved.items():
                if value is None and key != "weight":
                    hint = f" (it is {spec[key]}: set that)" if isinstance(spec[key], str) else ""
                    out.append(f"data.{split}.{i}.{key} is not set{hint}")
    return out


def _first_line(err: Exception) -> str:
    """OmegaConf appends full_key/object_type lines; the first line says it all."""
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def from_published(published: Mapping[str, Any]) -> dict:
    """A published training config -> this schema's layout; unknown keys are dropped with a warning."""
    model = SteerViTConfig.from_published(published)
    out: dict[str, Any] = {"model": {name: getattr(model, name) for name in MODEL_FIELDS}}
    if "seed" in published:
        out["seed"] = published["seed"]
    dropped: list[str] = []
    for section, schema in (("train", TrainSection), ("eval", EvalSection), ("wandb", WandbSection)):
        if isinstance(published.get(section), Mapping):
            out[section] = _known(published[section], OmegaConf.structured(schema), section, dropped)
    ignored = set(published) - {"seed", "vision_encoder", "text_encoder", "train", "eval", "wandb"}
    dropped += sorted(ignored)
    if dropped:
        warnings.warn(f"published config keys without a counterpart here, ignored: {', '.join(dropped)}",
                      stacklevel=3)
    return out


_ALIASES = {"warmup_steps": "warmup_iters", "lr_min": "min_lr", "final_lr": "min_lr",
            "decay_steps": "decay_iters", "max_grad_norm": "grad_clip", "clip_grad": "grad_clip"}


def _known(values: Mapping[str, Any], schema: DictConfig, prefix: str, dropped: list[str]) -> dict:
    kept = {}
    for key, value in values.items():
        key = _ALIASES.get(key, key)
        if key not in schema:
            dropped.append(f"{prefix}.{key}")
        elif isinstance(value, Mapping) and isinstance(schema[key], DictConfig):
            kept[key] = _known(value, schema[key], f"{prefix}.{key}", dropped)
        else:
            kept[key] = value
    return kept


def to_model_config(cfg: DictConfig) -> SteerViTConfig:
    """The model part of a run config as the model's own config dataclass."""
    values = {name: cfg.model[name] for name in MODEL_FIELDS}
    layers = values["cross_attn_layers"]
    if isinstance(layers, ListConfig):
        values["cross_attn_layers"] = list(layers)
    elif layers is not None and not isinstance(layers, str):
        raise ValueError(f"cross_attn_layers must be a list of block indices or a preset name, got {layers!r}")
    return SteerViTConfig(**values)


def sources(cfg: DictConfig, split: str) -> list[dict]:
    """The resolved source specs of `data.train` or `data.val` (interpolations filled in)."""
    return [dict(s) for s in OmegaConf.to_container(cfg.data[split], resolve=True)]
