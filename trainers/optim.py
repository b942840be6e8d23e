"""Optimizer parameter groups, learning-rate rules and the optimizer (`--optim`) shared by the trainers (MAE / LiVT /
DeiT recipes)."""

from __future__ import annotations

import glob
import re

import torch
from timm.optim import param_groups_layer_decay, param_groups_weight_decay
from torch import nn
from transformers import Trainer, TrainingArguments

from modeling_livt.models.modeling_vit import vit_group_matcher

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


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float | None = None) -> list[dict]:
    """AdamW parameter groups with MAE's `param_groups_lrd` semantics, built by timm's `param_groups_weight_decay` /
    `param_groups_layer_decay` with our weight-decay exclusions (`uses_weight_decay`).

    With `layer_decay`, each group's `lr_scale` is decay ** (num_layers + 1 - layer_id) (embeddings and tokens 0,
    block i -> i + 1, final norms and heads num_layers + 1, from the model's `group_matcher`); the trainers multiply
    the learning rate by it (schedulers scale each group's initial lr, so the decay survives warmup and cosine).
    """
    # exact names as fnmatch patterns (timm matches the list with fnmatch): escape their glob characters
    no_decay = [glob.escape(name) for name, param in model.named_parameters() if not uses_weight_decay(name, param)]
    if layer_decay is None or layer_decay == 1.0:
        groups = param_groups_weight_decay(model, weight_decay, no_weight_decay_list=no_decay)
        for group in groups:
            group["lr_scale"] = 1.0
        return groups
    if not _has_vit_layers(model):
        raise ValueError(
            f"layer_decay={layer_decay} needs a LiVT/DeiT-LT ViT (blocks under `.layers.N.`); "
            f"{type(model).__name__} has none. Pass --layer_decay 1.0 for other architectures."
        )
    if not hasattr(model, "group_matcher"):  # e.g. transformers' ViT (`vit.embeddings.`, `vit.layers.N.`), PEFT-wrapped
        model = _NamedParametersWithOurMatcher(model)
    return param_groups_layer_decay(model, weight_decay, no_weight_decay_list=no_decay, layer_decay=layer_decay)


class _NamedParametersWithOurMatcher:
    """What `param_groups_layer_decay` reads of a model (`named_parameters`, `group_matcher`), for a model without a
    `group_matcher` of its own: our ViTs' name rule, which fits any ViT naming its blocks `layers.N`."""

    def __init__(self, model: nn.Module):
        self.named_parameters = model.named_parameters

    def group_matcher(self, coarse: bool = False) -> dict:
        return vit_group_matcher(coarse)


def _has_vit_layers(model: nn.Module) -> bool:
    return any(re.search(r"\.layers\.\d+\.", name) for name, _ in model.named_parameters())


# ---------------------------------------------------------------------------------------------------------------------
# `--optim`: Trainer's own optimizer choice, applied to our parameter groups
# ---------------------------------------------------------------------------------------------------------------------
# The `--optim` values whose optimizer takes our parameter groups as they are (per-group weight decay and learning
# rate) with torch and transformers alone. The others need extra packages (bitsandbytes, torchao, schedulefree, ...),
# build their own groups or hooks (GaLore, APOLLO, LOMO, layer-wise kinds) or a device of their own (XLA, NPU).
GROUPED_OPTIMIZERS = ("adamw_torch_fused", "adamw_torch", "sgd", "adagrad", "rmsprop", "adafactor")
# What runs when `--optim` is left at TrainingArguments' default (adamw_torch_fused; adamw_torch before torch 2.8):
# our fused AdamW, with the betas and epsilon of the arguments.
OUR_ADAMW_OPTIMIZERS = ("adamw_torch_fused", getattr(TrainingArguments, "default_optim", "adamw_torch_fused"))


def optimizer_name(args) -> str:
    """`args.optim` as a plain string (TrainingArguments turns it into an `OptimizerNames` member)."""
    optim = getattr(args, "optim", OUR_ADAMW_OPTIMIZERS[0])
    return str(getattr(optim, "value", optim))


def uses_our_adamw(args) -> bool:
    """Whether `--optim` is left at the default (or names fused AdamW): our fused AdamW runs."""
    return optimizer_name(args) in OUR_ADAMW_OPTIMIZERS


def check_optimizer_choice(args) -> None:
    """Refuse at start-up an `--optim` whose optimizer cannot take our parameter groups: `ValueError` naming the flag
    and the values that work."""
    name = optimizer_name(args)
    if name not in GROUPED_OPTIMIZERS:
        raise ValueError(
            f"--optim {name} is not supported here: the trainers build their own parameter groups (no weight decay on "
            "biases, norms, tokens and position embeddings; layer-wise lr decay), and that optimizer "
            "cannot take them as they are (it needs an extra package, groups or hooks of its own, or another device). "
            f"Use one of: {', '.join(GROUPED_OPTIMIZERS)} (default {OUR_ADAMW_OPTIMIZERS[0]}: fused AdamW)."
        )


def build_optimizer(model: nn.Module, args, optimizer_cls_and_kwargs=None) -> torch.optim.Optimizer:
    """The optimizer of `model` over `param_groups` (weight-decay exclusions, `--layer_decay` lr scales).

    `--optim` left at its default: AdamW (fused on CPU/CUDA) with `adam_beta1/2` and `adam_epsilon`. Any other
    value of `GROUPED_OPTIMIZERS`: the class and arguments `Trainer.get_optimizer_cls_and_kwargs` chooses for it
    (with `--optim_args`), or those given to the trainer as `optimizer_cls_and_kwargs`, built on the same groups."""
    groups = param_groups(model, args.weight_decay, getattr(args, "layer_decay", None))
    for group in groups:
        group["lr"] = args.learning_rate * group.pop("lr_scale")
    if optimizer_cls_and_kwargs is None and uses_our_adamw(args):
        # fused: one kernel for all parameters (5.6x faster optimizer step on CPU for 78M parameters, bench/)
        fused = args.device.type in ("cpu", "cuda")
        return torch.optim.AdamW(
            groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon,
            fused=fused,
        )
    if optimizer_cls_and_kwargs is None:
        check_optimizer_choice(args)
        optimizer_cls_and_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    optimizer_cls, kwargs = optimizer_cls_and_kwargs
    kwargs = dict(kwargs)
    own = sorted(set(kwargs) & {"params", "model", "optimizer_dict"})
    if own:
        raise ValueError(
            f"--optim {optimizer_name(args)}: its optimizer brings its own parameters ({', '.join(own)}) instead of "
            f"taking our parameter groups; use one of {', '.join(GROUPED_OPTIMIZERS)}."
        )
    return optimizer_cls(groups, **kwargs)
