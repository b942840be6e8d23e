#!/usr/bin/env python
"""LiVT stage 1: masked generative pretraining (MAE) on the long-tailed training split.

At the end it draws `mgp_reconstructions.png` in the output dir: a few validation images (training images through
the eval transform when there is no validation split), one row each: original / masked input / reconstruction /
reconstruction with the visible patches pasted back in (`--num_reconstruction_images`, 0 = none).

With `--model_name_or_path` (go on from a checkpoint) the explicit model flags apply on top of its config:
`--mask_ratio`, `--drop_path_rate`, `--attn_implementation`, `--image_size` (position embeddings resized) and
`--config_overrides` of fields that keep its weights; a flag that would change them (`--patch_size`, sizes, depths,
heads) is refused, as are the fine-tuning flags MGP cannot honour (`--loss_type`, `--bal_tau`, mixing/RandAugment/
erasing/smoothing).

    python scripts/run_mgp.py --dataset_name digits --imbalance_factor 10 --config_name tiny \
        --image_size 32 --patch_size 4 --output_dir outputs/mgp --num_train_epochs 100
"""

from transformers import set_seed

from trainers import AugmentationArguments, MGPTrainer, MGPTrainingArguments, ModelArguments
from trainers.arguments import DataArguments, check_training_flags, refuse_flags
from trainers.cli import parse_args, setup_logging
from trainers.mgp import build_mgp_model, check_mgp_flags, save_reconstructions
from trainers.optim import check_optimizer_choice
from trainers.workflow import PreparedData, prepare_data, push_and_end, train_and_save

ARGUMENT_TYPES = (ModelArguments, DataArguments, AugmentationArguments, MGPTrainingArguments)


def build_trainer(argv=None) -> tuple[MGPTrainer, PreparedData]:
    """Everything before training: the arguments of `argv` (checked before any data is loaded), the model, the data
    and the trainer."""
    model_args, data_args, aug_args, training_args = parse_args(ARGUMENT_TYPES, argv)
    check_mgp_flags(model_args, aug_args)
    check_training_flags(training_args)
    check_optimizer_choice(training_args)
    refuse_flags(training_args, ["remove_unused_columns"],
                 "MGP's transform reads the image column, which Trainer would drop first (MGPTrainer needs "
                 "--remove_unused_columns false, the default here). Drop the flag.")
    setup_logging(training_args)
    set_seed(training_args.seed)

    model = build_mgp_model(model_args)
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
        data_collator=prepared.train_collator,  # the plain image collator: MGP mixes no images
        processing_class=prepared.image_processor,
    )
    return trainer, prepared


def main(argv=None) -> dict:
    """Pretrain with `argv` (default: the command line; or one .json file); returns the training metrics."""
    trainer, prepared = build_trainer(argv)
    training_args = trainer.args
    train_metrics = train_and_save(trainer, training_args)
    # under FSDP every process runs the model (its forward pass gathers each process's shard); the main one draws
    if training_args.num_reconstruction_images > 0 and (trainer.is_world_process_zero() or trainer.is_fsdp_enabled):
        save_reconstructions(
            trainer.model, prepared, training_args.output_dir, training_args.num_reconstruction_images,
            seed=training_args.seed, write=trainer.is_world_process_zero(),
        )
    push_and_end(trainer, training_args)
    return train_metrics


if __name__ == "__main__":
    main()
