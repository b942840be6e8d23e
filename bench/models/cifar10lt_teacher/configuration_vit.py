"""The configuration both model families share: the ViT encoder's fields, the long-tail prior (training class counts)
that the balanced losses need, and the post-hoc inference adjustments. `LiVTConfig` and `DeiTLTConfig` extend it.

This file is copied next to saved models as remote code: it imports nothing from our package.
"""

import math

from transformers import PreTrainedConfig
from transformers.utils import logging

logger = logging.get_logger(__name__)

LOSS_TYPES = ("bal_bce", "bal_ce", "bce", "ce")
BALANCED_LOSS_TYPES = ("bal_bce", "bal_ce")

# `config.problem_type` values the classifiers honour (None = single-label, the default)
SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"

# Post-hoc inference adjustments, in the order the models apply them (see `posthoc_adjustment.py`).
POSTHOC_FIELDS = ("posthoc_tau_norm", "posthoc_logit_adjustment_tau", "posthoc_temperature")

# ViT-Ti/S/B/L encoders (DeiT / ViT papers): width, depth, heads; the MLP is 4x the width.
VIT_SIZES = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12), "large": (1024, 24, 16)}


def encoder_sizes(name: str) -> dict:
    """The config fields of a named ViT size (`VIT_SIZES`)."""
    width, depth, heads = VIT_SIZES[name]
    return dict(hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads, intermediate_size=4 * width)


# The encoder fields: what a DeiT-LT student initialised from a LiVT checkpoint carries over.
ENCODER_FIELDS = (
    "image_size", "patch_size", "num_channels", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "intermediate_size", "hidden_act", "qkv_bias", "layer_norm_eps", "initializer_range",
)


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


def check_problem_type(problem_type) -> None:
    """`config.problem_type` must be None, `"single_label_classification"` (the configured long-tail loss on int labels
    or soft targets) or `"multi_label_classification"` (BCE with logits over multi-hot labels); `"regression"` and
    anything else raise `ValueError` naming the field and what works."""
    if problem_type in (None, SINGLE_LABEL, MULTI_LABEL):
        return
    raise ValueError(
        f"problem_type={problem_type!r} is not supported: these models are classifiers. Use problem_type=None or "
        f"{SINGLE_LABEL!r} (the configured loss on int labels [N] or soft targets [N, C]) or {MULTI_LABEL!r} (BCE with "
        "logits over multi-hot float labels [N, C])."
    )


def _is_finite_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


