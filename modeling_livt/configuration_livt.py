"""LiVT configuration: a ViT encoder, an MAE-style decoder for masked generative pretraining (MGP) and the
long-tail prior (training class counts) that the balanced losses need.

This file is copied next to saved models as remote code: it imports nothing from our package.
"""

import math

from transformers import PreTrainedConfig

LOSS_TYPES = ("bal_bce", "bal_ce", "bce", "ce")
BALANCED_LOSS_TYPES = ("bal_bce", "bal_ce")
POOLING_TYPES = ("mean", "cls")

# ViT-Ti/S/B/L encoders (DeiT / ViT papers). The MGP decoder scales with the encoder: the paper's 512-d, 8-block
# decoder behind a tiny encoder would cost 5-20x a supervised step, so only B/L keep it.
LIVT_PRESETS = {
    "tiny": dict(
        hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768,
        decoder_hidden_size=128, decoder_num_hidden_layers=4, decoder_num_attention_heads=4,
        decoder_intermediate_size=512,
    ),
    "small": dict(
        hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
        decoder_hidden_size=256, decoder_num_hidden_layers=4, decoder_num_attention_heads=8,
        decoder_intermediate_size=1024,
    ),
    "base": dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        decoder_hidden_size=512, decoder_num_hidden_layers=8, decoder_num_attention_heads=16,
        decoder_intermediate_size=2048,
    ),
    "large": dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        decoder_hidden_size=512, decoder_num_hidden_layers=8, decoder_num_attention_heads=16,
        decoder_intermediate_size=2048,
    ),
}


def validate_class_counts(class_counts, num_labels=None, require_positive=True):
    """Check a list of training class counts in plain Python (it also runs on the meta device).

    Raises `ValueError` naming the offending class or the length mismatch.
    """
    if class_counts is None:
        return
    if isinstance(class_counts, (str, bytes)) or not hasattr(class_counts, "__len__"):
        raise ValueError(f"`class_counts` must be a list of per-class training counts, got {class_counts!r}.")
    if num_labels is not None and len(class_counts) != num_labels:
        raise ValueError(
            f"`class_counts` has {len(class_counts)} entries but the model has num_labels={num_labels}: "
            "pass one training count per class, in label order."
        )
    for index, count in enumerate(class_counts):
        if isinstance(count, bool) or not isinstance(count, (int, float)) or math.isnan(count) or math.isinf(count):
            raise ValueError(f"`class_counts` entry for class {index} is {count!r}; counts must be finite numbers.")
        if count < 0 or (require_positive and count <= 0):
            raise ValueError(
                f"Class {index} has {count} training images, but a balanced loss needs every class to be present "
                "(its log-prior would be -inf). Add images of that class, drop the class from the label set, "
                "or train with loss_type='ce'/'bce'."
            )


# Post-hoc inference adjustments, in the order the models apply them (see `posthoc_adjustment.py`).
POSTHOC_FIELDS = ("posthoc_tau_norm", "posthoc_logit_adjustment_tau", "posthoc_temperature")


