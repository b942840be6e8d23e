"""A flat teacher for DeiT-LT: a CNN trained on the long-tailed data with SAM and a long-tail loss.

DeiT-LT distils from teachers trained with Sharpness-Aware Minimization: flat teachers transfer better (Rangwani et
al., 2024; their CIFAR teachers are PaCo + SAM ResNet-32s, which the official repository does not train). Here any
image classifier can be the teacher: a CIFAR ResNet-32 (`ResNetCifarForImageClassification`) for small images, or any
transformers classifier (ResNet, RegNet, ConvNeXt...), trained with Bal-CE (default), Bal-BCE, CE, BCE or LDAM(-DRW).
"""

from __future__ import annotations

import bisect
import contextlib
import logging
from functools import partial

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from transformers import AutoImageProcessor, AutoModelForImageClassification, get_scheduler

from modeling_livt.data.transforms import image_processor_input_size
from modeling_livt.models.losses import ClassWeightedLoss, LDAMLoss, class_balanced_weights
from modeling_livt.models.resnet_cifar import ResNetCifarConfig, ResNetCifarForImageClassification

from .arguments import (
    DEFAULT_BAL_TAU,
    LDAM_MAX_M,
    LDAM_S,
    SAM_BASE_OPTIMIZERS,
    TEACHER_ARCHS,
    TEACHER_LOSS_TYPES,
    TeacherTrainingArguments,
    check_bal_tau,
    refuse_flags,
)
from .balanced import BalancedTrainer
from .drw import DEFAULT_DRW_BETA, DRWCallback
from .optim import optimizer_name, param_groups, uses_our_adamw
from .sam import SAM
from .timm_teacher import (
    build_timm_teacher,
    check_timm_model_name,
    is_timm_wrapper,
    load_classifier_config,
    load_timm_teacher,
    timm_input_config,
    timm_model_name,
    timm_native_state_dict,
)
from .workflow import parse_config_overrides

logger = logging.getLogger(__name__)

SMALL_TEACHER_MAX_SIZE = 64  # up to this size the CIFAR ResNet-32 is the default teacher
LDAM_DRW_EPOCH_FRACTION = 0.8  # LDAM-DRW re-weights from epoch 160 of 200
LABEL_FIELDS = ("num_labels", "id2label", "label2id")  # the teacher's label space comes from the data
DEFAULT_WARMUP_EPOCHS = 5.0  # LDAM-DRW / PaCo: linear warmup over the first 5 of 200 epochs


class TrainerSAM(SAM):
    """`SAM` driven by `Trainer`: `TeacherTrainer.training_step` runs both forward/backward passes and the ascent
    (`first_step`); Trainer's own `optimizer.step()` (after gradient clipping, before the scheduler step) finishes the
    update with `second_step` (restore w, base optimizer step with the gradient at w + e). A closure still works."""

    def step(self, closure=None):
        if closure is not None:
            return super().step(closure)
        self.second_step()
        return None


@contextlib.contextmanager
def frozen_batch_norm_stats(model: nn.Module):
    """BatchNorm layers still normalise with the batch's statistics but leave their running averages (and batch count)
    untouched: SAM's second pass on the same batch must not count it twice in the running statistics."""
    saved = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training and module.track_running_stats:
            saved.append((module, module.momentum, module.num_batches_tracked.clone()))
            module.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for module, momentum, count in saved:
            module.momentum = momentum
            module.num_batches_tracked.copy_(count)


def teacher_drw_point(loss_type: str, drw_epoch: float | None, drw_step: int | None, args) -> tuple:
    """`(drw_epoch, drw_step)` of a teacher: the given point, or for `ldam_drw` without one, 80 % of training
    (LDAM-DRW's epoch 160 of 200; a step under `--max_steps`)."""
    if loss_type == "ldam_drw" and drw_epoch is None and drw_step is None:
        if args.max_steps > 0:
            return None, int(LDAM_DRW_EPOCH_FRACTION * args.max_steps)
        return LDAM_DRW_EPOCH_FRACTION * args.num_train_epochs, None
    return drw_epoch, drw_step


