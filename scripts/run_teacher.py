#!/usr/bin/env python
"""DeiT-LT's flat teacher: a CNN trained on the long-tailed data with SAM and a long-tail loss (Bal-CE by default).

    python scripts/run_teacher.py --dataset_name digits --imbalance_factor 10 --normalization digits \
        --output_dir outputs/teacher --num_train_epochs 200 --sam_rho 0.05
    python scripts/run_teacher.py ... --loss_type ldam_drw --drw_epoch 160          # LDAM-DRW
    python scripts/run_teacher.py ... --model_name_or_path microsoft/resnet-50       # larger images
    python scripts/run_teacher.py teacher.json                                       # the arguments as a .json file

The output folder (weights, image processor, id2label, class counts, card) is what `run_deit_lt.py
--teacher_name_or_path` takes, and loads with `pipeline("image-classification", model=DIR, trust_remote_code=True)`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _cli import parse_args, setup_logging  # noqa: E402
from transformers import set_seed  # noqa: E402

from modeling_livt.data.loading import DataArguments  # noqa: E402
from modeling_livt.hub.model_card import write_model_card  # noqa: E402
from trainers.teacher import (  # noqa: E402
    TeacherAugmentationArguments,
    TeacherModelArguments,
    TeacherTrainer,
    TeacherTrainingArguments,
    build_teacher_model,
    default_teacher_image_size,
)
from trainers.workflow import prepare_data, shared_recipe, train_evaluate_and_report  # noqa: E402


def main(argv=None):
    model_args, data_args, aug_args, training_args = parse_args(
        (TeacherModelArguments, DataArguments, TeacherAugmentationArguments, TeacherTrainingArguments), argv
    )
    setup_logging(training_args)
    set_seed(training_args.seed)

    image_size = model_args.image_size or default_teacher_image_size(model_args.model_name_or_path)
    prepared = prepare_data(data_args, aug_args, training_args, image_size, stage="finetune")
    data = prepared.data
    model = build_teacher_model(model_args, data, image_size)

    recipe = {
        "architecture": f"{type(model).__name__}" + (
            f" (depth {model.config.depth})" if hasattr(model.config, "depth") else ""),
        "initialisation": model_args.model_name_or_path or "random",
        "loss_type": model_args.loss_type,
        "optimizer": f"SAM (rho {training_args.sam_rho}{', adaptive' if training_args.sam_adaptive else ''}) around "
        f"{training_args.sam_base_optimizer}",
        "weight decay": training_args.weight_decay,
        **shared_recipe(training_args, aug_args, image_size),
    }
    test_metrics = {}

    def card_writer():
        write_model_card(
            training_args.output_dir, "teacher", model_name=os.path.basename(os.path.abspath(training_args.output_dir)),
            metrics=test_metrics, class_counts=data.class_counts, dataset_name=data_args.dataset_name,
            imbalance_factor=data_args.imbalance_factor, recipe=recipe, label_names=data.label_names,
            base_model=model_args.model_name_or_path, repo_id=training_args.hub_model_id,
        )

    trainer = TeacherTrainer(
        model=model,
        args=training_args,
        train_dataset=prepared.train,
        eval_dataset=prepared.validation,
        data_collator=prepared.train_collator,
        eval_data_collator=prepared.eval_collator,
        processing_class=prepared.image_processor,
        model_card_writer=card_writer,
        class_counts=data.class_counts,
        loss_type=model_args.loss_type,
        bal_tau=model_args.bal_tau,
        ldam_max_m=model_args.ldam_max_m,
        ldam_s=model_args.ldam_s,
        drw_epoch=model_args.drw_epoch,
        drw_step=model_args.drw_step,
        drw_beta=model_args.drw_beta,
    )
    if trainer.drw_callback.enabled:
        recipe["DRW"] = (f"from step {trainer.drw_callback.drw_step}" if trainer.drw_callback.drw_step is not None
                         else f"from epoch {trainer.drw_callback.drw_epoch:g}") + f", beta {model_args.drw_beta}"
    return train_evaluate_and_report(trainer, prepared, training_args, card_writer, test_metrics)


if __name__ == "__main__":
    main()
