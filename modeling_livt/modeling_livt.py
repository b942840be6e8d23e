"""LiVT: a ViT encoder trained from scratch on long-tailed data (Xu et al., CVPR 2023).

Stage 1, masked generative pretraining (MGP = MAE on the long-tailed data): `LiVTForMaskedImageModeling`.
Stage 2, balanced fine-tuning with Bal-BCE: `LiVTForImageClassification`.

The transformer block (`LiVTLayer`) is the one block of the package; DeiT-LT reuses it.
Shapes in comments: N batch, L patches, D width, C classes.

This file is copied next to saved models as remote code: only single-dot sibling imports of our package.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput
from transformers.utils.output_capturing import capture_outputs

from .configuration_livt import LiVTConfig
from .losses import build_loss
from .posthoc_adjustment import apply_posthoc


# ---------------------------------------------------------------------------------------------------------------------
# Position embeddings
# ---------------------------------------------------------------------------------------------------------------------
def get_2d_sincos_pos_embed(embed_dim: int, grid_size: int, num_prefix_tokens: int = 1) -> torch.Tensor:
    """2-D sin-cos position embeddings exactly as MAE's `get_2d_sincos_pos_embed` (float64 maths).

    Layout per position: [sin(w), cos(w), sin(h), cos(h)] (MAE's meshgrid puts w first); prefix tokens get zeros.
    Returns `[num_prefix_tokens + grid_size**2, embed_dim]` float32.
    """
    if embed_dim % 4 != 0:
        raise ValueError(f"sin-cos position embeddings need a width divisible by 4, got {embed_dim}.")
    omega = torch.arange(embed_dim // 4, dtype=torch.float64) / (embed_dim / 4.0)
    omega = 1.0 / 10000**omega  # [D/4]
    coords = torch.arange(grid_size, dtype=torch.float64)
    grid_h, grid_w = torch.meshgrid(coords, coords, indexing="ij")  # row-major patch order

    def embed_1d(positions):
        out = positions.reshape(-1, 1) * omega.reshape(1, -1)  # [L, D/4]
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)  # [L, D/2]

    pos_embed = torch.cat([embed_1d(grid_w), embed_1d(grid_h)], dim=1)  # [L, D]
    prefix = torch.zeros(num_prefix_tokens, embed_dim, dtype=torch.float64)
    return torch.cat([prefix, pos_embed], dim=0).float()


def interpolate_pos_embed(pos_embed: torch.Tensor, num_prefix_tokens: int, new_grid: tuple[int, int]) -> torch.Tensor:
    """Bicubically resize the patch part of `pos_embed [1, P + L, D]` to `new_grid` (prefix tokens kept as they are),
    as MAE's `interpolate_pos_embed` does when a checkpoint is fine-tuned at another resolution."""
    prefix, patch_pos = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    old_size = int(patch_pos.shape[1] ** 0.5)
    if old_size * old_size != patch_pos.shape[1]:
        raise ValueError(f"cannot interpolate a non-square grid of {patch_pos.shape[1]} position embeddings.")
    if (old_size, old_size) == tuple(new_grid):
        return pos_embed
    dim = patch_pos.shape[-1]
    patch_pos = patch_pos.reshape(1, old_size, old_size, dim).permute(0, 3, 1, 2)
    patch_pos = nn.functional.interpolate(patch_pos.float(), size=new_grid, mode="bicubic", align_corners=False)
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos_embed.dtype)
    return torch.cat([prefix, patch_pos], dim=1)


