"""Weight ports: official LiVT / MAE / DeiT-LT checkpoints and transformers ViTMAE / DeiT folders -> our models.

Sources (`convert_checkpoint(source, checkpoint, output_dir)`, or `scripts/convert_checkpoint.py --source ...`):

- `livt`, `mae`: a `.pth` in timm's ViT key layout (fused `blocks.N.attn.qkv`, `pos_embed`, `fc_norm`, `head`,
  `decoder_*`), as the official LiVT and MAE code save it: `{"model": state_dict, "args": argparse.Namespace, ...}`.
  A classifier (`head`) becomes a `LiVTForImageClassification` (`fc_norm` -> mean pooling, `norm` -> CLS pooling),
  an MGP/MAE checkpoint with a decoder a `LiVTForMaskedImageModeling`, an encoder-only MAE checkpoint a `LiVTModel`.
- `vit_mae`: a transformers `ViTMAEForPreTraining` / `ViTMAEModel` folder (legacy 4.x key names on disk; separate
  q/k/v are fused into our qkv; `layer_norm_eps` 1e-12 and `norm_pix_loss` are carried over).
- `deit_lt`: an official DeiT-LT (or DeiT distilled) `.pth` in timm's `VisionTransformerDistilled` layout.
- `deit`: a transformers `DeiTForImageClassificationWithTeacher` folder.
Within a family a folder is read as a transformers folder and a file as a timm-layout checkpoint, whichever of the
family's source names is given.

Every dimension the tensors determine is inferred from their shapes. The rest comes, in this order, from
`config_overrides`, from the `args` pickled in the checkpoint (model name -> heads, `norm_pix_loss`, `mask_ratio`,
`drop_path`, Bal-BCE `loss`/`bal_tau`/class counts) and from the official ViT-B defaults (12 heads for unknown
widths, LayerNorm eps 1e-6). Every source key must be consumed and every target key filled, with shapes asserted:
leftovers, gaps and mismatches raise `ConversionError` naming the keys. The key maps are the rename tables of
`port_rules` (one per layout, read top to bottom).

Checkpoints are read with `torch.load(weights_only=True)`, allowing only `argparse.Namespace` (plus classes the caller
lists): a file that pickles anything else raises `CheckpointLoadError` explaining how to proceed; there is no silent
fallback to `weights_only=False`.
"""

import dataclasses
import logging
import math
import numbers
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from ..config_overrides import check_override_keys, config_keys, parse_config_overrides
from ..data.official_eval import folder_mean_std, official_eval_image_processor, official_mean_std
from ..models.configuration_deit_lt import DeiTLTConfig
from ..models.configuration_livt import LiVTConfig
from ..models.configuration_vit import ENCODER_FIELDS, LOSS_TYPES
from ..models.modeling_deit_lt import DeiTLTForImageClassification, DeiTLTModel
from ..models.modeling_livt import LiVTForImageClassification, LiVTForMaskedImageModeling, LiVTModel
from .checkpoint_io import (
    CheckpointLoadError,
    checkpoint_args,
    extract_state_dict,
    load_folder_config,
    load_hf_state_dict,
    load_official_checkpoint,
)
from .port_rules import (
    HF_IN_MEMORY_TO_ON_DISK,
    HF_RULES,
    TIMM_RULES,
    ConversionError,
    Rules,
    rename_state_dict,
    source_names,
    target_shapes,
)

logger = logging.getLogger(__name__)

# Official ViT widths -> heads (ViT-Ti/S/B/L/H; head dim 64, 80 for ViT-H). Unknown widths get the ViT-B default 12.
TIMM_WIDTH_TO_HEADS = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}
# Size names in official model names (`vit_base_patch16`, `mae_vit_large_patch16`, `deit_small_distilled_...`).
MODEL_NAME_TO_HEADS = {"tiny": 3, "small": 6, "base": 12, "large": 16, "huge": 16}
DEFAULT_NUM_HEADS = 12
DEFAULT_DECODER_NUM_HEADS = 16  # every official MAE decoder (512-d, 8 blocks, 16 heads)
TIMM_LAYER_NORM_EPS = 1e-6  # timm / MAE / DeiT: partial(nn.LayerNorm, eps=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# Model families
# ---------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Family:
    """A family of target models and what tells its checkpoints apart."""

    config_class: type
    num_prefix_tokens: int  # tokens before the patches: CLS (LiVT, ViT, MAE) or CLS + DIST (DeiT-LT, DeiT distilled)
    classifier: type
    encoder: type
    pretraining: type | None  # the MAE pre-training model (LiVT only)
    head_keys: tuple[str, ...]  # the classifier's head weights (our names): a checkpoint with them is a classifier
    timm_name: str  # what its timm-layout checkpoints are called in messages
    hf_model_type: str  # `model_type` of the transformers folders it converts


