#!/usr/bin/env python
"""Evaluate a saved classifier on a split: eval_results.json, per_class_accuracy.png, reliability_diagram.png and
the model card's results.

    python scripts/run_eval.py --model_name_or_path outputs/demo/livt_bal_bce --dataset_name digits \
        --imbalance_factor 10 --output_dir outputs/demo/eval

With `--posthoc temperature,logit_adjustment,tau_norm` (any subset) it first fits those post-hoc adjustments on the
validation split, then evaluates the split before (output_dir/before_posthoc/) and after (output_dir), and writes
posthoc_results.json. `--save` writes the fitted values into the model folder's config.json (and refreshes its
remote-code files; the weights are not touched), so that `from_pretrained` and `pipeline()` apply them;
`--posthoc_output_dir DIR` saves an adjusted copy instead.

With `--test_distributions forward50,forward10,uniform,backward10,backward50` the (balanced) split is also evaluated
re-sampled to SADE's shifted class distributions (forward-N: the training long-tail profile with imbalance N;
backward-N: the reverse order), from the same predictions; `--target_prior forward50` (a distribution name, a comma
list or a .json list of class probabilities) adds the logits adjusted to that prior, z - tau * (log pi_train - log
pi_target). Both land in eval_results.json (`test_distributions`, `target_prior`) and the model card.
"""

import json
import os
from dataclasses import dataclass, field

import numpy as np
from transformers import AutoImageProcessor, AutoModelForImageClassification, Trainer, TrainingArguments

import modeling_livt  # noqa: F401  (registers our Auto classes)
from modeling_livt.data.loading import load_image_datasets
from modeling_livt.data.long_tail import CLASS_COUNTS_FILE
from modeling_livt.data.transforms import DefaultImageCollator, EvalTransform, apply_transform, make_transform_fn
from modeling_livt.evaluation.metrics import parse_index_bounds
from modeling_livt.evaluation.posthoc import DEFAULT_TAU_GRID, POSTHOC_METHODS, parse_posthoc_methods, parse_tau_grid
from modeling_livt.evaluation.test_distributions import (
    TEST_DISTRIBUTIONS_HELP,
    evaluate_test_distributions,
    parse_distribution,
    parse_target_prior,
    parse_test_distributions,
    target_prior_logits,
)
from modeling_livt.hub.model_card import CARD_METHODS, read_card_inputs, write_model_card
from trainers.arguments import INDEX_BOUNDS_HELP, DataArguments, refuse_flags
from trainers.cli import parse_args, setup_logging
from trainers.posthoc import (
    SUMMARY_KEYS,
    check_posthoc_model,
    fit_and_report_posthoc,
    save_posthoc_in_place,
)
from trainers.script_builder import teacher_reference
from trainers.workflow import (
    EVAL_RESULTS_FILE,
    data_sources,
    evaluate_and_report,
    format_results_table,
    resolve_index_bounds,
)

SPLITS = ("train", "validation", "test")  # --split: the split of that name (train: the long-tailed training split)

