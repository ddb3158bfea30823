"""AdamW over exactly the adapter: connector, cross-attention layers (norms and gates included), head.

Groups follow the recipe (reference §4): weight decay 0.01 on the connector, 0.1 on the CA layers and
the head. The scalar tanh gates sit in their own group only so that they can get a larger rate
(`gate_lr_mult`); their decay is the CA layers'. Nothing of the trunk or text encoder is handed to
the optimiser, so nothing of theirs can move.
"""
from __future__ import annotations

import torch

GATE_NAMES = ("attn_gate", "ff_gate")


def is_gate(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in GATE_NAMES


def param_groups(model, optim_cfg) -> list[dict]:
    """Named groups over `model.trainable_parameters()`; every trainable tensor in exactly one."""
    connector, body, gates = [], [], []
    for name, p in model.trainable_parameters().items():
        if name.startswith("connector."):
            connector.append(p)
        elif is_gate(name):
            gates.append(p)
        else:
            body.append(p)
    groups = [
        {"name": "connector", "params": connector, "weight_decay": optim_cfg.connector_weight_decay,
         "lr": optim_cfg.lr},
        {"name": "cross_attn_and_head", "params": body, "weight_decay": optim_cfg.weight_decay,
         "lr": optim_cfg.lr},
        {"name": "gates", "params": gates, "weight_decay": optim_cfg.weight_decay,
         "lr": optim_cfg.lr * optim_cfg.gate_lr_mult},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model, optim_cfg) -> torch.optim.AdamW:
    for p in model.trainable_parameters().values():
        p.requires_grad_(True)
    return torch.optim.AdamW(
        param_groups(model, optim_cfg), lr=optim_cfg.lr, betas=tuple(optim_cfg.betas), eps=optim_cfg.eps
    )
