"""What every trainer of the package shares: the MAE learning-rate rule, the optimizer of `--optim` (fused AdamW by
default) over our parameter groups (no decay on biases/norms/tokens, optional layer-wise decay), a separate eval
collator, our model card, a loud NaN guard, atomic checkpoints, a strict resume and an optional model EMA (saved and
resumed with the checkpoints)."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
from collections.abc import Callable

import torch
from safetensors import safe_open
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, has_length, rotate_checkpoints

from modeling_livt.data.transforms import INDEX_COLUMN
from modeling_livt.hub.repos import check_hub_offline

from .class_sampling import ClassAwareSampler, dataset_labels, training_epochs
from .ema import EMA_DIR_NAME, EMA_WEIGHTS_NAME, ModelEMACallback, check_ema_checkpoint
from .freezing import freeze_encoder
from .fsdp import check_fsdp, plain_model_class
from .optim import build_optimizer, check_optimizer_choice
from .sampling import AugmentationEpochCallback, RepeatedAugmentationSampler, repeat_rows, seeded_transforms

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; raised instead of writing NaN weights."""


def check_hub_access(args) -> None:
    """Fail before any training when `--push_to_hub` cannot reach the Hub (Trainer creates the repo at start-up)."""
    if getattr(args, "push_to_hub", False):
        check_hub_offline("--push_to_hub", args.hub_model_id, args.output_dir, "Train without --push_to_hub")


def warn_slow_cpu_bf16(args) -> None:
    """Warn at start-up when `--bf16` runs on a CPU without native bf16 instructions (AVX512-BF16 / AMX): oneDNN then
    emulates bf16 and autocast is ~10x slower than fp32 (a ResNet-32 SAM step: 7 img/s bf16, 85 img/s fp32 on an
    AVX2-only CPU)."""
    if not getattr(args, "bf16", False) or args.device.type != "cpu":
        return
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return
    logger.warning(
        "--bf16 on a CPU without native bf16 instructions (capability %s): bf16 autocast is emulated here, about 10x "
        "slower than fp32 (a ResNet-32 SAM step: 7 img/s bf16 vs 85 img/s fp32 on an AVX2-only CPU). fp32 is faster "
        "on this machine: drop --bf16.", torch.backends.cpu.get_cpu_capability(),
    )


STAGING_DIR = ".staging"


