"""Stage 1 of LiVT: masked generative pretraining with AdamW (0.9, 0.95) and the MAE lr rule, the reconstruction grid
drawn at the end of it, and the model and flag checks of scripts/run_mgp.py."""

from __future__ import annotations

import itertools
import logging
import os

import numpy as np
import torch
from datasets import IterableDataset
from transformers import PreTrainedConfig, Trainer

from modeling_livt.data.transforms import EvalTransform
from modeling_livt.evaluation.plots import mgp_reconstruction_grid, plot_mgp_reconstructions
from modeling_livt.models.configuration_livt import LiVTConfig
from modeling_livt.models.modeling_livt import LiVTForMaskedImageModeling

from .arguments import refuse_flags
from .base import LongTailTrainerMixin
from .script_builder import CHECKPOINT_WEIGHT_FIELDS, MGP_DECODER_WEIGHT_FIELDS, checkpoint_config_changes
from .workflow import build_config

logger = logging.getLogger(__name__)

RECONSTRUCTIONS_FILE = "mgp_reconstructions.png"


class MGPTrainer(LongTailTrainerMixin, Trainer):
    """`Trainer` for `LiVTForMaskedImageModeling` (or any model returning an MGP/MAE loss).

    Chooses: lr = base_lr * effective batch / 256 (`--base_learning_rate`: `LongTailTrainingArguments`), AdamW with
    the betas of the arguments (`MGPTrainingArguments` defaults to (0.9, 0.95)), weight decay 0.05 except biases,
    norms, tokens and position embeddings, warmup + cosine per step. Labels in the batch are ignored by the model.
    """


def reconstruction_images(prepared, num_images: int) -> tuple[torch.Tensor | None, str]:
    """`[n, 3, H, W]` real images through the eval transform (the saved image processor), and the split's name.

    The validation split when there is one, else the training split without augmentation; map-style splits give
    evenly spaced examples (splits are often sorted by class), streamed ones their first images. Unreadable images
    are skipped."""
    data = prepared.data
    split, name = (data.validation, "validation") if data.validation is not None else (data.train, "train")
    if split is None or num_images <= 0:
        return None, name
    if isinstance(split, IterableDataset):
        examples = itertools.islice(iter(split), 4 * num_images)
    else:
        indices = np.unique(np.linspace(0, len(split) - 1, num=min(num_images, len(split))).round().astype(int))
        examples = (split[int(i)] for i in indices)
    transform = EvalTransform(prepared.image_processor)
    images = []
    for example in examples:
        try:
            images.append(transform(example[data.image_column]))
        except Exception as error:  # a corrupt image must not cost the run its picture
            logger.warning("reconstruction grid: skipping an unreadable image (%s)", error)
        if len(images) == num_images:
            break
    return (torch.stack(images), name) if images else (None, name)


def save_reconstructions(model, prepared, output_dir, num_images: int, seed: int = 0, write: bool = True) -> str | None:
    """Draw `mgp_reconstructions.png` in `output_dir`: `num_images` validation images (training images through the
    eval transform without a validation split), one row each: original / masked input / reconstruction /
    reconstruction with the visible patches pasted back in. Returns its path, or None when no image was readable.
    `write=False` runs the model and writes nothing (the other processes of an FSDP run, whose shards the forward
    pass gathers)."""
    pixel_values, split_name = reconstruction_images(prepared, num_images)
    if pixel_values is None:
        logger.warning("reconstruction grid: no image in the %s split, nothing drawn", split_name)
        return None
    grid = mgp_reconstruction_grid(
        model, pixel_values, image_mean=prepared.mean, image_std=prepared.std, seed=seed
    )
    if not write:
        return None
    path = plot_mgp_reconstructions(
        grid, os.path.join(output_dir, RECONSTRUCTIONS_FILE),
        title=f"MGP reconstructions ({split_name}, mask ratio {model.config.mask_ratio:g}, "
        f"loss {float(grid['loss']):.3f})",
    )
    logger.info("MGP reconstructions of %d %s images written to %s", pixel_values.shape[0], split_name, path)
    return path


# ---------------------------------------------------------------------------------------------------------------------
# The model of scripts/run_mgp.py
# ---------------------------------------------------------------------------------------------------------------------
# Fine-tuning augmentation that MGP does not use: its transform is MAE's (random resized crop + flip), unmixed.
FINETUNE_AUGMENTATION_FLAGS = ("mixup", "cutmix", "mixup_switch_prob", "mixup_prob", "label_smoothing", "rand_augment",
                               "auto_augment", "random_erasing")


def check_mgp_flags(model_args, aug_args) -> None:
    """Refuse the flags of the shared argument dataclasses that MGP cannot honour (`ValueError` naming them): the
    classification loss (MGP has none) and the fine-tuning augmentation given at other values than their defaults."""
    given = [f"--{name} {getattr(model_args, name)}" for name in ("loss_type", "bal_tau")
             if getattr(model_args, name) is not None]
    if given:
        raise ValueError(
            f"{', '.join(given)}: MGP's loss is the masked-patch reconstruction, it has no classification loss. Give "
            "the loss to the fine-tuning (scripts/run_finetune.py --loss_type/--bal_tau)."
        )
    refuse_flags(
        aug_args, FINETUNE_AUGMENTATION_FLAGS,
        "MGP trains on MAE's transform (random resized crop + horizontal flip), without mixing, RandAugment, label "
        "smoothing or erasing; these are fine-tuning flags (scripts/run_finetune.py). Of the augmentation flags, MGP "
        "takes --normalization.",
    )


def build_mgp_model(model_args) -> LiVTForMaskedImageModeling:
    """The model to pretrain: from `--config_name` and the model flags, or `--model_name_or_path` with the explicit
    model flags applied on top of its config: `--mask_ratio`, `--drop_path_rate`, `--attn_implementation`,
    `--image_size` (position embeddings resized) and `--config_overrides` of fields that keep the weights
    (`script_builder.checkpoint_config_changes` refuses the others, and `--patch_size` or `--config_name` changes)."""
    if not model_args.model_name_or_path:
        return LiVTForMaskedImageModeling(build_config(model_args, mask_ratio=model_args.mask_ratio))
    checkpoint_config = PreTrainedConfig.get_config_dict(model_args.model_name_or_path)[0]
    kwargs = checkpoint_config_changes(model_args, checkpoint_config, LiVTConfig,
                                       CHECKPOINT_WEIGHT_FIELDS + MGP_DECODER_WEIGHT_FIELDS)
    for name in ("mask_ratio", "drop_path_rate", "attn_implementation"):
        if getattr(model_args, name) is not None:
            kwargs[name] = getattr(model_args, name)
    model = LiVTForMaskedImageModeling.from_pretrained(model_args.model_name_or_path, **kwargs)
    model.config.validate_fields()  # the values set on top of the checkpoint's config
    return model
