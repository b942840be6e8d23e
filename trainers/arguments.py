"""Argument dataclasses shared by the scripts (parsed with `transformers.HfArgumentParser`)."""

from __future__ import annotations

import logging
from dataclasses import MISSING, dataclass, field, fields

from transformers import TrainingArguments
from transformers.integrations import is_tensorboard_available

from modeling_livt.data.loading import DataOptions
from modeling_livt.data.long_tail import IMBALANCE_PROFILES, VALIDATION_SOURCES
from modeling_livt.evaluation.metrics import parse_index_bounds
from modeling_livt.models.losses import LOSS_TYPES, check_class_balanced_beta

from .class_sampling import SAMPLERS, check_sampler_name
from .drw import DEFAULT_DRW_BETA
from .optim import scaled_learning_rate

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
    act with another flag the user left off. (`--learning_rate` with `--base_learning_rate` fails as the arguments are
    made: `LongTailTrainingArguments.__post_init__`.)"""
    if not getattr(training_args, "freeze_encoder", False):
        refuse_flags(training_args, ["reinit_head"], "it only acts with --freeze_encoder true (cRT); add that flag.")
    if not getattr(training_args, "model_ema", False):
        refuse_flags(training_args, ["model_ema_decay", "model_ema_force_cpu"],
                     "they set the EMA of the weights, which is off: add --model_ema true.")


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
        self._apply_base_learning_rate()

    def _apply_base_learning_rate(self):
        """The one place `--base_learning_rate` acts: learning_rate = base * effective batch / 256 (MAE's rule; the
        effective batch is per-device batch x accumulation steps x processes), set as the arguments are made, so
        the trainer, the logs and the model card all see the rate trained with. `--learning_rate` given too is
        refused (`ValueError`)."""
        if self.base_learning_rate is None:
            return
        effective_batch = self.per_device_train_batch_size * self.gradient_accumulation_steps * self.world_size
        scaled = scaled_learning_rate(self.base_learning_rate, effective_batch)
        if self.learning_rate == scaled:  # already applied (arguments re-made from their own values)
            return
        refuse_flags(self, ["learning_rate"],
                     f"--base_learning_rate {self.base_learning_rate} sets the learning rate (base * effective batch "
                     "/ 256); give one of the two.")
        self.learning_rate = scaled


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
class DataArguments(DataOptions):
    """Which data to train on and how to make it long-tailed: `DataOptions` (what the library's
    `load_image_datasets` reads, and where bad values fail) with the help of each flag."""

    dataset_name: str = field(
        default="digits",
        metadata={
            "help": "'digits' (scikit-learn's 8x8 digits, offline), a Hub dataset name, a local folder in the HF "
            "parquet layout (e.g. ../shared/data/cifar10) or a folder written by Dataset(Dict).save_to_disk."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Dataset configuration name (Hub)."})
    train_dir: str | None = field(default=None, metadata={"help": "imagefolder directory of training images."})
    validation_dir: str | None = field(default=None, metadata={"help": "imagefolder directory of validation images."})
    test_dir: str | None = field(default=None, metadata={"help": "imagefolder directory of test images."})
    image_column_name: str = field(default="image", metadata={"help": "Column holding the images."})
    label_column_name: str = field(default="label", metadata={"help": "Column holding the integer class labels."})
    imbalance_factor: float | None = field(
        default=None,
        metadata={
            "help": "Make the training pool long-tailed with rho = n_max / n_min (e.g. 100 for CIFAR-10-LT). "
            "None uses the data as is (for data that is long-tailed already)."
        },
    )
    imbalance_profile: str = field(
        default="exp",
        metadata={"help": "Long-tail profile: 'exp' (CIFAR-LT) or 'step'.", "choices": list(IMBALANCE_PROFILES)},
    )
    lt_seed: int = field(
        default=0,
        metadata={
            "help": "Seed of every data-split decision (validation carve, long-tail draw, max_*_samples), kept "
            "apart from the training seed so that changing the latter keeps the same images."
        },
    )
    validation_split_percentage: int | None = field(
        default=None,
        metadata={
            "help": "Percentage of the training pool carved out (stratified, seeded, before long-tailing) as the "
            "validation split when the dataset has none. Default: 10 when there is no validation split."
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Stream the training split as an IterableDataset (shuffled with a buffer; needs max_steps). "
            "Long-tailing or carving a validation split draws the subset map-style first, then streams it."
        },
    )
    shuffle_buffer_size: int = field(default=1000, metadata={"help": "Shuffle buffer of the streamed train split."})
    streaming_num_shards: int = field(
        default=8,
        metadata={"help": "Shards when a map-style train split is streamed (DataLoader workers <= shards)."},
    )
    class_counts_file: str | None = field(
        default=None,
        metadata={
            "help": "JSON with the training class counts (a list in label order or {label_name: count}). Needed "
            "to skip the counting pass over a streamed dataset; checked against the data when labels are at hand."
        },
    )
    skip_corrupt_images: bool = field(
        default=False,
        metadata={"help": "Skip (and count) examples whose image cannot be decoded instead of failing."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep a seeded random subset of this many training examples (debugging)."}
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={"help": "Keep a seeded random subset of this many validation and test examples (debugging)."},
    )
    validation_source: str = field(
        default="auto",
        metadata={
            "help": "Where a carved validation split comes from when the dataset has none. 'unused': long-tail the "
            "full training pool (the benchmark's counts, e.g. CIFAR-10-LT 5000 ... 50) and draw validation from the "
            "images the long-tail draw left unused; 'pool': carve validation from the pool first, then long-tail "
            "the rest (counts shrink by the percentage); 'auto': 'unused' when --imbalance_factor is set, else "
            "'pool' (nothing is left over).",
            "choices": list(VALIDATION_SOURCES),
        },
    )
    split_indices_file: str | None = field(
        default=None,
        metadata={
            "help": "long_tailed_indices.json of an earlier run: reuse that long-tailed split instead of drawing "
            "one again (resume must not re-draw)."
        },
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


# ---------------------------------------------------------------------------------------------------------------------
# Parameter-efficient fine-tuning (scripts/run_finetune.py --peft lora)
# ---------------------------------------------------------------------------------------------------------------------
PEFT_METHODS = ("lora",)
LORA_FLAGS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "merge_adapter")


@dataclass
class PeftArguments:
    """Parameter-efficient fine-tuning with the `peft` library: a LoRA adapter on the attention projections, the
    classification head trained in full (the label space is new). The `--lora_*` flags act only with `--peft lora`."""

    peft: str | None = field(
        default=None,
        metadata={"help": "Train a LoRA adapter instead of every weight ('lora'); none = full fine-tuning. The output "
                  "folder then holds the adapter (peft.PeftModel.from_pretrained(base_model, OUTPUT_DIR)).",
                  "choices": list(PEFT_METHODS)},
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank r (--peft lora)."})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA scaling alpha: the update is alpha / r * B A."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA branch's input."})
    lora_target_modules: str | None = field(
        default=None,
        metadata={"help": "Comma list of the Linear modules that get an adapter (names or name suffixes). Default: "
                  "the attention projections: qkv for LiVT, q_proj,v_proj for transformers ViT (query,value for "
                  "older checkpoints)."},
    )
    merge_adapter: bool = field(
        default=False,
        metadata={"help": "Also export OUTPUT_DIR/merged/: the adapter merged into the weights (merge_and_unload), a "
                  "plain model folder that pipeline(), run_eval.py and post-hoc fitting load."},
    )

    def __post_init__(self):
        # a --lora_* flag without --peft lora would change nothing: refused now, before any data is loaded
        if self.peft is None:
            refuse_flags(self, LORA_FLAGS, "they set the LoRA adapter, which is off: add --peft lora.")
        elif self.peft not in PEFT_METHODS:
            raise ValueError(f"--peft {self.peft}: choose one of {', '.join(PEFT_METHODS)}.")
        if self.lora_r < 1:
            raise ValueError(f"--lora_r {self.lora_r} must be a positive rank.")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"--lora_dropout {self.lora_dropout} must be in [0, 1).")


# ---------------------------------------------------------------------------------------------------------------------
# DeiT-LT (scripts/run_deit_lt.py)
# ---------------------------------------------------------------------------------------------------------------------
DEFAULT_DISTILLATION_ALPHA = 0.5  # DeiT-LT: the CLS and DIST terms weigh the same


@dataclass
class DeiTLTModelArguments(ViTModelArguments):
    """The DeiT-LT student."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Start from a DeiT-LT checkpoint, or from a LiVT one (MGP or fine-tuned: the combined LiVT -> "
            "DeiT-LT recipe, via modeling_livt.deit_lt_from_livt); none = from scratch."
        },
    )
    config_name: str = field(
        default="tiny", metadata={"help": "Preset (tiny, small, base: DeiT-Ti/S/B) or a config path (from scratch)."}
    )
    cls_loss_type: str = field(
        default="ce",
        metadata={"help": "Loss of the CLS head: ce (soft-target CE, DeiT-LT), bal_bce (LiVT), bal_ce or bce.",
                  "choices": list(LOSS_TYPES)},
    )