class LongTailTrainerMixin:
    """Mixed into `transformers.Trainer` subclasses; only chooses optimizers, schedules and reporting. Subclasses need
    no set-up call of their own: everything is done here, in `__init__`.

    Args (beyond `Trainer`'s):
        eval_data_collator: collator for evaluation/prediction (the training one may mix images); None: the training
            one.
        model_card_writer: callable that writes the output dir's README.md (used by `push_to_hub` too); None:
            Trainer's generic card.
    """

    def __init__(self, *args, eval_data_collator=None, model_card_writer: Callable[[], None] | None = None,
                 **kwargs):
        check_hub_access(kwargs.get("args", args[1] if len(args) > 1 else None))  # Trainer creates the repo in init
        super().__init__(*args, **kwargs)
        check_fsdp(self)  # an FSDP request is honoured (FSDP2, full state dict) or refused, never dropped
        # Gradient accumulation, declared here only: our losses are batch means, so Trainer must divide them by the
        # accumulation steps itself (a model whose forward takes **kwargs would otherwise be trusted to do it).
        self.model_accepts_loss_kwargs = False
        self.eval_data_collator = eval_data_collator
        self.model_card_writer = model_card_writer
        warn_slow_cpu_bf16(self.args)
        self._check_optimizer_choice()
        self.add_callback(AugmentationEpochCallback(self))  # every epoch draws new (seeded) augmentations
        self._setup_class_aware_sampling()  # before repeated augmentation copies the rows: labels of the images
        self._setup_repeated_augmentation()
        if getattr(self.args, "freeze_encoder", False):  # cRT
            freeze_encoder(self.accelerator.unwrap_model(self.model), getattr(self.args, "reinit_head", True))
        self.model_ema_callback = None
        if getattr(self.args, "model_ema", False):  # any TrainingArguments works; ours carry the flag
            device = "cpu" if getattr(self.args, "model_ema_force_cpu", False) else None
            self.model_ema_callback = ModelEMACallback(getattr(self.args, "model_ema_decay", 0.99996), device)
            self.add_callback(self.model_ema_callback)

    @property
    def model_ema(self) -> torch.nn.Module | None:
        """The EMA of the model's weights (`--model_ema`), or None; exists once training has started."""
        return None if self.model_ema_callback is None else self.model_ema_callback.module

    def _setup_repeated_augmentation(self):
        self.repeated_augmentation_images = None
        repeats = getattr(self.args, "repeated_augmentation", 1) or 1
        if repeats == 1 or self.train_dataset is None:
            return
        self._check_map_style_training_set(f"--repeated_augmentation {repeats}", "--repeated_augmentation 1")
        self.repeated_augmentation_images = len(self.train_dataset)
        columns = getattr(self.train_dataset, "column_names", None) or []
        if INDEX_COLUMN in columns and seeded_transforms(self.train_dataset):
            self.train_dataset = repeat_rows(self.train_dataset, repeats)  # each copy gets its own augmentation

    def _setup_class_aware_sampling(self):
        """`--sampler` other than instance: read the training labels now (a streamed set fails here, not mid-run)."""
        self.sampling_labels = None
        strategy = getattr(self.args, "sampler", "instance")
        if strategy == "instance" or self.train_dataset is None:
            return
        self._check_map_style_training_set(f"--sampler {strategy}", "--sampler instance")
        self.sampling_labels = dataset_labels(self.train_dataset)

    def _check_map_style_training_set(self, option: str, way_out: str) -> None:
        """`option` draws training images by index: a streamed training set fails here, at start-up."""
        if not has_length(self.train_dataset):
            raise ValueError(
                f"{option} needs a map-style training set (it draws images by index); drop --streaming or pass "
                f"{way_out}."
            )

    def _get_train_sampler(self, train_dataset=None):
        class_aware = None
        if self.sampling_labels is not None:
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            class_aware = ClassAwareSampler(self.sampling_labels, self.args.sampler, seed=seed, num_epochs=1)
        if self.repeated_augmentation_images is None:
            sampler = class_aware if class_aware is not None else super()._get_train_sampler(train_dataset)
        else:
            dataset = self.train_dataset if train_dataset is None else train_dataset
            sampler = RepeatedAugmentationSampler(
                self.repeated_augmentation_images,
                num_repeats=self.args.repeated_augmentation,
                num_processes=self.args.world_size,
                batch_size=self.args.per_device_train_batch_size,
                seed=self.args.seed,
                copies_are_rows=len(dataset) > self.repeated_augmentation_images,
                image_order=class_aware.epoch_indices if class_aware is not None else None,
            )
        if class_aware is not None:  # T of the progressive schedule: the epochs this run's sampler length gives
            class_aware.num_epochs = training_epochs(self.args, len(sampler))
        return sampler

    def create_optimizer(self, model=None):
        """`--optim` over our parameter groups (`optim.build_optimizer`): fused AdamW at the default, else the
        optimizer Trainer chooses for the flag (or the trainer's `optimizer_cls_and_kwargs`)."""
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            self.optimizer = build_optimizer(opt_model, self.args, self.optimizer_cls_and_kwargs)
        return self.optimizer

    def _check_optimizer_choice(self):
        """`--optim` is refused now, before any training, when our optimizer would be built and cannot honour it
        (a subclass with an optimizer of its own, e.g. SAM, decides for itself)."""
        builds_ours = type(self).create_optimizer is LongTailTrainerMixin.create_optimizer
        if builds_ours and self.optimizer is None and self.optimizer_cls_and_kwargs is None:
            check_optimizer_choice(self.args)

    @contextlib.contextmanager
    def _collator(self, collator):
        original = self.data_collator
        if collator is not None:
            self.data_collator = collator
        try:
            yield
        finally:
            self.data_collator = original

    def get_eval_dataloader(self, eval_dataset=None):
        with self._collator(self.eval_data_collator):
            return super().get_eval_dataloader(eval_dataset)

    def get_test_dataloader(self, test_dataset):
        with self._collator(self.eval_data_collator):
            return super().get_test_dataloader(test_dataset)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            step = self.state.global_step + 1
            raise NonFiniteLossError(
                f"The training loss became {loss.item()} at step {step} (epoch {self.state.epoch or 0:.2f}); "
                "stopping before NaN weights are written. Likely causes: fp16 overflow (use --bf16 or fp32), a "
                "learning rate too high (lower --learning_rate/--base_learning_rate or lengthen warmup), or a class "
                "with zero training images under a balanced loss (check class_counts.json)."
            )
        return loss

    def _save_checkpoint(self, model, trial):
        """Atomic checkpoints: Trainer writes `checkpoint-N` into a staging folder, which is renamed into place only
        once weights, optimizer, scheduler, RNG and trainer state are all written. A save killed midway leaves the
        previous checkpoint as the latest one (Trainer's `get_last_checkpoint` ignores the staging folder)."""
        run_dir = self._get_output_dir(trial=trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging_root = os.path.join(run_dir, STAGING_DIR)
        self._checkpoint_run_dir = staging_root
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._checkpoint_run_dir = None
        self.accelerator.wait_for_everyone()  # every process has written its RNG state into the staging folder
        if not self.args.should_save:
            return
        staged, final = os.path.join(staging_root, name), os.path.join(run_dir, name)
        if self.model_ema is not None:  # part of the checkpoint: written before the rename, as the weights are
            self.model_ema_callback.save(staged)
        best = f"{PREFIX_CHECKPOINT_DIR}-{self.state.best_global_step}" if self.state.best_global_step else None
        if best is not None and (best == name or os.path.isdir(os.path.join(run_dir, best))):
            self.state.best_model_checkpoint = os.path.join(run_dir, best)
            self.state.save_to_json(os.path.join(staged, "trainer_state.json"))  # with the final path
        if os.path.isdir(final):
            shutil.rmtree(final)
        os.replace(staged, final)
        rotate_checkpoints(output_dir=run_dir, save_total_limit=self.args.save_total_limit,
                           best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)

    def _get_output_dir(self, trial):
        staging = getattr(self, "_checkpoint_run_dir", None)
        return staging if staging is not None else super()._get_output_dir(trial)

    def saved_state_dict(self, state_dict: dict) -> dict:
        """`state_dict` under the key names the model is saved with: unchanged here; a trainer whose model saves
        under other names (the timm teacher) overrides it, and the resume check and the EMA save follow."""
        return state_dict

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Resume refuses a checkpoint that lacks model weights (Trainer itself loads with strict=False)."""
        model = self.model if model is None else model
        weights = os.path.join(resume_from_checkpoint, "model.safetensors")
        if os.path.isfile(weights):
            with safe_open(weights, framework="pt") as f:
                saved = set(f.keys())
            expected = self.saved_state_dict(self.accelerator.unwrap_model(model).state_dict())
            missing = sorted(set(expected) - saved)
            if missing:
                raise RuntimeError(
                    f"Checkpoint {resume_from_checkpoint} lacks {len(missing)} model weights, e.g. {missing[:5]}: it "
                    "was written by another model or architecture. Resume from a checkpoint of this run, or start "
                    "a new run with --model_name_or_path to initialise from it."
                )
        if self.model_ema_callback is not None:
            check_ema_checkpoint(resume_from_checkpoint)  # before any state is touched
            self.model_ema_callback.resume_from = resume_from_checkpoint  # loaded when training begins
        return super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_best_model(self):
        """`load_best_model_at_end` also brings back that checkpoint's EMA, so the saved model and EMA are of one step
        (as DeiT-LT's best_checkpoint.pth)."""
        super()._load_best_model()
        best = self.state.best_model_checkpoint
        if self.model_ema is None:
            return
        if os.path.isfile(os.path.join(best, EMA_WEIGHTS_NAME)):
            self.model_ema_callback.load(best)
        else:
            logger.warning("Best checkpoint %s has no %s: keeping the EMA of the last step.", best, EMA_WEIGHTS_NAME)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None):
        """Under FSDP the model is saved under its own class (its code and `auto_map`), not `fully_shard`'s."""
        with plain_model_class(self.model) if self.is_fsdp_enabled else contextlib.nullcontext():
            super()._save(output_dir, state_dict=state_dict)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """The final save also writes the EMA as `output_dir/ema/`, a folder `from_pretrained` loads as the model's.
        (Checkpoints carry `model_ema.safetensors` instead, see `_save_checkpoint`.)"""
        super().save_model(output_dir, _internal_call=_internal_call)
        if _internal_call or self.model_ema is None or not self.args.should_save:
            return
        ema_dir = os.path.join(output_dir if output_dir is not None else self.args.output_dir, EMA_DIR_NAME)
        ema = self.model_ema
        if hasattr(ema, "save_pretrained"):
            state_dict = ema.state_dict()
            saved = self.saved_state_dict(state_dict)  # under the model's saved key names
            ema.save_pretrained(ema_dir, state_dict=saved if saved is not state_dict else None)
        else:
            os.makedirs(ema_dir, exist_ok=True)
            self.model_ema_callback.save(ema_dir)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(ema_dir)

    def create_model_card(self, *args, **kwargs):
        """Write our model card (with the long-tail results) instead of Trainer's generic one."""
        if self.model_card_writer is None:
            return super().create_model_card(*args, **kwargs)
        if self.is_world_process_zero():
            self.model_card_writer()


def finite_or_none(value):
    """Python float, or None for a missing/NaN metric (metrics must never log NaN)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value
