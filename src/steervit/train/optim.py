"""AdamW over exactly the adapter: connector, cross-attention layers (norms and gates included), head.

Groups follow the recipe (reference §4): weight decay 0.01 on the connector, 0.1 on the CA layers and
the head. The scalar tanh gates sit in their own group only so that they can get a larger rate
(`gate_lr_mult`); their decay is the CA layers'. Nothing of the trunk or text encoder is handed to
the optimiser, so nothing of theirs can move.

`seg_head.bias` is kept (checkpoints and saved models carry it) but never trained: the loss is a
softmax over patches, and adding one number to every logit changes no probability, so its true
gradient is zero. What backward returns is ~1e-8 of float noise, which AdamW normalises into steps
of the full learning rate: a random walk that differs between CPUs and breaks exact resume.
"""
from __future__ import annotations

import torch

GATE_NAMES = ("attn_gate", "ff_gate")
# Adapter tensors the loss cannot move (see above): saved and loaded, frozen at their initial value.
NOT_TRAINED = ("seg_head.bias",)


def is_gate(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in GATE_NAMES


def trained_parameters(model) -> dict[str, torch.nn.Parameter]:
    """`model.trainable_parameters()` less `NOT_TRAINED`: what the optimiser updates."""
    return {n: p for n, p in model.trainable_parameters().items() if n not in NOT_TRAINED}


def param_groups(model, optim_cfg) -> list[dict]:
    """Named groups over `trained_parameters(model)`; every trained tensor in exactly one."""
    connector, body, gates = [], [], []
    for name, p in trained_parameters(model).items():
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
    """AdamW over the trained tensors; the `NOT_TRAINED` ones stop requiring a gradient."""
    trained = trained_parameters(model)
    for name, p in model.trainable_parameters().items():
        p.requires_grad_(name in trained)
    return torch.optim.AdamW(
        param_groups(model, optim_cfg), lr=optim_cfg.lr, betas=tuple(optim_cfg.betas), eps=optim_cfg.eps
    )
