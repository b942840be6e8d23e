"""Model EMA, as DeiT / DeiT-LT train with it (timm `ModelEma(model, decay=0.99996)`, on by default there).

The EMA starts from the model's weights when training starts and is updated once per optimizer step
(`ema = decay * ema + (1 - decay) * weights`, parameters and floating-point buffers; integer buffers are copied).
As in DeiT, evaluation and model selection use the raw model; the EMA weights travel with it:

- every checkpoint `checkpoint-N/model_ema.safetensors` (written into the staging folder before the atomic rename);
- `trainer.save_model()` writes `output_dir/ema/`, a complete `from_pretrained` folder (config, weights, image
  processor, remote code) that `run_eval.py --model_name_or_path OUT/ema` or `pipeline` load as they load OUT;
- `train(resume_from_checkpoint=...)` restores the EMA exactly; a checkpoint without EMA weights is refused.
"""

from __future__ import annotations

import logging
import os

import torch
from safetensors.torch import load_model, save_model
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

EMA_WEIGHTS_NAME = "model_ema.safetensors"
EMA_DIR_NAME = "ema"


def _ema_multi_avg_fn(decay: float):
    lerp = get_ema_multi_avg_fn(decay)

    @torch.no_grad()
    def update(ema_tensors, model_tensors, n_averaged):
        if torch.is_floating_point(ema_tensors[0]) or torch.is_complex(ema_tensors[0]):
            lerp(ema_tensors, model_tensors, n_averaged)
        else:  # step counters and the like (BatchNorm's num_batches_tracked): follow the model, never average
            torch._foreach_copy_(ema_tensors, model_tensors)

    return update


class ModelEMACallback(TrainerCallback):
    """Keeps an exponential moving average of the model's weights (and buffers), one update per optimizer step.

    Added by every trainer of the package when `args.model_ema` is set; `trainer.model_ema` is the averaged module.
    `device=None` keeps the EMA next to the model; "cpu" matches DeiT's `--model_ema_force_cpu`.
    """

    def __init__(self, decay: float = 0.99996, device: str | torch.device | None = None):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"model_ema_decay must be in [0, 1], got {decay}.")
        self.decay = decay
        self.device = device
        self.averaged: AveragedModel | None = None
        self.num_updates = 0  # optimizer steps averaged in the current `train()` call
        self.resume_from: str | None = None  # checkpoint to restore the EMA from at the start of training

    @property
    def module(self) -> nn.Module | None:
        return None if self.averaged is None else self.averaged.module

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        # The model holds its starting weights here (after a resume, the checkpoint's), on its training device.
        self.averaged = AveragedModel(
            model, device=self.device, multi_avg_fn=_ema_multi_avg_fn(self.decay), use_buffers=True
        ).eval()
        self.averaged.requires_grad_(False)
        # timm's ModelEma: the EMA starts as a copy of the model and the first update already averages (AveragedModel
        # would instead copy the weights after the first step: n_averaged=0 means "copy").
        self.averaged.n_averaged.fill_(1)
        self.num_updates = 0
        if self.resume_from is not None:
            self.load(self.resume_from)
            logger.info("Restored the model EMA from %s", self.resume_from)
            self.resume_from = None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        # Trainer calls on_step_end once per optimizer step (after optimizer.step(), not per micro-batch).
        self.averaged.update_parameters(model)
        self.num_updates += 1

    def save(self, folder: str) -> str:
        path = os.path.join(folder, EMA_WEIGHTS_NAME)
        save_model(self.module, path)  # state_dict keys, shared tensors handled
        return path

    def load(self, folder: str) -> None:
        path = os.path.join(folder, EMA_WEIGHTS_NAME)
        check_ema_checkpoint(folder)
        missing, unexpected = load_model(self.module, path, strict=False)
        if missing or unexpected:
            raise RuntimeError(
                f"{path} does not match the model: {len(missing)} missing keys (e.g. {sorted(missing)[:3]}), "
                f"{len(unexpected)} unexpected (e.g. {sorted(unexpected)[:3]}). It was written by another model."
            )


def check_ema_checkpoint(folder: str) -> None:
    """Refuse to resume an EMA run from a checkpoint that has no EMA weights (its EMA cannot be reconstructed)."""
    if not os.path.isfile(os.path.join(folder, EMA_WEIGHTS_NAME)):
        raise RuntimeError(
            f"--model_ema is on but checkpoint {folder} has no {EMA_WEIGHTS_NAME}: it was written by a run without "
            "--model_ema, so its EMA cannot be restored. Resume it without --model_ema, or start a new run "
            "(--model_name_or_path on a saved model starts a fresh EMA from its weights)."
        )
