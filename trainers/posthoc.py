"""`run_eval.py --posthoc`: fit post-hoc adjustments on the validation split, report before/after, save them.

The fitting maths is `modeling_livt.evaluation.posthoc`; this module collects what it needs from a model (raw logits,
the classifier heads' inputs, labels) with one validation pass, evaluates the chosen split before and after through the
model's own forward (so the saved config is what is measured), writes `posthoc_results.json` and saves the values.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers.dynamic_module_utils import custom_object_save

from modeling_livt.evaluation.posthoc import (
    PosthocFit,
    balanced_accuracy,
    classifier_heads,
    fit_posthoc,
    head_logits_float64,
    negative_log_likelihood,
)
from modeling_livt.models.configuration_vit import POSTHOC_FIELDS

from .workflow import evaluate_and_report, long_tail_report

logger = logging.getLogger(__name__)

POSTHOC_RESULTS_FILE = "posthoc_results.json"
#: Sub-folder of the evaluation output with the unadjusted model's eval_results.json and plots.
BEFORE_POSTHOC_DIR = "before_posthoc"
SUMMARY_KEYS = ("accuracy", "many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy", "index_head_accuracy",
                "index_mid_accuracy", "index_tail_accuracy", "ece", "mce")


def check_posthoc_model(model: nn.Module) -> None:
    """`ValueError` unless the model's forward applies the `posthoc_*` config fields (LiVT and DeiT-LT classifiers)."""
    if not all(hasattr(model.config, name) for name in POSTHOC_FIELDS):
        raise ValueError(
            f"--posthoc needs a LiVT or DeiT-LT classifier, whose forward applies the fitted values; "
            f"{type(model).__name__} (model_type {getattr(model.config, 'model_type', None)!r}) has no "
            f"{', '.join(POSTHOC_FIELDS)} config fields."
        )


@contextlib.contextmanager
def raw_logits(model: nn.Module):
    """Within the block the model returns its raw logits (post-hoc fields cleared); they are restored afterwards."""
    saved = {name: getattr(model.config, name) for name in POSTHOC_FIELDS}
    try:
        for name in POSTHOC_FIELDS:
            setattr(model.config, name, None)
        yield model
    finally:
        for name, value in saved.items():
            setattr(model.config, name, value)


@dataclass
class CollectedOutputs:
    """One prediction pass: raw logits `[N, C]`, labels `[N]`, and each classifier head with its inputs `[N, D]`
    (CPU copies, so that fitting never touches the model)."""

    logits: torch.Tensor
    labels: torch.Tensor
    head_inputs: list[tuple[torch.Tensor, nn.Linear]]


def collect_raw_outputs(trainer, dataset, with_heads: bool, split_name: str = "validation") -> CollectedOutputs:
    """Predict `dataset` with the raw model, capturing the inputs of its classifier heads when `with_heads`."""
    if trainer.args.world_size > 1:
        raise ValueError("--posthoc fits on one process: run run_eval.py without torchrun / accelerate launch.")
    model = trainer.accelerator.unwrap_model(trainer.model)
    heads = classifier_heads(model) if with_heads else []
    captured: list[list[torch.Tensor]] = [[] for _ in heads]

    def capture(store):
        return lambda module, args: store.append(args[0].detach().float().cpu())

    hooks = [head.register_forward_pre_hook(capture(store)) for head, store in zip(heads, captured, strict=True)]
    try:
        with raw_logits(model):
            prediction = trainer.predict(dataset, metric_key_prefix=split_name)
    finally:
        for hook in hooks:
            hook.remove()
    predictions = prediction.predictions
    logits = torch.as_tensor(np.asarray(predictions[0] if isinstance(predictions, (tuple, list)) else predictions))
    collected = CollectedOutputs(
        logits=logits.double(),
        labels=torch.as_tensor(np.asarray(prediction.label_ids)).long(),
        head_inputs=[(torch.cat(store), _cpu_copy(head)) for head, store in zip(heads, captured, strict=True)],
    )
    if heads:  # tau-norm recomputes the logits from the heads: they must be the model's logits
        recomputed = head_logits_float64(collected.head_inputs)
        tolerance = 1e-3 * max(1.0, float(collected.logits.abs().max()))
        matches = recomputed.shape == collected.logits.shape and torch.allclose(recomputed, collected.logits,
                                                                                 atol=tolerance)
        if not matches:
            raise ValueError(
                f"tau_norm: {type(model).__name__}'s logits are not the (averaged) output of its linear classifier "
                "heads, so its classifier weights cannot be tau-normalised."
            )
    return collected


def _cpu_copy(head: nn.Linear) -> nn.Linear:
    copy = nn.Linear(head.in_features, head.out_features, bias=head.bias is not None)
    copy.load_state_dict({k: v.detach().float().cpu() for k, v in head.state_dict().items()})
    return copy.requires_grad_(False)


