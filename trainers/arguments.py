"""Argument dataclasses shared by the scripts (parsed with `transformers.HfArgumentParser`)."""

from __future__ import annotations

import logging
from dataclasses import MISSING, dataclass, field, fields

from transformers import TrainingArguments
from transformers.integrations import is_tensorboard_available

from modeling_livt.evaluation.metrics import parse_index_bounds
from modeling_livt.models.losses import LOSS_TYPES

from .class_sampling import SAMPLERS, check_sampler_name

logger = logging.getLogger(__name__)

# `--index_bounds` of every classification script (run_finetune, run_teacher, run_deit_lt) and of run_eval.py
INDEX_BOUNDS_HELP = (
    "Also report DeiT-LT's head/mid/tail split (classes sorted by training count, cut at two positions): cifar10 "
    "(3,7), cifar100 (36,71), imagenet_lt (390,835), inat18 (842,4543), 'auto' (one of those, told by the dataset's "
    "name or training folder; an error when it names none) or an explicit 'HEAD_END,TAIL_START'. Default: off (only "
    "the many/medium/few count groups)."
)


def field_default(arguments, name: str):
    """The default of the dataclass field `name` of `arguments` (an instance or a dataclass)."""
    declared = next(f for f in fields(arguments) if f.name == name)
    return declared.default_factory() if declared.default is MISSING else declared.default


def explicit_flags(arguments, names) -> list[str]:
    """`--name value` for those of `names` that `arguments` (a parsed dataclass) holds at another value than the
    field's default: the flags the user gave (a flag given at its default value changes nothing)."""
    return [f"--{name} {_flag_value(getattr(arguments, name))}" for name in names
            if getattr(arguments, name) != field_default(arguments, name)]


def _flag_value(value) -> str:
    """A value as the command line writes it (`true`, not `True`)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def refuse_flags(arguments, names, reason: str) -> None:
    """`ValueError` naming the flags of `names` the user gave (`explicit_flags`) and `reason` (what works instead)."""
    given = explicit_flags(arguments, names)
    if given:
        raise ValueError(f"{', '.join(given)}: {reason}")


def check_training_flags(training_args) -> None:
    """Refuse the training flags of a script that would change nothing (`ValueError` naming them): those that only
    act with another flag the user left off, and `--learning_rate` given with `--base_learning_rate` (which sets the
    learning rate)."""
    if not getattr(training_args, "freeze_encoder", False):
        refuse_flags(training_args, ["reinit_head"], "it only acts with --freeze_encoder true (cRT); add that flag.")
    if not getattr(training_args, "model_ema", False):
        refuse_flags(training_args, ["model_ema_decay", "model_ema_force_cpu"],
                     "they set the EMA of the weights, which is off: add --model_ema true.")
    if getattr(training_args, "base_learning_rate", None) is not None:
        refuse_flags(training_args, ["learning_rate"],
                     f"--base_learning_rate {training_args.base_learning_rate} sets the learning rate (base * "
                     "effective batch / 256); give one of the two.")


BALANCED_LOSS_TYPES = ("bal_bce", "bal_ce")  # the losses with a class prior, whose strength `--bal_tau` sets


def check_bal_tau(bal_tau: float | None, loss_type: str, loss_flag: str = "--loss_type") -> None:
    """Refuse `--bal_tau` (`bal_tau`: the value the user gave, None when left off) when the loss `loss_type` has no
    class prior for it to scale (ce, bce, LDAM): `ValueError` naming the flag and the losses it acts on."""
    if bal_tau is not None and loss_type not in BALANCED_LOSS_TYPES:
        raise ValueError(
            f"--bal_tau {bal_tau}: it sets the strength of the class prior of the balanced losses "
            f"({', '.join(BALANCED_LOSS_TYPES)}), and the loss here is {loss_type}, which has none. Drop --bal_tau, or "
            f"choose a balanced loss ({loss_flag} {' / '.join(BALANCED_LOSS_TYPES)})."
        )


@dataclass
class LongTailTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the MAE/LiVT learning-rate rule and layer-wise decay."""

    base_learning_rate: float | None = field(
        default=None,
        metadata={"help": "If set, learning_rate = base_learning_rate * effective batch size / 256 (MAE rule)."},
    )
    layer_decay: float = field(
        default=0.75, metadata={"help": "Layer-wise lr decay (fine-tuning of our ViTs); 1.0 turns it off."}
    )
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay (none on biases/norms/tokens)."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Per-step schedule after warmup."})
    warmup_steps: float = field(default=0.05, metadata={"help": "Warmup steps (a value below 1 is a ratio)."})
    repeated_augmentation: int = field(
        default=1,
        metadata={"help": "Repeated augmentation (DeiT's RASampler): each epoch shows a 1/N share of the images N "
                  "times each, every copy augmented differently (copies on different processes under DDP); 1 = off."},
    )
    sampler: str = field(
        default="instance",
        metadata={
            "help": "Which images each epoch draws (Kang et al. 2020): instance (every image once, shuffled), or, with "
            "replacement and as many draws as images, class_balanced (every class equally likely), square_root "
            "(class j ~ sqrt(n_j)) or progressive (instance -> class-balanced linearly over the epochs).",
            "choices": list(SAMPLERS),
        },
    )
    freeze_encoder: bool = field(
        default=False,
        metadata={
            "help": "Classifier re-training (cRT): train only the classification head(s) of --model_name_or_path "
            "(LiVT: classifier; DeiT-LT: both heads; CIFAR ResNet: linear), the rest frozen and in eval mode. "
            "Usually with --sampler class_balanced."
        },
    )
    reinit_head: bool = field(
        default=True,
        metadata={"help": "With --freeze_encoder: re-initialise the head(s) first, as cRT (false: go on from them)."},
    )
    max_grad_norm: float = field(
        default=0.0,
        metadata={"help": "Gradient clipping norm; 0 turns it off (neither official repo clips; transformers: 1.0)."},
    )
    report_to: str | None = field(
        default_factory=lambda: "tensorboard" if is_tensorboard_available() else "none",
        metadata={"help": "Loggers; tensorboard by default when it is installed."},
    )
    model_ema: bool = field(
        default=False,
        metadata={
            "help": "Keep an EMA of the weights (DeiT/DeiT-LT: on), updated after every optimizer step, saved in each "
            "checkpoint (model_ema.safetensors) and at the end as OUTPUT_DIR/ema/ (a from_pretrained folder). "
            "Evaluation and model selection use the raw model, as DeiT."
        },
    )
    model_ema_decay: float = field(default=0.99996, metadata={"help": "EMA decay per optimizer step (DeiT: 0.99996)."})
    model_ema_force_cpu: bool = field(
        default=False, metadata={"help": "Keep the EMA on the CPU (saves accelerator memory; DeiT's flag)."}
    )

    def __post_init__(self):
        super().__post_init__()
        check_sampler_name(self.sampler)  # from Python too (the command line checks `choices`)


