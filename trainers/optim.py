"""Optimizer parameter groups and learning-rate rules shared by the trainers (MAE / LiVT / DeiT recipes)."""

from __future__ import annotations

import re

from torch import nn

# Tokens and position embeddings are never weight-decayed (MAE/DeiT `no_weight_decay`).
NO_DECAY_NAME_PATTERN = re.compile(
    r"(cls_token|distillation_token|dist_token|mask_token|position_embeddings|pos_embed)"
)


def scaled_learning_rate(base_learning_rate: float, effective_batch_size: int) -> float:
    """MAE's linear scaling rule: lr = base_lr * effective batch / 256."""
    return base_learning_rate * effective_batch_size / 256


def uses_weight_decay(name: str, param: nn.Parameter) -> bool:
    """No decay on biases, norms (all 1-D tensors), tokens and position embeddings."""
    return param.ndim > 1 and not name.endswith(".bias") and not NO_DECAY_NAME_PATTERN.search(name)


def vit_layer_id(name: str, num_layers: int) -> int | None:
    """Layer index for layer-wise lr decay: 0 for embeddings and tokens, i + 1 for block i, num_layers + 1 for the
    head and final norms. None when the name is not from one of our ViTs (LiVT / DeiT-LT)."""
    if ".embeddings." in name or name.split(".")[-1] in ("cls_token", "distillation_token"):
        return 0
    match = re.search(r"\.layers\.(\d+)\.", name)
    if match:
        return int(match.group(1)) + 1
    return num_layers + 1


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float | None = None) -> list[dict]:
    """AdamW parameter groups with MAE's `param_groups_lrd` semantics.

    With `layer_decay`, each group's `lr_scale` is decay ** (num_layers + 1 - layer_id); the trainers multiply the
    learning rate by it (schedulers scale each group's initial lr, so the decay survives warmup and cosine).
    """
    num_layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    if layer_decay is not None and layer_decay != 1.0 and not _has_vit_layers(model):
        raise ValueError(
            f"layer_decay={layer_decay} needs a LiVT/DeiT-LT ViT (blocks under `.layers.N.`); "
            f"{type(model).__name__} has none. Pass --layer_decay 1.0 for other architectures."
        )
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = uses_weight_decay(name, param)
        layer_id = vit_layer_id(name, num_layers) if layer_decay not in (None, 1.0) else 0
        scale = layer_decay ** (num_layers + 1 - layer_id) if layer_decay not in (None, 1.0) else 1.0
        group = groups.setdefault(
            (layer_id, decay), {"params": [], "weight_decay": weight_decay if decay else 0.0, "lr_scale": scale}
        )
        group["params"].append(param)
    return list(groups.values())


def _has_vit_layers(model: nn.Module) -> bool:
    return any(re.search(r"\.layers\.\d+\.", name) for name, _ in model.named_parameters())