LIVT = Family(
    config_class=LiVTConfig, num_prefix_tokens=1, classifier=LiVTForImageClassification, encoder=LiVTModel,
    pretraining=LiVTForMaskedImageModeling, head_keys=("classifier.weight",), timm_name="timm ViT (LiVT/MAE)",
    hf_model_type="vit_mae",
)
DEIT_LT = Family(
    config_class=DeiTLTConfig, num_prefix_tokens=2, classifier=DeiTLTForImageClassification, encoder=DeiTLTModel,
    pretraining=None, head_keys=("classifier.weight", "distillation_classifier.weight"),
    timm_name="timm DeiT distilled (DeiT-LT)", hf_model_type="deit",
)
LIVT_SOURCES = ("livt", "mae", "vit_mae")
DEIT_SOURCES = ("deit_lt", "deit")
SOURCES = LIVT_SOURCES + DEIT_SOURCES
FAMILY_OF_SOURCE = {**dict.fromkeys(LIVT_SOURCES, LIVT), **dict.fromkeys(DEIT_SOURCES, DEIT_LT)}
# layout -> (rules from our keys to the source keys, rules bringing the source keys to the names those produce)
LAYOUT_RULES = {"timm": (TIMM_RULES, ()), "hf": (HF_RULES, HF_IN_MEMORY_TO_ON_DISK)}


def model_class_for(state_dict: Mapping, family: Family, rules: Rules) -> type:
    """Which class of `family` a state dict in the layout `rules` describe holds: the classifier when it has the head
    weights, the pre-training model when it has an MAE decoder, the bare encoder otherwise."""
    heads = [source_names(key, rules)[0] for key in family.head_keys]
    present = [key for key in heads if key in state_dict]
    decoder_key = source_names("decoder.decoder_embed.weight", rules)[0]
    has_decoder = family.pretraining is not None and decoder_key in state_dict
    if present and has_decoder:
        raise ConversionError("the checkpoint has both a classification head and an MAE decoder; convert one of them.")
    if present and present != heads:
        raise ConversionError(f"a {family.classifier.__name__} needs all of {heads}; the checkpoint has {present}.")
    if present:
        return family.classifier
    return family.pretraining if has_decoder else family.encoder


# ---------------------------------------------------------------------------------------------------------------------
# Config inference (timm layout)
# ---------------------------------------------------------------------------------------------------------------------
def _count_blocks(state_dict: Mapping, prefix: str) -> int:
    indices = {int(m.group(1)) for key in state_dict if (m := re.match(rf"^{re.escape(prefix)}(\d+)\.", key))}
    if indices and indices != set(range(len(indices))):
        raise ConversionError(f"the checkpoint's {prefix}N indices are not contiguous: {sorted(indices)}.")
    return len(indices)


def _pick_heads(width: int, args: Mapping, overrides: Mapping, key: str = "num_attention_heads") -> int:
    """Heads from the overrides, the official model name in `args` (`vit_base_patch16`), the width, or ViT-B's 12."""
    if key in overrides:
        return overrides[key]
    name = str(args.get("model") or "")
    heads = next((n for size, n in MODEL_NAME_TO_HEADS.items() if re.search(rf"(^|_){size}(_|$)", name)), None)
    if heads is not None and width % heads == 0:
        return heads
    if width in TIMM_WIDTH_TO_HEADS:
        return TIMM_WIDTH_TO_HEADS[width]
    if width % DEFAULT_NUM_HEADS:
        raise ConversionError(
            f"cannot tell the number of attention heads of a {width}-wide encoder (the ViT-B default "
            f"{DEFAULT_NUM_HEADS} does not divide it): pass --config_overrides {key}=H."
        )
    logger.warning("%s not given for a %d-wide encoder: using the ViT-B default %d.", key, width, DEFAULT_NUM_HEADS)
    return DEFAULT_NUM_HEADS