@dataclass
class MGPTrainingArguments(LongTailTrainingArguments):
    """MGP (MAE) defaults: AdamW betas (0.9, 0.95), no layer decay."""

    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW beta2 (MAE pretraining uses 0.95)."})
    layer_decay: float = field(default=1.0, metadata={"help": "Layer-wise lr decay (off for pretraining)."})
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Keep the image column for MAE's transform (true, which would drop it, is refused)."},
    )
    num_reconstruction_images: int = field(
        default=8,
        metadata={
            "help": "Validation images (training images, eval transform, without a validation split) drawn in "
            "mgp_reconstructions.png at the end of training: original / masked / reconstruction / pasted; 0 = none."
        },
    )


@dataclass
class ViTModelArguments:
    """Which ViT to build or load: the fields the LiVT and DeiT-LT scripts share."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Checkpoint to start from (an MGP or converted folder, or a Hub id); none = from scratch."},
    )
    config_name: str = field(
        default="tiny",
        metadata={"help": "Preset (tiny, small, base, large) or a config path, used when training from scratch."},
    )
    config_overrides: str | None = field(
        default=None, metadata={"help": "Comma-separated config overrides, e.g. 'hidden_size=128,num_hidden_layers=6'."}
    )
    image_size: int | None = field(default=None, metadata={"help": "Input size (default: the config's)."})
    patch_size: int | None = field(default=None, metadata={"help": "Patch size when building from a preset."})
    bal_tau: float | None = field(default=None, metadata={"help": "Strength of the balanced losses' prior (1.0)."})
    drop_path_rate: float | None = field(default=None, metadata={"help": "Stochastic depth (fine-tuning: 0.1)."})
    attn_implementation: str | None = field(default=None, metadata={"help": "sdpa (default) or eager."})


@dataclass
class ModelArguments(ViTModelArguments):
    """Which LiVT model to build or load (MGP and fine-tuning)."""

    loss_type: str | None = field(
        default=None,
        metadata={"help": "bal_bce (default), bal_ce, bce or ce (fine-tuning; run_mgp.py refuses it).",
                  "choices": list(LOSS_TYPES)},
    )
    mask_ratio: float | None = field(
        default=None, metadata={"help": "MGP mask ratio (0.75; also on top of a checkpoint). run_mgp.py only."}
    )


@dataclass
class AugmentationArguments:
    """Transforms and batch mixing."""

    normalization: str = field(
        default="imagenet",
        metadata={"help": "Mean/std: imagenet, cifar, digits, imagenet_lt, inat18 (LiVT's dataset statistics), or "
                  "'dataset' (computed on the training split)."},
    )
    mixup: float = field(default=0.8, metadata={"help": "MixUp alpha (0 disables)."})
    cutmix: float = field(default=1.0, metadata={"help": "CutMix alpha (0 disables)."})
    mixup_switch_prob: float = field(default=0.5, metadata={"help": "Probability of CutMix instead of MixUp."})
    mixup_prob: float = field(default=1.0, metadata={"help": "Probability that a batch is mixed."})
    label_smoothing: float = field(default=0.1, metadata={"help": "Label smoothing folded into the soft targets."})
    rand_augment: bool = field(
        default=True, metadata={"help": "RandAugment when fine-tuning: timm's own, with the --auto_augment policy."}
    )
    auto_augment: str = field(
        default="rand-m9-mstd0.5-inc1",
        metadata={
            "help": "timm auto-augment config string used when --rand_augment (the official LiVT/DeiT-LT "
            "rand-m9-mstd0.5-inc1: 2 ops per image, magnitude 9/10 with N(0, 0.5) noise, timm's increasing op set)."
        },
    )
    random_erasing: float = field(default=0.25, metadata={"help": "RandomErasing probability."})


@dataclass
class FinetuneTrainingArguments(LongTailTrainingArguments):
    """Fine-tuning defaults: evaluate and save every epoch, keep the best model by validation accuracy."""

    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate on the validation split."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save checkpoints."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "Keep the best validation checkpoint."})
    metric_for_best_model: str = field(default="accuracy", metadata={"help": "Validation metric for model selection."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept on disk."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the image column for the transform."})
    index_bounds: str | None = field(default=None, metadata={"help": INDEX_BOUNDS_HELP})
    save_steps: float | None = field(
        default=None,
        metadata={"help": "Save every N steps; given without --save_strategy, it switches saving to 'steps'."},
    )

    def __post_init__(self):
        self._apply_explicit_flags()
        super().__post_init__()
        parse_index_bounds(self.index_bounds)  # a bad name fails here, before any data is loaded

    def _apply_explicit_flags(self):
        """Our defaults (evaluate and save every epoch, keep the best model) differ from `TrainingArguments`'; an
        explicit flag of the user must never be ignored or made to fail by them: `--save_steps`/`--eval_steps` switch
        their strategy (still our default "epoch") to "steps" (the other one follows, for the best model), and without
        evaluation there is no best model to keep."""
        if self.eval_steps is not None and self.eval_strategy == "epoch":
            logger.info("--eval_steps %s given: eval_strategy 'steps'", self.eval_steps)
            self.eval_strategy = "steps"
        if self.save_steps is not None and self.save_strategy == "epoch":
            logger.info("--save_steps %s given: save_strategy 'steps'", self.save_steps)
            self.save_strategy = "steps"
        if self.eval_strategy == "no" and self.load_best_model_at_end:
            logger.info("no evaluation (--eval_strategy no): load_best_model_at_end turned off, the last model is kept")
            self.load_best_model_at_end = False
        if self.load_best_model_at_end and self.eval_strategy == "steps" and self.save_strategy == "epoch":
            # best-model loading needs matching strategies: save where we evaluate
            self.save_strategy, self.save_steps = "steps", self.save_steps or self.eval_steps
        if self.load_best_model_at_end and self.save_strategy == "steps" and self.eval_strategy == "epoch":
            # ... and, --save_steps alone, evaluate where we save
            self.eval_strategy, self.eval_steps = "steps", self.eval_steps or self.save_steps
        if self.save_steps is None:
            self.save_steps = 500  # TrainingArguments' default
