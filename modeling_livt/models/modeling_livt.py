"""LiVT: a ViT encoder trained from scratch on long-tailed data (Xu et al., CVPR 2023).

Stage 1, masked generative pretraining (MGP = MAE on the long-tailed data): `LiVTForMaskedImageModeling`.
Stage 2, balanced fine-tuning with Bal-BCE: `LiVTForImageClassification`.

The encoder, its block and the decoder's block stack are the shared ViT of `modeling_vit.py`; this file adds MAE's
initialisation, the MGP decoder and loss, and the mean-pooling head. Shapes in comments: N batch, L patches,
D width, C classes.

This file is copied next to saved models as remote code: only single-dot sibling imports of our package.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple

from .configuration_livt import LiVTConfig
from .modeling_vit import (
    LongTailViTEmbeddings,
    LongTailViTEncoder,
    LongTailViTEncoderModel,
    LongTailViTPreTrainedModel,
    get_2d_sincos_pos_embed,
    interpolate_pos_embed,
)
from .posthoc_adjustment import apply_posthoc, has_posthoc


# ---------------------------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class LiVTForMaskedImageModelingOutput(ModelOutput):
    """MGP output: `logits` are the predicted (normalised) pixels of every patch `[N, L, p*p*3]`."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    mask: torch.Tensor | None = None
    ids_restore: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class LiVTImageClassifierOutput(ModelOutput):
    """Classification output. `logits [N, C]` carry no prior (the prior lives in the training loss), except the post-hoc
    adjustments a config may ask for (`posthoc_*` fields), applied in eval mode only; `loss` is always computed on the
    raw logits."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


# ---------------------------------------------------------------------------------------------------------------------
# Encoder
# ---------------------------------------------------------------------------------------------------------------------
class LiVTClassifierHead(nn.Linear):
    """The classification head: a linear layer initialised with trunc_normal(std=config.classifier_init_std)."""


class LiVTPreTrainedModel(LongTailViTPreTrainedModel):
    config_class = LiVTConfig
    config: LiVTConfig
    base_model_prefix = "livt"

    @torch.no_grad()
    def _init_weights(self, module):
        """The official MAE/LiVT initialisation: xavier-uniform linears (and patch projection, seen as a linear),
        normal(0.02) tokens, sin-cos position embeddings. Only tensors missing from a checkpoint reach here."""
        std = self.config.initializer_range
        if isinstance(module, LiVTClassifierHead):
            init.trunc_normal_(module.weight, std=self.config.classifier_init_std)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):  # the patch projection, initialised as a linear layer (MAE)
            if not getattr(module.weight, "_is_hf_initialized", False):  # a view drops the flag: check it here
                nn.init.xavier_uniform_(module.weight.view(module.weight.shape[0], -1))
            init.zeros_(module.bias)
        elif isinstance(module, LongTailViTEmbeddings):
            init.normal_(module.cls_token, std=std)
            pos_embed = get_2d_sincos_pos_embed(module.position_embeddings.shape[-1], module.grid_size,
                                                module.num_prefix_tokens)
            init.copy_(module.position_embeddings, pos_embed.unsqueeze(0))
        elif isinstance(module, LiVTDecoder):
            init.normal_(module.mask_token, std=std)
            pos_embed = get_2d_sincos_pos_embed(module.decoder_pos_embed.shape[-1], module.grid_size, 1)
            init.copy_(module.decoder_pos_embed, pos_embed.unsqueeze(0))


class LiVTModel(LiVTPreTrainedModel, LongTailViTEncoderModel):
    """The LiVT ViT encoder ([`LongTailViTEncoderModel`] with a CLS token and MAE's initialisation): patch embedding,
    CLS token, position embeddings, `num_hidden_layers` blocks and an optional final LayerNorm (dropped under the
    mean-pooling head, whose `fc_norm` replaces it). `forward(pixel_values, noise=None, mask_ratio=0.0)` returns
    `last_hidden_state [N, 1 + L_keep, D]`."""


# ---------------------------------------------------------------------------------------------------------------------
# Stage 1: masked generative pretraining
# ---------------------------------------------------------------------------------------------------------------------
class LiVTDecoder(nn.Module):
    """MAE decoder: embeds the visible tokens, appends mask tokens, unshuffles, adds fixed sin-cos position embeddings,
    runs light blocks and predicts the pixels of every patch."""

    def __init__(self, config: LiVTConfig):
        super().__init__()
        self.grid_size = config.image_size // config.patch_size
        self.decoder_embed = nn.Linear(config.hidden_size, config.decoder_hidden_size)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.decoder_hidden_size))
        self.decoder_pos_embed = nn.Parameter(
            torch.zeros(1, 1 + self.grid_size**2, config.decoder_hidden_size), requires_grad=False
        )
        self.decoder_layers = LongTailViTEncoder(
            config, config.decoder_hidden_size, config.decoder_num_hidden_layers, config.decoder_num_attention_heads,
            config.decoder_intermediate_size,
        )
        self.decoder_norm = nn.LayerNorm(config.decoder_hidden_size, eps=config.layer_norm_eps)
        self.decoder_pred = nn.Linear(config.decoder_hidden_size, config.patch_size**2 * config.num_channels)

    def resize(self, grid_size: int):
        pos = get_2d_sincos_pos_embed(self.decoder_pos_embed.shape[-1], grid_size, 1).unsqueeze(0)
        self.decoder_pos_embed = nn.Parameter(pos.to(self.decoder_pos_embed.device), requires_grad=False)
        self.grid_size = grid_size

    def position_embeddings_for(self, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """The fixed sin-cos position embeddings `[1, 1 + L, Dd]` for a `grid` of patches (rows, cols), interpolated
        bicubically (as the encoder's, MAE's `interpolate_pos_embed`) when it is not the configured one."""
        if grid is None or tuple(grid) == (self.grid_size, self.grid_size):
            return self.decoder_pos_embed
        return interpolate_pos_embed(self.decoder_pos_embed, 1, tuple(grid))

    def forward(
        self, latent: torch.Tensor, ids_restore: torch.Tensor, grid: tuple[int, int] | None = None, **kwargs
    ) -> torch.Tensor:
        """`latent [N, 1 + L_keep, D]` -> `[N, L, p*p*3]`; `grid` (patch rows, cols) when the input size is not the
        configured one (`interpolate_pos_encoding=True`)."""
        hidden_states = self.decoder_embed(latent)  # [N, 1 + L_keep, Dd]
        batch_size, num_tokens, dim = hidden_states.shape
        num_masked = ids_restore.shape[1] + 1 - num_tokens
        mask_tokens = self.mask_token.expand(batch_size, num_masked, -1)
        patches = torch.cat([hidden_states[:, 1:], mask_tokens], dim=1)  # [N, L, Dd] in shuffled order
        patches = torch.gather(patches, 1, ids_restore.unsqueeze(-1).expand(-1, -1, dim))  # original order
        hidden_states = torch.cat([hidden_states[:, :1], patches], dim=1) + self.position_embeddings_for(grid)
        hidden_states = self.decoder_layers(hidden_states, **kwargs)
        hidden_states = self.decoder_norm(hidden_states)
        return self.decoder_pred(hidden_states)[:, 1:]  # [N, L, p*p*3], CLS dropped


class LiVTForMaskedImageModeling(LiVTPreTrainedModel):
    """Stage 1 of LiVT: MAE on the long-tailed data. The encoder sees the visible `1 - mask_ratio` of the patches;
    the loss is the MSE on (per-patch normalised) pixels of the masked patches only. Position embeddings stay
    frozen at their sin-cos values (as the official code)."""

    def __init__(self, config: LiVTConfig):
        super().__init__(config)
        self.livt = LiVTModel(config, add_final_norm=True)
        self.decoder = LiVTDecoder(config)
        self.post_init()
        self._after_load()

    def _after_load(self):
        self.livt.embeddings.position_embeddings.requires_grad_(False)
        self.decoder.decoder_pos_embed.requires_grad_(False)

    def resize_position_embeddings(self, image_size: int):
        """Resize the encoder's position embeddings and recompute the decoder's fixed sin-cos ones."""
        super().resize_position_embeddings(image_size)
        if self.decoder.grid_size != self.livt.embeddings.grid_size:
            self.decoder.resize(self.livt.embeddings.grid_size)

    def patchify(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """`[N, 3, H, W]` -> `[N, L, p*p*3]` (MAE's order: patch rows, patch cols, then p, p, channels)."""
        p = self.config.patch_size
        batch_size, channels, height, width = pixel_values.shape
        # channels last first: two copies with contiguous p*3 runs, ~2x faster on CPU than one 6-d permute copy
        x = pixel_values.permute(0, 2, 3, 1).reshape(batch_size, height // p, p, width // p, p * channels)
        return x.transpose(2, 3).reshape(batch_size, (height // p) * (width // p), p * p * channels)

    def unpatchify(self, patches: torch.Tensor, image_size: tuple[int, int] | None = None) -> torch.Tensor:
        """`[N, L, p*p*3]` -> `[N, 3, H, W]`."""
        p, channels = self.config.patch_size, self.config.num_channels
        height, width = image_size or (self.config.image_size, self.config.image_size)
        h, w = height // p, width // p
        x = patches.reshape(patches.shape[0], h, w, p, p, channels)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(patches.shape[0], channels, h * p, w * p)

    def forward_loss(self, pixel_values: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over masked patches of the per-patch MSE; targets normalised per patch (unbiased var, eps 1e-6)."""
        target = self.patchify(pixel_values)  # [N, L, p*p*3]
        if self.config.norm_pix_loss:
            # two-pass mean / unbiased variance: torch.var's CPU kernel (Welford) is ~20x slower on [N, L, p*p*3]
            mean = target.mean(dim=-1, keepdim=True)
            centered = target - mean
            var = centered.square().sum(dim=-1, keepdim=True) / (target.shape[-1] - 1)
            target = centered / (var + 1.0e-6) ** 0.5
        loss = nn.functional.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=-1)  # [N, L]
        return (loss * mask).sum() / mask.sum()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        noise: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> LiVTForMaskedImageModelingOutput:
        """`interpolate_pos_encoding=True` runs MGP at another input size (as transformers' ViTMAE): the encoder's and
        the decoder's position embeddings are interpolated bicubically to the input's patch grid (`noise`, if given, is
        then `[N, L]` for that grid); without it an input of another size raises `ValueError`. To train at another
        size for good, resize once with `resize_position_embeddings(image_size)`.

        With `return_dict=False` (argument or config): `output.to_tuple()`, i.e. (loss, logits, mask, ids_restore,
        then hidden_states / attentions when asked for)."""
        kwargs.pop("labels", None)  # MGP is label-free; image datasets still carry them
        kwargs["return_dict"] = True  # the encoder's fields are read below
        outputs = self.livt(
            pixel_values, noise=noise, mask_ratio=self.config.mask_ratio,
            interpolate_pos_encoding=interpolate_pos_encoding, **kwargs,
        )  # raises, naming interpolate_pos_encoding, for another input size without it
        patch_size = self.config.patch_size
        grid = (pixel_values.shape[-2] // patch_size, pixel_values.shape[-1] // patch_size)
        pred = self.decoder(outputs.last_hidden_state, outputs.ids_restore, grid=grid)
        loss = self.forward_loss(pixel_values, pred, outputs.mask)
        return LiVTForMaskedImageModelingOutput(
            loss=loss, logits=pred, mask=outputs.mask, ids_restore=outputs.ids_restore,
            hidden_states=outputs.hidden_states, attentions=outputs.attentions,
        )


# ---------------------------------------------------------------------------------------------------------------------
# Stage 2: balanced fine-tuning
# ---------------------------------------------------------------------------------------------------------------------
class LiVTForImageClassification(LiVTPreTrainedModel):
    """Stage 2 of LiVT: the encoder with a classification head, trained with the loss named by `config.loss_type`
    (Bal-BCE by default) whose prior comes from `config.class_counts`. Loading an MGP checkpoint keeps the encoder,
    drops the decoder and the final norm, and initialises `fc_norm` and the head.

    Head: `pooling="mean"` averages the patch tokens (CLS excluded) -> `fc_norm` -> `classifier` (the encoder's final
    norm is dropped); `pooling="cls"` takes the final-normed CLS token. `labels` may be int `[N]` or soft `[N, C]`;
    with `config.problem_type="multi_label_classification"`, multi-hot `[N, C]` (BCE with logits, no prior).
    """

    # an MGP checkpoint's decoder and (under mean pooling) final norm are expected leftovers
    _keys_to_ignore_on_load_unexpected = [r"^decoder\.", r"^livt\.layernorm\."]

    def __init__(self, config: LiVTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        mean_pooling = config.pooling == "mean"
        self.livt = LiVTModel(config, add_final_norm=not mean_pooling)
        self.fc_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if mean_pooling else nn.Identity()
        self.classifier = LiVTClassifierHead(config.hidden_size, config.num_labels)
        self.post_init()

    def pooled_features(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`[N, 1 + L, D]` tokens -> `[N, D]`, the classifier's input."""
        num_prefix = self.livt.embeddings.num_prefix_tokens
        pooled = hidden_states[:, num_prefix:].mean(dim=1) if self.config.pooling == "mean" else hidden_states[:, 0]
        return self.fc_norm(pooled)

    def forward_head(self, hidden_states: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The head (timm's `forward_head`): `[N, 1 + L, D]` tokens (`forward_features`) -> `[N, C]` raw logits (no
        post-hoc adjustment), or with `pre_logits=True` the `[N, D]` pooled features the classifier reads."""
        features = self.pooled_features(hidden_states)
        return features if pre_logits else self.classifier(features)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> LiVTImageClassifierOutput:
        """`labels`: int `[N]` or soft `[N, C]` for the configured loss, multi-hot `[N, C]` under
        `config.problem_type="multi_label_classification"` (`labels_loss`). With `return_dict=False` (argument or
        config): `output.to_tuple()`, i.e. (loss when labels were given, logits, then hidden_states / attentions when
        asked for)."""
        outputs = self.forward_features(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs)
        hidden_states = outputs.last_hidden_state
        logits = self.forward_head(hidden_states)
        loss = self.labels_loss(logits, labels) if labels is not None else None
        if not self.training and has_posthoc(self.config):  # for inference: no training loss sees them
            heads = [(self.forward_head(hidden_states, pre_logits=True), self.classifier)]
            logits = apply_posthoc(self.config, logits, heads)
        return LiVTImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


__all__ = [
    "LiVTPreTrainedModel",
    "LiVTModel",
    "LiVTForMaskedImageModeling",
    "LiVTForImageClassification",
]