@dataclass
class EvalArguments:
    model_name_or_path: str = field(metadata={"help": "Folder (or Hub id) of a trained classifier."})
    output_dir: str = field(metadata={"help": "Where eval_results.json and the plots go."})
    split: str = field(
        default="test",
        metadata={"help": "Split to evaluate: test (default), validation or train (the long-tailed training split "
                  "the data flags give)."},
    )
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Batch size."})
    index_bounds: str | None = field(default=None, metadata={"help": INDEX_BOUNDS_HELP})
    write_card: bool = field(default=True, metadata={"help": "Write/refresh README.md in output_dir."})
    posthoc: str | None = field(
        default=None,
        metadata={
            "help": f"Comma list of post-hoc adjustments to fit on the validation split: {', '.join(POSTHOC_METHODS)} "
            "(fitted and applied in that order; the temperature calibrates the final logits). Reports before/after "
            "in posthoc_results.json."
        },
    )
    save: bool = field(
        default=False,
        metadata={
            "help": "With --posthoc: write the fitted values into the model folder's config.json (posthoc_* fields) "
            "and refresh its remote-code files, so from_pretrained and pipeline() apply them. Weights are untouched."
        },
    )
    posthoc_output_dir: str | None = field(
        default=None,
        metadata={"help": "With --posthoc: save a complete adjusted copy of the model (and its processor) here."},
    )
    logit_adjustment_grid: str = field(
        default=DEFAULT_TAU_GRID,
        metadata={"help": "Taus tried for logit_adjustment: START:STOP:STEP (STOP included) or a comma list."},
    )
    tau_norm_grid: str = field(
        default=DEFAULT_TAU_GRID,
        metadata={"help": "Taus tried for tau_norm: START:STOP:STEP (STOP included) or a comma list."},
    )

    test_distributions: str | None = field(
        default=None,
        metadata={
            "help": "Comma list of shifted test class distributions (SADE, NeurIPS 2022) to also evaluate, re-sampled "
            f"(seeded, without replacement) from the balanced split: {TEST_DISTRIBUTIONS_HELP}; e.g. "
            "forward50,forward10,uniform,backward10,backward50. Reported as eval_results.json test_distributions."
        },
    )
    test_distribution_seed: int | None = field(
        default=None,
        metadata={"help": "Seed of the --test_distributions re-sampling. Default: --lt_seed (the run's data seed)."},
    )
    target_prior: str | None = field(
        default=None,
        metadata={
            "help": "Adjust the logits to a known test class prior: z - tau * (log pi_train - log pi_target). A "
            "distribution name (forward50, backward10, uniform), a comma list or a .json list of class "
            "probabilities (label order). Evaluated on the split and on --test_distributions (a named prior's own "
            "distribution included); eval_results.json target_prior."
        },
    )
    target_prior_tau: float | None = field(
        default=None,
        metadata={
            "help": "tau of --target_prior. Default: the model's logit-adjustment tau (fitted by --posthoc "
            "logit_adjustment, or saved in its config), else 1.0 (Bayes-optimal for calibrated logits)."
        },
    )

    def __post_init__(self):
        # bad values fail before the model is loaded
        self.test_distribution_names = parse_test_distributions(self.test_distributions)
        if self.target_prior is None:
            refuse_flags(self, ["target_prior_tau"],
                         "it sets the strength of the --target_prior adjustment: add --target_prior (or drop it).")
        else:
            text = self.target_prior.strip()
            if not (text.lower().endswith(".json") or "," in text or os.path.isfile(text)):
                if parse_distribution(text)[0] != "uniform" and text.lower() not in self.test_distribution_names:
                    self.test_distribution_names.append(text.lower())
            elif text.lower().endswith(".json") and not os.path.isfile(text):
                raise ValueError(f"--target_prior {text}: no such file.")
        if not self.test_distribution_names:
            refuse_flags(self, ["test_distribution_seed"],
                         "it seeds the --test_distributions re-sampling, and none is asked for: add "
                         "--test_distributions (or a named --target_prior), or drop the flag.")
        if (self.test_distribution_names or self.target_prior) and self.split == "train":
            raise ValueError("--test_distributions / --target_prior re-weight a balanced split; --split train is the "
                             "long-tailed training split: evaluate test (or validation).")
        if self.split not in SPLITS:
            raise ValueError(f"unknown --split {self.split!r}; choose one of {', '.join(SPLITS)}.")
        parse_index_bounds(self.index_bounds)
        self.posthoc_methods = parse_posthoc_methods(self.posthoc)
        parse_tau_grid(self.logit_adjustment_grid)
        parse_tau_grid(self.tau_norm_grid)
        for method in ("logit_adjustment", "tau_norm"):
            if method not in self.posthoc_methods:
                refuse_flags(self, [f"{method}_grid"],
                             f"it sets the taus tried by the post-hoc {method}, which is not fitted here: add "
                             f"--posthoc {method} (or drop the flag).")
        if (self.save or self.posthoc_output_dir) and not self.posthoc_methods:
            raise ValueError("--save / --posthoc_output_dir save fitted post-hoc values: give --posthoc too.")
        if self.save and not os.path.isfile(os.path.join(self.model_name_or_path, "config.json")):
            raise ValueError(
                f"--save writes into the model's folder, and {self.model_name_or_path} is not a local model folder; "
                "pass --posthoc_output_dir DIR to save an adjusted copy instead."
            )