def _valid_counts(counts, num_labels: int) -> bool:
    """A per-class training count list of the right length (numpy integers, as DeiT-LT pickles them, included)."""
    return isinstance(counts, (list, tuple)) and len(counts) == num_labels and all(
        isinstance(c, numbers.Real) and not isinstance(c, bool) and c > 0 and float(c).is_integer() for c in counts
    )


def _fields_from_args(args: Mapping, num_labels: int | None) -> dict:
    """Training settings worth carrying from an official checkpoint's `args` (LiVT / MAE / DeiT-LT names)."""
    fields = {}
    if isinstance(args.get("norm_pix_loss"), bool):
        fields["norm_pix_loss"] = args["norm_pix_loss"]
    if isinstance(args.get("mask_ratio"), (int, float)) and 0 <= args["mask_ratio"] < 1:
        fields["mask_ratio"] = float(args["mask_ratio"])
    if isinstance(args.get("drop_path"), (int, float)):
        fields["drop_path_rate"] = float(args["drop_path"])
    if num_labels is not None:
        if args.get("loss") in LOSS_TYPES:
            fields["loss_type"] = args["loss"]
        if isinstance(args.get("bal_tau"), (int, float)):
            fields["bal_tau"] = float(args["bal_tau"])
        for name in ("cls_num", "cls_num_list"):  # LiVT / DeiT-LT training class counts
            counts = args.get(name)
            if _valid_counts(counts, num_labels):
                fields["class_counts"] = [int(c) for c in counts]
                break
    return fields


def _merge_overrides(inferred: Mapping, defaults: Mapping, overrides: Mapping) -> dict:
    """Shape-determined values win over nothing: an override that contradicts one raises."""
    conflicts = {k: (overrides[k], v) for k, v in inferred.items() if k in overrides and overrides[k] != v}
    if conflicts:
        described = ", ".join(f"{k}={o!r} (checkpoint: {v!r})" for k, (o, v) in conflicts.items())
        hint = ""
        if "image_size" in conflicts:
            hint = (" To use another resolution, convert at the checkpoint's size and load with "
                    "`from_pretrained(DIR, image_size=...)`, which resizes the position embeddings.")
        raise ConversionError(f"config overrides contradict the checkpoint's shapes: {described}.{hint}")
    return {**defaults, **inferred, **overrides}


def infer_timm_encoder_dims(state_dict: Mapping[str, torch.Tensor], num_prefix_tokens: int, what: str) -> dict:
    """Encoder fields the shapes of a timm ViT state dict determine (`num_prefix_tokens`: 1 CLS, 2 CLS + DIST)."""
    missing = [key for key in ("patch_embed.proj.weight", "pos_embed", "cls_token", "blocks.0.mlp.fc1.weight")
               if key not in state_dict]
    if missing:
        raise ConversionError(f"not a {what} checkpoint: missing {missing} (found e.g. {sorted(state_dict)[:8]}).")
    width, channels, patch, patch_w = state_dict["patch_embed.proj.weight"].shape
    if patch != patch_w:
        raise ConversionError(f"non-square patches {patch}x{patch_w} are not supported.")
    pos_embed = state_dict["pos_embed"]
    num_patches = pos_embed.shape[1] - num_prefix_tokens
    grid = math.isqrt(max(num_patches, 0))
    if grid * grid != num_patches or num_patches <= 0:
        raise ConversionError(f"pos_embed {tuple(pos_embed.shape)} does not hold {num_prefix_tokens} prefix token(s) "
                              "plus a square grid of patches.")
    return dict(
        hidden_size=width,
        num_channels=channels,
        patch_size=patch,
        image_size=grid * patch,
        num_hidden_layers=_count_blocks(state_dict, "blocks."),
        intermediate_size=state_dict["blocks.0.mlp.fc1.weight"].shape[0],
        qkv_bias="blocks.0.attn.qkv.bias" in state_dict,
    )


