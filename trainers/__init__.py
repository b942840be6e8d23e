"""Trainers for LiVT and DeiT-LT: `transformers.Trainer` subclasses that only choose losses, optimizers, schedules
and reporting. Imports flow one way: scripts -> trainers -> modeling_livt."""

from .arguments import (
    AugmentationArguments,
    DataArguments,
    LongTailTrainingArguments,
    MGPTrainingArguments,
    ModelArguments,
)
from .balanced import BalancedTrainer, LongTailMetrics
from .base import NonFiniteLossError, check_hub_access
from .deit_lt import DeiTLTMetrics, DeiTLTTrainer, DistillationTeacher
from .drw import DRWCallback
from .ema import ModelEMACallback
from .mgp import MGPTrainer
from .teacher import TeacherTrainer

__all__ = [
    "AugmentationArguments",
    "BalancedTrainer",
    "DRWCallback",
    "DataArguments",
    "DeiTLTMetrics",
    "DeiTLTTrainer",
    "DistillationTeacher",
    "LongTailMetrics",
    "LongTailTrainingArguments",
    "MGPTrainer",
    "MGPTrainingArguments",
    "ModelArguments",
    "ModelEMACallback",
    "NonFiniteLossError",
    "TeacherTrainer",
    "check_hub_access",
]