def check_teacher_training_args(args) -> None:
    """Refuse the training flags the teacher's optimizer (SAM around SGD or AdamW, one learning rate for every layer)
    would ignore: `ValueError` naming them and what works instead."""
    if not uses_our_adamw(args):
        raise ValueError(
            f"--optim {optimizer_name(args)}: the teacher's optimizer is SAM around --sam_base_optimizer, which "
            f"--optim cannot choose. Drop --optim and pass --sam_base_optimizer {' or '.join(SAM_BASE_OPTIMIZERS)} "
            "(default sgd)."
        )
    layer_decay = getattr(args, "layer_decay", None)
    if layer_decay not in (None, 1.0):
        raise ValueError(
            f"--layer_decay {layer_decay}: the teacher trains every layer at one learning rate (its optimizer has no "
            "layer-wise decay; a CNN has no ViT layers). Drop --layer_decay (or give 1.0)."
        )
    base = getattr(args, "sam_base_optimizer", "sgd")
    if base not in SAM_BASE_OPTIMIZERS:
        raise ValueError(f"Unknown sam_base_optimizer={base!r}; choose one of {list(SAM_BASE_OPTIMIZERS)}.")
    if base == "sgd":
        refuse_flags(args, ["adam_beta1", "adam_beta2", "adam_epsilon"],
                     "they set AdamW, and SAM's base optimizer is SGD here: add --sam_base_optimizer adamw, or drop "
                     "them.")
    elif all(hasattr(args, name) for name in ("momentum", "nesterov")):
        refuse_flags(args, ["momentum", "nesterov"],
                     "they set SGD, and SAM's base optimizer is AdamW here (--sam_base_optimizer adamw): drop them, "
                     "or use --sam_base_optimizer sgd.")


def check_teacher_loss_flags(loss_type: str, *, bal_tau: float = DEFAULT_BAL_TAU, ldam_max_m: float = LDAM_MAX_M,
                             ldam_s: float = LDAM_S, drw: bool = False, drw_beta: float = DEFAULT_DRW_BETA) -> None:
    """Refuse the loss flags `loss_type` would ignore (`drw`: whether deferred re-weighting is on): `--bal_tau` without
    a balanced loss, the LDAM flags without LDAM, `--drw_beta` without DRW. `ValueError` naming them."""
    check_bal_tau(bal_tau if bal_tau != DEFAULT_BAL_TAU else None, loss_type)
    if not loss_type.startswith("ldam"):
        given = [f"--{name} {value}" for name, value, default in
                 (("ldam_max_m", ldam_max_m, LDAM_MAX_M), ("ldam_s", ldam_s, LDAM_S)) if value != default]
        if given:
            raise ValueError(
                f"{', '.join(given)}: they set LDAM's margins and logit scale, and --loss_type is {loss_type}. Use "
                "--loss_type ldam or ldam_drw, or drop them."
            )
    if not drw and drw_beta != DEFAULT_DRW_BETA:
        raise ValueError(
            f"--drw_beta {drw_beta}: it sets the class-balanced weights of deferred re-weighting, which is off here "
            "(--loss_type ldam_drw turns it on, or --drw_epoch/--drw_step with --loss_type ldam). Drop --drw_beta."
        )


def check_teacher_flags(model_args, training_args) -> None:
    """The refusals of scripts/run_teacher.py, before any data is loaded: `check_teacher_training_args` and
    `check_teacher_loss_flags` for the parsed `TeacherModelArguments` / `TeacherTrainingArguments`."""
    check_teacher_training_args(training_args)
    timm_name = timm_model_name(model_args.teacher_arch)
    if timm_name is not None:
        check_timm_model_name(timm_name)
    drw_epoch, drw_step = teacher_drw_point(model_args.loss_type, model_args.drw_epoch, model_args.drw_step,
                                            training_args)
    check_teacher_loss_flags(
        model_args.loss_type, bal_tau=model_args.bal_tau, ldam_max_m=model_args.ldam_max_m, ldam_s=model_args.ldam_s,
        drw=drw_epoch is not None or drw_step is not None, drw_beta=model_args.drw_beta,
    )