def _livt_head_fields(state_dict: Mapping[str, torch.Tensor], model_class, overrides: Mapping) -> dict:
    """A LiVT classifier's pooling (`fc_norm` -> mean, `norm` -> CLS) or an MAE decoder's sizes."""
    if model_class is LiVTForImageClassification:
        has_fc_norm, has_norm = "fc_norm.weight" in state_dict, "norm.weight" in state_dict
        if has_fc_norm and has_norm:
            raise ConversionError("the classifier has both `norm` and `fc_norm`; LiVT pools either way, not both.")
        if not (has_fc_norm or has_norm):
            raise ConversionError("the classifier has neither `fc_norm` (mean pooling) nor `norm` (CLS pooling).")
        return {"pooling": "mean" if has_fc_norm else "cls"}
    if model_class is not LiVTForMaskedImageModeling:
        return {}
    width = state_dict["decoder_embed.weight"].shape[0]
    if "decoder_num_attention_heads" not in overrides and width % DEFAULT_DECODER_NUM_HEADS:
        raise ConversionError(f"cannot tell the decoder's heads for width {width}: pass --config_overrides "
                              "decoder_num_attention_heads=H.")
    fields = dict(decoder_hidden_size=width, decoder_num_hidden_layers=_count_blocks(state_dict, "decoder_blocks."))
    if fields["decoder_num_hidden_layers"]:
        fields["decoder_intermediate_size"] = state_dict["decoder_blocks.0.mlp.fc1.weight"].shape[0]
    return fields


def infer_timm_config(state_dict: Mapping[str, torch.Tensor], num_prefix_tokens: int,
                      checkpoint_args: Mapping | None = None, **overrides) -> LiVTConfig | DeiTLTConfig:
    """The config for a timm-layout state dict: a `LiVTConfig` for one prefix token (CLS: official LiVT / MAE), a
    `DeiTLTConfig` for two (CLS + DIST: official DeiT-LT / DeiT distilled).

    From the shapes: width, channels, patch size, depth, MLP size, qkv bias, image size (square pos-embed grid after
    the prefix tokens), classes; for LiVT also pooling and the MAE decoder's width/depth/MLP. Then `overrides`, then
    `checkpoint_args` (model name -> heads, `norm_pix_loss`, `mask_ratio`, `drop_path`, Bal-BCE `loss`/`bal_tau`,
    class counts), then defaults (heads by width / ViT-B 12, decoder 16 heads, LayerNorm eps 1e-6).
    """
    family = next((f for f in (LIVT, DEIT_LT) if f.num_prefix_tokens == num_prefix_tokens), None)
    if family is None:
        raise ValueError(f"num_prefix_tokens is 1 (CLS: LiVT, MAE) or 2 (CLS + DIST: DeiT-LT), not {num_prefix_tokens}")
    check_override_keys(overrides, family.config_class)
    args = dict(checkpoint_args or {})
    if "dist_token" in state_dict and family is LIVT:
        raise ConversionError("the checkpoint has a `dist_token`: it is a DeiT / DeiT-LT model; use --source deit_lt.")
    if "dist_token" not in state_dict and family is DEIT_LT:
        raise ConversionError("the checkpoint has no `dist_token`: it is not a distilled DeiT. A plain ViT/DeiT "
                              "classifier converts with --source livt (CLS pooling).")
    inferred = infer_timm_encoder_dims(state_dict, num_prefix_tokens, family.timm_name)
    model_class = model_class_for(state_dict, family, TIMM_RULES)
    num_labels = state_dict["head.weight"].shape[0] if model_class is family.classifier else None
    if num_labels is not None:
        inferred["num_labels"] = num_labels
    inferred.update(_livt_head_fields(state_dict, model_class, overrides))
    known = config_keys(family.config_class)
    from_args = {key: value for key, value in _fields_from_args(args, num_labels).items() if key in known}
    if model_class is LiVTForMaskedImageModeling and "norm_pix_loss" not in {**from_args, **overrides}:
        logger.warning("The checkpoint does not say whether it used norm_pix_loss; keeping LiVT's default (True). "
                       "Pass --config_overrides norm_pix_loss=false for an MAE trained on raw pixels.")
    defaults = dict(num_attention_heads=_pick_heads(inferred["hidden_size"], args, overrides),
                    layer_norm_eps=TIMM_LAYER_NORM_EPS, **from_args)
    return family.config_class(**_merge_overrides(inferred, defaults, overrides))


