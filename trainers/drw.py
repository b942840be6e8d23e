"""Deferred re-weighting (Cao et al., 2019), shared by the DeiT-LT student (class-balanced DIST weights) and the
teacher (LDAM-DRW): the DRW point and the callback that switches a trainer's re-weighting on there."""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import Callable

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

DEFAULT_DRW_BETA = 0.9999  # the class-balanced weights of Cui et al. (2019), as DeiT-LT and LDAM-DRW


def describe_drw_point(drw_epoch: float | None, drw_step: int | None) -> str:
    """Where deferred re-weighting starts, as the card says it: "from epoch 160", "from step 900" or "none"."""
    if drw_epoch is not None:
        return f"from epoch {drw_epoch:g}"
    if drw_step is not None:
        return f"from step {drw_step}"
    return "none"


class DRWCallback(TrainerCallback):
    """Deferred re-weighting (Cao et al., 2019): `switch(True)` from the DRW point on, `switch(False)` before it.

    The DRW point is `drw_epoch` (sized data: on when `state.epoch >= drw_epoch`) or `drw_step` (streaming, where
    `state.epoch` is only a step ratio: on when `state.global_step >= drw_step`); with neither, DRW never starts.
    The state is a function of `TrainerState` alone, evaluated at `on_train_begin` (a fresh start or a resume from a
    checkpoint: global step and epoch are restored by then) and at every `on_step_end` (the next batch is collated
    after it, so a collator switch such as "no mixup after DRW" applies from the very next batch). `switch` is called
    only when the state changes (and once at the start of every `train()`).
    """

    def __init__(self, switch: Callable[[bool], None], drw_epoch: float | None = None, drw_step: int | None = None):
        if drw_epoch is not None and drw_step is not None:
            raise ValueError("Give the DRW point as --drw_epoch (sized data) or --drw_step (streaming), not both.")
        if (drw_epoch is not None and drw_epoch < 0) or (drw_step is not None and drw_step < 0):
            raise ValueError(f"The DRW point must be non-negative, got drw_epoch={drw_epoch}, drw_step={drw_step}.")
        # a trainer's own method is held weakly (no trainer <-> callback cycle: see `AugmentationEpochCallback`)
        self._switch = weakref.WeakMethod(switch) if inspect.ismethod(switch) else (lambda: switch)
        self.drw_epoch = drw_epoch
        self.drw_step = drw_step
        self.active: bool | None = None

    @property
    def enabled(self) -> bool:
        return self.drw_epoch is not None or self.drw_step is not None

    def is_active(self, state) -> bool:
        """Whether the next optimizer step (step number `state.global_step`, 0-based) trains with DRW."""
        if self.drw_step is not None:
            return state.global_step >= self.drw_step
        if self.drw_epoch is not None:
            return (state.epoch or 0.0) >= self.drw_epoch
        return False

    def _update(self, state, force: bool = False):
        active = self.is_active(state)
        if force or active != self.active:
            switch = self._switch()
            if switch is not None:
                switch(active)
            if active and self.active is not True:
                logger.info("DRW on from step %d (epoch %.2f)", state.global_step, state.epoch or 0.0)
            self.active = active

    def on_train_begin(self, args, state, control, **kwargs):
        self._update(state, force=True)

    def on_step_end(self, args, state, control, **kwargs):
        self._update(state)