def step_decay_factor(step: int, *, warmup: int, milestones: list[int], gamma: float) -> float:
    """The learning-rate factor at optimizer `step`: a linear warmup over `warmup` steps (as transformers'
    constant_with_warmup), then x`gamma` at each milestone passed (torch's MultiStepLR, counted in optimizer steps).
    Ours, not torch's SequentialLR(LinearLR, MultiStepLR): LinearLR cannot start from 0 as transformers' warmups do,
    and SequentialLR counts the MultiStepLR milestones from the end of the warmup."""
    ramp = step / max(1, warmup) if step < warmup else 1.0
    return ramp * gamma ** bisect.bisect_right(milestones, step)


class TeacherTrainer(BalancedTrainer):
    """`BalancedTrainer` with SAM (Foret et al., 2021) and the long-tail losses of a DeiT-LT teacher.

    One optimizer step = forward/backward at w, `first_step` (w + e, e = rho * g / ||g||), forward/backward at w + e
    on the same batch (BatchNorm running statistics frozen), then Trainer clips the gradient and calls
    `optimizer.step()`, which is `second_step` (back to w, base optimizer step). The learning-rate scheduler drives
    the base optimizer (SAM shares its parameter groups). Gradient accumulation is not supported (SAM's ascent needs
    the full batch's gradient before the second pass), nor fp16 (use bf16 or fp32).

    The loss is the trainer's for every model (labels are never handed to the model): `loss_type` "bal_ce" (default),
    "bal_bce", "ce", "bce", "ldam" or "ldam_drw" (LDAM with class-balanced weights from the DRW point; default point:
    80 % of training, as LDAM-DRW's epoch 160 of 200).

    Args:
        class_counts: training images per class (required by the balanced and LDAM losses).
        loss_type, bal_tau: the loss and the prior strength of the balanced losses.
        ldam_max_m, ldam_s: LDAM's largest margin (0.5) and logit scale (30).
        drw_epoch / drw_step / drw_beta: the DRW point and the beta of the class-balanced weights (LDAM only).
        Other arguments: as `BalancedTrainer`. `args` are `TeacherTrainingArguments` (or any TrainingArguments; SAM
        then uses rho 0.05 and SGD with momentum 0.9).

    What the teacher would ignore is refused (`ValueError`): an `--optim` other than the default (SAM's base optimizer
    is `sam_base_optimizer`), `layer_decay` other than 1.0, the other base optimizer's settings, `bal_tau` without a
    balanced loss, the LDAM arguments without LDAM and `drw_beta` without DRW.
    """

    trains_with_model_loss = False  # one of our ViTs as the teacher trains with the teacher's loss, not its config's
    # SAM's ascent step takes the norm of the gradients: untested on the shards FSDP leaves each process with
    fsdp_refusal = ("the teacher trains with SAM, which is not supported under FSDP; train it with DDP (accelerate "
                    "launch --multi_gpu) or on one device.")

    def __init__(
        self,
        *args,
        class_counts=None,
        loss_type: str = "bal_ce",
        bal_tau: float = DEFAULT_BAL_TAU,
        ldam_max_m: float = LDAM_MAX_M,
        ldam_s: float = LDAM_S,
        drw_epoch: float | None = None,
        drw_step: int | None = None,
        drw_beta: float = DEFAULT_DRW_BETA,
        **kwargs,
    ):
        if loss_type not in TEACHER_LOSS_TYPES:
            raise ValueError(f"Unknown teacher loss_type={loss_type!r}; choose one of {list(TEACHER_LOSS_TYPES)}.")
        self.ldam_max_m, self.ldam_s = ldam_max_m, ldam_s  # read by `build_loss_fn`, called by the parent's init
        base_loss = "ldam" if loss_type.startswith("ldam") else loss_type
        super().__init__(*args, class_counts=class_counts, loss_type=base_loss, bal_tau=bal_tau, **kwargs)
        check_teacher_training_args(self.args)
        if self.args.gradient_accumulation_steps > 1:
            raise ValueError(
                "TeacherTrainer (SAM) does not support --gradient_accumulation_steps > 1: SAM's ascent step needs the "
                "gradient of the whole batch before its second forward/backward pass. Raise "
                "--per_device_train_batch_size (or use more devices) instead."
            )
        if self.args.fp16:
            raise ValueError(
                "TeacherTrainer (SAM) does not support --fp16: a loss-scaler step skipped on overflow would leave the "
                "weights at the ascent point w + e. Use --bf16 or fp32."
            )
        drw_epoch, drw_step = teacher_drw_point(loss_type, drw_epoch, drw_step, self.args)
        check_teacher_loss_flags(loss_type, bal_tau=bal_tau, ldam_max_m=ldam_max_m, ldam_s=ldam_s,
                                 drw=drw_epoch is not None or drw_step is not None, drw_beta=drw_beta)
        self.drw_beta = drw_beta
        self.drw_callback = DRWCallback(self.set_drw, drw_epoch=drw_epoch, drw_step=drw_step)
        if self.drw_callback.enabled and not isinstance(self.loss_fn, ClassWeightedLoss):
            raise ValueError(
                f"DRW re-weights the LDAM loss; loss_type={loss_type!r} takes no class weights. Use --loss_type "
                "ldam_drw, or drop --drw_epoch/--drw_step."
            )
        self.add_callback(self.drw_callback)
        if getattr(self.args, "channels_last", False):
            # oneDNN's native conv layout: 1.4x a ResNet-32 SAM step on a 2-core CPU (bench/teacher_e2e.py). Inputs
            # may stay NCHW (a channels-last weight makes the conv channels-last); saved weights are unchanged.
            self.model.to(memory_format=torch.channels_last)

    def build_loss_fn(self, loss_type: str, class_counts, bal_tau: float):
        """LDAM with its margins and scale, else the balanced losses of `build_loss`."""
        if loss_type == "ldam":
            return LDAMLoss(class_counts, max_m=self.ldam_max_m, s=self.ldam_s)
        return super().build_loss_fn(loss_type, class_counts, bal_tau)

    def set_drw(self, active: bool) -> None:
        """Deferred re-weighting on/off: class-balanced weights on the loss."""
        if isinstance(self.loss_fn, ClassWeightedLoss):
            self.loss_fn.class_weights = class_balanced_weights(self.class_counts, self.drw_beta) if active else None

    @property
    def sam(self) -> SAM:
        """The SAM optimizer under accelerate's wrapper."""
        optimizer = self.optimizer
        while not isinstance(optimizer, SAM):
            optimizer = optimizer.optimizer
        return optimizer

    def create_optimizer(self, model=None):
        """SAM around SGD (momentum, optional Nesterov) or AdamW; no weight decay on biases and norms."""
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            groups = param_groups(opt_model, self.args.weight_decay, layer_decay=None)
            for group in groups:
                group["lr"] = self.args.learning_rate * group.pop("lr_scale")
            base = getattr(self.args, "sam_base_optimizer", "sgd")
            if base == "sgd":
                base_cls = torch.optim.SGD
                base_kwargs = dict(momentum=getattr(self.args, "momentum", 0.9),
                                   nesterov=getattr(self.args, "nesterov", False))
            elif base == "adamw":
                base_cls = torch.optim.AdamW
                base_kwargs = dict(betas=(self.args.adam_beta1, self.args.adam_beta2), eps=self.args.adam_epsilon)
            else:
                raise ValueError(f"Unknown sam_base_optimizer={base!r}; choose one of {list(SAM_BASE_OPTIMIZERS)}.")
            self.optimizer = TrainerSAM(
                groups, base_cls, rho=getattr(self.args, "sam_rho", 0.05),
                adaptive=getattr(self.args, "sam_adaptive", False), lr=self.args.learning_rate, **base_kwargs,
            )
        return self.optimizer

    def set_initial_training_values(self, args, dataloader):
        """Trainer's own; the optimizer steps per epoch are kept for `--warmup_epochs` (no second dataloader)."""
        values = super().set_initial_training_values(args, dataloader)
        self._update_steps_per_epoch = values[1]
        return values

    def warmup_optimizer_steps(self, num_training_steps: int) -> int:
        """`--warmup_steps` as Trainer reads it, or else `--warmup_epochs` (default: `DEFAULT_WARMUP_EPOCHS`, at most
        a quarter of the run) times the optimizer steps per epoch."""
        args = self.args
        if args.warmup_steps or not isinstance(args, TeacherTrainingArguments):
            return args.get_warmup_steps(num_training_steps)
        steps_per_epoch = self.optimizer_steps_per_epoch(num_training_steps)
        epochs = args.warmup_epochs
        if epochs is None:
            epochs = min(DEFAULT_WARMUP_EPOCHS, num_training_steps / steps_per_epoch / 4)
        return max(1, round(epochs * steps_per_epoch)) if epochs > 0 else 0

    def optimizer_steps_per_epoch(self, num_training_steps: int) -> float:
        """Trainer's own count in train(); outside it, the epoch-based schedule's."""
        steps = getattr(self, "_update_steps_per_epoch", None)
        return steps if steps is not None else num_training_steps / self.args.num_train_epochs

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """Trainer's schedule with the warmup of `warmup_optimizer_steps` (the arguments are left as given), stepped
        down at `--lr_decay_epochs` when given."""
        if self.lr_scheduler is None:
            warmup = self.warmup_optimizer_steps(num_training_steps)
            logger.info("Warmup: %d optimizer steps", warmup)
            optimizer = self.optimizer if optimizer is None else optimizer
            decay = self.args.lr_decay_milestones() if isinstance(self.args, TeacherTrainingArguments) else None
            if decay is None:
                self.lr_scheduler = get_scheduler(
                    self.args.lr_scheduler_type, optimizer=optimizer, num_warmup_steps=warmup,
                    num_training_steps=num_training_steps, scheduler_specific_kwargs=self.args.lr_scheduler_kwargs,
                )
            else:
                epochs, gamma = decay
                steps_per_epoch = self.optimizer_steps_per_epoch(num_training_steps)
                milestones = [round(epoch * steps_per_epoch) for epoch in epochs]
                logger.info("Learning rate x%g at optimizer steps %s", gamma, milestones)
                self.lr_scheduler = LambdaLR(optimizer, partial(step_decay_factor, warmup=warmup,
                                                                milestones=milestones, gamma=gamma))
            self._created_lr_scheduler = True  # as Trainer's: recreated on the next train()
        return self.lr_scheduler

    def saved_state_dict(self, state_dict: dict) -> dict:
        """A timm teacher (`--teacher_arch timm:NAME`) is saved with timm's own key names, so that both
        `timm.create_model("local-dir:DIR", pretrained=True)` and `AutoModelForImageClassification` load it."""
        if is_timm_wrapper(self.accelerator.unwrap_model(self.model)):
            return timm_native_state_dict(state_dict)
        return state_dict

    def _save(self, output_dir: str | None = None, state_dict=None):
        if is_timm_wrapper(self.accelerator.unwrap_model(self.model)):
            state_dict = self.saved_state_dict(self.accelerator.unwrap_model(self.model).state_dict()
                                               if state_dict is None else state_dict)
        return super()._save(output_dir, state_dict=state_dict)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)  # gradient at w (and the NaN guard)
        self.sam.first_step(zero_grad=True)  # w <- w + e
        inputs = self._prepare_inputs(inputs)
        with frozen_batch_norm_stats(model), self.compute_loss_context_manager():
            perturbed_loss = self.compute_loss(model, inputs, num_items_in_batch=num_items_in_batch)
        self.accelerator.backward(perturbed_loss)  # gradient at w + e; Trainer's optimizer.step() -> second_step
        return loss