@dataclass
class DistillationArguments:
    """The teacher, the weight of its term and the deferred re-weighting schedule (`DeiTLTTrainer`'s arguments)."""

    teacher_name_or_path: str = field(
        metadata={
            "help": "Teacher folder or Hub id: any AutoModelForImageClassification with the student's label space "
            "(scripts/run_teacher.py writes one; transformers ResNet/RegNet/ConvNeXt work too)."
        }
    )
    teacher_image_size: int | None = field(
        default=None,
        metadata={"help": "Teacher input size; the student's batch is resized to it (bicubic). Default: the size of "
                  "the teacher's image processor."},
    )
    distillation_alpha: float = field(
        default=DEFAULT_DISTILLATION_ALPHA,
        metadata={"help": "Weight of the distillation term: (1 - a) * cls + a * dist."},
    )
    drw_epoch: float | None = field(
        default=None, metadata={"help": "Epoch from which the DIST loss is class-balanced (sized data)."}
    )
    drw_step: int | None = field(
        default=None, metadata={"help": "Optimizer step from which the DIST loss is class-balanced (streaming)."}
    )
    drw_beta: float = field(
        default=DEFAULT_DRW_BETA, metadata={"help": "Beta of the class-balanced DIST weights after the DRW point."}
    )
    no_mixup_after_drw: bool = field(
        default=False,
        metadata={"help": "Stop MixUp/CutMix (and label smoothing) from the DRW point: plain CE on the CLS head "
                  "(the CIFAR recipe)."},
    )

    def __post_init__(self):
        # bad values fail here, before any data or model is loaded
        if not 0.0 <= self.distillation_alpha <= 1.0:
            raise ValueError(f"--distillation_alpha {self.distillation_alpha} must be in [0, 1].")
        check_class_balanced_beta(self.drw_beta, "drw_beta")


