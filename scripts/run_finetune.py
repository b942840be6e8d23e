#!/usr/bin/env python
"""LiVT stage 2: balanced fine-tuning (Bal-BCE by default) from scratch, from an MGP checkpoint or a converted one.

    python scripts/run_finetune.py --dataset_name digits --imbalance_factor 10 --config_name tiny \
        --image_size 32 --patch_size 4 --model_name_or_path outputs/mgp --output_dir outputs/finetune
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _cli import parse_args, setup_logging  # noqa: E402
from transformers import set_seed  # noqa: E402

from modeling_livt import LiVTForImageClassification  # noqa: E402
from modeling_livt.data.loading import DataArguments  # noqa: E402
from modeling_livt.hub.model_card import write_model_card  # noqa: E402
from modeling_livt.models.configuration_vit import POSTHOC_FIELDS  # noqa: E402
from trainers import AugmentationArguments, BalancedTrainer, ModelArguments  # noqa: E402
from trainers.arguments import FinetuneTrainingArguments  # noqa: E402
from trainers.workflow import build_config, prepare_data, shared_recipe, train_evaluate_and_report  # noqa: E402


def main(argv=None):
    model_args, data_args, aug_args, training_args = parse_args(
        (ModelArguments, DataArguments, AugmentationArguments, FinetuneTrainingArguments), argv
    )
    setup_logging(training_args)
    set_seed(training_args.seed)

    if model_args.model_name_or_path:
        config_source = LiVTForImageClassification.config_class.from_pretrained(model_args.model_name_or_path)
        image_size = model_args.image_size or config_source.image_size
    else:
        config_source = build_config(model_args)
        image_size = config_source.image_size
    prepared = prepare_data(data_args, aug_args, training_args, image_size, stage="finetune")
    data = prepared.data
    task_fields = dict(
        num_labels=data.num_classes, id2label=data.id2label, label2id=data.label2id, class_counts=data.class_counts,
        loss_type=model_args.loss_type, bal_tau=model_args.bal_tau, drop_path_rate=model_args.drop_path_rate,
    )
    task_fields = {k: v for k, v in task_fields.items() if v is not None}
    if model_args.model_name_or_path:
        # post-hoc values fitted for the checkpoint's weights would be stale for the weights trained here
        kwargs = dict(task_fields, image_size=image_size, **dict.fromkeys(POSTHOC_FIELDS))
        if model_args.attn_implementation:
            kwargs["attn_implementation"] = model_args.attn_implementation
        model = LiVTForImageClassification.from_pretrained(model_args.model_name_or_path, **kwargs)
    else:
        config = build_config(model_args, **task_fields)
        if model_args.attn_implementation:
            config._attn_implementation = model_args.attn_implementation
        model = LiVTForImageClassification(config)

    recipe = {
        "stage 1 (MGP)": model_args.model_name_or_path or "none (trained from scratch)",
        "loss_type": model.config.loss_type,
        "bal_tau": model.config.bal_tau,
        "layer decay": training_args.layer_decay,
        **shared_recipe(training_args, aug_args, image_size),
    }
    test_metrics = {}

    def card_writer():
        write_model_card(
            training_args.output_dir, "livt", model_name=os.path.basename(os.path.abspath(training_args.output_dir)),
            metrics=test_metrics, class_counts=data.class_counts, dataset_name=data_args.dataset_name,
            imbalance_factor=data_args.imbalance_factor, recipe=recipe, label_names=data.label_names,
            base_model=model_args.model_name_or_path, repo_id=training_args.hub_model_id,
        )

    trainer = BalancedTrainer(
        model=model,
        args=training_args,
        train_dataset=prepared.train,
        eval_dataset=prepared.validation,
        data_collator=prepared.train_collator,
        eval_data_collator=prepared.eval_collator,
        processing_class=prepared.image_processor,
        model_card_writer=card_writer,
    )
    return train_evaluate_and_report(trainer, prepared, training_args, card_writer, test_metrics)


if __name__ == "__main__":
    main()