def main(argv=None):
    eval_args, data_args = parse_args((EvalArguments, DataArguments), argv)
    setup_logging()
    model = AutoModelForImageClassification.from_pretrained(eval_args.model_name_or_path, trust_remote_code=True)
    if eval_args.posthoc_methods:
        check_posthoc_model(model)
    processor = AutoImageProcessor.from_pretrained(eval_args.model_name_or_path)
    data = load_image_datasets(data_args)
    # the model's own prior defines the shot groups; fall back to the counts of this training split
    class_counts = list(getattr(model.config, "class_counts", None) or data.class_counts)
    if len(class_counts) != model.config.num_labels or data.num_classes != model.config.num_labels:
        raise ValueError(
            f"The model has {model.config.num_labels} labels but the dataset has {data.num_classes} classes."
        )
    index_bounds = resolve_index_bounds(eval_args.index_bounds, data_sources(data_args), class_counts)
    split = {"train": data.train, "validation": data.validation, "test": data.test}[eval_args.split]
    if split is None:
        raise ValueError(f"The dataset has no {eval_args.split!r} split.")
    dataset = apply_transform(
        split, make_transform_fn(EvalTransform(processor), data.image_column, data.label_column)
    )
    args = TrainingArguments(
        output_dir=eval_args.output_dir,
        per_device_eval_batch_size=eval_args.per_device_eval_batch_size,
        remove_unused_columns=False,
        report_to="none",
    )
    trainer = RecordingTrainer(model=model, args=args, data_collator=DefaultImageCollator())
    if eval_args.posthoc_methods:
        metrics = run_posthoc(eval_args, trainer, model, processor, data, dataset, class_counts, index_bounds)
    else:
        metrics = evaluate_and_report(
            trainer,
            dataset,
            class_counts,
            eval_args.output_dir,
            data.label_names,
            split_name=eval_args.split,
            index_bounds=index_bounds,
        )
    if eval_args.test_distribution_names or eval_args.target_prior:
        shifted = shifted_evaluation(eval_args, data_args, model, trainer.last_prediction, class_counts)
        metrics.update(shifted)
        if trainer.is_world_process_zero():
            results_path = os.path.join(eval_args.output_dir, EVAL_RESULTS_FILE)
            with open(results_path, encoding="utf-8") as f:
                written = json.load(f)
            written.update(shifted)
            with open(results_path, "w", encoding="utf-8") as f:
                json.dump(written, f, indent=2)
        print(format_shifted_table(shifted))
    trainer.end()  # destroys the process group of a distributed launch (Trainer never does)
    with open(os.path.join(eval_args.output_dir, CLASS_COUNTS_FILE), "w", encoding="utf-8") as f:
        json.dump(class_counts, f)
    if eval_args.write_card:
        write_evaluation_card(eval_args, data_args, model, metrics, class_counts, data.label_names)
    summary = {k: metrics[k] for k in SUMMARY_KEYS if k in metrics}
    print(json.dumps(summary, indent=2))
    return metrics


def write_evaluation_card(eval_args, data_args, model, metrics, class_counts, label_names) -> None:
    """output_dir's README.md: the evaluated model's card with these results. The recipe, base model and teacher come
    from the model folder's own card, so that re-evaluating a folder in place keeps them (a card that does not keep
    them: the template of its model type, without a recipe). The card is named after output_dir when it holds a model
    itself (in place, or a copy of the evaluated folder), else after the evaluated model."""
    model_dir, output_dir = eval_args.model_name_or_path, eval_args.output_dir
    stored = (read_card_inputs(model_dir) if os.path.isdir(model_dir) else None) or {}
    teacher, recipe = stored.get("teacher"), dict(stored.get("recipe") or {})
    # relative to the model's folder: rebased to output_dir's (kept as it was when it does not lead to a folder), in
    # the recipe's teacher line too
    if teacher and teacher.startswith(".") and os.path.isdir(os.path.join(model_dir, teacher)):
        rebased = teacher_reference(os.path.join(model_dir, teacher), output_dir)
        if isinstance(recipe.get("teacher"), str):
            recipe["teacher"] = recipe["teacher"].replace(f"`{teacher}`", f"`{rebased}`", 1)
        teacher = rebased
    described = output_dir if os.path.isfile(os.path.join(output_dir, "config.json")) else model_dir
    write_model_card(
        output_dir,
        stored.get("method") or CARD_METHODS.get(model.config.model_type, "livt"),
        model_name=os.path.basename(os.path.abspath(described)) if os.path.isdir(described) else described,
        metrics=metrics,
        class_counts=class_counts,
        dataset_name=data_args.dataset_name,
        imbalance_factor=data_args.imbalance_factor,
        recipe=recipe or None,
        label_names=label_names,
        base_model=stored.get("base_model"),
        teacher=teacher,
        repo_id=described,
    )


class RecordingTrainer(Trainer):
    """A Trainer that keeps its last `predict` output (the evaluated split's logits), so that the shifted test
    distributions re-weight the very predictions of the report, with no second pass."""

    last_prediction = None

    def predict(self, *args, **kwargs):
        self.last_prediction = super().predict(*args, **kwargs)
        return self.last_prediction


