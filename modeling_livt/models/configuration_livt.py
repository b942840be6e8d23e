"""LiVT configuration: a ViT encoder, an MAE-style decoder for masked generative pretraining (MGP) and the
long-tail prior (training class counts) that the balanced losses need.

This file is copied next to saved models as remote code: only single-dot sibling imports of our package.
"""

from .configuration_vit import LongTailViTEncoderConfig, encoder_sizes

POOLING_TYPES = ("mean", "cls")

# The MGP decoder (width, depth, heads; MLP 4x) scales with the encoder: the paper's 512-d, 8-block decoder behind a
# tiny encoder would cost 5-20x a supervised step, so only B/L keep it.
DECODER_SIZES = {"tiny": (128, 4, 4), "small": (256, 4, 8), "base": (512, 8, 16), "large": (512, 8, 16)}
LIVT_PRESETS = {
    name: dict(
        encoder_sizes(name), decoder_hidden_size=width, decoder_num_hidden_layers=depth,
        decoder_num_attention_heads=heads, decoder_intermediate_size=4 * width,
    )
    for name, (width, depth, heads) in DECODER_SIZES.items()
}


class LiVTConfig(LongTailViTEncoderConfig):
    r"""Configuration of the LiVT models ([`LiVTModel`], [`LiVTForMaskedImageModeling`],
    [`LiVTForImageClassification`]).

    The encoder fields, the class prior (`class_counts`, `bal_tau`) and the post-hoc fields are
    [`LongTailViTEncoderConfig`]'s; LiVT adds the head, the MGP decoder and its loss.

    Args:
        classifier_init_std (`float`, defaults to 2e-5): std of the fine-tuning head (MAE/LiVT recipe).
        decoder_hidden_size, decoder_num_hidden_layers, decoder_num_attention_heads, decoder_intermediate_size:
            MGP decoder (defaults 512 / 8 / 16 / 2048).
        mask_ratio (`float`, defaults to 0.75): fraction of patches masked during MGP.
        norm_pix_loss (`bool`, defaults to `True`): reconstruct per-patch normalised pixels.
        pooling (`str`, defaults to `"mean"`): `"mean"` = mean of patch tokens + `fc_norm` (LiVT head, final norm
            dropped) or `"cls"` = final norm + CLS token.
        loss_type (`str`, defaults to `"bal_bce"`): `"bal_bce"`, `"bal_ce"`, `"bce"` or `"ce"`.

    Example:
    ```python
    >>> from modeling_livt import LiVTConfig, LiVTForImageClassification
    >>> config = LiVTConfig.from_preset("tiny", image_size=32, patch_size=4, num_labels=10, class_counts=[50] * 10)
    >>> model = LiVTForImageClassification(config)
    ```
    """

    model_type = "livt"
    presets = LIVT_PRESETS

    classifier_init_std: float = 2e-5
    decoder_hidden_size: int = 512
    decoder_num_hidden_layers: int = 8
    decoder_num_attention_heads: int = 16
    decoder_intermediate_size: int = 2048
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True
    pooling: str = "mean"
    loss_type: str = "bal_bce"

    def validate_fields(self):
        """`LongTailViTEncoderConfig.validate_fields` plus the decoder, pooling and mask ratio; `ValueError` names the
        field."""
        super().validate_fields()
        if self.decoder_hidden_size % self.decoder_num_attention_heads != 0:
            raise ValueError(
                f"decoder_hidden_size={self.decoder_hidden_size} is not divisible by "
                f"decoder_num_attention_heads={self.decoder_num_attention_heads}."
            )
        if self.pooling not in POOLING_TYPES:
            raise ValueError(f"Unknown pooling={self.pooling!r}; choose one of {list(POOLING_TYPES)}.")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio={self.mask_ratio} must be in [0, 1).")


__all__ = ["LiVTConfig", "LIVT_PRESETS", "POOLING_TYPES"]
