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

import dataclasses
import math
import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedConfig
from transformers import initialization as init
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple

from .configuration_deit_lt import DeiTLTConfig
from .configuration_livt import LiVTConfig
from .configuration_vit import ENCODER_FIELDS
from .modeling_livt import LiVTModel
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
    the labels, as DeiT does without a teacher: `loss = (loss_fn(cls_logits, labels) + loss_fn(distillation_logits,
    labels)) / 2`, `loss_fn` being the loss `config.cls_loss_type` names (with its prior). Inference averages both
    heads, so both must learn; a CLS-only loss would leave the DIST head at its random init. The full DeiT-LT objective
    `(1 - alpha) * cls + alpha * dist`, with the DIST head distilled from a CNN teacher's predictions, is computed by
    `DeiTLTTrainer` with `DeiTLTLoss` (it ignores this loss). With `return_dict=False` (argument or config) the output
    is `output.to_tuple()`: (loss when labels were given, logits, cls_logits, distillation_logits, then hidden_states /
    attentions when asked for).
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
            loss_fn = self.loss_fn
            loss = (loss_fn(cls_logits, labels) + loss_fn(distillation_logits, labels)) / 2
        if not self.training:  # post-hoc adjustments are for inference: no training loss sees them
            cls_features, distillation_features = self.forward_head(hidden_states, pre_logits=True)
            heads = [(cls_features, self.classifier), (distillation_features, self.distillation_classifier)]
            logits = apply_posthoc(self.config, logits, heads)
        return DeiTLTImageClassifierOutput(
            loss=loss, logits=logits, cls_logits=cls_logits, distillation_logits=distillation_logits,
            hidden_states=outputs.hidden_states, attentions=outputs.attentions,
        )

    # -----------------------------------------------------------------------------------------------------------------
    # Combined recipe: a DeiT-LT student initialised from a LiVT MGP (or fine-tuned LiVT) checkpoint
    # -----------------------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`from_pretrained`; a LiVT checkpoint (config `model_type` "livt") is routed to `from_livt_pretrained`, with
        the keyword arguments as config overrides (plus `distillation_position`, `attn_implementation`)."""
        from_livt = kwargs.get("config") is None and not model_args
        if from_livt and _model_type(pretrained_model_name_or_path, kwargs) == "livt":
            return cls.from_livt_pretrained(pretrained_model_name_or_path, **kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    @classmethod
    def from_livt_pretrained(
        cls,
        pretrained_model_name_or_path,
        distillation_position: str = "cls",
        attn_implementation: str | None = None,
        dtype: torch.dtype | str | None = None,
        **config_overrides,
    ) -> "DeiTLTForImageClassification":
        """Initialise a DeiT-LT student from a LiVT checkpoint (MGP `LiVTForMaskedImageModeling`, or a fine-tuned
        `LiVTForImageClassification`): the combined LiVT -> DeiT-LT recipe.

        Copied from the LiVT encoder: patch embedding, CLS token, all blocks, the final norm (when the checkpoint has
        one: MGP and `pooling="cls"` classifiers do; a mean-pooling classifier has none and its `fc_norm` is not used,
        so the student's final norm keeps its fresh 1 / 0 init) and the position embeddings:
        CLS position -> CLS position, patch positions -> patch positions (resized bicubically when `image_size` is
        overridden). The DIST position is a copy of the CLS position (`distillation_position="cls"`, the default; an
        MGP checkpoint's CLS position is the zero row of its frozen sin-cos table) or freshly drawn
        (`distillation_position="fresh"`, trunc_normal(0.02)). Fresh: the distillation token, both heads. Dropped:
        the MGP decoder, LiVT's `fc_norm` and head.

        The encoder fields (sizes, eps, ...) come from the LiVT config; `config_overrides` set any `DeiTLTConfig`
        field (e.g. `num_labels`, `id2label`, `class_counts`, `cls_loss_type`, `drop_path_rate`, `image_size`).
        Labels and `class_counts` are carried over from a fine-tuned LiVT classifier, not from an MGP checkpoint.
        Hub arguments (`revision`, `cache_dir`, `token`, `local_files_only`, `force_download`, `subfolder`) are passed
        to the loader; `dtype` casts the result (float32 by default).
        """
        if distillation_position not in ("cls", "fresh"):
            raise ValueError(f"distillation_position={distillation_position!r} must be 'cls' or 'fresh'.")
        hub_kwargs = {key: config_overrides.pop(key) for key in _HUB_KWARGS if key in config_overrides}
        allowed = {f.name for f in dataclasses.fields(DeiTLTConfig)} | {"num_labels"}
        unknown = sorted(set(config_overrides) - allowed)
        if unknown:
            raise TypeError(
                f"from_livt_pretrained got {unknown}, which are neither DeiTLTConfig fields nor loading arguments."
            )
        config_dict, _ = LiVTConfig.get_config_dict(pretrained_model_name_or_path, **hub_kwargs)
        if config_dict.get("model_type") != "livt":
            raise ValueError(
                f"{pretrained_model_name_or_path} is not a LiVT checkpoint: its config has "
                f"model_type={config_dict.get('model_type')!r}, not 'livt'."
            )
        livt_config = LiVTConfig.from_dict(config_dict)
        fields = {name: getattr(livt_config, name) for name in ENCODER_FIELDS}
        # the label space of a fine-tuned LiVT classifier (or a config with class counts), unless overridden
        labels = {}
        is_classifier = any("ForImageClassification" in a for a in (livt_config.architectures or []))
        if is_classifier or livt_config.class_counts is not None:
            labels["id2label"] = {int(k): v for k, v in livt_config.id2label.items()}
            if livt_config.class_counts is not None:
                labels["class_counts"] = list(livt_config.class_counts)
        if "id2label" in config_overrides:
            new_num_labels = len(config_overrides["id2label"])
        else:
            new_num_labels = config_overrides.pop("num_labels", None)  # id2label below carries it when it agrees
        if new_num_labels is not None and new_num_labels != len(labels.get("id2label", ())):
            labels = {"num_labels": new_num_labels} if "id2label" not in config_overrides else {}
        config = DeiTLTConfig(**{**fields, **labels, **config_overrides})
        if attn_implementation is not None:
            config._attn_implementation = attn_implementation

        # the LiVT encoder, loaded by its own class (handles shards, dtype, key prefixes)
        source = _LiVTEncoderSource.from_pretrained(
            pretrained_model_name_or_path, config=livt_config, dtype=torch.float32, **hub_kwargs
        )
        if config.image_size != livt_config.image_size:
            source.resize_position_embeddings(config.image_size)
        source_state = source.state_dict()

        model = cls(config)
        target = model.deit_lt
        with torch.no_grad():
            target.embeddings.patch_embeddings.load_state_dict(source.embeddings.patch_embeddings.state_dict())
            target.embeddings.cls_token.copy_(source_state["embeddings.cls_token"])
            source_pos = source_state["embeddings.position_embeddings"]  # [1, 1 + L, D]
            target_pos = target.embeddings.position_embeddings  # [1, 2 + L, D]
            if source_pos.shape[1] + 1 != target_pos.shape[1]:
                raise ValueError(
                    f"position embeddings of the LiVT checkpoint {tuple(source_pos.shape)} don't fit the DeiT-LT "
                    f"student {tuple(target_pos.shape)}."
                )
            target_pos[:, 0] = source_pos[:, 0]
            if distillation_position == "cls":
                target_pos[:, 1] = source_pos[:, 0]
            target_pos[:, 2:] = source_pos[:, 1:]
            target.layers.load_state_dict(source.layers.state_dict())
            # a checkpoint without a final norm leaves the source's at its 1 / 0 init: the same as a fresh DeiT norm
            target.layernorm.load_state_dict(source.layernorm.state_dict())
        if dtype is not None and dtype != "auto":
            model = model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
        return model


class _LiVTEncoderSource(LiVTModel):
    """LiVT's encoder, loaded from any LiVT checkpoint: the MGP decoder and a classifier's `fc_norm` / head are expected
    leftovers, and a mean-pooling classifier has no final norm (the student then keeps its fresh one)."""

    _keys_to_ignore_on_load_unexpected = [r"^decoder\.", r"^fc_norm\.", r"^classifier\."]
    _keys_to_ignore_on_load_missing = [r"^layernorm\."]


_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")


def _model_type(pretrained_model_name_or_path, kwargs) -> str | None:
    """`model_type` of a checkpoint's config, or None when a local folder has no config.json (not a model: the normal
    path then says what it lacks). Every other error (unreadable config, Hub access) is raised as it is."""
    folder = os.path.join(str(pretrained_model_name_or_path), kwargs.get("subfolder") or "")
    if os.path.isdir(folder) and not os.path.isfile(os.path.join(folder, "config.json")):
        return None
    config_dict, _ = PreTrainedConfig.get_config_dict(
        pretrained_model_name_or_path, **{k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
    )
    return config_dict.get("model_type")


__all__ = [
    "DeiTLTPreTrainedModel",
    "DeiTLTModel",
    "DeiTLTForImageClassification",
    "DeiTLTImageClassifierOutput",
]