class LongTailViTEncoderConfig(PreTrainedConfig):
    r"""The fields every ViT of the package shares (LiVT and DeiT-LT extend this class; it is not a model type of its
    own).

    Args:
        image_size (`int`, defaults to 224): input resolution (square).
        patch_size (`int`, defaults to 16): patch side; must divide `image_size`.
        num_channels (`int`, defaults to 3)
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size: encoder dimensions (ViT-B default).
        hidden_act (`str`, defaults to `"gelu"`)
        qkv_bias (`bool`, defaults to `True`)
        layer_norm_eps (`float`, defaults to 1e-6): the papers' value (HF ViT and DeiT use 1e-12).
        hidden_dropout_prob, attention_probs_dropout_prob (`float`, defaults to 0.0)
        drop_path_rate (`float`, defaults to 0.0): stochastic depth, linear over depth.
        initializer_range (`float`, defaults to 0.02): std of the token (and, for DeiT-LT, linear) initialisation.
        bal_tau (`float`, defaults to 1.0): strength of the log-prior adjustment of the balanced losses.
        class_counts (`list[int]`, *optional*): training-split images per class; the prior of the balanced losses and
            of post-hoc logit adjustment. Given alone, it also sets `num_labels`.
            `from_pretrained(dir, num_labels=K, ignore_mismatched_sizes=True)` with K other than its length drops it
            (with a warning) unless `class_counts=` of length K is passed too.
        problem_type (`str`, *optional*): what `labels` mean to the loss a forward with `labels` returns. None or
            `"single_label_classification"`: the configured long-tail loss on int labels `[N]` or soft targets `[N, C]`
            (soft targets never switch the problem type, unlike transformers' own classifiers);
            `"multi_label_classification"`: BCE with logits over independent multi-hot labels `[N, C]` (mean over the
            matrix, as `ViTForImageClassification`; no class prior); `"regression"` is refused.
        posthoc_tau_norm (`float`, *optional*): tau-normalisation of the classifier weights at inference (Kang et al.,
            2020): row j of a head becomes W_j / ||W_j||^tau (bias kept). Fitted by `scripts/run_eval.py --posthoc`.
        posthoc_logit_adjustment_tau (`float`, *optional*): post-hoc logit adjustment at inference (Menon et al.,
            2021): logits - tau * log(class_counts / sum(class_counts)).
        posthoc_temperature (`float`, *optional*): temperature scaling at inference (Guo et al., 2017): logits / T.
            The three post-hoc fields apply in that order, in eval mode only, to `logits`; training losses (and the
            loss a forward with `labels` returns) always see the raw logits. None (the default) changes nothing.
    """

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
    bal_tau: float = 1.0
    class_counts: list[int] | None = None
    posthoc_tau_norm: float | None = None
    posthoc_logit_adjustment_tau: float | None = None
    posthoc_temperature: float | None = None

    # class attributes, not fields: the subclass's named sizes, and the field that names its `labels` loss
    presets = {}
    loss_field = "loss_type"

    def __post_init__(self, **kwargs):
        labels_given = self.id2label is not None or kwargs.get("num_labels") is not None
        super().__post_init__(**kwargs)
        if self.class_counts is not None:
            if not labels_given:  # the prior defines the label space
                self.num_labels = len(self.class_counts)
            self.class_counts = [int(c) if float(c).is_integer() else c for c in self.class_counts]
        self.validate_fields()

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        """`PreTrainedConfig.from_dict`, plus re-heading: when `num_labels=` (or `id2label=`) gives a saved classifier
        a label set of another size (`from_pretrained(dir, num_labels=K, ignore_mismatched_sizes=True)`), the saved
        `class_counts` (and the post-hoc logit adjustment built on them) no longer fit and are dropped with a warning;
        a `class_counts=` of the new size, given with them, is used instead."""
        config_dict = dict(config_dict)
        if "id2label" in kwargs and kwargs["id2label"] is not None:
            new_num_labels = len(kwargs["id2label"])
        else:
            new_num_labels = kwargs.get("num_labels")
        if "class_counts" in kwargs:
            config_dict["class_counts"] = kwargs["class_counts"]
        else:
            counts = config_dict.get("class_counts")
            if new_num_labels is not None and counts is not None and len(counts) != new_num_labels:
                logger.warning(
                    "The checkpoint's class_counts has %d entries but the model now has num_labels=%d: dropping the "
                    "stale class prior (class_counts=None%s). The balanced losses (bal_bce, bal_ce) need it: set "
                    "config.class_counts (or pass class_counts=[...] to from_pretrained) with the training counts of "
                    "the new label set.",
                    len(counts), new_num_labels,
                    ", and posthoc_logit_adjustment_tau=None" if config_dict.get("posthoc_logit_adjustment_tau")
                    is not None else "",
                )
                config_dict["class_counts"] = None
                config_dict["posthoc_logit_adjustment_tau"] = None
        return super().from_dict(config_dict, **kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides):
        """Build a config from a named preset of `cls.presets`, overriding any field."""
        if name not in cls.presets:
            raise ValueError(f"Unknown {cls.__name__} preset {name!r}; choose one of {sorted(cls.presets)}.")
        return cls(**{**cls.presets[name], **overrides})

    def validate_fields(self) -> None:
        """Raise `ValueError` naming the field for inconsistent values.

        Runs in `__post_init__` and again when a model or loss is built, because keyword arguments given to
        `from_pretrained` are set on the config after `__post_init__`. Subclasses add their own checks.
        """
        for name in ("image_size", "patch_size", "num_channels", "hidden_size", "num_hidden_layers",
                     "num_attention_heads", "intermediate_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}={value!r} must be a positive integer.")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}."
            )
        if self.image_size % self.patch_size != 0:
            raise ValueError(f"image_size={self.image_size} is not divisible by patch_size={self.patch_size}.")
        for name in ("drop_path_rate", "hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name}={value} must be in [0, 1).")
        loss_type = getattr(self, self.loss_field)
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"Unknown {self.loss_field}={loss_type!r}; choose one of {list(LOSS_TYPES)}.")
        validate_class_counts(
            self.class_counts, num_labels=self.num_labels, require_positive=loss_type in BALANCED_LOSS_TYPES
        )
        check_problem_type(self.problem_type)
        self.validate_posthoc()

    def validate_posthoc(self) -> None:
        """Check the post-hoc fields; `ValueError` names the field and the fix.

        `posthoc_temperature` must be positive, `posthoc_tau_norm` non-negative, and `posthoc_logit_adjustment_tau`
        needs `class_counts` with every class present (the prior pi_c = n_c / N enters as log pi_c).
        """
        temperature = self.posthoc_temperature
        if temperature is not None and not (_is_finite_number(temperature) and temperature > 0):
            raise ValueError(
                f"posthoc_temperature={temperature!r} must be a positive finite number (None: no temperature scaling)."
            )
        tau_norm = self.posthoc_tau_norm
        if tau_norm is not None and not (_is_finite_number(tau_norm) and tau_norm >= 0):
            raise ValueError(
                f"posthoc_tau_norm={tau_norm!r} must be a finite number >= 0 (None: no tau-normalisation)."
            )
        tau = self.posthoc_logit_adjustment_tau
        if tau is None:
            return
        if not _is_finite_number(tau):
            raise ValueError(
                f"posthoc_logit_adjustment_tau={tau!r} must be a finite number (None: no logit adjustment)."
            )
        if self.class_counts is None:
            raise ValueError(
                "posthoc_logit_adjustment_tau needs `class_counts` (training images per class, in label order): the "
                "adjustment subtracts tau * log(n_c / N). Set config.class_counts, or drop the logit adjustment."
            )
        validate_class_counts(self.class_counts, num_labels=self.num_labels, require_positive=False)
        empty = [index for index, count in enumerate(self.class_counts) if count <= 0]
        if empty:
            raise ValueError(
                f"posthoc_logit_adjustment_tau: class {empty[0]} has no training images, so its log-prior is -inf. "
                "Logit adjustment needs every class present in class_counts; drop the adjustment for this model."
            )


__all__ = [
    "ENCODER_FIELDS",
    "LOSS_TYPES",
    "POSTHOC_FIELDS",
    "MULTI_LABEL",
    "SINGLE_LABEL",
    "VIT_SIZES",
    "LongTailViTEncoderConfig",
    "check_problem_type",
    "encoder_sizes",
    "validate_class_counts",
]