@dataclass
class DeiTLTTrainingArguments(FinetuneTrainingArguments):
    """DeiT-LT defaults: AdamW lr 5e-4 (DeiT: 5e-4 x batch / 512), no layer decay (0.75 suits a LiVT MGP start),
    repeated augmentation x3 (DeiT's RASampler)."""

    learning_rate: float = field(default=5e-4, metadata={"help": "Peak AdamW learning rate."})
    layer_decay: float = field(default=1.0, metadata={"help": "Layer-wise lr decay (1.0: off, training from scratch)."})
    repeated_augmentation: int = field(
        default=3, metadata={"help": "Repeated augmentation (DeiT's RASampler, on in the official runs); 1 = off."}
    )


# ---------------------------------------------------------------------------------------------------------------------
# DeiT-LT's flat teacher (scripts/run_teacher.py)
# ---------------------------------------------------------------------------------------------------------------------
TEACHER_LOSS_TYPES = ("bal_ce", "bal_bce", "ce", "bce", "ldam", "ldam_drw")
TEACHER_ARCHS = ("resnet_cifar",)
LDAM_MAX_M, LDAM_S = 0.5, 30.0  # LDAM's largest margin and logit scale (Cao et al., 2019)
DEFAULT_BAL_TAU = 1.0
SAM_BASE_OPTIMIZERS = ("sgd", "adamw")


