"""Classifier re-training (cRT, Kang et al. 2020): freeze a trained model's encoder and re-train its classification
head(s), usually with class-balanced sampling (`--freeze_encoder --sampler class_balanced`).

The head is the model's top-level classification layer(s): LiVT's `classifier`, DeiT-LT's `classifier` and
`distillation_classifier`, the CIFAR ResNet teacher's `linear`, transformers' `classifier` (ViT, ConvNeXt, ResNet...).
Everything else (LiVT's fc_norm included: it is part of the features) is frozen and held in eval mode while training,
so the head learns from exactly the features the model gives at inference (no drop path or dropout, BatchNorm
statistics kept); Trainer's `model.train()` at every step is undone by a forward pre-hook.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)

# Top-level module names of classification heads, in the models this package trains.
HEAD_MODULE_NAMES = ("classifier", "distillation_classifier", "linear", "fc", "head", "head_dist")


def classification_heads(model: nn.Module) -> dict[str, nn.Module]:
    """The model's classification head modules by name (top-level children named in `HEAD_MODULE_NAMES` that hold
    parameters); a ValueError when it has none."""
    heads = {
        name: module
        for name, module in model.named_children()
        if name in HEAD_MODULE_NAMES and any(True for _ in module.parameters())
    }
    if not heads:
        children = [name for name, _ in model.named_children()]
        raise ValueError(
            f"--freeze_encoder: {type(model).__name__} has no classification head among its top-level modules "
            f"{children} (looked for {list(HEAD_MODULE_NAMES)}). It re-trains the head of an image classifier; train "
            "the whole model instead (--freeze_encoder false)."
        )
    return heads


def _in_heads(name: str, head_names) -> bool:
    return any(name == head or name.startswith(head + ".") for head in head_names)


@torch.no_grad()
def reinitialize_heads(model: nn.Module, heads: dict[str, nn.Module]) -> None:
    """Give the heads fresh weights with the model's own initialisation (`_init_weights`, as a new head gets from
    `from_pretrained`), else PyTorch's `reset_parameters`."""
    init_weights = getattr(model, "_init_weights", None)
    for head in heads.values():
        for module in head.modules():
            for tensor in (*module.parameters(recurse=False), *module.buffers(recurse=False)):
                tensor._is_hf_initialized = False  # loaded tensors are flagged and skipped by transformers' init
            module._is_hf_initialized = False
            if init_weights is not None:
                init_weights(module)
            elif hasattr(module, "reset_parameters"):
                module.reset_parameters()


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters of a model, total without the frozen copies of the heads peft keeps
    (`original_module` of its `modules_to_save` wrappers): the parameters the model computes with."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for name, p in model.named_parameters() if ".original_module." not in name)
    return trainable, total


def freeze_encoder(model: nn.Module, reinit_head: bool = True) -> tuple[int, int]:
    """Freeze every parameter outside the classification head(s), optionally re-initialise the heads (cRT does), and
    keep the frozen modules in eval mode during training. Returns (trainable, total) parameter counts."""
    heads = classification_heads(model)
    for name, param in model.named_parameters():
        param.requires_grad_(_in_heads(name, heads))
    if reinit_head:
        reinitialize_heads(model, heads)
    frozen_modules = [module for name, module in model.named_modules() if name and not _in_heads(name, heads)]

    def keep_frozen_in_eval(module, args):
        if module.training:
            for frozen in frozen_modules:
                frozen.training = False  # the flag per module: .eval() would recurse into the heads

    model.register_forward_pre_hook(keep_frozen_in_eval)
    trainable, total = parameter_counts(model)
    logger.info(
        "--freeze_encoder: training %s of %s parameters (heads %s%s)", f"{trainable:,}", f"{total:,}",
        ", ".join(heads), ", re-initialised" if reinit_head else "",
    )
    return trainable, total