# ---------------------------------------------------------------------------------------------------------------------
# Building the teacher model (scripts/run_teacher.py)
# ---------------------------------------------------------------------------------------------------------------------
def default_teacher_image_size(model_name_or_path: str | None) -> int:
    """The input size of a pretrained classifier's image processor (224 when it has none), or 32 for a new teacher."""
    if not model_name_or_path:
        return 32
    try:  # a timm classifier: its pretrained_cfg's input size
        timm_input = timm_input_config(load_classifier_config(model_name_or_path, trust_remote_code=True))
    except (OSError, ValueError):
        timm_input = None
    if timm_input is not None:
        return timm_input[2]
    try:
        return image_processor_input_size(AutoImageProcessor.from_pretrained(model_name_or_path)) or 224
    except (OSError, ValueError):
        return 224


def _refuse_label_overrides(overrides: dict, data) -> None:
    given = [f"--config_overrides {name}={overrides[name]}" for name in LABEL_FIELDS if name in overrides]
    if given:
        raise ValueError(
            f"{', '.join(given)}: the teacher's classes come from the data ({data.num_classes} classes, with their "
            "names). Drop the override."
        )


def _weight_shapes(config) -> dict[str, tuple]:
    """The names and shapes of the weights and buffers of the classifier `config` builds (on the meta device: no
    memory, no initialisation cost)."""
    with torch.device("meta"):
        model = AutoModelForImageClassification.from_config(config, trust_remote_code=True)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def _shape_change(before: dict, after: dict) -> str | None:
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    if not changed:
        return None
    first = changed[0]
    describe = {name: list(shape) if shape is not None else "absent"
                for name, shape in (("before", before.get(first)), ("after", after.get(first)))}
    return f"{len(changed)} weight(s) change, e.g. {first}: {describe['before']} -> {describe['after']}"