def _is_finite_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def validate_posthoc(config) -> None:
    """Check the post-hoc fields of a classifier config in plain Python; `ValueError` names the field and the fix.

    `posthoc_temperature` must be positive, `posthoc_tau_norm` non-negative, and `posthoc_logit_adjustment_tau` needs
    `class_counts` with every class present (the prior pi_c = n_c / N enters as log pi_c).
    """
    temperature = config.posthoc_temperature
    if temperature is not None and not (_is_finite_number(temperature) and temperature > 0):
        raise ValueError(
            f"posthoc_temperature={temperature!r} must be a positive finite number (None: no temperature scaling)."
        )
    tau_norm = config.posthoc_tau_norm
    if tau_norm is not None and not (_is_finite_number(tau_norm) and tau_norm >= 0):
        raise ValueError(f"posthoc_tau_norm={tau_norm!r} must be a finite number >= 0 (None: no tau-normalisation).")
    tau = config.posthoc_logit_adjustment_tau
    if tau is None:
        return
    if not _is_finite_number(tau):
        raise ValueError(f"posthoc_logit_adjustment_tau={tau!r} must be a finite number (None: no logit adjustment).")
    if config.class_counts is None:
        raise ValueError(
            "posthoc_logit_adjustment_tau needs `class_counts` (training images per class, in label order): the "
            "adjustment subtracts tau * log(n_c / N). Set config.class_counts, or drop the logit adjustment."
        )
    validate_class_counts(config.class_counts, num_labels=config.num_labels, require_positive=False)
    empty = [index for index, count in enumerate(config.class_counts) if count <= 0]
    if empty:
        raise ValueError(
            f"posthoc_logit_adjustment_tau: class {empty[0]} has no training images, so its log-prior is -inf. "
            "Logit adjustment needs every class present in class_counts; drop the adjustment for this model."
        )


def normalize_class_counts(config, labels_given: bool) -> None:
    """Shared `__post_init__` step: integral counts become ints, and the prior defines the label space when neither
    `num_labels` nor `id2label` was given."""
    if config.class_counts is None:
        return
    if not labels_given:
        config.num_labels = len(config.class_counts)
    config.class_counts = [int(c) if float(c).is_integer() else c for c in config.class_counts]


def validate_vit_encoder(config) -> None:
    """Checks every ViT encoder config of the package shares (LiVT, DeiT-LT); `ValueError` names the field."""
    for name in ("image_size", "patch_size", "num_channels", "hidden_size", "num_hidden_layers",
                 "num_attention_heads", "intermediate_size"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name}={value!r} must be a positive integer.")
    if config.hidden_size % config.num_attention_heads != 0:
        raise ValueError(
            f"hidden_size={config.hidden_size} is not divisible by num_attention_heads={config.num_attention_heads}."
        )
    if config.image_size % config.patch_size != 0:
        raise ValueError(f"image_size={config.image_size} is not divisible by patch_size={config.patch_size}.")
    for name in ("drop_path_rate", "hidden_dropout_prob", "attention_probs_dropout_prob"):
        value = getattr(config, name)
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name}={value} must be in [0, 1).")