# ---------------------------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class LiVTModelOutput(ModelOutput):
    """Encoder output. `mask` (`[N, L]`, 1 = removed) and `ids_restore` are set when patches were masked."""

    last_hidden_state: torch.FloatTensor | None = None
    mask: torch.Tensor | None = None
    ids_restore: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


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
# Building blocks
# ---------------------------------------------------------------------------------------------------------------------
class LiVTPatchEmbeddings(nn.Module):
    """`[N, 3, H, W]` -> `[N, L, D]` with a strided convolution."""

    def __init__(self, config, hidden_size: int | None = None):
        super().__init__()
        self.patch_size = config.patch_size
        self.num_channels = config.num_channels
        self.projection = nn.Conv2d(
            config.num_channels, hidden_size or config.hidden_size, kernel_size=config.patch_size,
            stride=config.patch_size,
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.dim() != 4 or pixel_values.shape[1] != self.num_channels:
            raise ValueError(
                f"pixel_values must be [batch, {self.num_channels}, height, width], got {tuple(pixel_values.shape)}."
            )
        height, width = pixel_values.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image size {height}x{width} is not divisible by patch_size={self.patch_size}.")
        return self.projection(pixel_values).flatten(2).transpose(1, 2)


class LiVTEmbeddings(nn.Module):
    """Patch embeddings + prefix tokens (CLS, and DIST for DeiT-LT) + a learnable position embedding that starts as
    2-D sin-cos values. The position embedding covers the prefix tokens too (`[1, P + L, D]`, as timm/MAE)."""

    def __init__(self, config, num_prefix_tokens: int = 1):
        super().__init__()
        self.config = config
        self.num_prefix_tokens = num_prefix_tokens
        self.patch_embeddings = LiVTPatchEmbeddings(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.grid_size = config.image_size // config.patch_size
        self.position_embeddings = nn.Parameter(
            torch.zeros(1, num_prefix_tokens + self.grid_size**2, config.hidden_size)
        )

    def prefix_tokens(self, batch_size: int) -> torch.Tensor:
        """`[N, P, D]` prefix tokens before position embeddings (overridden by DeiT-LT to add DIST)."""
        return self.cls_token.expand(batch_size, -1, -1)

    def position_embeddings_for(self, height: int, width: int, interpolate: bool) -> torch.Tensor:
        grid = (height // self.config.patch_size, width // self.config.patch_size)
        if grid == (self.grid_size, self.grid_size):
            return self.position_embeddings
        if not interpolate:
            raise ValueError(
                f"Input image size ({height}x{width}) doesn't match the model ({self.config.image_size}x"
                f"{self.config.image_size}). Pass interpolate_pos_encoding=True, or resize the model once with "
                "`model.resize_position_embeddings(image_size)` (or `from_pretrained(..., image_size=...)`)."
            )
        return interpolate_pos_embed(self.position_embeddings, self.num_prefix_tokens, grid)

    def forward(
        self,
        pixel_values: torch.Tensor,
        noise: torch.Tensor | None = None,
        mask_ratio: float = 0.0,
        interpolate_pos_encoding: bool = False,
    ):
        """Returns (tokens `[N, P + L_keep, D]`, mask `[N, L]` or None, ids_restore `[N, L]` or None)."""
        height, width = pixel_values.shape[-2:]
        patches = self.patch_embeddings(pixel_values)  # [N, L, D]
        pos_embed = self.position_embeddings_for(height, width, interpolate_pos_encoding)
        patches = patches + pos_embed[:, self.num_prefix_tokens :]
        mask = ids_restore = None
        if mask_ratio > 0 or noise is not None:
            patches, mask, ids_restore = self.random_masking(patches, mask_ratio, noise)  # [N, L_keep, D]
        prefix = self.prefix_tokens(patches.shape[0]) + pos_embed[:, : self.num_prefix_tokens]
        return torch.cat([prefix, patches], dim=1), mask, ids_restore

    @staticmethod
    def random_masking(sequence: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None):
        """Per-sample random masking by argsort of noise (MAE). `noise [N, L]` makes it deterministic."""
        batch_size, seq_length, dim = sequence.shape
        len_keep = int(seq_length * (1 - mask_ratio))
        if noise is None:
            noise = torch.rand(batch_size, seq_length, device=sequence.device)
        elif noise.shape != (batch_size, seq_length):
            raise ValueError(f"noise must have shape {(batch_size, seq_length)}, got {tuple(noise.shape)}.")
        ids_shuffle = torch.argsort(noise.to(sequence.device), dim=1)  # ascend: small is keep
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        kept = torch.gather(sequence, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))
        mask = torch.ones(batch_size, seq_length, device=sequence.device, dtype=sequence.dtype)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, 1, ids_restore)  # 0 keep, 1 remove, in the original patch order
        return kept, mask, ids_restore


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Reference attention (softmax in float32); SDPA is the default through transformers' attention interface."""
    attn_weights = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


class LiVTAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (the timm/MAE layout, so ports are one-to-one)."""

    def __init__(self, config, hidden_size: int, num_attention_heads: int):
        super().__init__()
        self.config = config
        self.num_heads = num_attention_heads
        self.head_dim = hidden_size // num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.dropout = config.attention_probs_dropout_prob
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=config.qkv_bias)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor, **kwargs):
        batch_size, seq_length, _ = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(batch_size, seq_length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [N, heads, T, head_dim]
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self, query, key, value, None,
            dropout=self.dropout if self.training else 0.0, scaling=self.scaling, **kwargs,
        )
        attn_output = attn_output.reshape(batch_size, seq_length, -1)  # [N, T, D]
        return self.proj(attn_output), attn_weights


class LiVTMLP(nn.Module):
    def __init__(self, config, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(intermediate_size, hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(self.act(self.fc1(hidden_states)))))


class LiVTDropPath(nn.Module):
    """Stochastic depth per sample (the residual branch is dropped for a whole example)."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return hidden_states
        keep_prob = 1 - self.drop_prob
        shape = (hidden_states.shape[0],) + (1,) * (hidden_states.dim() - 1)
        keep = hidden_states.new_empty(shape).bernoulli_(keep_prob)
        return hidden_states * keep / keep_prob

    def extra_repr(self) -> str:
        return f"p={self.drop_prob}"


class LiVTLayer(GradientCheckpointingLayer):
    """Pre-norm ViT block: x + drop_path(attn(norm1(x))), then x + drop_path(mlp(norm2(x))).

    Shared by the LiVT encoder, the MGP decoder and DeiT-LT."""

    def __init__(self, config, hidden_size=None, num_attention_heads=None, intermediate_size=None, drop_path=0.0):
        super().__init__()
        hidden_size = hidden_size or config.hidden_size
        self.norm1 = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.attn = LiVTAttention(config, hidden_size, num_attention_heads or config.num_attention_heads)
        self.norm2 = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.mlp = LiVTMLP(config, hidden_size, intermediate_size or config.intermediate_size)
        self.drop_path = LiVTDropPath(drop_path)

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> torch.Tensor:
        attn_output, _ = self.attn(self.norm1(hidden_states), **kwargs)
        hidden_states = hidden_states + self.drop_path(attn_output)
        return hidden_states + self.drop_path(self.mlp(self.norm2(hidden_states)))


class LiVTClassifierHead(nn.Linear):
    """The classification head: a linear layer initialised with trunc_normal(std=config.classifier_init_std)."""


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Stochastic depth increasing linearly from 0 to `rate` over the blocks (plain Python: works on meta)."""
    return [rate * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]


# ---------------------------------------------------------------------------------------------------------------------
# Pretrained model base
# ---------------------------------------------------------------------------------------------------------------------
class LiVTPreTrainedModel(PreTrainedModel):
    config_class = LiVTConfig
    config: LiVTConfig
    base_model_prefix = "livt"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["LiVTEmbeddings", "LiVTLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_record_outputs = {"hidden_states": LiVTLayer, "attentions": LiVTAttention}
    # Our losses are batch means: let Trainer divide them by the gradient-accumulation steps.
    accepts_loss_kwargs = False

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
        elif isinstance(module, LiVTEmbeddings):
            init.normal_(module.cls_token, std=std)
            pos_embed = get_2d_sincos_pos_embed(module.position_embeddings.shape[-1], module.grid_size,
                                                module.num_prefix_tokens)
            init.copy_(module.position_embeddings, pos_embed.unsqueeze(0))
        elif isinstance(module, LiVTDecoder):
            init.normal_(module.mask_token, std=std)
            pos_embed = get_2d_sincos_pos_embed(module.decoder_pos_embed.shape[-1], module.grid_size, 1)
            init.copy_(module.decoder_pos_embed, pos_embed.unsqueeze(0))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`from_pretrained`, plus `image_size=` to fine-tune at another resolution: the checkpoint is loaded at its
        own size and its position embeddings are resized bicubically (MAE's `interpolate_pos_embed`)."""
        image_size = kwargs.pop("image_size", None)
        loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # a tuple with output_loading_info=True
        if image_size is not None:
            model.resize_position_embeddings(image_size)
        model._after_load()
        return loaded

    def _after_load(self):
        """Hook for state that loading resets (transformers re-creates loaded parameters with requires_grad=True)."""

    def resize_position_embeddings(self, image_size: int):
        """Resize the encoder's position embeddings (bicubic) to a new input size and update the config."""
        if image_size % self.config.patch_size:
            raise ValueError(f"image_size={image_size} is not divisible by patch_size={self.config.patch_size}.")
        embeddings = self.base_model.embeddings
        grid = image_size // self.config.patch_size
        if grid == embeddings.grid_size:
            return
        new_pos = interpolate_pos_embed(embeddings.position_embeddings.data, embeddings.num_prefix_tokens, (grid, grid))
        requires_grad = embeddings.position_embeddings.requires_grad
        embeddings.position_embeddings = nn.Parameter(new_pos, requires_grad=requires_grad)
        embeddings.grid_size = grid
        self.config.image_size = image_size
        decoder = getattr(self, "decoder", None)
        if decoder is not None:  # the decoder's sin-cos embeddings stay fixed: recompute them
            decoder.resize(grid)


# ---------------------------------------------------------------------------------------------------------------------
# Encoder
# ---------------------------------------------------------------------------------------------------------------------
class LiVTModel(LiVTPreTrainedModel):
    """The LiVT ViT encoder: patch embedding, CLS token, position embeddings, `num_hidden_layers` blocks and an optional
    final LayerNorm (dropped under the mean-pooling head, whose `fc_norm` replaces it)."""

    def __init__(self, config: LiVTConfig, add_final_norm: bool = True, num_prefix_tokens: int = 1):
        config.validate_livt()
        super().__init__(config)
        self.embeddings = self._build_embeddings(config, num_prefix_tokens)
        rates = drop_path_rates(config.drop_path_rate, config.num_hidden_layers)
        self.layers = nn.ModuleList([LiVTLayer(config, drop_path=rate) for rate in rates])
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if add_final_norm else None
        self.post_init()

    def _build_embeddings(self, config, num_prefix_tokens):
        return LiVTEmbeddings(config, num_prefix_tokens)

    def get_input_embeddings(self) -> LiVTPatchEmbeddings:
        return self.embeddings.patch_embeddings

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor,
        noise: torch.Tensor | None = None,
        mask_ratio: float = 0.0,
        interpolate_pos_encoding: bool | None = None,
        **kwargs,
    ) -> LiVTModelOutput:
        """Encode `pixel_values [N, 3, H, W]`; with `mask_ratio > 0` (or `noise`) only the kept patches are encoded."""
        hidden_states, mask, ids_restore = self.embeddings(
            pixel_values, noise=noise, mask_ratio=mask_ratio, interpolate_pos_encoding=bool(interpolate_pos_encoding)
        )  # [N, P + L_keep, D]
        for layer in self.layers:
            hidden_states = layer(hidden_states, **kwargs)
        if self.layernorm is not None:
            hidden_states = self.layernorm(hidden_states)
        return LiVTModelOutput(last_hidden_state=hidden_states, mask=mask, ids_restore=ids_restore)


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
        self.decoder_layers = nn.ModuleList([
            LiVTLayer(config, config.decoder_hidden_size, config.decoder_num_attention_heads,
                      config.decoder_intermediate_size)
            for _ in range(config.decoder_num_hidden_layers)
        ])
        self.decoder_norm = nn.LayerNorm(config.decoder_hidden_size, eps=config.layer_norm_eps)
        self.decoder_pred = nn.Linear(config.decoder_hidden_size, config.patch_size**2 * config.num_channels)

    def resize(self, grid_size: int):
        pos = get_2d_sincos_pos_embed(self.decoder_pos_embed.shape[-1], grid_size, 1).unsqueeze(0)
        self.decoder_pos_embed = nn.Parameter(pos.to(self.decoder_pos_embed.device), requires_grad=False)
        self.grid_size = grid_size

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor, **kwargs) -> torch.Tensor:
        hidden_states = self.decoder_embed(latent)  # [N, 1 + L_keep, Dd]
        batch_size, num_tokens, dim = hidden_states.shape
        num_masked = ids_restore.shape[1] + 1 - num_tokens
        mask_tokens = self.mask_token.expand(batch_size, num_masked, -1)
        patches = torch.cat([hidden_states[:, 1:], mask_tokens], dim=1)  # [N, L, Dd] in shuffled order
        patches = torch.gather(patches, 1, ids_restore.unsqueeze(-1).expand(-1, -1, dim))  # original order
        hidden_states = torch.cat([hidden_states[:, :1], patches], dim=1) + self.decoder_pos_embed
        for layer in self.decoder_layers:
            hidden_states = layer(hidden_states, **kwargs)
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

    def patchify(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """`[N, 3, H, W]` -> `[N, L, p*p*3]` (MAE's order: patch rows, patch cols, then p, p, channels)."""
        p = self.config.patch_size
        batch_size, channels, height, width = pixel_values.shape
        x = pixel_values.reshape(batch_size, channels, height // p, p, width // p, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(batch_size, (height // p) * (width // p), p * p * channels)

    def unpatchify(self, patches: torch.Tensor, image_size: tuple[int, int] | None = None) -> torch.Tensor:
        """`[N, L, p*p*3]` -> `[N, 3, H, W]`."""
        p, channels = self.config.patch_size, self.config.num_channels
        height, width = image_size or (self.config.image_size, self.config.image_size)
        h, w = height // p, width // p
        x = patches.reshape(patches.shape[0], h, w, p, p, channels)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(patches.shape[0], channels, h * p, w * p)

    def forward_loss(self, pixel_values: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over masked patches of the per-patch MSE; targets normalised per patch (unbiased var, eps 1e-6)."""
        target = self.patchify(pixel_values)
        if self.config.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        loss = ((pred.float() - target.float()) ** 2).mean(dim=-1)  # [N, L]
        return (loss * mask).sum() / mask.sum()

    def forward(
        self,
        pixel_values: torch.Tensor,
        noise: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        **kwargs,
    ) -> LiVTForMaskedImageModelingOutput:
        kwargs.pop("labels", None)  # MGP is label-free; image datasets still carry them
        if interpolate_pos_encoding:
            raise ValueError("MGP runs at the configured image size; resize the model with resize_position_embeddings.")
        outputs = self.livt(pixel_values, noise=noise, mask_ratio=self.config.mask_ratio, **kwargs)
        pred = self.decoder(outputs.last_hidden_state, outputs.ids_restore)
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
    norm is dropped); `pooling="cls"` takes the final-normed CLS token. `labels` may be int `[N]` or soft `[N, C]`.
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
        self._loss_cache = {}  # a dict, not a submodule: the loss holds no weights
        self.post_init()

    @property
    def loss_fn(self) -> nn.Module:
        """The training loss, rebuilt when `config.loss_type`, `class_counts` or `bal_tau` change."""
        key = (self.config.loss_type, tuple(self.config.class_counts or ()), self.config.bal_tau)
        if key not in self._loss_cache:
            self.config.validate_livt()
            self._loss_cache.clear()
            self._loss_cache[key] = build_loss(self.config.loss_type, self.config.class_counts, self.config.bal_tau)
        return self._loss_cache[key]

    def forward_features(self, pixel_values, interpolate_pos_encoding=None, **kwargs) -> LiVTModelOutput:
        return self.livt(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs)

    def pooled_features(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`[N, 1 + L, D]` tokens -> `[N, D]`, the classifier's input."""
        num_prefix = self.livt.embeddings.num_prefix_tokens
        pooled = hidden_states[:, num_prefix:].mean(dim=1) if self.config.pooling == "mean" else hidden_states[:, 0]
        return self.fc_norm(pooled)

    def forward_head(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`[N, 1 + L, D]` tokens -> `[N, C]` raw logits (no post-hoc adjustment)."""
        return self.classifier(self.pooled_features(hidden_states))

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        **kwargs,
    ) -> LiVTImageClassifierOutput:
        outputs = self.forward_features(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs)
        features = self.pooled_features(outputs.last_hidden_state)
        logits = self.classifier(features)
        loss = self.loss_fn(logits, labels) if labels is not None else None
        if not self.training:  # post-hoc adjustments are for inference: no training loss sees them
            logits = apply_posthoc(self.config, logits, [(features, self.classifier)])
        return LiVTImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


__all__ = [
    "LiVTPreTrainedModel",
    "LiVTModel",
    "LiVTForMaskedImageModeling",
    "LiVTForImageClassification",
    "LiVTLayer",
    "LiVTEmbeddings",
    "get_2d_sincos_pos_embed",
    "interpolate_pos_embed",
]
