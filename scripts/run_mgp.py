#!/usr/bin/env python
"""LiVT stage 1: masked generative pretraining (MAE) on the long-tailed training split.

At the end it draws `mgp_reconstructions.png` in the output dir: a few validation images (training images through
the eval transform when there is no validation split), one row each: original / masked input / reconstruction /
reconstruction with the visible patches pasted back in (`--num_reconstruction_images`, 0 = none).

    python scripts/run_mgp.py --dataset_name digits --imbalance_factor 10 --config_name tiny \
        --image_size 32 --patch_size 4 --output_dir outputs/mgp --num_train_epochs 100
"""

import itertools
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _cli import parse_args, setup_logging  # noqa: E402
from datasets import IterableDataset  # noqa: E402
from transformers import set_seed  # noqa: E402

from modeling_livt import LiVTForMaskedImageModeling  # noqa: E402
from modeling_livt.data.loading import DataArguments  # noqa: E402
from modeling_livt.data.transforms import EvalTransform  # noqa: E402
from modeling_livt.evaluation.plots import mgp_reconstruction_grid, plot_mgp_reconstructions  # noqa: E402
from trainers import AugmentationArguments, MGPTrainer, MGPTrainingArguments, ModelArguments  # noqa: E402
from trainers.workflow import build_config, prepare_data, resolve_resume_checkpoint  # noqa: E402

logger = logging.getLogger(__name__)

RECONSTRUCTIONS_FILE = "mgp_reconstructions.png"


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


def save_reconstructions(model, prepared, output_dir, num_images: int, seed: int = 0) -> str | None:
    """Draw `mgp_reconstructions.png` in `output_dir` (see the module docstring); returns its path or None."""
    pixel_values, split_name = reconstruction_images(prepared, num_images)
    if pixel_values is None:
        logger.warning("reconstruction grid: no image in the %s split, nothing drawn", split_name)
        return None
    grid = mgp_reconstruction_grid(
        model, pixel_values, image_mean=prepared.mean, image_std=prepared.std, seed=seed
    )
    path = plot_mgp_reconstructions(
        grid, os.path.join(output_dir, RECONSTRUCTIONS_FILE),
        title=f"MGP reconstructions ({split_name}, mask ratio {model.config.mask_ratio:g}, "
        f"loss {float(grid['loss']):.3f})",
    )
    logger.info("MGP reconstructions of %d %s images written to %s", pixel_values.shape[0], split_name, path)
    return path


def main(argv=None):
    model_args, data_args, aug_args, training_args = parse_args(
        (ModelArguments, DataArguments, AugmentationArguments, MGPTrainingArguments), argv
    )
    training_args.remove_unused_columns = False
    setup_logging(training_args)
    set_seed(training_args.seed)

    if model_args.model_name_or_path:
        model = LiVTForMaskedImageModeling.from_pretrained(model_args.model_name_or_path)
    else:
        config = build_config(model_args, mask_ratio=model_args.mask_ratio)
        if model_args.attn_implementation:
            config._attn_implementation = model_args.attn_implementation
        model = LiVTForMaskedImageModeling(config)
    prepared = prepare_data(data_args, aug_args, training_args, model.config.image_size, stage="mgp")
    # the prior travels with the checkpoint, so fine-tuning and its card know the training split
    model.config.class_counts = prepared.data.class_counts
    model.config.num_labels = prepared.data.num_classes
    model.config.id2label, model.config.label2id = prepared.data.id2label, prepared.data.label2id

    trainer = MGPTrainer(
        model=model,
        args=training_args,
        train_dataset=prepared.train,
        eval_dataset=prepared.validation if training_args.eval_strategy != "no" else None,
        data_collator=prepared.eval_collator,
        processing_class=prepared.image_processor,
    )
    train_result = trainer.train(resume_from_checkpoint=resolve_resume_checkpoint(training_args))
    trainer.save_model()
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()
    if training_args.num_reconstruction_images > 0 and trainer.is_world_process_zero():
        save_reconstructions(
            trainer.model, prepared, training_args.output_dir, training_args.num_reconstruction_images,
            seed=training_args.seed,
        )
    if training_args.push_to_hub:
        trainer.push_to_hub()
    trainer.end()  # destroys the DDP process group (Trainer never does): no rank exits with it alive
    return train_result.metrics


if __name__ == "__main__":
    main()