def infer_livt_config(state_dict: Mapping[str, torch.Tensor], checkpoint_args: Mapping | None = None,
                      **overrides) -> LiVTConfig:
    """`infer_timm_config` for an official LiVT / MAE state dict (one prefix token, CLS)."""
    return infer_timm_config(state_dict, 1, checkpoint_args, **overrides)


# ---------------------------------------------------------------------------------------------------------------------
# Config from a transformers folder
# ---------------------------------------------------------------------------------------------------------------------
# transformers ViTMAEConfig / DeiTConfig fields that mean the same in ours (carried when the target config has them).
HF_CONFIG_FIELDS = (
    "num_channels", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "qkv_bias", "layer_norm_eps", "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range",
    "decoder_hidden_size", "decoder_num_hidden_layers", "decoder_num_attention_heads", "decoder_intermediate_size",
    "mask_ratio", "norm_pix_loss",
)


def config_from_hf(family: Family, hf_config: Mapping, with_labels: bool = False, **overrides):
    """`family`'s config from a transformers `ViTMAEConfig` / `DeiTConfig` dict: the same-named fields, square image
    and patch sizes, transformers' defaults for what an old config.json omits (LayerNorm eps 1e-12, no
    `norm_pix_loss`), `id2label` when `with_labels` (a classifier); then `overrides`."""
    check_override_keys(overrides, family.config_class)
    known = config_keys(family.config_class)
    carried = {key: hf_config[key] for key in HF_CONFIG_FIELDS if key in hf_config and key in known}
    for name, default in (("image_size", 224), ("patch_size", 16)):
        value = hf_config.get(name, default)
        if isinstance(value, (list, tuple)):
            if len(set(value)) != 1:
                raise ConversionError(f"non-square {name} {value} is not supported.")
            value = value[0]
        carried[name] = value
    carried.setdefault("layer_norm_eps", 1e-12)
    if "norm_pix_loss" in known:
        carried.setdefault("norm_pix_loss", False)
    if with_labels and hf_config.get("id2label") and "num_labels" not in overrides:
        carried["id2label"] = {int(k): v for k, v in hf_config["id2label"].items()}
        carried["label2id"] = {v: k for k, v in carried["id2label"].items()}
    return family.config_class(**{**carried, **overrides})


# ---------------------------------------------------------------------------------------------------------------------
# Converters
# ---------------------------------------------------------------------------------------------------------------------
def port_state_dict(state_dict: Mapping[str, torch.Tensor], config, layout: str = "timm"):
    """`state_dict` in `layout` ("timm": official LiVT / MAE / DeiT-LT checkpoints; "hf": transformers ViTMAE / DeiT
    folders) -> `(model_class, target_state_dict)` for `config` (a `LiVTConfig` or `DeiTLTConfig`). Raises
    `ConversionError` on leftover, missing or mis-shaped keys."""
    family = LIVT if isinstance(config, LiVTConfig) else DEIT_LT
    rules, source_rules = LAYOUT_RULES[layout]
    model_class = model_class_for(state_dict, family, rules)
    expected = target_shapes(model_class, config)
    return model_class, rename_state_dict(state_dict, rules, expected, model_class.__name__, source_rules)


def _instantiate(model_class, config, target_state_dict):
    model = model_class(config)
    model.load_state_dict(target_state_dict, strict=True)
    return model.eval()


def convert_file(source: str, path, config_overrides: Mapping | None = None, allowed_classes: Iterable = ()):
    """An official `.pth` (timm layout) of `source` (`livt`/`mae`: LiVT classifier, MGP or encoder; `deit_lt`:
    DeiT-LT classifier or encoder) -> our model, eval mode. `path` may also be the checkpoint already loaded with
    `load_official_checkpoint`."""
    checkpoint = path if isinstance(path, Mapping) else load_official_checkpoint(path, allowed_classes)
    state_dict = extract_state_dict(checkpoint)
    overrides = dict(config_overrides or {})
    config = infer_timm_config(state_dict, FAMILY_OF_SOURCE[source].num_prefix_tokens, checkpoint_args(checkpoint),
                               **overrides)
    model_class, target = port_state_dict(state_dict, config, "timm")
    return _instantiate(model_class, config, target)


