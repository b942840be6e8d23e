#!/usr/bin/env python
"""LiVT stage 1: masked generative pretraining (MAE) on the long-tailed training split.

    python scripts/run_mgp.py --dataset_name digits --imbalance_factor 10 --config_name tiny \
        --image_size 32 --patch_size 4 --output_dir outputs/mgp --num_train_epochs 100
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _cli import parse_args, setup_logging  # noqa: E402
from transformers import set_seed  # noqa: E402

from modeling_livt import LiVTForMaskedImageModeling  # noqa: E402
from modeling_livt.data import DataArguments  # noqa: E402
from trainers import AugmentationArguments, MGPTrainer, MGPTrainingArguments, ModelArguments  # noqa: E402
from trainers.workflow import build_config, prepare_data, resolve_resume_checkpoint  # noqa: E402


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
    if training_args.push_to_hub:
        trainer.push_to_hub()
    return train_result.metrics


if __name__ == "__main__":
    main()