def shifted_evaluation(eval_args, data_args, model, prediction, class_counts) -> dict:
    """`test_distributions` (and `target_prior`) of the evaluated split's predictions: accuracy, ECE, examples."""
    predictions = prediction.predictions
    logits = np.asarray(predictions[0] if isinstance(predictions, (tuple, list)) else predictions, dtype=np.float64)
    labels = np.asarray(prediction.label_ids, dtype=np.int64)
    seed = data_args.lt_seed if eval_args.test_distribution_seed is None else eval_args.test_distribution_seed
    names = eval_args.test_distribution_names
    out = {}
    if names:
        out["test_distributions"] = evaluate_test_distributions(logits, labels, class_counts, names, seed=seed)
        out["test_distribution_seed"] = seed
    if eval_args.target_prior:
        description, prior = parse_target_prior(eval_args.target_prior, class_counts)
        applied_tau = getattr(model.config, "posthoc_logit_adjustment_tau", None)
        temperature = getattr(model.config, "posthoc_temperature", None)
        if eval_args.target_prior_tau is not None:
            tau, source = eval_args.target_prior_tau, "--target_prior_tau"
        elif applied_tau is not None:
            tau, source = applied_tau, "the model's posthoc_logit_adjustment_tau"
        else:
            tau, source = 1.0, "default"
        adjusted = target_prior_logits(logits, class_counts, prior, tau, applied_tau, temperature)
        split_metrics = evaluate_test_distributions(adjusted, labels, class_counts, ["uniform"], seed=seed)["uniform"]
        out["target_prior"] = {
            "prior": description,
            "tau": float(tau),
            "tau_source": source,
            "prior_values": [float(p) for p in prior],
            eval_args.split: {k: split_metrics[k] for k in ("accuracy", "ece", "num_examples")},
        }
        if names:
            out["target_prior"]["test_distributions"] = evaluate_test_distributions(
                adjusted, labels, class_counts, names, seed=seed)
    return out


def format_shifted_table(shifted: dict) -> str:
    """A markdown table of the shifted test distributions (percent), before and after the target-prior adjustment."""
    rows = shifted.get("test_distributions") or {}
    adjusted = (shifted.get("target_prior") or {}).get("test_distributions") or {}
    header = "| distribution | examples | Acc | ECE |"
    header += " Acc (target prior) | ECE (target prior) |" if adjusted else ""
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for name, values in rows.items():
        line = f"| {name} | {values['num_examples']} | {100 * values['accuracy']:.1f} | {100 * values['ece']:.1f} |"
        if name in adjusted:
            line += f" {100 * adjusted[name]['accuracy']:.1f} | {100 * adjusted[name]['ece']:.1f} |"
        lines.append(line)
    return "\n".join(lines)


def run_posthoc(eval_args, trainer, model, processor, data, dataset, class_counts, index_bounds) -> dict:
    """Fit `--posthoc` on the validation split, evaluate the split before/after, save if asked; returns the adjusted
    model's metrics."""
    validation = None
    if data.validation is not None:
        validation = apply_transform(
            data.validation, make_transform_fn(EvalTransform(processor), data.image_column, data.label_column)
        )
    fit, report = fit_and_report_posthoc(
        trainer, eval_args.posthoc_methods, validation, dataset, class_counts, eval_args.output_dir,
        data.label_names, split_name=eval_args.split, index_bounds=index_bounds,
        logit_adjustment_grid=eval_args.logit_adjustment_grid, tau_norm_grid=eval_args.tau_norm_grid,
    )
    saved = []
    if eval_args.save:
        save_posthoc_in_place(model, eval_args.model_name_or_path)
        saved.append(eval_args.model_name_or_path)
    if eval_args.posthoc_output_dir:
        model.save_pretrained(eval_args.posthoc_output_dir)
        processor.save_pretrained(eval_args.posthoc_output_dir)
        saved.append(eval_args.posthoc_output_dir)
    split = report[eval_args.split]
    print(f"post-hoc {', '.join(eval_args.posthoc_methods)}: {json.dumps(fit.config_values())}")
    print(format_results_table({f"{eval_args.split}, {when}": split[when] for when in ("before", "after")}))
    if saved:
        print(f"saved the post-hoc values to {', '.join(saved)}")
    return report["after_metrics"]


if __name__ == "__main__":
    main()
