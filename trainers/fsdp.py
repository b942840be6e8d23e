"""FSDP (torch's `fully_shard`, "FSDP2", through accelerate) for our trainers: what is honoured and what is refused.

Switched on by Trainer's own flags (`--fsdp`, `--fsdp_config FILE.json`) or by an accelerate config with
`distributed_type: FSDP`. What our trainers add to accelerate's FSDP2:

* a request accelerate did not honour is refused (on CPU accelerate keeps the FSDP plugin only for GPU-like devices
  and trains plain DDP instead, silently);
* FSDP1, a sharded state dict (the saved folder would have no `model.safetensors`), `--model_ema` (the EMA copies
  the weights of one process) and trainers that say they are untested under FSDP are refused;
* the default auto-wrap units are the model's `_no_split_modules` less any that hold the input (patch) embeddings:
  accelerate shards the input embeddings as a unit of their own, which fails on a parameter that an enclosing unit
  (our `LongTailViTEmbeddings`) already sharded;
* saves go through the model's own class: `fully_shard` swaps it for a generated `FSDP<Class>` whose module is
  torch's, which `save_pretrained` would record in `auto_map` and copy torch's files for (see `plain_model_class`).
"""

from __future__ import annotations

import contextlib
import logging
import os

logger = logging.getLogger(__name__)

FSDP_ENV = "ACCELERATE_USE_FSDP"  # what `accelerate launch --use_fsdp` / a `distributed_type: FSDP` config sets


def fsdp_requested(args) -> bool:
    """True when this run asked for FSDP: `--fsdp` (TrainingArguments) or accelerate's launcher/config."""
    return bool(getattr(args, "fsdp", None)) or os.environ.get(FSDP_ENV, "false").lower() == "true"


def check_fsdp(trainer) -> None:
    """Refuse (`ValueError` naming the flag) an FSDP request this run cannot honour; set the default auto-wrap units.
    Called once the trainer's accelerator exists (end of `Trainer.__init__`)."""
    args = trainer.args
    enabled = getattr(trainer, "is_fsdp_enabled", False)
    if fsdp_requested(args) and not enabled:
        raise ValueError(
            f"--fsdp (or an accelerate config with distributed_type: FSDP): accelerate did not turn FSDP on for this "
            f"run (distributed type {trainer.accelerator.distributed_type}), so it would train without sharding. On "
            "CPU, accelerate keeps the FSDP plugin only for GPU-like devices (accelerate/state.py, "
            "AcceleratorState.__init__) and falls back to DDP. Drop --fsdp on CPU (DDP: accelerate launch "
            "--multi_gpu --num_processes N ...), or run on GPUs."
        )
    if not enabled:
        return
    plugin = trainer.accelerator.state.fsdp_plugin
    if getattr(plugin, "fsdp_version", 1) != 2:
        raise ValueError(
            "FSDP version 1 (fsdp_config version 1 / accelerate fsdp_version: 1) is not supported by these trainers: "
            "use FSDP2 (fsdp_config {\"version\": 2}, the default of --fsdp; accelerate config fsdp_version: 2)."
        )
    if "FULL_STATE_DICT" not in str(plugin.state_dict_type):
        raise ValueError(
            f"FSDP state_dict_type {plugin.state_dict_type}: the saved folder needs the full weights "
            "(model.safetensors, as a single-process run writes). Use FULL_STATE_DICT (fsdp_config "
            "{\"state_dict_type\": \"FULL_STATE_DICT\"}, the default of --fsdp; accelerate config "
            "fsdp_state_dict_type: FULL_STATE_DICT)."
        )
    if getattr(args, "model_ema", False):
        raise ValueError(
            "--model_ema true with FSDP: the EMA would copy one process's shard of the weights. Drop --model_ema "
            "(or train with DDP: accelerate launch --multi_gpu)."
        )
    if hasattr(trainer.model, "peft_config"):
        raise ValueError("--peft lora with FSDP is not supported here (the merged export runs on the main process "
                         "only): drop --fsdp, or fine-tune in full.")
    refusal = getattr(trainer, "fsdp_refusal", None)
    if refusal:
        raise ValueError(f"FSDP (--fsdp / distributed_type: FSDP): {refusal}")
    set_default_wrap_units(plugin, trainer.accelerator.unwrap_model(trainer.model))


def set_default_wrap_units(plugin, model) -> None:
    """With accelerate's transformer-based auto-wrap and no classes named (`transformer_layer_cls_to_wrap`), wrap
    the model's `_no_split_modules` less those holding its input embeddings (which accelerate shards on their own)."""
    from accelerate.utils.constants import FSDP_AUTO_WRAP_POLICY

    policy = plugin.auto_wrap_policy
    transformer_based = policy == FSDP_AUTO_WRAP_POLICY[0] or getattr(policy, "__name__", "") == (
        "transformer_auto_wrap_policy")
    names = getattr(model, "_no_split_modules", None)
    if not transformer_based or plugin.transformer_cls_names_to_wrap is not None or not names:
        return
    get_embeddings = getattr(model, "get_input_embeddings", None)
    embeddings = get_embeddings() if callable(get_embeddings) else None
    holders = {type(module).__name__ for module in model.modules()
               if embeddings is not None and module is not embeddings
               and any(sub is embeddings for sub in module.modules())}
    present = {type(module).__name__ for module in model.modules()}
    units = [name for name in names if name in present and name not in holders]
    plugin.transformer_cls_names_to_wrap = units
    logger.info("FSDP auto-wrap units: %s (the input embeddings are a unit of their own)", ", ".join(units))


@contextlib.contextmanager
def plain_model_class(model):
    """Within the block, `model` (sharded by `fully_shard`) has its own class again, not the generated
    `FSDP<Class>`: `save_pretrained` then records and copies the model's code, not torch's."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch without FSDP2
        yield model
        return
    sharded_class = type(model)
    if not isinstance(model, FSDPModule):
        yield model
        return
    model.__class__ = next(cls for cls in sharded_class.__mro__ if not issubclass(cls, FSDPModule))
    try:
        yield model
    finally:
        model.__class__ = sharded_class