def convert_folder(source: str, path, config_overrides: Mapping | None = None):
    """A transformers folder of `source` (`vit_mae`: `ViTMAEForPreTraining` -> `LiVTForMaskedImageModeling`,
    `ViTMAEModel` -> `LiVTModel`; `deit`: `DeiTForImageClassificationWithTeacher` -> `DeiTLTForImageClassification`,
    `DeiTModel` without pooler -> `DeiTLTModel`) -> our model, eval mode."""
    family = FAMILY_OF_SOURCE[source]
    hf_config = load_folder_config(path, (family.hf_model_type,), "Use --source vit_mae for ViTMAE folders, deit for "
                                    "DeiT folders, livt/mae/deit_lt for .pth files.")
    state_dict = load_hf_state_dict(path)
    if family is DEIT_LT and "classifier.weight" in state_dict:
        raise ConversionError(
            f"{path} is a DeiTForImageClassification (one head, no distillation head); DeiT-LT needs the distilled "
            "DeiTForImageClassificationWithTeacher (cls_classifier + distillation_classifier)."
        )
    is_classifier = model_class_for(state_dict, family, HF_RULES) is family.classifier
    config = config_from_hf(family, hf_config, with_labels=is_classifier, **dict(config_overrides or {}))
    model_class, target = port_state_dict(state_dict, config, "hf")
    return _instantiate(model_class, config, target)


# ---------------------------------------------------------------------------------------------------------------------
# Image processor and entry point
# ---------------------------------------------------------------------------------------------------------------------
def _normalization_stats(normalization) -> tuple:
    """`(mean, std)` from a preset name of `transforms.NORMALIZATION_STATS` or a `(mean, std)` pair."""
    if isinstance(normalization, str):
        from ..data.transforms import get_normalization  # lazy: torchvision and datasets are only needed when saving

        return get_normalization(normalization)
    mean, std = normalization
    return tuple(mean), tuple(std)


