"""One builder for the classification scripts (run_finetune.py, run_teacher.py, run_deit_lt.py).

A script subclasses `ClassificationScript` (`ViTClassificationScript` for our ViTs): it declares its argument
dataclasses, its model card and its trainer class, and writes only what is its own: the input size, the model, the
recipe lines of its card and its trainer's own arguments. `ClassificationScript.run` does the rest, the same way for
every script: logging and seed, the long-tailed data with its transforms and collators, the trainer (its callbacks
come with `LongTailTrainerMixin`), training (resuming when asked), the validation and the one test evaluation with
its JSON and plots, the model card, the push and the end of the process group.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from abc import ABC, abstractmethod
from functools import cached_property

from transformers import PreTrainedConfig, PreTrainedModel, Trainer, TrainingArguments, set_seed

from modeling_livt.config_overrides import parse_config_overrides
from modeling_livt.hub.model_card import write_model_card
from modeling_livt.models.configuration_vit import POSTHOC_FIELDS

from .arguments import AugmentationArguments, DataArguments, check_bal_tau, check_training_flags, field_default
from .base import LongTailTrainerMixin
from .class_sampling import SAMPLER_DESCRIPTIONS
from .cli import parse_args, setup_logging
from .optim import check_optimizer_choice
from .workflow import (
    PreparedData,
    build_config,
    evaluate_and_report,
    prepare_data,
    push_and_end,
    resolve_index_bounds,
    train_and_save,
)

logger = logging.getLogger(__name__)


class ClassificationScript(ABC):
    """A classification script: parse its arguments, then `run()` it.

    Subclasses set the class attributes and implement `input_size`, `build_model` and `recipe_lines` (and
    `trainer_kwargs` when their trainer takes more than `BalancedTrainer`'s arguments). The parsed arguments are
    `model_args` (the first of `argument_types`), `data_args`, `aug_args` and `training_args`; `arguments_of` finds
    any other. During `run()` the hooks can read `image_size`, `prepared` (the data) and, from `build_model` on,
    `model`.
    """

    argument_types: tuple[type, ...]  # the HfArgumentParser dataclasses, in --help order, model arguments first
    model_card_method: str  # the card template (model_cards/<method>.md.j2)
    trainer_class: type[Trainer]
    teacher_reference: str | None = None  # the teacher the card names (DeiT-LT)

    def __init__(self, argv: list[str] | None = None):
        self.arguments = parse_args(self.argument_types, argv)
        self.model_args = self.arguments[0]
        self.data_args: DataArguments = self.arguments_of(DataArguments)
        self.aug_args: AugmentationArguments = self.arguments_of(AugmentationArguments)
        self.training_args: TrainingArguments = self.arguments_of(TrainingArguments)
        self.image_size: int | None = None
        self.prepared: PreparedData | None = None
        self.model: PreTrainedModel | None = None
        self.recipe: dict = {}
        self.test_metrics: dict = {}  # filled by the test evaluation; the card writer reads it
        self.check_flags()

    def check_flags(self) -> None:
        """Refuse, before any data is loaded, the flags this script cannot honour (`ValueError` naming them): training
        flags that would change nothing (`check_training_flags`) and an `--optim` that our optimizer cannot build (a
        trainer with an optimizer of its own, e.g. SAM, decides)."""
        check_training_flags(self.training_args)
        if self.trainer_class.create_optimizer is LongTailTrainerMixin.create_optimizer:
            check_optimizer_choice(self.training_args)

    def arguments_of(self, dataclass_type: type):
        """The parsed instance of `dataclass_type` (or of a subclass of it)."""
        return next(arguments for arguments in self.arguments if isinstance(arguments, dataclass_type))

    # ----------------------------------------------------------------------------------------------- the hooks
    @abstractmethod
    def input_size(self) -> int:
        """The image size the data is transformed to, known before the data is loaded."""

    @abstractmethod
    def build_model(self) -> PreTrainedModel:
        """The model to train, for the classes of `self.prepared.data`."""

    @abstractmethod
    def recipe_lines(self) -> dict:
        """The model card's recipe: the script's own lines, with `shared_recipe_lines()` where they belong."""

    def trainer_kwargs(self) -> dict:
        """Arguments of `trainer_class` beyond the model, the data, the collators and the card writer."""
        return {}

    # ----------------------------------------------------------------------------------------------- the run
    def run(self) -> dict:
        """Train, evaluate on the test split once and write the card; returns the test metrics."""
        trainer = self.build_trainer()
        return self.train_and_evaluate(trainer)

    def build_trainer(self) -> Trainer:
        """Everything before training: logging and seed, the data, the model and the trainer (with its callbacks),
        ready to `train_and_evaluate`."""
        setup_logging(self.training_args)
        set_seed(self.training_args.seed)
        self.image_size = self.input_size()
        self.prepared = prepare_data(self.data_args, self.aug_args, self.training_args, self.image_size,
                                     stage="finetune")
        self.model = self.build_model()
        trainer = self.trainer_class(
            model=self.model,
            args=self.training_args,
            train_dataset=self.prepared.train,
            eval_dataset=self.prepared.validation,
            data_collator=self.prepared.train_collator,
            eval_data_collator=self.prepared.eval_collator,
            processing_class=self.prepared.image_processor,
            model_card_writer=self.write_model_card,
            **self.trainer_kwargs(),
        )
        self.recipe = self.recipe_lines()
        return trainer

    def train_and_evaluate(self, trainer) -> dict:
        """Train and save, evaluate on the validation split, evaluate the test split once (never used for selection)
        with its JSON and plots, write the card, push if asked. `--index_bounds` adds DeiT-LT's head/mid/tail split
        to the test metrics; a bad value fails before training."""
        data = self.prepared.data
        index_bounds = resolve_index_bounds(getattr(self.training_args, "index_bounds", None),
                                            self.prepared.data_sources, data.class_counts)
        train_and_save(trainer, self.training_args)
        if self.prepared.validation is not None:
            metrics = trainer.evaluate()
            trainer.log_metrics("eval", metrics)
            trainer.save_metrics("eval", metrics)
        if self.prepared.test is not None:  # evaluated once, at the end, never for model selection
            self.test_metrics.update(evaluate_and_report(
                trainer, self.prepared.test, data.class_counts, self.training_args.output_dir, data.label_names,
                index_bounds=index_bounds,
            ))
        if data.corrupt_images.count:
            logger.warning("skipped %d corrupt images", data.corrupt_images.count)
        if trainer.is_world_process_zero():
            self.write_model_card()
            self.export_extra_outputs(trainer)
        push_and_end(trainer, self.training_args)
        return self.test_metrics

    def export_extra_outputs(self, trainer) -> None:
        """Folders written beside the saved model once it is evaluated (main process, before the push), e.g.
        run_finetune.py's merged adapter; none by default."""
        return None

    def write_model_card(self) -> None:
        """The output folder's README.md: test results, class counts and recipe (also what `push_to_hub` uploads)."""
        data, output_dir = self.prepared.data, self.training_args.output_dir
        write_model_card(
            output_dir, self.model_card_method, model_name=os.path.basename(os.path.abspath(output_dir)),
            metrics=self.test_metrics, class_counts=data.class_counts, dataset_name=self.data_args.dataset_name,
            imbalance_factor=self.data_args.imbalance_factor, recipe=self.recipe, label_names=data.label_names,
            base_model=self.model_args.model_name_or_path, teacher=self.teacher_reference,
            repo_id=self.training_args.hub_model_id,
        )

    def shared_recipe_lines(self) -> dict:
        """The recipe lines every classification script shares (see `shared_recipe`)."""
        return shared_recipe(self.training_args, self.aug_args, self.image_size)


class ViTClassificationScript(ClassificationScript):
    """A script that trains one of our ViT classifiers (`model_class`: LiVT or DeiT-LT), started from
    `--model_name_or_path` or built from `--config_name` (a preset of `presets` or a config path) and
    `--config_overrides`. Subclasses name the config fields of their loss in `loss_fields`."""

    model_class: type[PreTrainedModel]
    presets: dict
    loss_flag = "--loss_type"  # the flag that names the loss (`loss_fields`)

    def check_flags(self) -> None:
        """Also refuse `--bal_tau` when the loss the model will train with has no class prior (ce, bce)."""
        super().check_flags()
        if self.model_args.bal_tau is not None:
            check_bal_tau(self.model_args.bal_tau, self.planned_loss_type(), self.loss_flag)

    def planned_loss_type(self) -> str:
        """The loss the model will train with, known before any data is loaded: the explicit flag (`loss_fields`),
        else `--config_overrides`, else the checkpoint's config (or the preset's)."""
        config_class = self.model_class.config_class
        name = config_class.loss_field
        explicit = self.loss_fields().get(name)
        if explicit is not None:
            return explicit
        if self.checkpoint_config is None:
            return getattr(build_config(self.model_args, config_class, self.presets), name)
        default = next(f.default for f in dataclasses.fields(config_class) if f.name == name)
        return self.checkpoint_changes.get(name, self.checkpoint_config.get(name, default))

    @cached_property
    def checkpoint_config(self) -> dict | None:
        """The config.json of `--model_name_or_path` as a dict (None when training from scratch)."""
        if not self.model_args.model_name_or_path:
            return None
        return PreTrainedConfig.get_config_dict(self.model_args.model_name_or_path)[0]

    @cached_property
    def checkpoint_changes(self) -> dict:
        """The config fields the explicit model flags set on top of `--model_name_or_path`'s config
        (`checkpoint_config_changes`; a flag the checkpoint's weights cannot take is refused here)."""
        if self.checkpoint_config is None:
            return {}
        return checkpoint_config_changes(self.model_args, self.checkpoint_config, self.model_class.config_class)

    def input_size(self) -> int:
        if self.checkpoint_config is not None:
            return self.checkpoint_changes.get("image_size", self.checkpoint_config["image_size"])
        return build_config(self.model_args, self.model_class.config_class, self.presets).image_size

    def loss_fields(self) -> dict:
        """Config fields of the loss; None keeps the checkpoint's (or the preset's) value."""
        return {}

    def build_model(self) -> PreTrainedModel:
        data = self.prepared.data
        fields = dict(
            num_labels=data.num_classes, id2label=data.id2label, label2id=data.label2id,
            class_counts=data.class_counts, **self.loss_fields(), drop_path_rate=self.model_args.drop_path_rate,
        )
        fields = {name: value for name, value in fields.items() if value is not None}
        if self.checkpoint_config is None:
            return self.model_class(build_config(self.model_args, self.model_class.config_class, self.presets,
                                                 **fields))
        # post-hoc values fitted for the checkpoint's weights would be stale for the weights trained here
        kwargs = dict(self.checkpoint_changes, **fields, image_size=self.image_size,
                      **dict.fromkeys(POSTHOC_FIELDS))
        if self.model_args.attn_implementation:
            kwargs["attn_implementation"] = self.model_args.attn_implementation
        return self.load_pretrained(self.model_args.model_name_or_path, **kwargs)

    def load_pretrained(self, model_name_or_path: str, **kwargs) -> PreTrainedModel:
        """`model_class.from_pretrained` (run_deit_lt.py's: `load_deit_lt_student`, which also takes a LiVT folder)."""
        return self.model_class.from_pretrained(model_name_or_path, **kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# Model flags on top of a checkpoint
# ---------------------------------------------------------------------------------------------------------------------
# Config fields that define a checkpoint's weights: their shapes, or how the same tensors are read (head count,
# activation). No flag can change them on top of a checkpoint. `image_size` can: the position embeddings are resized
# (bicubic, MAE's `interpolate_pos_embed`; the MGP decoder's fixed sin-cos ones are recomputed).
CHECKPOINT_WEIGHT_FIELDS = ("patch_size", "num_channels", "hidden_size", "num_hidden_layers", "num_attention_heads",
                            "intermediate_size", "hidden_act", "qkv_bias")
# ... and the MGP decoder's, for a model that keeps it (run_mgp.py)
MGP_DECODER_WEIGHT_FIELDS = ("decoder_hidden_size", "decoder_num_hidden_layers", "decoder_num_attention_heads",
                             "decoder_intermediate_size")


def checkpoint_config_changes(model_args, checkpoint_config: dict, config_class,
                              weight_fields=CHECKPOINT_WEIGHT_FIELDS) -> dict:
    """The config fields that `--config_overrides`, `--image_size` and `--patch_size` set on top of the config of the
    checkpoint `--model_name_or_path` (`checkpoint_config`, its config.json as a dict), to pass to `from_pretrained`
    (`image_size` resizes the position embeddings). `--image_size` wins over an `image_size=` override, as when
    building from a preset.

    Raises `ValueError` naming the flag for what the checkpoint's weights cannot take: a `weight_fields` value other
    than the checkpoint's, or `--config_name` (it builds a model from scratch) at another value than its default."""
    path = model_args.model_name_or_path
    if model_args.config_name != field_default(model_args, "config_name"):
        raise ValueError(
            f"--config_name {model_args.config_name} builds a model from scratch, but --model_name_or_path {path} "
            "brings its own model and config: drop --config_name. --config_overrides (fields that keep the "
            "checkpoint's weights), --image_size and the other model flags apply on top of the checkpoint's config."
        )
    changes = {name: (value, f"--config_overrides {name}={value}")
               for name, value in parse_config_overrides(model_args.config_overrides, config_class).items()}
    for name in ("image_size", "patch_size"):
        value = getattr(model_args, name, None)
        if value is not None:
            changes[name] = (value, f"--{name} {value}")
    defaults = {f.name: f.default for f in dataclasses.fields(config_class)}
    refused = []
    for name, (value, flag) in changes.items():
        saved = checkpoint_config.get(name, defaults.get(name))
        if name in weight_fields and value != saved:
            refused.append(f"{flag} (the checkpoint has {name}={saved})")
    if refused:
        raise ValueError(
            f"{'; '.join(refused)}: the weights of --model_name_or_path {path} are defined by "
            f"{', '.join(weight_fields)}, which no flag can change on top of them. Drop the flag (or give the "
            "checkpoint's value), or train from scratch with --config_name. What applies on a checkpoint: "
            "--image_size (position embeddings resized) and --config_overrides of the other fields."
        )
    return {name: value for name, (value, _) in changes.items()}


# ---------------------------------------------------------------------------------------------------------------------
# Recipe lines of the model cards
# ---------------------------------------------------------------------------------------------------------------------
def shared_recipe(training_args, aug_args: AugmentationArguments, image_size: int) -> dict:
    """The model card's recipe lines every classification script shares: schedule, batch, learning rate, augmentation
    and mixing, input, sampling (`sampling_recipe`). Scripts put their own lines (loss, teacher, ...) before these."""
    scheduler = getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)  # an enum, or str
    return {
        "schedule": (f"{training_args.max_steps} steps" if training_args.max_steps > 0
                     else f"{training_args.num_train_epochs} epochs") + f", {scheduler} learning-rate schedule",
        # the effective batch of one optimizer step: every process's, accumulated (a 2 x 16 run is a 32 run)
        "batch size": training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
        * training_args.world_size,
        "learning rate": training_args.learning_rate,
        "mixup / cutmix / label smoothing": f"{aug_args.mixup} / {aug_args.cutmix} / {aug_args.label_smoothing}",
        "RandAugment / random erasing": f"{aug_args.auto_augment if aug_args.rand_augment else 'off'} / "
        f"{aug_args.random_erasing}",
        "image size": image_size,
        "normalization": aug_args.normalization,
        **sampling_recipe(training_args),
    }


def sampling_recipe(training_args) -> dict[str, str]:
    """The model card's recipe lines for `--sampler` and `--freeze_encoder` (cRT)."""
    recipe = {"sampler": SAMPLER_DESCRIPTIONS[getattr(training_args, "sampler", "instance")]}
    if getattr(training_args, "freeze_encoder", False):
        recipe["classifier re-training (cRT)"] = "encoder frozen, classification head(s) " + (
            "re-initialised and re-trained" if getattr(training_args, "reinit_head", True) else "re-trained")
    return recipe


def teacher_reference(teacher: str, output_dir: str) -> str:
    """How a student's card names its teacher: a path relative to the student's folder (./..., ../...) or a Hub id."""
    if not os.path.isdir(teacher):
        return teacher
    relative = os.path.relpath(os.path.abspath(teacher), os.path.abspath(output_dir))
    return relative if relative.startswith("..") else f"./{relative}"
