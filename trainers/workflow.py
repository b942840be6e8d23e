"""The wiring the scripts share: data + transforms + collators for a stage, configs from presets/overrides, training
with its saves, and the test evaluation with its JSON and plots. `script_builder.ClassificationScript` puts them
together for the classification scripts; run_mgp.py and run_eval.py call them directly."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import PreTrainedConfig
from transformers.trainer_utils import get_last_checkpoint

from modeling_livt.config_overrides import parse_config_overrides
from modeling_livt.data.loading import LongTailedData, load_image_datasets
from modeling_livt.data.long_tail import LONG_TAILED_INDICES_FILE
from modeling_livt.data.transforms import (
    DefaultImageCollator,
    EvalTransform,
    MixupCutmixCollator,
    apply_transform,
    build_finetune_transform,
    build_image_processor,
    build_mgp_transform,
    dataset_mean_std,
    get_normalization,
    make_transform_fn,
)
from modeling_livt.evaluation.metrics import long_tail_metrics, parse_index_bounds, shot_groups
from modeling_livt.evaluation.plots import plot_per_class_accuracy, plot_reliability_diagram
from modeling_livt.models.configuration_livt import LIVT_PRESETS, LiVTConfig

from .arguments import AugmentationArguments, DataArguments
from .freezing import parameter_counts

logger = logging.getLogger(__name__)

EVAL_RESULTS_FILE = "eval_results.json"


@dataclass
class PreparedData:
    """Transformed splits, collators and the image processor for one training stage."""

    data: LongTailedData
    train: object
    validation: object
    test: object
    train_collator: object
    eval_collator: object
    image_processor: object
    mean: tuple
    std: tuple
    data_sources: tuple = ()  # dataset name or training folder: what `--index_bounds auto` reads


def build_config(model_args, config_class=LiVTConfig, presets=LIVT_PRESETS, **fields) -> PreTrainedConfig:
    """A config from `--config_name` (preset name or a config path) + `--config_overrides` + explicit fields, with
    `--attn_implementation` when given."""
    overrides = parse_config_overrides(model_args.config_overrides, config_class)
    for name in ("image_size", "patch_size", "drop_path_rate"):
        if getattr(model_args, name, None) is not None:
            overrides[name] = getattr(model_args, name)
    overrides.update({k: v for k, v in fields.items() if v is not None})
    name = model_args.config_name
    if name in presets:
        config = config_class.from_preset(name, **overrides)
    elif os.path.exists(name):
        config = config_class.from_pretrained(name, **overrides)
    else:
        raise ValueError(f"--config_name {name!r} is neither a preset ({sorted(presets)}) nor an existing config path.")
    if getattr(model_args, "attn_implementation", None):
        config._attn_implementation = model_args.attn_implementation
    return config


def resolve_normalization(aug_args: AugmentationArguments, data: LongTailedData) -> tuple[tuple, tuple]:
    if aug_args.normalization == "dataset":
        return dataset_mean_std(data.train, data.image_column)
    return get_normalization(aug_args.normalization)


def prepare_data(
    data_args: DataArguments,
    aug_args: AugmentationArguments,
    training_args,
    image_size: int,
    stage: str,
) -> PreparedData:
    """Load the long-tailed splits and attach the transforms of `stage` ("mgp" or "finetune")."""
    if data_args.streaming and training_args.max_steps <= 0:
        raise ValueError(
            "--streaming needs --max_steps: a streamed dataset has no length, so Trainer cannot count epochs. "
            "Pass e.g. --max_steps 10000 (steps = examples per epoch x epochs / effective batch size)."
        )
    saved_split = Path(training_args.output_dir) / LONG_TAILED_INDICES_FILE
    if training_args.resume_from_checkpoint and data_args.split_indices_file is None and saved_split.exists():
        # a resumed run trains on the split it started with: restored from disk, never re-drawn
        logger.info("resuming: reusing the long-tailed split in %s", saved_split)
        data_args.split_indices_file = str(saved_split)
    data = load_image_datasets(data_args, seed=training_args.seed, output_dir=training_args.output_dir)
    mean, std = resolve_normalization(aug_args, data)
    if stage == "mgp":
        train_transform = build_mgp_transform(image_size, mean, std)
    else:
        train_transform = build_finetune_transform(
            image_size, mean, std, rand_augment=aug_args.rand_augment, random_erasing=aug_args.random_erasing,
            auto_augment=aug_args.auto_augment,
        )
    processor = build_image_processor(image_size, mean, std)
    eval_fn = make_transform_fn(
        EvalTransform(processor), data.image_column, data.label_column,
        skip_corrupt=data_args.skip_corrupt_images, counter=data.corrupt_images,
    )
    train_fn = make_transform_fn(
        train_transform, data.image_column, data.label_column,
        skip_corrupt=data_args.skip_corrupt_images, counter=data.corrupt_images, seed=training_args.seed,
    )
    eval_collator = DefaultImageCollator()
    mixing = stage != "mgp" and (aug_args.mixup > 0 or aug_args.cutmix > 0 or aug_args.label_smoothing > 0)
    train_collator = (
        MixupCutmixCollator(
            data.num_classes, mixup_alpha=aug_args.mixup, cutmix_alpha=aug_args.cutmix,
            switch_prob=aug_args.mixup_switch_prob, label_smoothing=aug_args.label_smoothing, prob=aug_args.mixup_prob,
            seed=training_args.seed,
        )
        if mixing
        else eval_collator
    )
    return PreparedData(
        data=data,
        train=apply_transform(data.train, train_fn) if data.train is not None else None,
        validation=apply_transform(data.validation, eval_fn) if data.validation is not None else None,
        test=apply_transform(data.test, eval_fn) if data.test is not None else None,
        train_collator=train_collator,
        eval_collator=eval_collator,
        image_processor=processor,
        mean=tuple(mean),
        std=tuple(std),
        data_sources=data_sources(data_args),
    )


def data_sources(data_args: DataArguments) -> tuple[str, ...]:
    """The names that identify the data (the training folder when given, else the dataset name or folder)."""
    return (data_args.train_dir,) if data_args.train_dir else (data_args.dataset_name,)


def resolve_index_bounds(value, sources, class_counts):
    """`--index_bounds` resolved for this data (None when off), checked against its number of classes now, before
    any training, so that a wrong name or pair fails at start-up rather than at the final evaluation."""
    bounds = parse_index_bounds(value, sources)
    if bounds is not None:
        shot_groups(class_counts, split="index", index_bounds=bounds)
    return bounds


def resolve_resume_checkpoint(training_args) -> str | bool | None:
    """`--resume_from_checkpoint PATH`, or `latest`/`true`/`auto` -> True: `Trainer.train` then finds and resumes from
    the newest checkpoint in output_dir itself. Ours adds only a ValueError naming the flag when output_dir does not
    exist or holds no checkpoint (Trainer's would be a bare FileNotFoundError, or "No valid checkpoint found")."""
    value = training_args.resume_from_checkpoint
    if value is None or str(value).lower() in ("", "false", "none"):
        return None
    if str(value).lower() in ("latest", "true", "auto"):
        output_dir = training_args.output_dir
        if not os.path.isdir(output_dir):
            raise ValueError(f"--resume_from_checkpoint {value}: no checkpoint in {output_dir} (no such folder).")
        if get_last_checkpoint(output_dir) is None:
            raise ValueError(
                f"--resume_from_checkpoint {value}: {output_dir} has no checkpoint-* folder to resume from. Drop the "
                "flag to start a new run there, or pass a checkpoint folder."
            )
        return True
    if not os.path.isdir(value):
        raise ValueError(f"--resume_from_checkpoint {value} is not a checkpoint folder.")
    return value


def long_tail_report(logits, labels, class_counts, index_bounds=None) -> dict:
    """`long_tail_metrics` of `logits` (count split), plus, with `index_bounds`, DeiT-LT's sorted-index split as
    `index_head_accuracy`, `index_mid_accuracy`, `index_tail_accuracy` and the resolved `index_bounds` pair."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    metrics = long_tail_metrics(logits, labels, class_counts)
    if index_bounds is not None:
        index_metrics = long_tail_metrics(logits, labels, class_counts, split="index", index_bounds=index_bounds)
        for group, name in (("many", "head"), ("medium", "mid"), ("few", "tail")):
            metrics[f"index_{name}_accuracy"] = index_metrics[f"{group}_shot_accuracy"]
        head_end = len(index_metrics["many_shot_classes"])
        metrics["index_bounds"] = [head_end, head_end + len(index_metrics["medium_shot_classes"])]
    return metrics


# DeiT-LT's predictions are Trainer's 3-tuple (averaged, cls, distillation logits): where each expert's logits are
DEIT_LT_EXPERTS = {"cls": 1, "distillation": 2}
EXPERT_METRICS = ("accuracy", "many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy", "index_head_accuracy",
                  "index_mid_accuracy", "index_tail_accuracy", "per_class_accuracy")


def expert_report(predictions, labels, class_counts, index_bounds=None) -> dict:
    """DeiT-LT's two experts scored alone: `long_tail_report` of the CLS and of the DIST head's logits, as
    `cls_{metric}` and `distillation_{metric}` for each of `EXPERT_METRICS` present (e.g. `cls_accuracy`,
    `distillation_index_tail_accuracy`, `cls_per_class_accuracy`). {} for a single-head prediction."""
    if not (isinstance(predictions, (tuple, list)) and len(predictions) >= 3):
        return {}
    metrics = {}
    for head, position in DEIT_LT_EXPERTS.items():
        report = long_tail_report(predictions[position], labels, class_counts, index_bounds)
        metrics.update({f"{head}_{key}": report[key] for key in EXPERT_METRICS if key in report})
    return metrics


def evaluate_and_report(trainer, dataset, class_counts, output_dir, label_names=None, split_name="test",
                        index_bounds=None) -> dict:
    """Predict `dataset` once, compute the long-tail metrics and write eval_results.json and the two plots.

    Returns the metrics dict (with per-class accuracy); DeiT-LT predictions (avg, cls, dist logits) add each
    expert's own metrics (`expert_report`: `cls_accuracy`, `distillation_many_shot_accuracy`, ...). With
    `index_bounds` (a `DEIT_LT_INDEX_BOUNDS` name or a (head_end, tail_start) pair) it adds DeiT-LT's sorted-index
    split: `index_head_accuracy`, `index_mid_accuracy`,
    `index_tail_accuracy` (mean per-class accuracy of the classes at sorted-count positions [0, head_end),
    [head_end, tail_start), [tail_start, C)) and the resolved `index_bounds` pair.
    """
    prediction = trainer.predict(dataset, metric_key_prefix=split_name)
    predictions = prediction.predictions
    logits = predictions[0] if isinstance(predictions, (tuple, list)) else predictions
    labels = np.asarray(prediction.label_ids)
    metrics = long_tail_report(logits, labels, class_counts, index_bounds)
    metrics.update(expert_report(predictions, labels, class_counts, index_bounds))
    metrics["num_examples"] = int(len(labels))
    metrics["split"] = split_name
    if trainer.is_world_process_zero():
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / EVAL_RESULTS_FILE, "w", encoding="utf-8") as f:
            json.dump(metrics, f, indent=2)
        plot_per_class_accuracy(metrics["per_class_accuracy"], class_counts, out / "per_class_accuracy.png",
                                label_names=label_names, title=f"Per-class accuracy ({split_name})")
        plot_reliability_diagram(np.asarray(logits), labels, out / "reliability_diagram.png",
                                 title=f"Reliability ({split_name})")
    return metrics


def train_and_save(trainer, training_args) -> dict:
    """Train (resuming from `--resume_from_checkpoint` when given), then save the model, the training metrics and the
    trainer state in the output folder. Returns the training metrics."""
    train_result = trainer.train(resume_from_checkpoint=resolve_resume_checkpoint(training_args))
    print(f"process {training_args.process_index + 1}/{training_args.world_size}: trained "
          f"{trainer.state.global_step} steps", flush=True)
    trainer.save_model()
    # what was trained (LoRA, --freeze_encoder: a fraction), beside Trainer's own throughput figures
    train_result.metrics["trainable_parameters"], train_result.metrics["total_parameters"] = \
        parameter_counts(trainer.model)
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()
    return train_result.metrics


def push_and_end(trainer, training_args) -> None:
    """The last step of every training script: push the output folder with `--push_to_hub`, then end the run."""
    if training_args.push_to_hub:
        trainer.push_to_hub()
    trainer.end()  # destroys the DDP process group (Trainer never does): no rank exits with it alive


def format_results_table(rows: dict[str, dict]) -> str:
    """A markdown Many/Medium/Few/Acc/ECE table (percent) from {name: metrics}."""
    extra = any("distillation_accuracy" in m for m in rows.values())
    header = "| run | Many | Medium | Few | Acc | ECE |" + (" CLS acc | DIST acc |" if extra else "")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]

    def pct(value):
        return "-" if value is None else f"{100 * value:.1f}"

    for name, m in rows.items():
        cells = [pct(m.get(k)) for k in ("many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy", "accuracy")]
        cells.append(pct(m.get("ece")))
        if extra:
            cells += [pct(m.get("cls_accuracy")), pct(m.get("distillation_accuracy"))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
