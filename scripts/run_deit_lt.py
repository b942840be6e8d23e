#!/usr/bin/env python
"""DeiT-LT: a DeiT student (CLS + DIST tokens) distilled from a flat teacher on its own augmented, mixed batches, with
class-balanced distillation weights from a deferred (DRW) epoch.

    python scripts/run_teacher.py --dataset_name digits --imbalance_factor 10 --output_dir outputs/teacher
    python scripts/run_deit_lt.py --dataset_name digits --imbalance_factor 10 --config_name tiny --image_size 32 \
        --patch_size 4 --teacher_name_or_path outputs/teacher --drw_epoch 80 --num_train_epochs 100 \
        --output_dir outputs/deit_lt
    # combined recipe: a LiVT MGP checkpoint as the student's start, Bal-BCE on the CLS head
    python scripts/run_deit_lt.py --model_name_or_path outputs/mgp --cls_loss bal_bce --teacher_name_or_path ... \
        --output_dir outputs/livt_deit_lt
    python scripts/run_deit_lt.py deit_lt.json                     # the arguments as a .json file

`demo(output_dir)` runs the embedded offline demo (teacher, then student, on digits-LT); `scripts/demo.py --method
deit_lt` prints its table.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run_teacher  # noqa: E402
from _cli import parse_args, setup_logging  # noqa: E402
from transformers import PreTrainedConfig, set_seed  # noqa: E402

from modeling_livt import DEIT_LT_PRESETS, DeiTLTConfig, DeiTLTForImageClassification  # noqa: E402
from modeling_livt.data.loading import DataArguments  # noqa: E402
from modeling_livt.hub.model_card import write_model_card  # noqa: E402
from modeling_livt.models.configuration_vit import POSTHOC_FIELDS  # noqa: E402
from trainers import AugmentationArguments  # noqa: E402
from trainers.deit_lt import (  # noqa: E402
    DeiTLTModelArguments,
    DeiTLTTrainer,
    DeiTLTTrainingArguments,
    DistillationArguments,
    DistillationTeacher,
)
from trainers.workflow import build_config, prepare_data, shared_recipe, train_evaluate_and_report  # noqa: E402


def _teacher_reference(teacher: str, output_dir: str) -> str:
    """How the card names the teacher: a path relative to the student's folder (./..., ../...) or a Hub id."""
    if not os.path.isdir(teacher):
        return teacher
    relative = os.path.relpath(os.path.abspath(teacher), os.path.abspath(output_dir))
    return relative if relative.startswith("..") else f"./{relative}"


