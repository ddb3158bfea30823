"""`steervit convert`, `steervit info` and `steervit models`: checkpoints as files, what one holds, which
names are registered (and which files they pin)."""
from __future__ import annotations

import argparse
import math

from .options import add_model_options, model_from_args


def register(commands) -> None:
    p = commands.add_parser("convert", help="published .pth checkpoint -> this project's directory format")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="published .pth file")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--backbone-weights", metavar="FILE", help="local trunk state dict; needed offline")
    p.add_argument("--text-encoder", metavar="NAME_OR_DIR",
                   help="check the text encoder fits and record it in the config (optional)")
    p.set_defaults(func=cmd_convert)

    p = commands.add_parser("info", help="describe a checkpoint: trunk, text encoder, layers, gates, sizes")
    add_model_options(p, positional=True)
    p.set_defaults(func=cmd_info)

    p = commands.add_parser("models", help="the registered model names: source, pinned revision and sha256")
    p.set_defaults(func=cmd_models)



def cmd_convert(args: argparse.Namespace) -> int:
    """Published .pth -> config.json + model.safetensors (the trained tensors only)."""
    from ..model import SteerViT

    # The text encoder only supplies its width, which the connector weights already tell; load it only
    # when given, to check it fits and to record it in the converted config.
    model = SteerViT.from_pretrained(
        args.checkpoint, backbone_weights=args.backbone_weights, text_encoder=args.text_encoder or False
    )
    model.save_pretrained(args.out_dir)
    print(args.out_dir)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """What a checkpoint contains: trunk, text encoder, where the cross-attention sits, gate values, sizes."""
    model = model_from_args(args)

    def count(module) -> int:
        return 0 if module is None else sum(p.numel() for p in module.parameters())

    factor = model.gate_factor
    points = model.insertion_points()
    lines = [
        f"model:         {args.model}",
        f"trunk:         {model.config.trunk}",
        f"  family {model.family.name}: {model.family.description}",
        f"  width {model.feature_dim}, depth {len(model.trunk.blocks)}, patch size {model.patch_size}, "
        f"image size {model.image_size}, prefix tokens {model.num_prefix_tokens}, pooling {model.config.pooling}",
        f"text encoder:  {model.config.text_encoder} (width {model.config.text_dim})",
        f"cross-attention ({model.config.fusion} fusion): " + ", ".join(name for name, _ in points),
        "gates:" + (f" (effective = tanh({factor:g} * raw) at --gate-factor {factor:g})" if factor != 1.0 else ""),
    ]
    for where, layer in points:
        for name in ("attn_gate", "ff_gate"):
            gate = getattr(layer, name, None)
            if gate is None:
                continue
            raw = float(gate.detach().reshape(-1)[0])
            line = f"  {where} {name}: raw {raw:.4f}  tanh {math.tanh(raw):.4f}"
            if factor != 1.0:
                line += f"  effective {math.tanh(factor * raw):.4f}"
            lines.append(line)
    ca, connector, head = count(model.cross_attn_layers), count(model.connector), count(model.seg_head)
    lines += [
        "parameters:",
        f"  trainable:    {ca + connector + head:,} (cross-attention {ca:,}, connector {connector:,}, head {head:,})",
        f"  frozen trunk: {count(model.trunk):,}",
        f"  text encoder: {count(model.text_encoder):,}" + ("" if model.text_encoder else " (not loaded)"),
    ]
    print("\n".join(lines))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """Every registered name with where it comes from and the revision and sha256 it pins ("unknown"
    where the registry does not know them). Hub repos (org/repo) load too but are not listed here."""
    from ..pretrained import DEFAULT_MODEL, REGISTRY

    lines = []
    for entry in REGISTRY.values():
        lines += [entry.name + ("  (default)" if entry.name == DEFAULT_MODEL else ""),
                  f"  {entry.description}",
                  f"  source:   {entry.source}",
                  f"  revision: {entry.shown_revision}",
                  f"  sha256:   {entry.shown_sha256}"]
    print("\n".join(lines))
    return 0