def check_checkpoint_overrides(model_name_or_path: str, config, overrides: dict) -> None:
    """`--config_overrides` on top of a pretrained classifier's `config` apply when they keep the shapes of its
    weights (eps, momentum, dropout, ...); `ValueError` naming each override that would change them (compared on
    models built on the meta device, the classification head included)."""
    values = config.to_dict()
    before = _weight_shapes(config)
    written = {name: str(value).lower() if isinstance(value, bool) else value for name, value in overrides.items()}
    refused = []
    for name, value in overrides.items():
        change = _shape_change(before, _weight_shapes(type(config).from_dict({**values, name: value})))
        if change:
            refused.append(f"--config_overrides {name}={written[name]} ({change})")
    if not refused and len(overrides) > 1:
        change = _shape_change(before, _weight_shapes(type(config).from_dict({**values, **overrides})))
        if change:
            refused.append(f"--config_overrides {','.join(f'{k}={v}' for k, v in written.items())} ({change})")
    if refused:
        raise ValueError(
            f"{'; '.join(refused)}: the weights of --model_name_or_path {model_name_or_path} do not fit that config, "
            "and no flag can change them on top of the checkpoint. Drop the override (or give the checkpoint's "
            "value), or train a new teacher (--teacher_arch, without --model_name_or_path). What applies on a "
            "checkpoint: --config_overrides of fields that keep the weights' shapes (eps, momentum, dropout, ...)."
        )