@dataclass
class TeacherModelArguments:
    """The teacher model and its loss."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A transformers image classifier to fine-tune as the teacher (folder or Hub id; its head is "
                  "replaced for the data's classes). None: a new --teacher_arch."},
    )
    teacher_arch: str | None = field(
        default=None,
        metadata={"help": "Architecture of a new teacher: resnet_cifar (CIFAR ResNet, ResNet-32 by default; the "
                  "default for images up to 64 px), or timm:NAME for any timm model (e.g. timm:resnet18, "
                  "timm:resnet50; names: timm.list_models()), built with random weights and saved loadable by timm "
                  "and transformers."},
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Config overrides: of a new resnet_cifar, e.g. 'depth=20,base_width=32'; on top of "
                  "--model_name_or_path, fields that keep its weights' shapes (e.g. eps; the others are refused)."},
    )
    image_size: int | None = field(
        default=None, metadata={"help": "Input size (default: 32 for a new teacher, else the model's processor)."}
    )
    loss_type: str = field(
        default="bal_ce",
        metadata={"help": "bal_ce (default), bal_bce, ce, bce, ldam, or ldam_drw (LDAM + class-balanced weights "
                  "from --drw_epoch, default 80%% of training).", "choices": list(TEACHER_LOSS_TYPES)},
    )
    bal_tau: float = field(
        default=DEFAULT_BAL_TAU, metadata={"help": "Prior strength of the balanced losses (bal_ce, bal_bce only)."}
    )
    ldam_max_m: float = field(default=LDAM_MAX_M, metadata={"help": "LDAM's largest margin (rarest class)."})
    ldam_s: float = field(default=LDAM_S, metadata={"help": "LDAM's logit scale."})
    drw_epoch: float | None = field(default=None, metadata={"help": "DRW epoch of ldam_drw (sized data)."})
    drw_step: int | None = field(default=None, metadata={"help": "DRW optimizer step of ldam_drw (streaming)."})
    drw_beta: float = field(
        default=DEFAULT_DRW_BETA, metadata={"help": "Beta of the class-balanced DRW weights (with DRW only)."}
    )


@dataclass
class TeacherAugmentationArguments(AugmentationArguments):
    """CNN-teacher defaults (the CIFAR LDAM-DRW recipe): crop + flip + RandAugment, no mixing, no smoothing, no
    erasing. The DeiT-LT student mixes its batches anyway; the teacher sees those at distillation time."""

    mixup: float = field(default=0.0, metadata={"help": "MixUp alpha (0 disables)."})
    cutmix: float = field(default=0.0, metadata={"help": "CutMix alpha (0 disables)."})
    label_smoothing: float = field(default=0.0, metadata={"help": "Label smoothing."})
    random_erasing: float = field(default=0.0, metadata={"help": "RandomErasing probability."})


@dataclass
class TeacherTrainingArguments(FinetuneTrainingArguments):
    """SAM around SGD: lr 0.1, momentum 0.9, weight decay 5e-4, rho 0.05, cosine schedule, no gradient clipping."""

    learning_rate: float = field(default=0.1, metadata={"help": "Peak learning rate of the base optimizer."})
    weight_decay: float = field(default=5e-4, metadata={"help": "Weight decay (none on biases and norms)."})
    layer_decay: float = field(
        default=1.0, metadata={"help": "Off for the teacher (one lr for every layer): a value other than 1.0 is "
                               "refused."}
    )
    max_grad_norm: float = field(default=0.0, metadata={"help": "Gradient clipping (0: off, as the CIFAR recipes)."})
    warmup_steps: float = field(
        default=0.0, metadata={"help": "Warmup in optimizer steps (below 1: a ratio of the run), instead of "
                               "--warmup_epochs."}
    )
    warmup_epochs: float | None = field(
        default=None,
        metadata={"help": "Linear warmup over the first N epochs. Default: 5 (LDAM-DRW / PaCo, of 200 epochs), at "
                  "most a quarter of the run. At lr 0.1 the kaiming-initialised ResNet-32 needs it: with 10 warmup "
                  "steps it collapses to predicting the class prior."},
    )
    lr_decay_epochs: str | None = field(
        default=None,
        metadata={"help": "Step the learning rate down by --lr_decay_gamma at each of these epochs (comma-separated; "
                  "160,180 with gamma 0.01 is the official LDAM-DRW / Saddle-LongTail CIFAR schedule). Needs "
                  "--lr_scheduler_type constant_with_warmup (the warmup comes first)."},
    )
    lr_decay_gamma: float | None = field(
        default=None, metadata={"help": "The factor of each --lr_decay_epochs step (default 0.1)."}
    )
    sam_rho: float = field(default=0.05, metadata={"help": "SAM neighbourhood radius rho."})
    sam_adaptive: bool = field(default=False, metadata={"help": "ASAM (scale-invariant neighbourhood; use rho ~2)."})
    sam_base_optimizer: str = field(
        default="sgd",
        metadata={"help": "Base optimizer of SAM (replaces --optim, which is refused).",
                  "choices": list(SAM_BASE_OPTIMIZERS)},
    )
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum (--sam_base_optimizer sgd)."})
    nesterov: bool = field(default=False, metadata={"help": "Nesterov momentum (--sam_base_optimizer sgd)."})
    channels_last: bool = field(
        default=True, metadata={"help": "Channels-last memory format for the teacher's convolutions (faster on CPU "
                                "with oneDNN and on GPU tensor cores; false: PyTorch's default NCHW)."}
    )

    def __post_init__(self):
        super().__post_init__()
        self.lr_decay_milestones()  # refuses a malformed or mismatched step schedule before anything is loaded
        if self.warmup_epochs is not None:
            if self.warmup_steps:
                raise ValueError(
                    f"--warmup_steps {self.warmup_steps:g} and --warmup_epochs {self.warmup_epochs:g} both set the "
                    "warmup: give one."
                )
            if self.warmup_epochs < 0 or (self.max_steps <= 0 and self.warmup_epochs >= self.num_train_epochs):
                raise ValueError(
                    f"--warmup_epochs {self.warmup_epochs:g} must be below --num_train_epochs "
                    f"{self.num_train_epochs:g}."
                )

    def lr_decay_milestones(self) -> tuple[list[float], float] | None:
        """`--lr_decay_epochs` as increasing epochs and the factor of each step, or None when the schedule has no
        steps. Refuses epochs that do not parse, do not increase or lie outside the run, a gamma outside (0, 1) or
        without epochs, and a schedule other than constant_with_warmup (the steps scale a constant rate)."""
        if self.lr_decay_epochs is None:
            if self.lr_decay_gamma is not None:
                raise ValueError(f"--lr_decay_gamma {self.lr_decay_gamma:g}: it is the factor of the --lr_decay_epochs "
                                 "steps, which are not given. Pass --lr_decay_epochs (e.g. 160,180) or drop it.")
            return None
        given = self.lr_decay_epochs
        try:
            epochs = [float(epoch) for epoch in str(given).split(",")]
        except ValueError:
            epochs = []
        last = self.num_train_epochs if self.max_steps <= 0 else float("inf")
        if not epochs or epochs[0] <= 0 or epochs[-1] >= last or any(b <= a for a, b in zip(epochs, epochs[1:])):
            raise ValueError(f"--lr_decay_epochs {given!r}: give increasing epochs inside the run (0 < epoch < "
                             f"--num_train_epochs {self.num_train_epochs:g}), separated by commas, e.g. 160,180.")
        gamma = 0.1 if self.lr_decay_gamma is None else self.lr_decay_gamma
        if not 0 < gamma < 1:
            raise ValueError(f"--lr_decay_gamma {gamma:g}: each step multiplies the learning rate by it; give a "
                             "value between 0 and 1 (0.01 in the official schedule).")
        scheduler = getattr(self.lr_scheduler_type, "value", self.lr_scheduler_type)
        if scheduler != "constant_with_warmup":
            raise ValueError(f"--lr_decay_epochs {given}: it steps a constant learning rate down, and "
                             f"--lr_scheduler_type is {scheduler}. Pass --lr_scheduler_type constant_with_warmup.")
        return epochs, gamma
