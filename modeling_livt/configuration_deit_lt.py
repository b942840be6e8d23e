"""DeiT-LT configuration: a DeiT (ViT with a CLS and a DIST token) for long-tailed data (Rangwani et al., CVPR 2024).

This file is copied next to saved models as remote code: only single-dot sibling imports of our package.
"""

from transformers import PreTrainedConfig

from .configuration_livt import (
    BALANCED_LOSS_TYPES,
    LOSS_TYPES,
    normalize_class_counts,
    validate_class_counts,
    validate_posthoc,
    validate_vit_encoder,
)

# DeiT-Ti/S/B encoders (Touvron et al., 2021): patch 16, MLP ratio 4.
DEIT_LT_PRESETS = {
    "tiny": dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768),
    "small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}

# The encoder fields shared with `LiVTConfig` (what `DeiTLTForImageClassification.from_livt_pretrained` carries over).
ENCODER_FIELDS = (
    "image_size", "patch_size", "num_channels", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "intermediate_size", "hidden_act", "qkv_bias", "layer_norm_eps", "initializer_range",
)


class DeiTLTConfig(PreTrainedConfig):
    r"""Configuration of [`DeiTLTModel`] and [`DeiTLTForImageClassification`].

    The encoder is the ViT of [`LiVTConfig`] (same field names, same block); the token layout is
    `[CLS, DIST, patches]` with learnable position embeddings over all tokens (timm `VisionTransformerDistilled`).

    Args:
        image_size (`int`, defaults to 224), patch_size (`int`, defaults to 16), num_channels (`int`, defaults to 3)
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size: encoder dimensions (DeiT-B default).
        hidden_act (`str`, defaults to `"gelu"`), qkv_bias (`bool`, defaults to `True`)
        layer_norm_eps (`float`, defaults to 1e-6): the DeiT value (HF DeiT uses 1e-12).
        hidden_dropout_prob, attention_probs_dropout_prob (`float`, defaults to 0.0)
        drop_path_rate (`float`, defaults to 0.1): stochastic depth, linear over depth (the DeiT / DeiT-LT default).
        initializer_range (`float`, defaults to 0.02): std of the truncated-normal init of linears, tokens and
            position embeddings (official DeiT).
        cls_loss_type (`str`, defaults to `"ce"`): loss of the CLS head: `"ce"` (soft-target cross-entropy, the
            DeiT-LT recipe), `"bal_bce"`, `"bal_ce"` or `"bce"`. The distillation loss needs a teacher and is
            computed by the trainer (`DeiTLTLoss`), not by the model.
        bal_tau (`float`, defaults to 1.0): strength of the log-prior adjustment of the balanced CLS losses.
        class_counts (`list[int]`, *optional*): training images per class (balanced losses, DRW weights).
        distillation_alpha (`float`, defaults to 0.5): weight of the distillation term,
            total = (1 - alpha) * cls_loss + alpha * dist_loss (used by the trainer).
        drw_beta (`float`, defaults to 0.9999): beta of the class-balanced (effective-number) weights of the
            distillation loss after the deferred re-weighting epoch (used by the trainer).
        posthoc_tau_norm (`float`, *optional*): tau-normalisation at inference (Kang et al., 2020), applied to each
            head on its own (`classifier` and `distillation_classifier`: W_j / ||W_j||^tau, biases kept) before the
            two heads are averaged.
        posthoc_logit_adjustment_tau (`float`, *optional*): logits - tau * log(class_counts / N) at inference (Menon
            et al., 2021).
        posthoc_temperature (`float`, *optional*): logits / T at inference (Guo et al., 2017).
            The post-hoc fields apply in that order, in eval mode only, to the averaged `logits`; `cls_logits`,
            `distillation_logits` and every loss stay raw. None (the default) changes nothing.

    Example:
    ```python
    >>> from modeling_livt import DeiTLTConfig, DeiTLTForImageClassification
    >>> config = DeiTLTConfig.from_preset("tiny", image_size=32, patch_size=4, class_counts=[500, 100, 20])
    >>> model = DeiTLTForImageClassification(config)
    ```
    """

    model_type = "deit_lt"

    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-6
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    drop_path_rate: float = 0.1
    initializer_range: float = 0.02
    cls_loss_type: str = "ce"
    bal_tau: float = 1.0
    class_counts: list[int] | None = None
    distillation_alpha: float = 0.5
    drw_beta: float = 0.9999
    posthoc_tau_norm: float | None = None
    posthoc_logit_adjustment_tau: float | None = None
    posthoc_temperature: float | None = None

    def __post_init__(self, **kwargs):
        labels_given = self.id2label is not None or kwargs.get("num_labels") is not None
        super().__post_init__(**kwargs)
        normalize_class_counts(self, labels_given)
        self.validate_deit_lt()

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "DeiTLTConfig":
        """Build a config from a named preset (`tiny`, `small`, `base`: DeiT-Ti/S/B), overriding any field."""
        if name not in DEIT_LT_PRESETS:
            raise ValueError(f"Unknown DeiT-LT preset {name!r}; choose one of {sorted(DEIT_LT_PRESETS)}.")
        return cls(**{**DEIT_LT_PRESETS[name], **overrides})

    def validate_deit_lt(self):
        """Raise `ValueError` naming the field for inconsistent values.

        Runs in `__post_init__` and again when a model is built (keyword arguments given to `from_pretrained` are set
        on the config after `__post_init__`).
        """
        validate_vit_encoder(self)
        if self.cls_loss_type not in LOSS_TYPES:
            raise ValueError(f"Unknown cls_loss_type={self.cls_loss_type!r}; choose one of {list(LOSS_TYPES)}.")
        if not 0.0 <= self.distillation_alpha <= 1.0:
            raise ValueError(f"distillation_alpha={self.distillation_alpha} must be in [0, 1].")
        if not 0.0 <= self.drw_beta < 1.0:
            raise ValueError(f"drw_beta={self.drw_beta} must be in [0, 1).")
        validate_class_counts(
            self.class_counts,
            num_labels=self.num_labels,
            require_positive=self.cls_loss_type in BALANCED_LOSS_TYPES,
        )
        validate_posthoc(self)

    def validate_livt(self):
        """The name the shared ViT encoder (`LiVTModel`) calls when it is built: validates this DeiT-LT config."""
        self.validate_deit_lt()


__all__ = ["DeiTLTConfig", "DEIT_LT_PRESETS", "ENCODER_FIELDS"]