def build_teacher_model(model_args, data, image_size: int, mean=None, std=None) -> nn.Module:
    """The teacher to train: a pretrained classifier (new head for the data's classes), a fresh CIFAR ResNet, or a
    fresh timm model (`--teacher_arch timm:NAME`, see `trainers.timm_teacher`; its `pretrained_cfg` records `mean` /
    `std`, the data's normalisation, and `image_size`).

    `--config_overrides` set fields of the new CIFAR ResNet's config, or, on top of a pretrained classifier, the
    fields that keep the shapes of its weights (`check_checkpoint_overrides` refuses the others); the label space
    always comes from the data. The config carries `id2label` / `label2id` (so `pipeline()` names the classes and
    DeiT-LT can check the label space) and the training `class_counts` (shot groups for the card and `run_eval.py`).
    """
    labels = dict(num_labels=data.num_classes, id2label=data.id2label, label2id=data.label2id)
    ldam = model_args.loss_type.startswith("ldam")
    if model_args.model_name_or_path:
        if model_args.teacher_arch is not None:
            raise ValueError("Give --model_name_or_path (a pretrained classifier) or --teacher_arch, not both.")
        # the checkpoint's config with the data's label space (the head's new shape is not the override's doing)
        config = load_classifier_config(model_args.model_name_or_path, trust_remote_code=True,
                                        id2label=data.id2label, label2id=data.label2id)
        overrides = {}
        if model_args.config_overrides:
            overrides = parse_config_overrides(model_args.config_overrides, type(config))
            _refuse_label_overrides(overrides, data)
            check_checkpoint_overrides(model_args.model_name_or_path, config, overrides)
        if config.model_type == "timm_wrapper":  # a timm folder (ours or timm's): its pretrained_cfg follows the data
            if mean is None or std is None:
                raise ValueError("A timm teacher needs the mean/std it is trained with (for its pretrained_cfg).")
            model = load_timm_teacher(model_args.model_name_or_path, config, data.num_classes, data.id2label,
                                      data.label2id, image_size, mean, std, **overrides)
        else:
            model = AutoModelForImageClassification.from_pretrained(
                model_args.model_name_or_path, ignore_mismatched_sizes=True, trust_remote_code=True, **overrides,
                **labels
            )
        if ldam:
            logger.warning("LDAM scales logits by s=%s, meant for a cosine head; %s has a plain linear head (consider "
                           "--ldam_s 1)", model_args.ldam_s, type(model).__name__)
    else:
        arch = model_args.teacher_arch
        if arch is None:
            if image_size > SMALL_TEACHER_MAX_SIZE:
                raise ValueError(
                    f"No default teacher for {image_size}-px images: the CIFAR ResNet-32 is built for images up to "
                    f"{SMALL_TEACHER_MAX_SIZE} px. Pass --model_name_or_path with a transformers image classifier "
                    "(e.g. a ResNet-50 folder or Hub id), or --teacher_arch resnet_cifar to use it anyway."
                )
            arch = "resnet_cifar"
        timm_name = timm_model_name(arch)
        if timm_name is not None:
            if model_args.config_overrides:
                raise ValueError(
                    f"--config_overrides {model_args.config_overrides}: they set fields of a new resnet_cifar (or of "
                    f"--model_name_or_path), and --teacher_arch is {arch}: timm models are built from their name. Drop "
                    "--config_overrides, or pick the timm variant by name (e.g. timm:resnet18d)."
                )
            if mean is None or std is None:
                raise ValueError("A timm teacher needs the mean/std it is trained with (for its pretrained_cfg).")
            model = build_timm_teacher(timm_name, data.num_classes, data.id2label, data.label2id, image_size,
                                       mean, std)
            if ldam:
                logger.warning("LDAM scales logits by s=%s, meant for a cosine head; timm %s has a plain linear head "
                               "(consider --ldam_s 1)", model_args.ldam_s, timm_name)
            model.config.class_counts = list(data.class_counts)
            return model
        if arch not in TEACHER_ARCHS:
            raise ValueError(
                f"Unknown --teacher_arch {arch!r}; choose one of {list(TEACHER_ARCHS)} or timm:NAME (any name of "
                "timm.list_models())."
            )
        overrides = parse_config_overrides(model_args.config_overrides, ResNetCifarConfig)
        _refuse_label_overrides(overrides, data)
        if ldam:
            overrides.setdefault("use_norm", True)  # LDAM's cosine classifier (official LDAM-DRW ResNet-32)
        model = ResNetCifarForImageClassification(ResNetCifarConfig(**{**overrides, **labels}))
    model.config.class_counts = list(data.class_counts)
    return model


__all__ = [
    "TeacherTrainer",
    "TrainerSAM",
    "build_teacher_model",
    "check_checkpoint_overrides",
    "check_teacher_flags",
    "check_teacher_loss_flags",
    "check_teacher_training_args",
    "default_teacher_image_size",
    "frozen_batch_norm_stats",
    "teacher_drw_point",
]