def main(argv=None):
    model_args, dist_args, data_args, aug_args, training_args = parse_args(
        (DeiTLTModelArguments, DistillationArguments, DataArguments, AugmentationArguments, DeiTLTTrainingArguments),
        argv,
    )
    setup_logging(training_args)
    set_seed(training_args.seed)

    source_type = None
    if model_args.model_name_or_path:
        source_config, _ = PreTrainedConfig.get_config_dict(model_args.model_name_or_path)
        source_type = source_config.get("model_type")
        image_size = model_args.image_size or source_config["image_size"]
    else:
        image_size = build_config(model_args, DeiTLTConfig, DEIT_LT_PRESETS).image_size
    prepared = prepare_data(data_args, aug_args, training_args, image_size, stage="finetune")
    data = prepared.data
    task_fields = dict(
        num_labels=data.num_classes, id2label=data.id2label, label2id=data.label2id, class_counts=data.class_counts,
        cls_loss_type=model_args.cls_loss, bal_tau=model_args.bal_tau, drop_path_rate=model_args.drop_path_rate,
        distillation_alpha=model_args.distillation_alpha, drw_beta=model_args.drw_beta,
    )
    task_fields = {k: v for k, v in task_fields.items() if v is not None}
    if model_args.model_name_or_path:
        # post-hoc values fitted for the checkpoint's weights would be stale for the weights trained here
        kwargs = dict(task_fields, image_size=image_size, **dict.fromkeys(POSTHOC_FIELDS))
        if model_args.attn_implementation:
            kwargs["attn_implementation"] = model_args.attn_implementation
        if source_type == "livt":  # the combined recipe: LiVT's MGP encoder as the student's start
            model = DeiTLTForImageClassification.from_livt_pretrained(model_args.model_name_or_path, **kwargs)
        else:
            model = DeiTLTForImageClassification.from_pretrained(model_args.model_name_or_path, **kwargs)
    else:
        config = build_config(model_args, DeiTLTConfig, DEIT_LT_PRESETS, **task_fields)
        if model_args.attn_implementation:
            config._attn_implementation = model_args.attn_implementation
        model = DeiTLTForImageClassification(config)

    teacher = DistillationTeacher.from_pretrained(
        dist_args.teacher_name_or_path, image_size=dist_args.teacher_image_size,
        student_mean=prepared.mean, student_std=prepared.std,
    )
    teacher_ref = _teacher_reference(dist_args.teacher_name_or_path, training_args.output_dir)
    drw = ("none" if dist_args.drw_epoch is None and dist_args.drw_step is None
           else f"from epoch {dist_args.drw_epoch:g}" if dist_args.drw_epoch is not None
           else f"from step {dist_args.drw_step}")
    recipe = {
        "student initialisation": model_args.model_name_or_path or "random (trained from scratch)",
        "CLS loss": model.config.cls_loss_type,
        "distillation alpha": model.config.distillation_alpha,
        "teacher": f"`{teacher_ref}` ({type(teacher.model).__name__}, input {teacher.image_size or image_size} px"
        + (", batch renormalised to its mean/std" if teacher.renormalizes else "") + ")",
        "DRW (class-balanced DIST weights)": f"{drw}, beta {model.config.drw_beta}",
        "mixup after DRW": "off" if dist_args.no_mixup_after_drw else "on",
        "layer decay": training_args.layer_decay,
        **shared_recipe(training_args, aug_args, image_size),
    }
    test_metrics = {}

    def card_writer():
        write_model_card(
            training_args.output_dir, "deit_lt", model_name=os.path.basename(os.path.abspath(training_args.output_dir)),
            metrics=test_metrics, class_counts=data.class_counts, dataset_name=data_args.dataset_name,
            imbalance_factor=data_args.imbalance_factor, recipe=recipe, label_names=data.label_names,
            base_model=model_args.model_name_or_path, teacher=teacher_ref, repo_id=training_args.hub_model_id,
        )

    trainer = DeiTLTTrainer(
        model=model,
        args=training_args,
        train_dataset=prepared.train,
        eval_dataset=prepared.validation,
        data_collator=prepared.train_collator,
        eval_data_collator=prepared.eval_collator,
        processing_class=prepared.image_processor,
        model_card_writer=card_writer,
        teacher=teacher,
        drw_epoch=dist_args.drw_epoch,
        drw_step=dist_args.drw_step,
        no_mixup_after_drw=dist_args.no_mixup_after_drw,
    )
    return train_evaluate_and_report(trainer, prepared, training_args, card_writer, test_metrics)


# ---------------------------------------------------------------------------------------------------------------------
# The offline demo (scripts/demo.py --method deit_lt): digits made long-tailed (rho = 10), 32-px images
# ---------------------------------------------------------------------------------------------------------------------
DEMO_DATA = ["--dataset_name", "digits", "--imbalance_factor", "10", "--normalization", "digits"]
DEMO_COMMON = ["--seed", "0", "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "128",
               "--dataloader_num_workers", "0", "--logging_steps", "50", "--disable_tqdm", "true",
               "--save_total_limit", "1"]
# a small DeiT for 32-px digits: 64 patch tokens of 4x4 pixels, plus CLS and DIST
DEMO_STUDENT = ["--config_name", "tiny", "--image_size", "32", "--patch_size", "4", "--config_overrides",
                "hidden_size=96,num_hidden_layers=4,num_attention_heads=3,intermediate_size=384"]


def demo(output_dir: str, teacher_epochs: int = 20, student_epochs: int = 100) -> dict:
    """Teacher (CIFAR ResNet-32, SAM, Bal-CE), then the DeiT-LT student distilled from it, on digits-LT (32 px).

    Returns {row name: test metrics} for `scripts/demo.py`'s table; both folders are left loadable under `output_dir`.
    """
    teacher_dir = os.path.join(output_dir, "deit_lt_teacher")
    teacher_metrics = run_teacher.main(DEMO_DATA + DEMO_COMMON + [
        "--output_dir", teacher_dir, "--num_train_epochs", str(teacher_epochs), "--loss_type", "bal_ce",
        "--sam_rho", "0.05", "--sam_base_optimizer", "adamw", "--learning_rate", "2e-3", "--weight_decay", "0.05",
        "--warmup_steps", "0.05", "--rand_augment", "false",
    ])
    student_metrics = main(DEMO_DATA + DEMO_COMMON + DEMO_STUDENT + [
        "--output_dir", os.path.join(output_dir, "deit_lt_student"), "--teacher_name_or_path", teacher_dir,
        "--num_train_epochs", str(student_epochs), "--learning_rate", "1e-3", "--warmup_steps", "0.05",
        "--rand_augment", "false", "--random_erasing", "0", "--drw_epoch", str(int(0.8 * student_epochs)),
    ])
    return {"ResNet-32 teacher (SAM, Bal-CE)": teacher_metrics, "DeiT-LT student": student_metrics}


if __name__ == "__main__":
    main()
