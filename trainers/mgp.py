"""Stage 1 of LiVT: masked generative pretraining with AdamW (0.9, 0.95) and the MAE lr rule."""

from __future__ import annotations

from transformers import Trainer

from .base import LongTailTrainerMixin


class MGPTrainer(LongTailTrainerMixin, Trainer):
    """`Trainer` for `LiVTForMaskedImageModeling` (or any model returning an MGP/MAE loss).

    Chooses: lr = base_lr * effective batch / 256 (with `--base_learning_rate`), AdamW with the betas of the
    arguments (`MGPTrainingArguments` defaults to (0.9, 0.95)), weight decay 0.05 except biases, norms, tokens and
    position embeddings, warmup + cosine per step. Labels in the batch are ignored by the model.
    """

    def __init__(self, *args, model_card_writer=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._setup_long_tail(model_card_writer=model_card_writer)
