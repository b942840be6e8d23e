"""DeiT-LT training (Rangwani et al., CVPR 2024): a DeiT student with a CLS and a DIST token, distilled from a frozen
flat CNN teacher that sees the student's own augmented, mixed batch (out-of-distribution distillation), with the
distillation loss re-weighted by class-balanced weights from a deferred (DRW) epoch.

* `DistillationTeacher`: any `AutoModelForImageClassification` folder, frozen (eval mode, no grad), with its own input
  size (bicubic resize) and normalisation (the student's batch is renormalised when the two differ).
* `DRWCallback`: switches deferred re-weighting on at an epoch (sized data) or a step (streaming); its state is derived
  from `TrainerState`, so a resumed run is in the same state as an uninterrupted one.
* `DeiTLTTrainer`: `compute_loss` = `DeiTLTLoss`; reports avg / CLS / DIST accuracy and the long-tail metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    EvalPrediction,
    Trainer,
)
from transformers.trainer_utils import has_length

from modeling_livt.data.transforms import image_processor_input_size
from modeling_livt.models.losses import DeiTLTLoss, check_class_balanced_beta, class_balanced_weights

from .arguments import DEFAULT_DISTILLATION_ALPHA
from .balanced import LongTailMetrics
from .base import LongTailTrainerMixin, finite_or_none
from .drw import DEFAULT_DRW_BETA, DRWCallback
from .timm_teacher import load_classifier_config, timm_input_config
from .workflow import expert_report

logger = logging.getLogger(__name__)



# ---------------------------------------------------------------------------------------------------------------------
# The teacher
# ---------------------------------------------------------------------------------------------------------------------
def _is_generic_label(name: str, index: int) -> bool:
    return str(name) == f"LABEL_{index}"


def _describe_labels(id2label: dict) -> str:
    names = [str(id2label[i]) for i in sorted(id2label)]
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return f"{len(names)} classes [{shown}]"


class DistillationTeacher:
    """A frozen teacher for DeiT-LT: the model runs in eval mode under `torch.no_grad()` and never trains.

    `teacher(pixel_values)` takes the **student's** batch (augmented, mixed, normalised with the student's mean/std),
    renormalises it to the teacher's mean/std when they differ, resizes it (bicubic; antialiased when shrinking) to
    the teacher's input size, and returns the teacher's logits `[B, C]`.

    It is deliberately not an `nn.Module` attribute of the student: it stays out of the optimizer, the checkpoints
    and DDP wrapping (each process holds a plain copy, moved to its device).

    Args:
        model: any image classifier returning `.logits` (transformers ResNet/RegNet/ConvNeXt, our models...).
        image_size: the teacher's input size; None keeps the student's size.
        mean, std: the normalisation the teacher was trained with (None: assume the student's).
        student_mean, student_std: the normalisation of the student's batches (from the data pipeline).
    """

    def __init__(
        self,
        model: nn.Module,
        image_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        student_mean: Sequence[float] | None = None,
        student_std: Sequence[float] | None = None,
    ):
        # channels-last: oneDNN's native conv layout, 1.3-1.4x a CIFAR ResNet-32 forward on CPU; it changes only the
        # layout of 4-D weights (a ViT's linear layers are untouched), not the logits beyond float rounding
        self.model = model.eval().requires_grad_(False).to(memory_format=torch.channels_last)
        self.image_size = int(image_size) if image_size is not None else None
        self.mean = tuple(float(v) for v in mean) if mean is not None else None
        self.std = tuple(float(v) for v in std) if std is not None else None
        self.student_mean = self.student_std = None
        if student_mean is not None and student_std is not None:
            self.set_student_normalization(student_mean, student_std)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        image_size: int | None = None,
        student_mean: Sequence[float] | None = None,
        student_std: Sequence[float] | None = None,
        **model_kwargs,
    ) -> DistillationTeacher:
        """Load a teacher folder (or Hub id) with `AutoModelForImageClassification` (remote code allowed) and read its
        input size and mean/std from its image processor (`preprocessor_config.json`), or for a timm teacher (a
        `timm_wrapper` config: `run_teacher.py --teacher_arch timm:NAME`, or any folder in timm's Hub format) from its
        `pretrained_cfg`; `image_size` overrides."""
        model_kwargs.setdefault("trust_remote_code", True)
        if "config" not in model_kwargs:
            config = load_classifier_config(name_or_path, trust_remote_code=model_kwargs["trust_remote_code"])
            if config.model_type == "timm_wrapper":  # with timm's `model_args` trap fixed (`fix_timm_model_args`)
                model_kwargs["config"] = config
        model = AutoModelForImageClassification.from_pretrained(name_or_path, **model_kwargs)
        timm_input = timm_input_config(model.config)
        if timm_input is not None:
            mean, std, size = timm_input
            return cls(model, image_size=size if image_size is None else image_size, mean=mean, std=std,
                       student_mean=student_mean, student_std=student_std)
        try:
            processor = AutoImageProcessor.from_pretrained(name_or_path)
        except (OSError, ValueError):  # no preprocessor_config.json: nothing tells us how the teacher was fed
            processor = None
            logger.warning(
                "teacher %s has no image processor: assuming it was trained on the student's normalisation and size "
                "(pass --teacher_image_size if it was not)", name_or_path,
            )
        mean = getattr(processor, "image_mean", None) if getattr(processor, "do_normalize", True) else None
        std = getattr(processor, "image_std", None) if mean is not None else None
        if image_size is None:
            image_size = image_processor_input_size(processor) if processor is not None else None
            image_size = image_size or getattr(model.config, "image_size", None)
        return cls(model, image_size=image_size, mean=mean, std=std, student_mean=student_mean,
                   student_std=student_std)

    def set_student_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.student_mean = tuple(float(v) for v in mean)
        self.student_std = tuple(float(v) for v in std)

    @property
    def renormalizes(self) -> bool:
        """True when the student's batch must be renormalised for the teacher (both known and different)."""
        known = None not in (self.mean, self.std, self.student_mean, self.student_std)
        return known and (self.mean, self.std) != (self.student_mean, self.student_std)

    @property
    def id2label(self) -> dict[int, str]:
        return {int(k): v for k, v in self.model.config.id2label.items()}

    def check_label_space(self, student_id2label: dict) -> None:
        """Raise `ValueError` (naming both label sets) unless the teacher predicts the student's classes, in order.

        Generic names (`LABEL_3`, e.g. a ported checkpoint) match any name at their index; sizes must always agree.
        """
        teacher = self.id2label
        student = {int(k): v for k, v in student_id2label.items()}
        hint = ("train the teacher on the student's classes, in the same label order (scripts/run_teacher.py on the "
                "same dataset).")
        if len(teacher) != len(student):
            raise ValueError(
                f"The teacher's label space ({_describe_labels(teacher)}) does not match the student's "
                f"({_describe_labels(student)}): {hint}"
            )
        for index in sorted(student):
            t_name, s_name = teacher.get(index), student[index]
            if _is_generic_label(t_name, index) or _is_generic_label(s_name, index):
                continue
            if str(t_name) != str(s_name):
                raise ValueError(
                    f"The teacher's label space ({_describe_labels(teacher)}) does not match the student's "
                    f"({_describe_labels(student)}): class {index} is {t_name!r} for the teacher and {s_name!r} "
                    f"for the student; {hint}"
                )

    def to(self, device) -> DistillationTeacher:
        self.model.to(device)
        return self

    def prepare(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The student's batch as the teacher expects it: renormalised, then resized (bicubic)."""
        pixel_values = pixel_values.float()
        if self.renormalizes:
            shape = (1, -1, 1, 1)
            device = pixel_values.device
            s_mean, s_std, t_mean, t_std = (
                torch.tensor(v, dtype=torch.float32, device=device).view(shape)
                for v in (self.student_mean, self.student_std, self.mean, self.std)
            )
            # back to [0, 1] pixels with the student's statistics, then forward with the teacher's
            pixel_values = (pixel_values * s_std + s_mean - t_mean) / t_std
        size = self.image_size
        if size is not None and tuple(pixel_values.shape[-2:]) != (size, size):
            shrink = size < max(pixel_values.shape[-2:])
            pixel_values = F.interpolate(
                pixel_values, size=(size, size), mode="bicubic", align_corners=False, antialias=shrink
            )
        return pixel_values

    @torch.no_grad()
    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        self.model.eval()  # whatever was done to it since: BatchNorm uses running statistics, no dropout
        device = next(self.model.parameters()).device
        return self.model(pixel_values=self.prepare(pixel_values).to(device)).logits


# ---------------------------------------------------------------------------------------------------------------------
# Metrics and trainer
# ---------------------------------------------------------------------------------------------------------------------
class DeiTLTMetrics(LongTailMetrics):
    """`LongTailMetrics` of the averaged logits plus each expert's scalar accuracies (`expert_report`:
    `cls_accuracy`, `distillation_accuracy`, `cls_many_shot_accuracy`, ...; Trainer's predictions for DeiT-LT are the
    3-tuple (logits, cls_logits, distillation_logits))."""

    def __call__(self, prediction: EvalPrediction) -> dict:
        metrics = super().__call__(prediction)
        index_bounds = self.index_bounds if self.split == "index" else None
        experts = expert_report(prediction.predictions, prediction.label_ids, self.class_counts, index_bounds)
        metrics.update({k: finite_or_none(v) for k, v in experts.items() if isinstance(v, float)})
        return metrics


class DeiTLTTrainer(LongTailTrainerMixin, Trainer):
    """`Trainer` for `DeiTLTForImageClassification` with a frozen teacher.

    loss = (1 - alpha) * cls_loss(cls_logits, targets) + alpha * CE(distillation_logits, argmax teacher(x)), where x
    is the very batch the student sees (augmented and mixed: out-of-distribution distillation), alpha is
    `distillation_alpha` and cls_loss is the student's `config.cls_loss_type` (soft-target CE by default, e.g. Bal-BCE
    for the LiVT -> DeiT-LT recipe). From the DRW point the distillation CE is weighted by
    `class_balanced_weights(config.class_counts, drw_beta)` indexed by the teacher's class; with `no_mixup_after_drw`
    the training collator's mixing is turned off there too (int labels: plain CE, no smoothing). Alpha and beta are
    training choices, given here (`DistillationArguments` on the command line), never read from the student's config.

    Args:
        teacher: a `DistillationTeacher` (or a plain classifier module, used at the student's size/normalisation).
        distillation_alpha: weight of the distillation term, in [0, 1] (DeiT-LT: 0.5).
        drw_epoch / drw_step: the DRW point (see `DRWCallback`); none = no re-weighting.
        drw_beta: beta of the class-balanced DIST weights from the DRW point, in [0, 1) (DeiT-LT: 0.9999).
        no_mixup_after_drw: turn the training collator's `mixup_enabled` off from the DRW point.
        eval_data_collator, model_card_writer: as `LongTailTrainerMixin`.
    """

    def __init__(
        self,
        *args,
        teacher: DistillationTeacher | nn.Module,
        distillation_alpha: float = DEFAULT_DISTILLATION_ALPHA,
        drw_epoch: float | None = None,
        drw_step: int | None = None,
        drw_beta: float = DEFAULT_DRW_BETA,
        no_mixup_after_drw: bool = False,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        model = self.accelerator.unwrap_model(self.model)
        config = model.config
        if not hasattr(model, "labels_loss") or not hasattr(model, "distillation_classifier"):
            raise TypeError(
                f"DeiTLTTrainer trains a DeiT-LT student (DeiTLTForImageClassification), got {type(model).__name__}."
            )
        if not isinstance(teacher, DistillationTeacher):
            teacher = DistillationTeacher(teacher)
        teacher.check_label_space(config.id2label)
        if teacher.student_mean is None and hasattr(self.processing_class, "image_mean"):
            teacher.set_student_normalization(self.processing_class.image_mean, self.processing_class.image_std)
        self.teacher = teacher.to(self.args.device)
        self.class_counts = list(config.class_counts or [])
        check_class_balanced_beta(drw_beta, "drw_beta")
        self.drw_beta = drw_beta
        self.deit_lt_loss = DeiTLTLoss(alpha=distillation_alpha, cls_loss=model.labels_loss)

        self.drw_callback = DRWCallback(self.set_drw, drw_epoch=drw_epoch, drw_step=drw_step)
        if self.drw_callback.enabled and not self.class_counts:
            raise ValueError("DRW weights need the training class counts: set config.class_counts.")
        if drw_epoch is not None and self.train_dataset is not None and not has_length(self.train_dataset):
            raise ValueError(
                "--drw_epoch needs a sized training set: a streamed dataset has no epochs (state.epoch is a step "
                "ratio there). Give the DRW point in optimizer steps with --drw_step."
            )
        self.train_collator = self.data_collator
        self.no_mixup_after_drw = no_mixup_after_drw
        if no_mixup_after_drw:
            if not hasattr(self.train_collator, "mixup_enabled"):
                raise ValueError(
                    "--no_mixup_after_drw needs a mixing training collator (MixupCutmixCollator), got "
                    f"{type(self.train_collator).__name__}."
                )
            # dataloader workers collate with their own copy of the collator, made when an epoch's iterator starts
            if self.args.dataloader_num_workers > 0 and self.args.dataloader_persistent_workers:
                raise ValueError(
                    "--no_mixup_after_drw cannot reach persistent dataloader workers (they keep the collator they "
                    "started with): drop --dataloader_persistent_workers or use --dataloader_num_workers 0."
                )
            if self.args.dataloader_num_workers > 0 and drw_step is not None:
                logger.warning(
                    "--no_mixup_after_drw with --drw_step and dataloader workers: mixing stops at the first epoch "
                    "started after the DRW step (--dataloader_num_workers 0 switches at the step itself)."
                )
        self.add_callback(self.drw_callback)
        if self.compute_metrics is None and self.class_counts:
            self.compute_metrics = DeiTLTMetrics(self.class_counts)

    @property
    def drw_active(self) -> bool:
        return self.deit_lt_loss.class_weights is not None

    def set_drw(self, active: bool) -> None:
        """Deferred re-weighting on/off: class-balanced DIST weights, and mixing off when asked to."""
        self.deit_lt_loss.class_weights = class_balanced_weights(self.class_counts, self.drw_beta) if active else None
        if self.no_mixup_after_drw:
            self.train_collator.mixup_enabled = not active

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels", None)  # the CLS loss is computed here, with the distillation term
        outputs = model(**inputs)
        loss = None
        if labels is not None:
            teacher_logits = self.teacher(inputs["pixel_values"])
            loss = self.deit_lt_loss(outputs.cls_logits, outputs.distillation_logits, labels, teacher_logits)
            outputs["loss"] = loss
        return (loss, outputs) if return_outputs else loss


__all__ = [
    "DRWCallback",
    "DeiTLTMetrics",
    "DeiTLTTrainer",
    "DistillationTeacher",
]
