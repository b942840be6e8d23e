"""Stage 2 of LiVT: balanced fine-tuning. Works for our models and for any transformers image classifier."""

from __future__ import annotations

import numpy as np
from transformers import EvalPrediction, Trainer

from modeling_livt.evaluation.metrics import long_tail_metrics
from modeling_livt.models.losses import build_loss

from .base import LongTailTrainerMixin, finite_or_none

SCALAR_METRICS = ("accuracy", "many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy", "ece", "mce")


class LongTailMetrics:
    """`compute_metrics` for Trainer: top-1 accuracy, many/medium/few-shot accuracy, ECE, MCE (scalars only; a group
    without classes is left out rather than logged as NaN)."""

    def __init__(self, class_counts, split: str = "count", index_bounds=None):
        self.class_counts = list(class_counts)
        self.split = split
        self.index_bounds = index_bounds

    def __call__(self, prediction: EvalPrediction) -> dict:
        logits = prediction.predictions
        logits = logits[0] if isinstance(logits, (tuple, list)) else logits
        metrics = long_tail_metrics(
            np.asarray(logits), np.asarray(prediction.label_ids), self.class_counts,
            split=self.split, index_bounds=self.index_bounds,
        )
        return {k: finite_or_none(metrics[k]) for k in SCALAR_METRICS if metrics[k] is not None}


class BalancedTrainer(LongTailTrainerMixin, Trainer):
    """`Trainer` that fine-tunes with a balanced loss (Bal-BCE by default) and reports long-tail metrics.

    For our models (`LiVTForImageClassification`, DeiT-LT) the loss comes from the model config
    (`loss_type`, `class_counts`, `bal_tau`). For **any other** transformers image classifier (ViT, ConvNeXt, ResNet...)
    pass `class_counts` (and optionally `loss_type`, `bal_tau`): the labels are taken out of the inputs before the
    model runs (soft labels would otherwise switch its `problem_type` to multi-label for good) and the balanced loss
    is computed from its logits, ignoring the model's own loss.

    Args:
        class_counts: training images per class (required for other models; overrides nothing in our configs).
        loss_type: "bal_bce" (default), "bal_ce", "bce" or "ce" for other models.
        bal_tau: prior strength for other models.
        eval_data_collator, model_card_writer: as `LongTailTrainerMixin`.
    """

    trains_with_model_loss = True  # a model with a loss of its own (ours: `labels_loss`) trains with it; False: never

    def __init__(self, *args, class_counts=None, loss_type: str = "bal_bce", bal_tau: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        model = self.accelerator.unwrap_model(self.model)
        ours = hasattr(model, "labels_loss")
        self.uses_model_loss = ours and self.trains_with_model_loss
        if self.uses_model_loss:
            self.class_counts = list(model.config.class_counts or [])
            self.loss_fn = None
        else:
            if class_counts is None and ours:  # our model trained with the trainer's loss: its config's counts
                class_counts = model.config.class_counts or None
            if class_counts is None and loss_type in ("bal_bce", "bal_ce"):
                raise ValueError(
                    f"{type(model).__name__} does not carry class counts: pass class_counts=[...] to "
                    f"{type(self).__name__} (training images per class, in label order)."
                )
            num_labels = getattr(model.config, "num_labels", None)
            if class_counts is not None and num_labels is not None and len(class_counts) != num_labels:
                raise ValueError(f"class_counts has {len(class_counts)} entries but the model has {num_labels} labels.")
            self.class_counts = list(class_counts) if class_counts is not None else []
            self.loss_fn = self.build_loss_fn(loss_type, class_counts, bal_tau)
        if self.compute_metrics is None and self.class_counts:
            self.compute_metrics = LongTailMetrics(self.class_counts)

    def build_loss_fn(self, loss_type: str, class_counts, bal_tau: float):
        """The trainer's loss (for a model trained without its own): `build_loss`; subclasses add theirs."""
        return build_loss(loss_type, class_counts, bal_tau)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.uses_model_loss:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        labels = inputs.pop("labels", None)  # never hand labels to a foreign model (problem_type trap)
        outputs = model(**inputs)
        loss = self.loss_fn(outputs.logits, labels) if labels is not None else None
        if loss is not None:
            outputs["loss"] = loss
        return (loss, outputs) if return_outputs else loss
