"""The ViT both model families are built from: patch and position embeddings with one or two prefix tokens, the
pre-norm block (`LongTailViTLayer`), the block stack (`LongTailViTEncoder`, also the MGP decoder's), and the encoder
model (`LongTailViTEncoderModel`) that `LiVTModel` and `DeiTLTModel` specialise.

The layout and key names follow timm / MAE (fused qkv, `layers.{i}.attn.qkv`), so official checkpoints port one to one.
Shapes in comments: N batch, L patches, P prefix tokens, D width.

This file is copied next to saved models as remote code: only single-dot sibling imports of our package.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.output_capturing import capture_outputs

from .losses import build_labels_loss


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
class LongTailViTEncoderOutput(ModelOutput):
    """Encoder output: `last_hidden_state [N, P + L_keep, D]`; `mask` (`[N, L]`, 1 = removed) and `ids_restore` are
    set when patches were masked."""

    last_hidden_state: torch.FloatTensor | None = None
    mask: torch.Tensor | None = None
    ids_restore: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


# ---------------------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------------------
class LongTailViTPatchEmbeddings(nn.Module):
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


class LongTailViTEmbeddings(nn.Module):
    """Patch embeddings + prefix tokens + a learnable position embedding covering the prefix tokens too
    (`[1, P + L, D]`, as timm/MAE), initialised by each model (sin-cos for LiVT, truncated normal for DeiT-LT).

    Prefix tokens: `[CLS]` (`num_prefix_tokens=1`, LiVT) or `[CLS, DIST]` (`num_prefix_tokens=2`, DeiT-LT's
    distillation token, the timm `VisionTransformerDistilled` layout)."""

    def __init__(self, config, num_prefix_tokens: int = 1):
        super().__init__()
        if num_prefix_tokens not in (1, 2):
            raise ValueError(f"num_prefix_tokens={num_prefix_tokens}: the ViT has [CLS] (1) or [CLS, DIST] (2).")
        self.config = config
        self.num_prefix_tokens = num_prefix_tokens
        self.patch_embeddings = LongTailViTPatchEmbeddings(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.distillation_token = (
            nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if num_prefix_tokens == 2 else None
        )
        self.grid_size = config.image_size // config.patch_size
        self.position_embeddings = nn.Parameter(
            torch.zeros(1, num_prefix_tokens + self.grid_size**2, config.hidden_size)
        )

    def prefix_tokens(self, batch_size: int) -> torch.Tensor:
        """`[N, P, D]` prefix tokens before position embeddings."""
        tokens = [self.cls_token] + ([self.distillation_token] if self.distillation_token is not None else [])
        return torch.cat(tokens, dim=1).expand(batch_size, -1, -1)

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


class LongTailViTAttention(nn.Module):
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


class LongTailViTMLP(nn.Module):
    def __init__(self, config, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(intermediate_size, hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(self.act(self.fc1(hidden_states)))))


class LongTailViTDropPath(nn.Module):
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


class LongTailViTLayer(GradientCheckpointingLayer):
    """Pre-norm ViT block: x + drop_path(attn(norm1(x))), then x + drop_path(mlp(norm2(x)))."""

    def __init__(self, config, hidden_size=None, num_attention_heads=None, intermediate_size=None, drop_path=0.0):
        super().__init__()
        hidden_size = hidden_size or config.hidden_size
        self.norm1 = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.attn = LongTailViTAttention(config, hidden_size, num_attention_heads or config.num_attention_heads)
        self.norm2 = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.mlp = LongTailViTMLP(config, hidden_size, intermediate_size or config.intermediate_size)
        self.drop_path = LongTailViTDropPath(drop_path)

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> torch.Tensor:
        attn_output, _ = self.attn(self.norm1(hidden_states), **kwargs)
        hidden_states = hidden_states + self.drop_path(attn_output)
        return hidden_states + self.drop_path(self.mlp(self.norm2(hidden_states)))


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Stochastic depth increasing linearly from 0 to `rate` over the blocks (plain Python: works on meta)."""
    return [rate * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]


class LongTailViTEncoder(nn.ModuleList):
    """The stack of `LongTailViTLayer`s, run in order: the LiVT and DeiT-LT encoders (config sizes, drop path linear
    over depth) and the MGP decoder (its own sizes). A `ModuleList`, so checkpoints keep the `layers.{i}` key layout."""

    def __init__(self, config, hidden_size=None, num_layers=None, num_attention_heads=None, intermediate_size=None,
                 drop_path_rate: float = 0.0):
        rates = drop_path_rates(drop_path_rate, num_layers or config.num_hidden_layers)
        super().__init__(
            LongTailViTLayer(config, hidden_size, num_attention_heads, intermediate_size, drop_path=rate)
            for rate in rates
        )

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> torch.Tensor:
        for layer in self:
            hidden_states = layer(hidden_states, **kwargs)
        return hidden_states