class LiVTConfig(PreTrainedConfig):
    r"""Configuration of the LiVT models ([`LiVTModel`], [`LiVTForMaskedImageModeling`],
    [`LiVTForImageClassification`]).

    Args:
        image_size (`int`, defaults to 224): input resolution (square).
        patch_size (`int`, defaults to 16): patch side; must divide `image_size`.
        num_channels (`int`, defaults to 3)
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size: encoder dimensions (ViT-B default).
        hidden_act (`str`, defaults to `"gelu"`)
        qkv_bias (`bool`, defaults to `True`)
        layer_norm_eps (`float`, defaults to 1e-6): the papers' value (HF ViT uses 1e-12).
        hidden_dropout_prob, attention_probs_dropout_prob (`float`, defaults to 0.0)
        drop_path_rate (`float`, defaults to 0.0): stochastic depth, linear over depth.
        initializer_range (`float`, defaults to 0.02): std of the CLS / mask tokens.
        classifier_init_std (`float`, defaults to 2e-5): std of the fine-tuning head (MAE/LiVT recipe).
        decoder_hidden_size, decoder_num_hidden_layers, decoder_num_attention_heads, decoder_intermediate_size:
            MGP decoder (defaults 512 / 8 / 16 / 2048).
        mask_ratio (`float`, defaults to 0.75): fraction of patches masked during MGP.
        norm_pix_loss (`bool`, defaults to `True`): reconstruct per-patch normalised pixels.
        pooling (`str`, defaults to `"mean"`): `"mean"` = mean of patch tokens + `fc_norm` (LiVT head, final norm
            dropped) or `"cls"` = final norm + CLS token.
        loss_type (`str`, defaults to `"bal_bce"`): `"bal_bce"`, `"bal_ce"`, `"bce"` or `"ce"`.
        bal_tau (`float`, defaults to 1.0): strength of the log-prior adjustment of the balanced losses.
        class_counts (`list[int]`, *optional*): training-split images per class; the prior of the balanced losses.
        posthoc_tau_norm (`float`, *optional*): tau-normalisation of the classifier weights at inference (Kang et al.,
            2020): row j of the head becomes W_j / ||W_j||^tau (bias kept). Fitted by `scripts/run_eval.py --posthoc`.
        posthoc_logit_adjustment_tau (`float`, *optional*): post-hoc logit adjustment at inference (Menon et al.,
            2021): logits - tau * log(class_counts / sum(class_counts)).
        posthoc_temperature (`float`, *optional*): temperature scaling at inference (Guo et al., 2017): logits / T.
            The three post-hoc fields apply in that order, in eval mode only, to `logits`; training losses (and the
            loss a forward with `labels` returns) always see the raw logits. None (the default) changes nothing.

    Example:
    ```python
    >>> from modeling_livt import LiVTConfig, LiVTForImageClassification
    >>> config = LiVTConfig.from_preset("tiny", image_size=32, patch_size=4, num_labels=10, class_counts=[50] * 10)
    >>> model = LiVTForImageClassification(config)
    ```
    """

    model_type = "livt"

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
    drop_path_rate: float = 0.0
    initializer_range: float = 0.02
    classifier_init_std: float = 2e-5
    decoder_hidden_size: int = 512
    decoder_num_hidden_layers: int = 8
    decoder_num_attention_heads: int = 16
    decoder_intermediate_size: int = 2048
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True
    pooling: str = "mean"
    loss_type: str = "bal_bce"
    bal_tau: float = 1.0
    class_counts: list[int] | None = None
    posthoc_tau_norm: float | None = None
    posthoc_logit_adjustment_tau: float | None = None
    posthoc_temperature: float | None = None

    def __post_init__(self, **kwargs):
        labels_given = self.id2label is not None or kwargs.get("num_labels") is not None
        super().__post_init__(**kwargs)
        normalize_class_counts(self, labels_given)
        self.validate_livt()

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "LiVTConfig":
        """Build a config from a named preset (`tiny`, `small`, `base`, `large`), overriding any field."""
        if name not in LIVT_PRESETS:
            raise ValueError(f"Unknown LiVT preset {name!r}; choose one of {sorted(LIVT_PRESETS)}.")
        return cls(**{**LIVT_PRESETS[name], **overrides})

    def validate_livt(self):
        """Raise `ValueError` naming the field for inconsistent values.

        Runs in `__post_init__` and again when a model or loss is built, because keyword arguments given to
        `from_pretrained` are set on the config after `__post_init__`.
        """
        validate_vit_encoder(self)
        if self.decoder_hidden_size % self.decoder_num_attention_heads != 0:
            raise ValueError(
                f"decoder_hidden_size={self.decoder_hidden_size} is not divisible by "
                f"decoder_num_attention_heads={self.decoder_num_attention_heads}."
            )
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"Unknown loss_type={self.loss_type!r}; choose one of {list(LOSS_TYPES)}.")
        if self.pooling not in POOLING_TYPES:
            raise ValueError(f"Unknown pooling={self.pooling!r}; choose one of {list(POOLING_TYPES)}.")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio={self.mask_ratio} must be in [0, 1).")
        validate_class_counts(
            self.class_counts,
            num_labels=self.num_labels,
            require_positive=self.loss_type in BALANCED_LOSS_TYPES,
        )
        validate_posthoc(self)


__all__ = [
    "LiVTConfig",
    "LIVT_PRESETS",
    "LOSS_TYPES",
    "POSTHOC_FIELDS",
    "normalize_class_counts",
    "validate_class_counts",
    "validate_posthoc",
    "validate_vit_encoder",
]
