"""DeiT-LT: a DeiT with a CLS and a DIST token for long-tailed data (Rangwani et al., CVPR 2024).

The encoder is the shared ViT of `modeling_vit.py`, as LiVT's: this file only adds what differs, as timm's `deit.py`
does on top of `vision_transformer.py`: a distillation token (tokens `[CLS, DIST, patches]`, position embeddings over
all of them), two heads after the final norm, and the official DeiT initialisation (truncated normal, std 0.02).

Training: the CLS head is trained on the (mixed) labels, the DIST head on the hard predictions of a CNN teacher.
The distillation loss needs that teacher, so it lives in the trainer (`DeiTLTLoss` in `losses.py`). Given `labels`
alone (no teacher: a plain `transformers.Trainer`), the model trains both heads on the labels, as DeiT does without a
teacher: loss = (cls_loss + dist_loss) / 2, both with `config.cls_loss_type`. At inference the logits are the mean of
both heads.

This file is copied next to saved models as remote code: only single-dot sibling imports of our package.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple

from .configuration_deit_lt import DeiTLTConfig
from .modeling_vit import LongTailViTEmbeddings, LongTailViTEncoderModel, LongTailViTPreTrainedModel
from .posthoc_adjustment import apply_posthoc


@dataclass
class DeiTLTImageClassifierOutput(ModelOutput):
    """DeiT-LT output.

    `logits [N, C]` = (cls_logits + distillation_logits) / 2 in training and evaluation, with the config's post-hoc
    adjustments (`posthoc_*` fields) in eval mode; `cls_logits` and `distillation_logits` are always the heads' raw
    outputs. `loss` (given `labels`) is the mean of the labels loss of both raw heads, (loss(cls_logits, labels) +
    loss(distillation_logits, labels)) / 2, with `config.cls_loss_type` (the teacher-distilled objective is
    `DeiTLTLoss`, computed by `DeiTLTTrainer`).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cls_logits: torch.FloatTensor | None = None
    distillation_logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class DeiTLTPreTrainedModel(LongTailViTPreTrainedModel):
    config_class = DeiTLTConfig
    config: DeiTLTConfig
    base_model_prefix = "deit_lt"

    @torch.no_grad()
    def _init_weights(self, module):
        """Official DeiT / timm `VisionTransformerDistilled` init: trunc_normal(std=0.02) linears with zero bias,
        LayerNorm 1/0, trunc_normal(0.02) CLS / DIST tokens and position embeddings, the patch projection at PyTorch's
        default Conv2d init. Only tensors missing from a checkpoint reach here."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):  # nn.Conv2d.reset_parameters, through the flag-aware helpers
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                fan_in = module.weight.shape[1] * module.weight.shape[2] * module.weight.shape[3]
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, LongTailViTEmbeddings):
            init.trunc_normal_(module.cls_token, std=std)
            if module.distillation_token is not None:
                init.trunc_normal_(module.distillation_token, std=std)
            init.trunc_normal_(module.position_embeddings, std=std)


class DeiTLTModel(DeiTLTPreTrainedModel, LongTailViTEncoderModel):
    """The DeiT-LT encoder ([`LongTailViTEncoderModel`] with `[CLS, DIST]` prefix tokens, DeiT's initialisation and the
    final LayerNorm). `forward(pixel_values)` returns `last_hidden_state [N, 2 + L, D]` (token 0 = CLS,
    token 1 = DIST)."""

    num_prefix_tokens = 2


class DeiTLTForImageClassification(DeiTLTPreTrainedModel):
    """DeiT-LT classifier: `classifier` reads the final-normed CLS token, `distillation_classifier` the DIST token.

    `forward(pixel_values, labels=None)` -> `DeiTLTImageClassifierOutput` with `logits` = mean of the two heads (train
    and eval), `cls_logits`, `distillation_logits`, and, given `labels` (int `[N]` or soft `[N, C]`; multi-hot `[N, C]`
    under `config.problem_type="multi_label_classification"`), `loss`.

    The model's own loss (labels only, no teacher, e.g. under a plain `transformers.Trainer`) trains **both** heads on
    the labels, as DeiT does without a teacher: `loss = (labels_loss(cls_logits, labels) +
    labels_loss(distillation_logits, labels)) / 2`, `labels_loss` being the loss `config.cls_loss_type` names (with
    its prior). Inference averages both heads, so both must learn; a CLS-only loss would leave the DIST head at its
    random init. The full DeiT-LT objective `(1 - alpha) * cls + alpha * dist`, with the DIST head distilled from a
    CNN teacher's predictions, is computed by `DeiTLTTrainer` with `DeiTLTLoss` (it ignores this loss). With
    `return_dict=False` (argument or config) the output is `output.to_tuple()`: (loss when labels were given, logits,
    cls_logits, distillation_logits, then hidden_states / attentions when asked for).
    """

    def __init__(self, config: DeiTLTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.deit_lt = DeiTLTModel(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.distillation_classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward_head(self, hidden_states: torch.Tensor, pre_logits: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The two heads (timm's `forward_head`): `[N, 2 + L, D]` final-normed tokens (`forward_features`) ->
        (`cls_logits [N, C]`, `distillation_logits [N, C]`), raw; with `pre_logits=True` the heads' inputs, the CLS and
        DIST tokens (`[N, D]` each)."""
        cls_features, distillation_features = hidden_states[:, 0], hidden_states[:, 1]
        if pre_logits:
            return cls_features, distillation_features
        return self.classifier(cls_features), self.distillation_classifier(distillation_features)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> DeiTLTImageClassifierOutput:
        outputs = self.forward_features(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs)
        hidden_states = outputs.last_hidden_state
        cls_logits, distillation_logits = self.forward_head(hidden_states)
        logits = (cls_logits + distillation_logits) / 2
        loss = None
        if labels is not None:  # no teacher here: both heads learn the labels (DeiT without a teacher)
            labels_loss = self.labels_loss
            loss = (labels_loss(cls_logits, labels) + labels_loss(distillation_logits, labels)) / 2
        if not self.training:  # post-hoc adjustments are for inference: no training loss sees them
            cls_features, distillation_features = self.forward_head(hidden_states, pre_logits=True)
            heads = [(cls_features, self.classifier), (distillation_features, self.distillation_classifier)]
            logits = apply_posthoc(self.config, logits, heads)
        return DeiTLTImageClassifierOutput(
            loss=loss, logits=logits, cls_logits=cls_logits, distillation_logits=distillation_logits,
            hidden_states=outputs.hidden_states, attentions=outputs.attentions,
        )


__all__ = [
    "DeiTLTPreTrainedModel",
    "DeiTLTModel",
    "DeiTLTForImageClassification",
    "DeiTLTImageClassifierOutput",
]