def validation_summary(logits: torch.Tensor, labels: torch.Tensor, class_counts, index_bounds=None) -> dict:
    """The long-tail metrics of `logits` plus `balanced_accuracy` and `nll` (what the searches optimise)."""
    metrics = long_tail_report(logits.double().numpy(), labels.numpy(), class_counts, index_bounds)
    summary = {k: metrics[k] for k in SUMMARY_KEYS if k in metrics}
    summary["balanced_accuracy"] = balanced_accuracy(logits, labels)
    summary["nll"] = negative_log_likelihood(logits, labels)
    return summary


def save_posthoc_in_place(model: nn.Module, model_dir: str | os.PathLike) -> list[str]:
    """Write the model's config (with its `posthoc_*` values) into `model_dir` and refresh the remote-code files
    there, so that `from_pretrained(..., trust_remote_code=True)` applies the values too; the weights are not
    rewritten. Each file is replaced atomically. Returns the names of the files written."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ValueError(
            f"--save writes into the model's folder, and {model_dir} is not a local model folder (no config.json); "
            "pass --posthoc_output_dir DIR to save an adjusted copy instead."
        )
    with tempfile.TemporaryDirectory(dir=model_dir, prefix=".posthoc-") as staging:
        if model.is_remote_code():  # the code that applies the values travels with the model
            custom_object_save(model, staging, config=model.config)
        model.config.save_pretrained(staging)
        written = sorted(os.listdir(staging))
        for name in written:
            os.replace(os.path.join(staging, name), model_dir / name)
    return written


def fit_and_report_posthoc(
    trainer,
    methods: list[str],
    validation,
    evaluation,
    class_counts,
    output_dir: str,
    label_names=None,
    split_name: str = "test",
    index_bounds=None,
    logit_adjustment_grid: str = "0:2:0.1",
    tau_norm_grid: str = "0:2:0.1",
) -> tuple[PosthocFit, dict]:
    """Fit `methods` on `validation`, set them on the model's config, and evaluate `evaluation` before (written to
    `output_dir/before_posthoc/`) and after (written to `output_dir`, as a plain evaluation). Writes and returns the
    `posthoc_results.json` report; the metrics of the adjusted model are `report["after_metrics"]`."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    check_posthoc_model(model)
    if validation is None:
        raise ValueError(
            "--posthoc fits on the validation split, and this dataset has none: give one (--validation_dir, or a "
            "dataset with a validation split) or let it be carved (--validation_split_percentage)."
        )
    previous = {name: getattr(model.config, name) for name in POSTHOC_FIELDS}
    if any(value is not None for value in previous.values()):
        logger.warning("the model already carries post-hoc values %s: refitting from its raw logits", previous)
    collected = collect_raw_outputs(trainer, validation, with_heads="tau_norm" in methods)
    fit = fit_posthoc(methods, collected.logits, collected.labels, class_counts, collected.head_inputs,
                      logit_adjustment_grid=logit_adjustment_grid, tau_norm_grid=tau_norm_grid)
    adjusted_validation = fit.apply(collected.logits, class_counts, collected.head_inputs)
    with raw_logits(model):
        before = evaluate_and_report(trainer, evaluation, class_counts, os.path.join(output_dir, BEFORE_POSTHOC_DIR),
                                     label_names, split_name=split_name, index_bounds=index_bounds)
    if "logit_adjustment" in methods and model.config.class_counts is None:
        model.config.class_counts = list(class_counts)  # the prior the adjustment was fitted with
    for name, value in fit.config_values().items():
        setattr(model.config, name, value)
    model.config.validate_fields()
    after = evaluate_and_report(trainer, evaluation, class_counts, output_dir, label_names, split_name=split_name,
                                index_bounds=index_bounds)
    report = {
        "methods": methods,
        "fitted": fit.config_values(),
        "searches": fit.searches,
        "validation": {
            "num_examples": int(collected.labels.numel()),
            "before": validation_summary(collected.logits, collected.labels, class_counts, index_bounds),
            "after": validation_summary(adjusted_validation, collected.labels, class_counts, index_bounds),
        },
        split_name: {
            "num_examples": after["num_examples"],
            "before": {k: before[k] for k in SUMMARY_KEYS if k in before},
            "after": {k: after[k] for k in SUMMARY_KEYS if k in after},
        },
        "after_metrics": after,
    }
    if trainer.is_world_process_zero():
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(output_dir) / POSTHOC_RESULTS_FILE, "w", encoding="utf-8") as f:
            json.dump({k: v for k, v in report.items() if k != "after_metrics"}, f, indent=2)
    return fit, report