def convert_checkpoint(source: str, checkpoint, output_dir=None, config_overrides=None, allowed_classes=(),
                       normalization=None):
    """Convert `checkpoint` (a `.pth` file or a transformers folder) of `source` (one of `SOURCES`) and, when
    `output_dir` is given, save it there with `save_pretrained` plus a `preprocessor_config.json`, so that
    `AutoModel*.from_pretrained(output_dir, trust_remote_code=True)` loads it. Returns the model (eval mode).

    `config_overrides`: a `"k=v,..."` string or a dict of config fields (heads, image size, ...; see the module doc).
    `allowed_classes`: extra classes (or qualified names) that `torch.load(weights_only=True)` may unpickle.
    The saved image processor is the official evaluation transform of the model's family (`official_eval`); its
    mean/std come from `normalization` (a preset name such as `"imagenet_lt"`, or a `(mean, std)` pair) or, when it
    is None, from the source: a folder's own processor, LiVT's `args.dataset`, ImageNet's for DeiT-LT.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {list(SOURCES)}.")
    if isinstance(allowed_classes, str):
        allowed_classes = [name.strip() for name in allowed_classes.split(",") if name.strip()]
    stats = None if normalization is None else _normalization_stats(normalization)  # bad names fail before loading
    checkpoint = os.fspath(checkpoint)
    if not os.path.exists(checkpoint):
        raise FileNotFoundError(f"checkpoint {checkpoint} not found.")
    family = "livt" if source in LIVT_SOURCES else "deit_lt"
    config_class = LiVTConfig if family == "livt" else DeiTLTConfig
    overrides = (parse_config_overrides(config_overrides, config_class) if isinstance(config_overrides, str)
                 or config_overrides is None else dict(config_overrides))
    # a folder is converted from its path; a file is loaded once, for its weights and its pickled args
    loaded = checkpoint if os.path.isdir(checkpoint) else load_official_checkpoint(checkpoint, allowed_classes)
    model = (convert_folder if isinstance(loaded, str) else convert_file)(source, loaded, overrides)

    if output_dir is not None:
        if stats is None:
            is_folder = isinstance(loaded, str)
            stats = folder_mean_std(loaded) if is_folder else official_mean_std(family, checkpoint_args(loaded))
        mean, std = stats
        os.makedirs(output_dir, exist_ok=True)
        model.save_pretrained(output_dir)
        official_eval_image_processor(family, model.config.image_size, mean, std).save_pretrained(output_dir)
        logger.info("Saved %s to %s", type(model).__name__, output_dir)
    return model


# ---------------------------------------------------------------------------------------------------------------------
# LiVT -> DeiT-LT: the combined recipe's student
# ---------------------------------------------------------------------------------------------------------------------
# Loading arguments `deit_lt_from_livt` passes to the loaders; every other keyword is a `DeiTLTConfig` field.
HUB_LOADING_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")


class _LiVTEncoderSource(LiVTModel):
    """LiVT's encoder, loaded from any LiVT checkpoint: the MGP decoder and a classifier's `fc_norm` / head are expected
    leftovers, and a mean-pooling classifier has no final norm (the student then keeps its fresh one)."""

    _keys_to_ignore_on_load_unexpected = [r"^decoder\.", r"^fc_norm\.", r"^classifier\."]
    _keys_to_ignore_on_load_missing = [r"^layernorm\."]


def checkpoint_model_type(pretrained_model_name_or_path, **hub_kwargs) -> str | None:
    """`model_type` of a checkpoint's config, or None when a local folder has no config.json (not a model: the normal
    loading path then says what it lacks). Every other error (unreadable config, Hub access) is raised as it is."""
    folder = os.path.join(str(pretrained_model_name_or_path), hub_kwargs.get("subfolder") or "")
    if os.path.isdir(folder) and not os.path.isfile(os.path.join(folder, "config.json")):
        return None
    config_dict, _ = LiVTConfig.get_config_dict(pretrained_model_name_or_path, **hub_kwargs)
    return config_dict.get("model_type")


def _student_config(livt_config: LiVTConfig, config_overrides: dict) -> DeiTLTConfig:
    """The student's config: the LiVT encoder's fields, the label space of a fine-tuned LiVT classifier (or of a
    config with class counts) unless `num_labels` / `id2label` change it, then `config_overrides`."""
    fields = {name: getattr(livt_config, name) for name in ENCODER_FIELDS}
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
    return DeiTLTConfig(**{**fields, **labels, **config_overrides})


@torch.no_grad()
def copy_livt_encoder(source: LiVTModel, target: DeiTLTModel, distillation_position: str = "cls") -> None:
    """LiVT's encoder into a DeiT-LT one of the same sizes: patch embedding, CLS token, blocks, final norm, and the
    position embeddings `[1, 1 + L, D]` -> `[1, 2 + L, D]` (CLS -> CLS, patches -> patches; the DIST row a copy of
    the CLS one with `distillation_position="cls"`, left as initialised with `"fresh"`)."""
    source_state = source.state_dict()
    target.embeddings.patch_embeddings.load_state_dict(source.embeddings.patch_embeddings.state_dict())
    target.embeddings.cls_token.copy_(source_state["embeddings.cls_token"])
    source_pos = source_state["embeddings.position_embeddings"]  # [1, 1 + L, D]
    target_pos = target.embeddings.position_embeddings  # [1, 2 + L, D]
    if source_pos.shape[1] + 1 != target_pos.shape[1]:
        raise ValueError(
            f"position embeddings of the LiVT checkpoint {tuple(source_pos.shape)} don't fit the DeiT-LT student "
            f"{tuple(target_pos.shape)}."
        )
    target_pos[:, 0] = source_pos[:, 0]
    if distillation_position == "cls":
        target_pos[:, 1] = source_pos[:, 0]
    target_pos[:, 2:] = source_pos[:, 1:]
    target.layers.load_state_dict(source.layers.state_dict())
    # a checkpoint without a final norm leaves the source's at its 1 / 0 init: the same as a fresh DeiT norm
    target.layernorm.load_state_dict(source.layernorm.state_dict())


def deit_lt_from_livt(
    pretrained_model_name_or_path,
    distillation_position: str = "cls",
    attn_implementation: str | None = None,
    dtype: torch.dtype | str | None = None,
    **config_overrides,
) -> DeiTLTForImageClassification:
    """A DeiT-LT student initialised from a LiVT checkpoint (MGP `LiVTForMaskedImageModeling`, or a fine-tuned
    `LiVTForImageClassification`): the combined LiVT -> DeiT-LT recipe.

    Copied from the LiVT encoder (`copy_livt_encoder`): patch embedding, CLS token, all blocks, the final norm (when
    the checkpoint has one: MGP and `pooling="cls"` classifiers do; a mean-pooling classifier has none and its
    `fc_norm` is not used, so the student's final norm keeps its fresh 1 / 0 init) and the position embeddings
    (resized bicubically when `image_size` is overridden). The DIST position is a copy of the CLS position
    (`distillation_position="cls"`, the default; an MGP checkpoint's CLS position is the zero row of its frozen
    sin-cos table) or freshly drawn (`"fresh"`, trunc_normal(0.02)). Fresh: the distillation token, both heads.
    Dropped: the MGP decoder, LiVT's `fc_norm` and head.

    The encoder fields (sizes, eps, ...) come from the LiVT config; `config_overrides` set any `DeiTLTConfig` field
    (e.g. `num_labels`, `id2label`, `class_counts`, `cls_loss_type`, `drop_path_rate`, `image_size`). Labels and
    `class_counts` are carried over from a fine-tuned LiVT classifier, not from an MGP checkpoint. Hub arguments
    (`HUB_LOADING_KWARGS`) are passed to the loader; `dtype` casts the result (float32 by default).
    """
    if distillation_position not in ("cls", "fresh"):
        raise ValueError(f"distillation_position={distillation_position!r} must be 'cls' or 'fresh'.")
    hub_kwargs = {key: config_overrides.pop(key) for key in HUB_LOADING_KWARGS if key in config_overrides}
    allowed = {f.name for f in dataclasses.fields(DeiTLTConfig)} | {"num_labels"}
    unknown = sorted(set(config_overrides) - allowed)
    if unknown:
        raise TypeError(
            f"deit_lt_from_livt got {unknown}, which are neither DeiTLTConfig fields nor loading arguments."
        )
    config_dict, _ = LiVTConfig.get_config_dict(pretrained_model_name_or_path, **hub_kwargs)
    if config_dict.get("model_type") != "livt":
        raise ValueError(
            f"{pretrained_model_name_or_path} is not a LiVT checkpoint: its config has "
            f"model_type={config_dict.get('model_type')!r}, not 'livt'."
        )
    livt_config = LiVTConfig.from_dict(config_dict)
    config = _student_config(livt_config, config_overrides)
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
    # the LiVT encoder, loaded by its own class (handles shards, dtype, key prefixes)
    source = _LiVTEncoderSource.from_pretrained(
        pretrained_model_name_or_path, config=livt_config, dtype=torch.float32, **hub_kwargs
    )
    if config.image_size != livt_config.image_size:
        source.resize_position_embeddings(config.image_size)
    model = DeiTLTForImageClassification(config)
    copy_livt_encoder(source, model.deit_lt, distillation_position)
    if dtype is not None and dtype != "auto":
        model = model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
    return model


def load_deit_lt_student(pretrained_model_name_or_path, **kwargs) -> DeiTLTForImageClassification:
    """A DeiT-LT student from a checkpoint: `DeiTLTForImageClassification.from_pretrained` for a DeiT-LT folder,
    `deit_lt_from_livt` (the keyword arguments as its config overrides) for a LiVT one."""
    hub_kwargs = {key: kwargs[key] for key in HUB_LOADING_KWARGS if key in kwargs}
    if checkpoint_model_type(pretrained_model_name_or_path, **hub_kwargs) == "livt":
        return deit_lt_from_livt(pretrained_model_name_or_path, **kwargs)
    return DeiTLTForImageClassification.from_pretrained(pretrained_model_name_or_path, **kwargs)


__all__ = [
    "SOURCES",
    "CheckpointLoadError",
    "ConversionError",
    "checkpoint_args",
    "config_from_hf",
    "convert_checkpoint",
    "convert_file",
    "convert_folder",
    "copy_livt_encoder",
    "deit_lt_from_livt",
    "extract_state_dict",
    "infer_livt_config",
    "infer_timm_config",
    "load_deit_lt_student",
    "load_official_checkpoint",
    "parse_config_overrides",
    "port_state_dict",
    "rename_state_dict",
]
