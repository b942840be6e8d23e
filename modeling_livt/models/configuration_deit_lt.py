"""DeiT-LT configuration: a DeiT (ViT with a CLS and a DIST token) for long-tailed data (Rangwani et al., CVPR 2024).

This file is copied next to saved models as remote code: only single-dot sibling imports of our package.
"""

from .configuration_vit import LongTailViTEncoderConfig, encoder_sizes

# DeiT-Ti/S/B encoders (Touvron et al., 2021): patch 16, MLP ratio 4.
DEIT_LT_PRESETS = {name: encoder_sizes(name) for name in ("tiny", "small", "base")}

# Fields older versions kept here although only the trainer reads them: now `DeiTLTTrainer`'s arguments. A config.json
# that still carries them loads; the values are dropped.
TRAINER_FIELDS = ("distillation_alpha", "drw_beta")


class DeiTLTConfig(LongTailViTEncoderConfig):
    r"""Configuration of [`DeiTLTModel`] and [`DeiTLTForImageClassification`].

    The encoder fields, the class prior (`class_counts`, `bal_tau`) and the post-hoc fields are
    [`LongTailViTEncoderConfig`]'s (the same encoder as [`LiVTConfig`]); the token layout is `[CLS, DIST, patches]`
    with learnable position embeddings over all tokens (timm `VisionTransformerDistilled`). The distillation weight and
    the DRW beta are training settings: `DeiTLTTrainer`'s arguments, not model fields.

    Args:
        drop_path_rate (`float`, defaults to 0.1): stochastic depth, linear over depth (the DeiT / DeiT-LT default).
        initializer_range (`float`, defaults to 0.02): std of the truncated-normal init of linears, tokens and
            position embeddings (official DeiT).
        cls_loss_type (`str`, defaults to `"ce"`): loss on the labels: `"ce"` (soft-target cross-entropy, the
            DeiT-LT recipe), `"bal_bce"`, `"bal_ce"` or `"bce"`. `DeiTLTTrainer` trains the CLS head with it and
            distils the DIST head from the teacher (`DeiTLTLoss`); the model's own loss (labels alone, no teacher)
            applies it to both heads and averages.
        posthoc_tau_norm: as in [`LongTailViTEncoderConfig`], applied to each head on its own (`classifier` and
            `distillation_classifier`) before the two heads are averaged; the post-hoc fields adjust the averaged
            `logits`, while `cls_logits`, `distillation_logits` and every loss stay raw.

    Example:
    ```python
    >>> from modeling_livt import DeiTLTConfig, DeiTLTForImageClassification
    >>> config = DeiTLTConfig.from_preset("tiny", image_size=32, patch_size=4, class_counts=[500, 100, 20])
    >>> model = DeiTLTForImageClassification(config)
    ```
    """

    model_type = "deit_lt"
    presets = DEIT_LT_PRESETS
    loss_field = "cls_loss_type"

    drop_path_rate: float = 0.1
    cls_loss_type: str = "ce"

    def __post_init__(self, **kwargs):
        for name in TRAINER_FIELDS:
            kwargs.pop(name, None)
        super().__post_init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        """A LiVT config is refused: its weights sit under other names, so `from_pretrained` would start every weight
        from scratch; the combined recipe converts them instead."""
        if config_dict.get("model_type") == "livt":
            raise ValueError(
                "This is a LiVT checkpoint (model_type 'livt'), not a DeiT-LT one: from_pretrained would load none of "
                "its weights. Start a DeiT-LT student from it with modeling_livt.deit_lt_from_livt(path, ...) or "
                "`run_deit_lt.py --model_name_or_path PATH` (the combined LiVT -> DeiT-LT recipe)."
            )
        return super().from_dict(config_dict, **kwargs)


__all__ = ["DeiTLTConfig", "DEIT_LT_PRESETS"]
