"""LoRA fine-tuning through the `peft` library (`run_finetune.py --peft lora`).

The adapter goes on the attention projections (`--lora_target_modules`, by default the ones this model has: LiVT's
fused `qkv`, transformers ViT's `q_proj`/`v_proj`), and the classification head is trained in full (peft's
`modules_to_save`: the label space is new), with LiVT's `fc_norm` (a new layer on top of an MGP encoder). Everything
else stays frozen. The trained adapter saves as peft writes it (`adapter_config.json`, `adapter_model.safetensors`);
`export_merged` writes the adapter merged into the weights as a plain model folder.
"""

from __future__ import annotations

import copy
import logging
import os

from torch import nn

from .freezing import classification_heads, parameter_counts

logger = logging.getLogger(__name__)

# The attention projections that get an adapter by default, when the model has them: LiVT / DeiT-LT (fused qkv),
# transformers ViT / DeiT 5.x (q_proj, v_proj: the LoRA paper's W_q, W_v) and their 4.x names (query, value).
DEFAULT_LORA_TARGETS = (("qkv",), ("q_proj", "v_proj"), ("query", "value"))
# Top-level layers trained in full beside the heads when the model has them (new on top of a pretrained encoder)
EXTRA_TRAINED_MODULES = ("fc_norm",)
MERGED_DIR_NAME = "merged"


def _linear_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def _matches(name: str, target: str) -> bool:
    """peft's rule for a target name: the module's full name equals it or ends with `.target`."""
    return name == target or name.endswith("." + target)


def resolve_target_modules(model: nn.Module, requested: str | None, head_names=()) -> list[str]:
    """The module names LoRA adapts: `requested` (the comma list of `--lora_target_modules`; each must name at least
    one Linear layer outside the heads, else `ValueError` naming it), or the first group of `DEFAULT_LORA_TARGETS`
    the model has."""
    linears = [name for name in _linear_names(model)
               if not any(name == head or name.startswith(head + ".") for head in head_names)]
    if requested:
        targets = [name.strip() for name in requested.split(",") if name.strip()]
        missing = [target for target in targets if not any(_matches(name, target) for name in linears)]
        if missing:
            leaves = sorted({name.rsplit(".", 1)[-1] for name in linears})
            raise ValueError(
                f"--lora_target_modules {requested}: {type(model).__name__} has no Linear layer named "
                f"{', '.join(missing)} outside its classification head. Its Linear layers: {', '.join(leaves)}."
            )
        return targets
    for group in DEFAULT_LORA_TARGETS:
        if all(any(_matches(name, target) for name in linears) for target in group):
            return list(group)
    leaves = sorted({name.rsplit(".", 1)[-1] for name in linears})
    raise ValueError(
        f"--peft lora: {type(model).__name__} has none of the attention projections adapted by default "
        f"({'; '.join(','.join(group) for group in DEFAULT_LORA_TARGETS)}). Name them with --lora_target_modules "
        f"(its Linear layers: {', '.join(leaves)})."
    )


def trained_in_full(model: nn.Module) -> list[str]:
    """The top-level modules trained in full (peft `modules_to_save`): the classification heads, and `fc_norm`."""
    names = list(classification_heads(model))
    names += [name for name, _ in model.named_children() if name in EXTRA_TRAINED_MODULES]
    return names


def apply_lora(model: nn.Module, peft_args):
    """`model` wrapped as a `peft.PeftModel` with a LoRA adapter of `peft_args` (`PeftArguments`): only the adapter
    and the heads (`trained_in_full`) train."""
    from peft import LoraConfig, get_peft_model

    modules_to_save = trained_in_full(model)
    targets = resolve_target_modules(model, peft_args.lora_target_modules, modules_to_save)
    config = LoraConfig(
        r=peft_args.lora_r, lora_alpha=peft_args.lora_alpha, lora_dropout=peft_args.lora_dropout,
        target_modules=targets, modules_to_save=modules_to_save, bias="none",
    )
    peft_model = get_peft_model(model, config)
    trainable, total = parameter_counts(peft_model)
    logger.info("--peft lora: training %s of %s parameters (LoRA r=%s on %s; in full: %s)", f"{trainable:,}",
                f"{total:,}", peft_args.lora_r, ",".join(targets), ",".join(modules_to_save))
    return peft_model


def lora_recipe(peft_model, peft_args) -> dict[str, str]:
    """The model card's lines for the adapter: what was trained, with the parameter counts."""
    config = peft_model.peft_config[peft_model.active_adapter]
    trainable, total = parameter_counts(peft_model)
    return {
        "parameter-efficient fine-tuning": (
            f"LoRA (peft) r={config.r}, alpha={config.lora_alpha:g}, dropout={config.lora_dropout:g} on "
            f"{', '.join(sorted(config.target_modules))}; trained in full: {', '.join(config.modules_to_save)}"
        ),
        "trainable parameters": f"{trainable:,} of {total:,} ({100 * trainable / total:.2f}%)",
        "saved as": "a LoRA adapter (peft.PeftModel.from_pretrained(base_model, this folder))"
        + (f"; merged into the weights in {MERGED_DIR_NAME}/" if peft_args.merge_adapter else ""),
    }


def export_merged(peft_model, output_dir: str, image_processor=None) -> str:
    """Write `output_dir/merged/`: a copy of the model with the adapter merged into its weights (`merge_and_unload`),
    a plain folder (`from_pretrained`, `pipeline("image-classification")`), with the image processor. The trained
    PeftModel itself is left as it is. Returns the folder."""
    merged = copy.deepcopy(peft_model).merge_and_unload()
    folder = os.path.join(output_dir, MERGED_DIR_NAME)
    merged.save_pretrained(folder)
    if image_processor is not None:
        image_processor.save_pretrained(folder)
    logger.info("--merge_adapter: merged model written to %s", folder)
    return folder


__all__ = [
    "DEFAULT_LORA_TARGETS",
    "MERGED_DIR_NAME",
    "apply_lora",
    "export_merged",
    "lora_recipe",
    "resolve_target_modules",
    "trained_in_full",
]
