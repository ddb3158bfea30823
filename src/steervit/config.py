"""Model configuration: one dataclass that says how a SteerViT is built.

It is what `save_pretrained` writes to `config.json`, and what a published checkpoint's OmegaConf
config is translated into, so every way of building a model goes through the same fields.
"""
from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass
from typing import Any, Mapping

DEFAULT_TRUNK = "vit_base_patch14_dinov2.lvd142m"
DEFAULT_TEXT_ENCODER = "roberta-large"
# The published configs list every other block from 1 up to 25; blocks past the trunk's depth are ignored.
PUBLISHED_CROSS_ATTN_LAYERS = tuple(range(1, 26, 2))
FUSIONS = ("early", "late")
GATE_KINDS = ("tanh", "tanh_normal", "sigmoid", "none")
CONNECTORS = ("mlp", "linear")
PLACEMENTS = ("every_other", "early", "middle", "late")
# Field metadata key: the field is filled in when the model is built (or its weights are known),
# not chosen by whoever configures a model (see `user_fields`).
FILLED_IN = "filled_in"


@dataclass
class SteerViTConfig:
    """Everything needed to rebuild a SteerViT (the weights come separately)."""

    trunk: str = DEFAULT_TRUNK
    image_size: int = 336
    text_encoder: str = DEFAULT_TEXT_ENCODER  # Hugging Face id or a local folder (offline)
    # Block indices (0-based) that get a gated cross-attention layer before their self-attention,
    # or a placement preset: "every_other" (None: 1, 3, 5, ...), "early", "middle", "late" (the same
    # number of layers, depth // 2, on consecutive blocks of the first half / the middle / the last half).
    cross_attn_layers: list[int] | str | None = None
    cross_attn_heads: int = 16
    cross_attn_head_dim: int = 72
    use_ffn: bool = False
    ffn_mult: int = 2
    pooling: str = "cls"  # "cls" | "mean"
    # Design-study variants (reference §5 "Ablations"); the defaults are SteerViT.
    fusion: str = "early"  # "early": CA before chosen blocks | "late": CA stacked after the last block
    gate: str = "tanh"  # "tanh" (zero-init) | "tanh_normal" | "sigmoid" | "none" (ungated residual)
    connector: str = "mlp"  # "mlp" | "linear"
    # Width of the text encoder's hidden states; filled in when the model is built.
    text_dim: int | None = dataclasses.field(default=None, metadata={FILLED_IN: True})
    # Identity of the frozen parts, filled in when known (e.g. a sha256 of the trunk weights file).
    trunk_weights_sha256: str | None = dataclasses.field(default=None, metadata={FILLED_IN: True})

    def __post_init__(self) -> None:
        if self.pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {self.pooling!r}")
        if self.image_size <= 0:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if self.cross_attn_heads <= 0 or self.cross_attn_head_dim <= 0:
            raise ValueError("cross_attn_heads and cross_attn_head_dim must be positive")
        for name, value, allowed in (("fusion", self.fusion, FUSIONS), ("gate", self.gate, GATE_KINDS),
                                     ("connector", self.connector, CONNECTORS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if isinstance(self.cross_attn_layers, str):
            if self.cross_attn_layers not in PLACEMENTS:
                raise ValueError(f"cross_attn_layers preset must be one of {PLACEMENTS} or a list of block indices")
        elif self.cross_attn_layers is not None:
            self.cross_attn_layers = sorted({int(i) for i in self.cross_attn_layers})

    def resolve_cross_attn_layers(self, depth: int) -> list[int]:
        """The CA block indices that exist in a trunk of `depth` blocks."""
        layers = self.cross_attn_layers
        count = depth // 2
        if layers is None or layers == "every_other":
            layers = list(range(1, depth, 2))
        elif layers == "early":
            layers = list(range(count))
        elif layers == "late":
            layers = list(range(depth - count, depth))
        elif layers == "middle":
            start = (depth - count) // 2
            layers = list(range(start, start + count))
        bad = [i for i in layers if i < 0]
        if bad:
            raise ValueError(f"cross_attn_layers must be >= 0, got {bad}")
        return [i for i in layers if i < depth]

    def variant(self) -> dict[str, Any]:
        """The fields that decide which trainable tensors exist: two models can share weights iff equal."""
        keys = ("fusion", "gate", "connector", "use_ffn", "ffn_mult", "cross_attn_layers",
                "cross_attn_heads", "cross_attn_head_dim", "text_dim")
        return {k: getattr(self, k) for k in keys}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SteerViTConfig":
        """Rebuild from `to_dict()` output, e.g. a `config.json` read from disk.

        Values are type-checked, never coerced: a file saying `"use_ffn": "false"` or
        `"image_size": 160.5` is an error naming the field, not a silent guess."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a SteerViT config must be a mapping of settings, got {_shown(data)}")
        types_ = _field_types()
        unknown = sorted(str(k) for k in set(data) - set(types_))
        if unknown:
            raise ValueError(f"unknown SteerViT config keys: {unknown}")
        for key, value in data.items():
            _check_type(key, value, types_[key])
        return cls(**dict(data))

    @classmethod
    def from_published(cls, config: Mapping[str, Any]) -> "SteerViTConfig":
        """Translate the published training config (`vision_encoder`, `text_encoder`, ...).

        Checked like `from_dict`: a downloaded `.pth` is no more trusted than a `config.json`."""
        if (not isinstance(config, Mapping) or not isinstance(config.get("vision_encoder"), Mapping)
                or "text_encoder" not in config):
            raise ValueError(
                "not a published SteerViT config: expected keys 'vision_encoder' (a mapping) and 'text_encoder'"
            )
        vision = config["vision_encoder"]
        text, text_field = config["text_encoder"], "text_encoder"
        if isinstance(text, Mapping):  # tolerate {"name": ...} style configs
            text_field = "text_encoder.name" if "name" in text else "text_encoder.model_name"
            text = text.get("name") or text.get("model_name")
        _check_type(text_field, text, str)

        def setting(key: str, kind: Any, default: Any = _REQUIRED) -> Any:
            if key not in vision:
                if default is _REQUIRED:
                    raise ValueError(f"published config has no 'vision_encoder.{key}'")
                return default
            return _check_type(f"vision_encoder.{key}", vision[key], kind)

        return cls(
            trunk=setting("model_name", str),
            image_size=setting("resolution", int, 336),
            text_encoder=text,
            cross_attn_layers=list(setting("cross_attn_layers", list[int], PUBLISHED_CROSS_ATTN_LAYERS)),
            use_ffn=setting("use_ffn", bool, False),
            ffn_mult=setting("cross_attn_ffn_mult", int, 2),
            pooling=setting("feature_aggregation", str, "cls"),
        )


_REQUIRED = object()


def user_fields() -> tuple[dataclasses.Field, ...]:
    """The fields whoever configures a model chooses: all but those filled in when it is built."""
    return tuple(f for f in dataclasses.fields(SteerViTConfig) if not f.metadata.get(FILLED_IN))


@functools.cache
def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(SteerViTConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(SteerViTConfig)}


def _check_type(field: str, value: Any, kind: Any) -> Any:
    """`value` if it is of type `kind` (as JSON would spell it), else a ValueError naming `field`.

    Stricter than `isinstance`: a bool is not an int, and a float or string is never taken for one."""
    if not _matches(value, kind):
        raise ValueError(f"config field {field!r} must be {_describe(kind)}, got {_shown(value)}")
    return value


def _matches(value: Any, kind: Any) -> bool:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return any(_matches(value, k) for k in typing.get_args(kind))
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        return isinstance(value, (list, tuple)) and all(_matches(v, item) for v in value)
    if kind is type(None):
        return value is None
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _describe(kind: Any) -> str:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return " or ".join(_describe(k) for k in typing.get_args(kind))
    if typing.get_origin(kind) is list:
        return "a list of " + _NAMES[typing.get_args(kind)[0]][1]
    return _NAMES[kind][0]


# How error messages name each type a config field can have: (one, many).
_NAMES = {int: ("an integer", "integers"), str: ("a string", "strings"),
          bool: ("a boolean (true or false)", "booleans"), type(None): ("null", "nulls")}


def _shown(value: Any) -> str:
    """A value as an error message shows it: its repr (cut short) and its type."""
    text = repr(value)
    return f"{text[:60] + '...' if len(text) > 60 else text} ({type(value).__name__})"
