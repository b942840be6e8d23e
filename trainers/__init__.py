"""Trainers for LiVT and DeiT-LT: `transformers.Trainer` subclasses that only choose losses, optimizers, schedules
and reporting. Imports flow one way: scripts -> trainers -> modeling_livt."""

from .arguments import AugmentationArguments, LongTailTrainingArguments, MGPTrainingArguments, ModelArguments
from .balanced import BalancedTrainer, LongTailMetrics
from .base import NonFiniteLossError, check_hub_access
from .ema import ModelEMACallback
from .mgp import MGPTrainer

__all__ = [
    "AugmentationArguments",
    "BalancedTrainer",
    "LongTailMetrics",
    "LongTailTrainingArguments",
    "MGPTrainer",
    "MGPTrainingArguments",
    "ModelArguments",
    "ModelEMACallback",
    "NonFiniteLossError",
    "check_hub_access",
]

# DeiT-LT: the distillation trainer and its flat (SAM) teacher
from .deit_lt import DeiTLTMetrics, DeiTLTTrainer, DistillationTeacher, DRWCallback  # noqa: E402
from .teacher import TeacherTrainer  # noqa: E402

__all__ += ["DRWCallback", "DeiTLTMetrics", "DeiTLTTrainer", "DistillationTeacher", "TeacherTrainer"]