# ---------------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------------
def vit_group_matcher(coarse: bool = False) -> dict:
    """Parameter-name groups for layer-wise lr decay, timm's `group_matcher` convention (what
    `timm.optim.param_groups_layer_decay` reads): embeddings and tokens first, then block i; the rest (final norms,
    heads) comes last. Names may carry a prefix (`livt.`, `deit_lt.`, a PEFT wrapper's `base_model.model.`), so the
    rule fits any ViT naming its blocks `layers.N`."""
    block = r"^(?:.*\.)?layers\.(\d+)\."
    return {
        "stem": r"^(?:.*\.)?(?:embeddings\.|cls_token$|distillation_token$)",
        "blocks": block if coarse else [(block, None)],
    }


class LongTailViTPreTrainedModel(PreTrainedModel):
    """What every model of the package shares: attention backends, output recording, loading at another image size.
    Subclasses set `config_class`, `base_model_prefix` and `_init_weights` (each paper's own initialisation)."""

    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["LongTailViTEmbeddings", "LongTailViTLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_record_outputs = {"hidden_states": LongTailViTLayer, "attentions": LongTailViTAttention}
    # Our losses are batch means: let Trainer divide them by the gradient-accumulation steps.
    accepts_loss_kwargs = False

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

    def group_matcher(self, coarse: bool = False) -> dict:
        """Parameter-name groups for layer-wise lr decay (`vit_group_matcher`)."""
        return vit_group_matcher(coarse)

    def forward_features(self, pixel_values, interpolate_pos_encoding=None, **kwargs) -> "LongTailViTEncoderOutput":
        """The encoder's tokens (`base_model`, i.e. `self.livt` / `self.deit_lt`): `last_hidden_state [N, P + L, D]`.
        Always a `LongTailViTEncoderOutput` (the heads read its fields; `return_dict=False` is applied to the head's
        output)."""
        kwargs["return_dict"] = True
        return self.base_model(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs)

    @property
    def labels_loss(self) -> nn.Module:
        """The loss a forward with `labels` computes (per head, for DeiT-LT): the one the config's loss field names
        (`loss_type` for LiVT, `cls_loss_type` for DeiT-LT) with its prior, or, with
        `config.problem_type="multi_label_classification"`, BCE with logits over multi-hot labels (`build_labels_loss`);
        rebuilt when that field, `problem_type`, `class_counts` or `bal_tau` change. Held in a dict, not as a
        submodule: the loss has no weights to save."""
        config = self.config
        loss_type = getattr(config, config.loss_field)
        key = (loss_type, tuple(config.class_counts or ()), config.bal_tau, config.problem_type)
        cache = self.__dict__.setdefault("_loss_cache", {})
        if key not in cache:
            config.validate_fields()
            cache.clear()
            cache[key] = build_labels_loss(key[0], config.class_counts, config.bal_tau, config.problem_type)
        return cache[key]

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


class LongTailViTEncoderModel(LongTailViTPreTrainedModel):
    """The ViT encoder model: patch embedding, `num_prefix_tokens` prefix tokens, position embeddings,
    `num_hidden_layers` blocks (`LongTailViTEncoder`) and an optional final LayerNorm. `LiVTModel` ([CLS]) and
    `DeiTLTModel` ([CLS, DIST]) are this class with their paper's config and initialisation."""

    num_prefix_tokens = 1

    def __init__(self, config, add_final_norm: bool = True):
        config.validate_fields()
        super().__init__(config)
        self.embeddings = LongTailViTEmbeddings(config, self.num_prefix_tokens)
        self.layers = LongTailViTEncoder(config, drop_path_rate=config.drop_path_rate)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if add_final_norm else None
        self.post_init()

    def get_input_embeddings(self) -> LongTailViTPatchEmbeddings:
        return self.embeddings.patch_embeddings

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor,
        noise: torch.Tensor | None = None,
        mask_ratio: float = 0.0,
        interpolate_pos_encoding: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> LongTailViTEncoderOutput:
        """Encode `pixel_values [N, 3, H, W]`; with `mask_ratio > 0` (or `noise`) only the kept patches are encoded."""
        hidden_states, mask, ids_restore = self.embeddings(
            pixel_values, noise=noise, mask_ratio=mask_ratio, interpolate_pos_encoding=bool(interpolate_pos_encoding)
        )  # [N, P + L_keep, D]
        hidden_states = self.layers(hidden_states, **kwargs)
        if self.layernorm is not None:
            hidden_states = self.layernorm(hidden_states)
        return LongTailViTEncoderOutput(last_hidden_state=hidden_states, mask=mask, ids_restore=ids_restore)


__all__ = [
    "LongTailViTAttention",
    "LongTailViTDropPath",
    "LongTailViTEmbeddings",
    "LongTailViTEncoder",
    "LongTailViTEncoderModel",
    "LongTailViTEncoderOutput",
    "LongTailViTLayer",
    "LongTailViTMLP",
    "LongTailViTPatchEmbeddings",
    "LongTailViTPreTrainedModel",
    "drop_path_rates",
    "get_2d_sincos_pos_embed",
    "interpolate_pos_embed",
]
