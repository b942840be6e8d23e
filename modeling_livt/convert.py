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
leftovers, gaps and mismatches raise `ConversionError` naming the keys. The mapping tables read top to bottom.

Checkpoints are read with `torch.load(weights_only=True)`, allowing only `argparse.Namespace` (plus classes the caller
lists): a file that pickles anything else raises `CheckpointLoadError` explaining how to proceed; there is no silent
fallback to `weights_only=False`.
"""

import argparse
import importlib
import json
import logging
import math
import numbers
import os
import pickle
import re
from collections.abc import Iterable, Mapping

import torch

from .config_overrides import check_override_keys, parse_config_overrides
from .configuration_deit_lt import DeiTLTConfig
from .configuration_livt import LOSS_TYPES, LiVTConfig
from .modeling_deit_lt import DeiTLTForImageClassification, DeiTLTModel
from .modeling_livt import LiVTForImageClassification, LiVTForMaskedImageModeling, LiVTModel
from .official_eval import folder_mean_std, official_eval_image_processor, official_mean_std

logger = logging.getLogger(__name__)

LIVT_SOURCES = ("livt", "mae", "vit_mae")
DEIT_SOURCES = ("deit_lt", "deit")
SOURCES = LIVT_SOURCES + DEIT_SOURCES

IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)

# Official ViT widths -> heads (ViT-Ti/S/B/L/H; head dim 64, 80 for ViT-H). Unknown widths get the ViT-B default 12.
TIMM_WIDTH_TO_HEADS = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}
# Size names in official model names (`vit_base_patch16`, `mae_vit_large_patch16`, `deit_small_distilled_...`).
MODEL_NAME_TO_HEADS = {"tiny": 3, "small": 6, "base": 12, "large": 16, "huge": 16}
DEFAULT_NUM_HEADS = 12
DEFAULT_DECODER_NUM_HEADS = 16  # every official MAE decoder (512-d, 8 blocks, 16 heads)
TIMM_LAYER_NORM_EPS = 1e-6  # timm / MAE / DeiT: partial(nn.LayerNorm, eps=1e-6)

STATE_DICT_ENTRIES = ("model", "state_dict", "module")  # where official checkpoints keep the weights


class ConversionError(ValueError):
    """A checkpoint does not fit the target model: keys left over or missing, shapes that disagree."""


class CheckpointLoadError(RuntimeError):
    """`torch.load(weights_only=True)` refused a checkpoint (it pickles a class that is not allowed)."""


# ---------------------------------------------------------------------------------------------------------------------
# Reading checkpoints
# ---------------------------------------------------------------------------------------------------------------------
def _qualified_name(entry) -> str:
    """The name torch's weights-only unpickler matches: `(obj, "name")` entries carry theirs."""
    if isinstance(entry, tuple):
        return entry[1]
    return f"{getattr(entry, '__module__', None)}.{entry.__qualname__}"


def _resolve_class(name_or_class):
    """`"package.module.Class"` -> the class (classes pass through). When the object now lives elsewhere (a file
    pickled `numpy.core.multiarray.scalar`, which numpy 2 defines in `numpy._core`), returns `(obj, name)` so torch
    matches the name written in the file."""
    if not isinstance(name_or_class, str):
        return name_or_class
    module_name, _, attribute = name_or_class.rpartition(".")
    if not module_name:
        raise ValueError(f"allowed class {name_or_class!r} must be a fully qualified name such as 'numpy.dtype'.")
    obj = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj if _qualified_name(obj) == name_or_class else (obj, name_or_class)


def _with_numpy_dtypes(entries: list) -> list:
    """Numpy scalars pickle as `numpy._core.multiarray.scalar(dtype, bytes)` plus a dtype class per scalar type
    (`numpy.dtypes.Int64DType`, ...), which torch only reports one at a time. Allowing anything from numpy allows the
    dtype classes with it (plain type descriptors)."""
    if not any(_qualified_name(entry).startswith("numpy") for entry in entries):
        return entries
    import numpy as np

    dtype_classes = [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    return entries + [np.dtype] + [c for c in dtype_classes if isinstance(c, type)]


def load_official_checkpoint(path, allowed_classes: Iterable = ()) -> dict:
    """Load a `.pth` checkpoint safely: `torch.load(weights_only=True)` allowing `argparse.Namespace` (the `args`
    official LiVT/MAE/DeiT-LT checkpoints pickle) and the `allowed_classes` given (classes or qualified names).

    A `.safetensors` file is read with safetensors. Returns the loaded dict (e.g. `{"model": ..., "args": ...}`).
    Raises `CheckpointLoadError` naming the refused classes and the ways forward.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} not found.")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    allowed = _with_numpy_dtypes([argparse.Namespace] + [_resolve_class(c) for c in allowed_classes])
    try:
        with torch.serialization.safe_globals(allowed):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        try:
            refused = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # the listing is a courtesy; the original error still explains
            refused = []
        allowed_names = {_qualified_name(c) for c in allowed}
        refused = [name for name in refused if name not in allowed_names]
        listed = ", ".join(refused) if refused else "(see the message below)"
        raise CheckpointLoadError(
            f"torch.load(weights_only=True) refused {path}: it pickles Python objects other than tensors, "
            f"containers and argparse.Namespace: {listed}.\n"
            "This converter never falls back to weights_only=False (that would run arbitrary code from the file). "
            "To proceed, either:\n"
            "  1. re-save only the weights, in an environment where the file's classes import and you trust it:\n"
            "       ckpt = torch.load(path, map_location='cpu', weights_only=False)\n"
            "       torch.save({'model': ckpt['model']}, 'weights_only.pth')\n"
            "     and convert 'weights_only.pth'; or\n"
            "  2. if you trust the file, allow the listed classes: `--allowed_classes "
            f"{','.join(refused) or 'package.module.Class'}` (or `allowed_classes=[...]` in Python).\n"
            f"torch's message: {error}"
        ) from error
    if not isinstance(checkpoint, Mapping):
        raise ConversionError(f"{path} holds a {type(checkpoint).__name__}, not a dict of weights.")
    return dict(checkpoint)


def extract_state_dict(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """The weights of an official checkpoint: its `model` (or `state_dict`/`module`) entry, or the dict itself when
    it holds only tensors. A DDP `module.` prefix shared by every key is removed."""
    state_dict = None
    for entry in STATE_DICT_ENTRIES:
        if isinstance(checkpoint.get(entry), Mapping):
            state_dict = checkpoint[entry]
            break
    if state_dict is None:
        if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            state_dict = checkpoint
        else:
            raise ConversionError(
                f"no weights found: the checkpoint has entries {sorted(checkpoint)} but none of "
                f"{list(STATE_DICT_ENTRIES)}, and it is not a plain state dict."
            )
    not_tensors = sorted(k for k, v in state_dict.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise ConversionError(f"the state dict has non-tensor entries: {not_tensors}.")
    state_dict = dict(state_dict)
    if state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


def checkpoint_args(checkpoint: Mapping) -> dict:
    """The training arguments pickled with an official checkpoint (`args`, an `argparse.Namespace`) as a dict."""
    args = checkpoint.get("args")
    if isinstance(args, argparse.Namespace):
        return vars(args)
    return dict(args) if isinstance(args, Mapping) else {}


def load_hf_state_dict(folder) -> dict[str, torch.Tensor]:
    """The tensors of a transformers model folder, exactly as saved (safetensors, sharded or not, or
    `pytorch_model.bin` read with weights_only=True)."""
    from safetensors.torch import load_file

    folder = os.fspath(folder)
    single = os.path.join(folder, "model.safetensors")
    if os.path.isfile(single):
        return load_file(single, device="cpu")
    for index_name, loader in (
        ("model.safetensors.index.json", lambda p: load_file(p, device="cpu")),
        ("pytorch_model.bin.index.json", lambda p: torch.load(p, map_location="cpu", weights_only=True)),
    ):
        index = os.path.join(folder, index_name)
        if os.path.isfile(index):
            with open(index, encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            state_dict = {}
            for shard in shards:
                state_dict.update(loader(os.path.join(folder, shard)))
            return state_dict
    binary = os.path.join(folder, "pytorch_model.bin")
    if os.path.isfile(binary):
        return extract_state_dict(load_official_checkpoint(binary))
    raise FileNotFoundError(f"{folder} has no model.safetensors, sharded index or pytorch_model.bin.")


def _load_folder_config(folder, expected_model_types: tuple[str, ...], hint: str) -> dict:
    path = os.path.join(os.fspath(folder), "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder} has no config.json: not a transformers model folder.")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    if config.get("model_type") not in expected_model_types:
        raise ConversionError(
            f"{folder} holds a {config.get('model_type')!r} model ({config.get('architectures')}); expected "
            f"model_type {list(expected_model_types)}. {hint}"
        )
    return config


# ---------------------------------------------------------------------------------------------------------------------
# Mapping machinery
# ---------------------------------------------------------------------------------------------------------------------
# A mapping is {target key: source key, or a tuple of source keys concatenated along dim 0 (q; k; v -> qkv)}.
KeyMapping = dict[str, str | tuple[str, ...]]

# The pre-norm ViT block has the same inner names in timm and in our `LiVTLayer`.
TIMM_BLOCK_PARAMS = (
    "norm1.weight", "norm1.bias",
    "attn.qkv.weight", "attn.qkv.bias",
    "attn.proj.weight", "attn.proj.bias",
    "norm2.weight", "norm2.bias",
    "mlp.fc1.weight", "mlp.fc1.bias",
    "mlp.fc2.weight", "mlp.fc2.bias",
)


def timm_block_mapping(source_prefix: str, target_prefix: str, qkv_bias: bool = True) -> KeyMapping:
    """`blocks.N.*` -> `...layers.N.*`: identical inner names."""
    return {
        f"{target_prefix}.{name}": f"{source_prefix}.{name}"
        for name in TIMM_BLOCK_PARAMS
        if qkv_bias or name != "attn.qkv.bias"
    }


def hf_vit_block_mapping(source_prefix: str, target_prefix: str, qkv_bias: bool = True) -> KeyMapping:
    """A transformers ViT/ViTMAE/DeiT layer (legacy on-disk names) -> our block; q, k, v fused in that order."""
    s, t = source_prefix, target_prefix
    mapping = {
        f"{t}.norm1.weight": f"{s}.layernorm_before.weight",
        f"{t}.norm1.bias": f"{s}.layernorm_before.bias",
        f"{t}.attn.qkv.weight": tuple(f"{s}.attention.attention.{n}.weight" for n in ("query", "key", "value")),
        f"{t}.attn.qkv.bias": tuple(f"{s}.attention.attention.{n}.bias" for n in ("query", "key", "value")),
        f"{t}.attn.proj.weight": f"{s}.attention.output.dense.weight",
        f"{t}.attn.proj.bias": f"{s}.attention.output.dense.bias",
        f"{t}.norm2.weight": f"{s}.layernorm_after.weight",
        f"{t}.norm2.bias": f"{s}.layernorm_after.bias",
        f"{t}.mlp.fc1.weight": f"{s}.intermediate.dense.weight",
        f"{t}.mlp.fc1.bias": f"{s}.intermediate.dense.bias",
        f"{t}.mlp.fc2.weight": f"{s}.output.dense.weight",
        f"{t}.mlp.fc2.bias": f"{s}.output.dense.bias",
    }
    if not qkv_bias:
        del mapping[f"{t}.attn.qkv.bias"]
    return mapping


def _norm_mapping(source: str, target: str) -> KeyMapping:
    return {f"{target}.weight": f"{source}.weight", f"{target}.bias": f"{source}.bias"}


# transformers 5.x in-memory names (what `model.state_dict()` gives) -> the legacy names `save_pretrained` writes.
# Applied before the HF tables so folders written either way convert.
HF_VIT_NEW_TO_LEGACY = (
    (r"^(vit\.|deit\.|)layers\.(\d+)\.", r"\1encoder.layer.\2."),
    (r"^decoder\.decoder_layers\.(\d+)\.", r"decoder.decoder_encoder.layer.\1."),
    (r"layer\.(\d+)\.attention\.q_proj\.", r"layer.\1.attention.attention.query."),
    (r"layer\.(\d+)\.attention\.k_proj\.", r"layer.\1.attention.attention.key."),
    (r"layer\.(\d+)\.attention\.v_proj\.", r"layer.\1.attention.attention.value."),
    (r"layer\.(\d+)\.attention\.o_proj\.", r"layer.\1.attention.output.dense."),
    (r"layer\.(\d+)\.mlp\.fc1\.", r"layer.\1.intermediate.dense."),
    (r"layer\.(\d+)\.mlp\.fc2\.", r"layer.\1.output.dense."),
)


def normalize_hf_vit_keys(state_dict: Mapping[str, torch.Tensor], base_prefix: str) -> dict[str, torch.Tensor]:
    """Bring a transformers ViT-family state dict to the legacy on-disk names, with the base model under
    `base_prefix` (`vit` / `deit`; a bare `ViTMAEModel`/`DeiTModel` folder has no prefix)."""
    out = {}
    for key, value in state_dict.items():
        for pattern, replacement in HF_VIT_NEW_TO_LEGACY:
            key = re.sub(pattern, replacement, key)
        if key.startswith(("embeddings.", "encoder.", "layernorm.", "pooler.")):
            key = f"{base_prefix}.{key}"
        out[key] = value
    return out


def target_shapes(model_class, config) -> dict[str, torch.Size]:
    """Shapes of every tensor of `model_class(config)`, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = model_class(config)
    return {key: tensor.shape for key, tensor in model.state_dict().items()}


def apply_key_mapping(
    source: Mapping[str, torch.Tensor], mapping: KeyMapping, expected: Mapping[str, torch.Size], model_name: str = ""
) -> dict[str, torch.Tensor]:
    """Build the target state dict: every target key filled from its source key(s) with its shape asserted, and every
    source key consumed. Raises `ConversionError` naming the keys otherwise."""
    unmapped = [key for key in expected if key not in mapping]
    unknown = [key for key in mapping if key not in expected]
    if unmapped or unknown:  # the table and the model disagree: a config that does not describe the checkpoint
        raise ConversionError(
            f"the key mapping does not match {model_name or 'the model'}: target keys without a source {unmapped}, "
            f"mapped keys the model lacks {unknown}."
        )
    absent = [name for names in mapping.values() for name in ((names,) if isinstance(names, str) else names)
              if name not in source]
    if absent:
        raise ConversionError(f"the checkpoint lacks {len(absent)} key(s) that {model_name or 'the model'} needs: "
                              f"{absent}.")
    target, used = {}, set()
    for key, names in mapping.items():
        names = (names,) if isinstance(names, str) else tuple(names)
        tensor = source[names[0]] if len(names) == 1 else torch.cat([source[name] for name in names], dim=0)
        if tuple(tensor.shape) != tuple(expected[key]):
            parts = ", ".join(f"{name} {tuple(source[name].shape)}" for name in names)
            raise ConversionError(
                f"shape mismatch for {key}: the model expects {tuple(expected[key])}, the checkpoint gives {parts}."
            )
        target[key] = tensor
        used.update(names)
    leftovers = sorted(set(source) - used)
    if leftovers:
        raise ConversionError(
            f"{len(leftovers)} checkpoint key(s) have no place in {model_name or 'the model'}: {leftovers}. "
            "The checkpoint holds weights this architecture cannot use; convert it with the matching --source, "
            "or drop those keys deliberately before converting."
        )
    return target


# ---------------------------------------------------------------------------------------------------------------------
# Config inference (timm layout)
# ---------------------------------------------------------------------------------------------------------------------
def _count_blocks(state_dict: Mapping, prefix: str) -> int:
    indices = {int(m.group(1)) for key in state_dict if (m := re.match(rf"^{re.escape(prefix)}(\d+)\.", key))}
    if indices and indices != set(range(len(indices))):
        raise ConversionError(f"the checkpoint's {prefix}N indices are not contiguous: {sorted(indices)}.")
    return len(indices)


def _require(state_dict: Mapping, keys: Iterable[str], what: str):
    missing = [key for key in keys if key not in state_dict]
    if missing:
        raise ConversionError(f"not a {what} checkpoint: missing {missing} (found e.g. {sorted(state_dict)[:8]}).")


def _grid_from_pos_embed(pos_embed: torch.Tensor, num_prefix_tokens: int, key: str = "pos_embed") -> int:
    num_patches = pos_embed.shape[1] - num_prefix_tokens
    grid = math.isqrt(max(num_patches, 0))
    if grid * grid != num_patches or num_patches <= 0:
        raise ConversionError(
            f"{key} {tuple(pos_embed.shape)} does not hold {num_prefix_tokens} prefix token(s) plus a square grid of "
            "patches."
        )
    return grid


def _heads_from_args(args: Mapping) -> int | None:
    name = str(args.get("model") or "")
    for size, heads in MODEL_NAME_TO_HEADS.items():
        if re.search(rf"(^|_){size}(_|$)", name):
            return heads
    return None


def _pick_heads(width: int, args: Mapping, overrides: Mapping, key: str = "num_attention_heads") -> int:
    if key in overrides:
        return overrides[key]
    heads = _heads_from_args(args)
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
    _require(state_dict, ("patch_embed.proj.weight", "pos_embed", "cls_token", "blocks.0.mlp.fc1.weight"), what)
    width, channels, patch, patch_w = state_dict["patch_embed.proj.weight"].shape
    if patch != patch_w:
        raise ConversionError(f"non-square patches {patch}x{patch_w} are not supported.")
    grid = _grid_from_pos_embed(state_dict["pos_embed"], num_prefix_tokens)
    return dict(
        hidden_size=width,
        num_channels=channels,
        patch_size=patch,
        image_size=grid * patch,
        num_hidden_layers=_count_blocks(state_dict, "blocks."),
        intermediate_size=state_dict["blocks.0.mlp.fc1.weight"].shape[0],
        qkv_bias="blocks.0.attn.qkv.bias" in state_dict,
    )


def timm_model_class(state_dict: Mapping):
    """Which LiVT class a timm-layout state dict is: classifier (`head`), MGP (`decoder_*`) or bare encoder."""
    has_head = "head.weight" in state_dict
    has_decoder = "decoder_embed.weight" in state_dict
    if has_head and has_decoder:
        raise ConversionError("the checkpoint has both a classification head and an MAE decoder; convert one of them.")
    if has_head:
        return LiVTForImageClassification
    if has_decoder:
        return LiVTForMaskedImageModeling
    return LiVTModel


def infer_livt_config(state_dict: Mapping[str, torch.Tensor], checkpoint_args: Mapping | None = None,
                      **overrides) -> LiVTConfig:
    """A `LiVTConfig` for a timm-layout (official LiVT / MAE) state dict.

    From the shapes: width, channels, patch size, depth, MLP size, qkv bias, image size (square pos-embed grid),
    pooling (`fc_norm` -> mean, `norm` + `head` -> cls), classes, decoder width/depth/MLP. Then `overrides`, then
    `checkpoint_args`, then defaults (heads by width / ViT-B 12, decoder 16 heads, LayerNorm eps 1e-6).
    """
    check_override_keys(overrides, LiVTConfig)
    args = dict(checkpoint_args or {})
    if "dist_token" in state_dict:
        raise ConversionError("the checkpoint has a `dist_token`: it is a DeiT / DeiT-LT model; use --source deit_lt.")
    inferred = infer_timm_encoder_dims(state_dict, num_prefix_tokens=1, what="timm ViT (LiVT/MAE)")
    width = inferred["hidden_size"]
    model_class = timm_model_class(state_dict)
    num_labels = None
    if model_class is LiVTForImageClassification:
        num_labels = state_dict["head.weight"].shape[0]
        inferred["num_labels"] = num_labels
        has_fc_norm, has_norm = "fc_norm.weight" in state_dict, "norm.weight" in state_dict
        if has_fc_norm and has_norm:
            raise ConversionError("the classifier has both `norm` and `fc_norm`; LiVT pools either way, not both.")
        if not (has_fc_norm or has_norm):
            raise ConversionError("the classifier has neither `fc_norm` (mean pooling) nor `norm` (CLS pooling).")
        inferred["pooling"] = "mean" if has_fc_norm else "cls"
    if model_class is LiVTForMaskedImageModeling:
        decoder_width = state_dict["decoder_embed.weight"].shape[0]
        decoder_depth = _count_blocks(state_dict, "decoder_blocks.")
        inferred.update(decoder_hidden_size=decoder_width, decoder_num_hidden_layers=decoder_depth)
        if decoder_depth:
            inferred["decoder_intermediate_size"] = state_dict["decoder_blocks.0.mlp.fc1.weight"].shape[0]
        if "decoder_num_attention_heads" not in overrides and decoder_width % DEFAULT_DECODER_NUM_HEADS:
            raise ConversionError(
                f"cannot tell the decoder's heads for width {decoder_width}: pass --config_overrides "
                "decoder_num_attention_heads=H."
            )
    from_args = _fields_from_args(args, num_labels)
    if model_class is LiVTForMaskedImageModeling and "norm_pix_loss" not in {**from_args, **overrides}:
        logger.warning("The checkpoint does not say whether it used norm_pix_loss; keeping LiVT's default (True). "
                       "Pass --config_overrides norm_pix_loss=false for an MAE trained on raw pixels.")
    defaults = dict(
        num_attention_heads=_pick_heads(width, args, overrides),
        decoder_num_attention_heads=DEFAULT_DECODER_NUM_HEADS,
        layer_norm_eps=TIMM_LAYER_NORM_EPS,
        **from_args,
    )
    return LiVTConfig(**_merge_overrides(inferred, defaults, overrides))


# ---------------------------------------------------------------------------------------------------------------------
# Mapping tables
# ---------------------------------------------------------------------------------------------------------------------
def timm_vit_key_mapping(config: LiVTConfig, model_class) -> KeyMapping:
    """Official LiVT / MAE (timm layout) -> LiVT, target key: source key, in model order."""
    base = "" if model_class is LiVTModel else "livt."
    mapping = {
        f"{base}embeddings.cls_token": "cls_token",
        f"{base}embeddings.position_embeddings": "pos_embed",
        f"{base}embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
        f"{base}embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    }
    for i in range(config.num_hidden_layers):
        mapping.update(timm_block_mapping(f"blocks.{i}", f"{base}layers.{i}", config.qkv_bias))
    if model_class is not LiVTForImageClassification or config.pooling == "cls":
        mapping.update(_norm_mapping("norm", f"{base}layernorm"))
    if model_class is LiVTForImageClassification:
        if config.pooling == "mean":
            mapping.update(_norm_mapping("fc_norm", "fc_norm"))
        mapping.update({"classifier.weight": "head.weight", "classifier.bias": "head.bias"})
    if model_class is LiVTForMaskedImageModeling:
        mapping.update({
            "decoder.decoder_embed.weight": "decoder_embed.weight",
            "decoder.decoder_embed.bias": "decoder_embed.bias",
            "decoder.mask_token": "mask_token",
            "decoder.decoder_pos_embed": "decoder_pos_embed",
        })
        for i in range(config.decoder_num_hidden_layers):
            mapping.update(timm_block_mapping(f"decoder_blocks.{i}", f"decoder.decoder_layers.{i}", config.qkv_bias))
        mapping.update(_norm_mapping("decoder_norm", "decoder.decoder_norm"))
        mapping.update({
            "decoder.decoder_pred.weight": "decoder_pred.weight",
            "decoder.decoder_pred.bias": "decoder_pred.bias",
        })
    return mapping


def vit_mae_key_mapping(config: LiVTConfig, model_class) -> KeyMapping:
    """transformers ViTMAE (legacy on-disk names) -> LiVT, target key: source key(s), in model order."""
    base = "" if model_class is LiVTModel else "livt."
    mapping = {
        f"{base}embeddings.cls_token": "vit.embeddings.cls_token",
        f"{base}embeddings.position_embeddings": "vit.embeddings.position_embeddings",
        f"{base}embeddings.patch_embeddings.projection.weight": "vit.embeddings.patch_embeddings.projection.weight",
        f"{base}embeddings.patch_embeddings.projection.bias": "vit.embeddings.patch_embeddings.projection.bias",
    }
    for i in range(config.num_hidden_layers):
        mapping.update(hf_vit_block_mapping(f"vit.encoder.layer.{i}", f"{base}layers.{i}", config.qkv_bias))
    mapping.update(_norm_mapping("vit.layernorm", f"{base}layernorm"))
    if model_class is LiVTForMaskedImageModeling:
        mapping.update({
            "decoder.decoder_embed.weight": "decoder.decoder_embed.weight",
            "decoder.decoder_embed.bias": "decoder.decoder_embed.bias",
            "decoder.mask_token": "decoder.mask_token",
            "decoder.decoder_pos_embed": "decoder.decoder_pos_embed",
        })
        for i in range(config.decoder_num_hidden_layers):
            mapping.update(hf_vit_block_mapping(f"decoder.decoder_encoder.layer.{i}", f"decoder.decoder_layers.{i}",
                                                config.qkv_bias))
        mapping.update(_norm_mapping("decoder.decoder_norm", "decoder.decoder_norm"))
        mapping.update({
            "decoder.decoder_pred.weight": "decoder.decoder_pred.weight",
            "decoder.decoder_pred.bias": "decoder.decoder_pred.bias",
        })
    return mapping


# ---------------------------------------------------------------------------------------------------------------------
# Converters
# ---------------------------------------------------------------------------------------------------------------------
def convert_timm_vit_state_dict(state_dict: Mapping[str, torch.Tensor], config: LiVTConfig):
    """Official LiVT / MAE state dict (timm layout) -> `(model_class, target_state_dict)` for `config`
    (from `infer_livt_config`). Raises `ConversionError` on leftover, missing or mis-shaped keys."""
    model_class = timm_model_class(state_dict)
    mapping = timm_vit_key_mapping(config, model_class)
    target = apply_key_mapping(state_dict, mapping, target_shapes(model_class, config), model_class.__name__)
    return model_class, target


def _instantiate(model_class, config, target_state_dict):
    model = model_class(config)
    model.load_state_dict(target_state_dict, strict=True)
    return model.eval()


def livt_config_from_vit_mae(hf_config: Mapping, **overrides) -> LiVTConfig:
    """`LiVTConfig` fields from a transformers `ViTMAEConfig` dict (eps 1e-12 and norm_pix_loss carried)."""
    check_override_keys(overrides, LiVTConfig)
    image_size = hf_config.get("image_size", 224)
    patch_size = hf_config.get("patch_size", 16)
    for name, value in (("image_size", image_size), ("patch_size", patch_size)):
        if isinstance(value, (list, tuple)):
            if len(set(value)) != 1:
                raise ConversionError(f"non-square {name} {value} is not supported.")
    image_size = image_size[0] if isinstance(image_size, (list, tuple)) else image_size
    patch_size = patch_size[0] if isinstance(patch_size, (list, tuple)) else patch_size
    carried = {
        key: hf_config[key]
        for key in (
            "num_channels", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "hidden_act", "qkv_bias", "layer_norm_eps", "hidden_dropout_prob", "attention_probs_dropout_prob",
            "initializer_range", "decoder_hidden_size", "decoder_num_hidden_layers", "decoder_num_attention_heads",
            "decoder_intermediate_size", "mask_ratio", "norm_pix_loss",
        )
        if key in hf_config
    }
    # transformers' defaults for what an old config.json may omit
    carried.setdefault("layer_norm_eps", 1e-12)
    carried.setdefault("norm_pix_loss", False)
    return LiVTConfig(**{**carried, "image_size": image_size, "patch_size": patch_size, **overrides})


def convert_vit_mae_folder(path, config_overrides: Mapping | None = None):
    """A transformers `ViTMAEForPreTraining` folder -> `LiVTForMaskedImageModeling`; a `ViTMAEModel` folder ->
    `LiVTModel`. Returns the model (eval mode) with every weight ported."""
    hf_config = _load_folder_config(path, ("vit_mae",), "Use --source deit for DeiT folders, livt/mae for .pth files.")
    state_dict = normalize_hf_vit_keys(load_hf_state_dict(path), "vit")
    config = livt_config_from_vit_mae(hf_config, **dict(config_overrides or {}))
    model_class = LiVTForMaskedImageModeling if any(k.startswith("decoder.") for k in state_dict) else LiVTModel
    mapping = vit_mae_key_mapping(config, model_class)
    target = apply_key_mapping(state_dict, mapping, target_shapes(model_class, config), model_class.__name__)
    return _instantiate(model_class, config, target)


def convert_livt_checkpoint_file(path, config_overrides: Mapping | None = None, allowed_classes: Iterable = ()):
    """An official LiVT / MAE `.pth` (timm layout) -> LiVT model (classifier, MGP or encoder), eval mode.
    `path` may also be the checkpoint already loaded with `load_official_checkpoint`."""
    checkpoint = path if isinstance(path, Mapping) else load_official_checkpoint(path, allowed_classes)
    state_dict = extract_state_dict(checkpoint)
    config = infer_livt_config(state_dict, checkpoint_args(checkpoint), **dict(config_overrides or {}))
    model_class, target = convert_timm_vit_state_dict(state_dict, config)
    return _instantiate(model_class, config, target)


# ---------------------------------------------------------------------------------------------------------------------
# DeiT-LT: official checkpoints (timm VisionTransformerDistilled layout) and transformers DeiT folders
# ---------------------------------------------------------------------------------------------------------------------
def timm_deit_model_class(state_dict: Mapping):
    """`head` + `head_dist` -> `DeiTLTForImageClassification`; neither -> the bare encoder `DeiTLTModel`."""
    has_head, has_dist_head = "head.weight" in state_dict, "head_dist.weight" in state_dict
    if has_head and has_dist_head:
        return DeiTLTForImageClassification
    if has_head or has_dist_head:
        raise ConversionError(
            "a DeiT-LT classifier needs both `head` (CLS) and `head_dist` (DIST); this checkpoint has only "
            f"{'head' if has_head else 'head_dist'}."
        )
    return DeiTLTModel


def infer_deit_lt_config(state_dict: Mapping[str, torch.Tensor], checkpoint_args: Mapping | None = None,
                         **overrides) -> DeiTLTConfig:
    """A `DeiTLTConfig` for an official DeiT-LT / DeiT distilled state dict (timm `VisionTransformerDistilled`).

    From the shapes: width, channels, patch size, depth, MLP size, qkv bias, image size (pos-embed grid after the CLS
    and DIST positions), classes. Then `overrides`, then `checkpoint_args` (model name -> heads, `drop_path`,
    `cls_num_list`), then defaults (heads by width / 12, LayerNorm eps 1e-6).
    """
    check_override_keys(overrides, DeiTLTConfig)
    args = dict(checkpoint_args or {})
    if "dist_token" not in state_dict:
        raise ConversionError(
            "the checkpoint has no `dist_token`: it is not a distilled DeiT. A plain ViT/DeiT classifier converts "
            "with --source livt (CLS pooling)."
        )
    inferred = infer_timm_encoder_dims(state_dict, num_prefix_tokens=2, what="timm DeiT distilled (DeiT-LT)")
    model_class = timm_deit_model_class(state_dict)
    from_args = {}
    if isinstance(args.get("drop_path"), (int, float)):
        from_args["drop_path_rate"] = float(args["drop_path"])
    if model_class is DeiTLTForImageClassification:
        inferred["num_labels"] = state_dict["head.weight"].shape[0]
        counts = args.get("cls_num_list")
        if _valid_counts(counts, inferred["num_labels"]):
            from_args["class_counts"] = [int(c) for c in counts]
    defaults = dict(
        num_attention_heads=_pick_heads(inferred["hidden_size"], args, overrides),
        layer_norm_eps=TIMM_LAYER_NORM_EPS,
        **from_args,
    )
    return DeiTLTConfig(**_merge_overrides(inferred, defaults, overrides))


def timm_deit_key_mapping(config: DeiTLTConfig, model_class) -> KeyMapping:
    """Official DeiT-LT (timm `VisionTransformerDistilled`) -> DeiT-LT, target key: source key, in model order."""
    base = "" if model_class is DeiTLTModel else "deit_lt."
    mapping = {
        f"{base}embeddings.cls_token": "cls_token",
        f"{base}embeddings.position_embeddings": "pos_embed",
        f"{base}embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
        f"{base}embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
        f"{base}embeddings.distillation_token": "dist_token",
    }
    for i in range(config.num_hidden_layers):
        mapping.update(timm_block_mapping(f"blocks.{i}", f"{base}layers.{i}", config.qkv_bias))
    mapping.update(_norm_mapping("norm", f"{base}layernorm"))
    if model_class is DeiTLTForImageClassification:
        mapping.update({
            "classifier.weight": "head.weight",
            "classifier.bias": "head.bias",
            "distillation_classifier.weight": "head_dist.weight",
            "distillation_classifier.bias": "head_dist.bias",
        })
    return mapping


def hf_deit_key_mapping(config: DeiTLTConfig, model_class) -> KeyMapping:
    """transformers DeiT (legacy on-disk names) -> DeiT-LT, target key: source key(s), in model order."""
    base = "" if model_class is DeiTLTModel else "deit_lt."
    mapping = {
        f"{base}embeddings.cls_token": "deit.embeddings.cls_token",
        f"{base}embeddings.position_embeddings": "deit.embeddings.position_embeddings",
        f"{base}embeddings.patch_embeddings.projection.weight": "deit.embeddings.patch_embeddings.projection.weight",
        f"{base}embeddings.patch_embeddings.projection.bias": "deit.embeddings.patch_embeddings.projection.bias",
        f"{base}embeddings.distillation_token": "deit.embeddings.distillation_token",
    }
    for i in range(config.num_hidden_layers):
        mapping.update(hf_vit_block_mapping(f"deit.encoder.layer.{i}", f"{base}layers.{i}", config.qkv_bias))
    mapping.update(_norm_mapping("deit.layernorm", f"{base}layernorm"))
    if model_class is DeiTLTForImageClassification:
        mapping.update({
            "classifier.weight": "cls_classifier.weight",
            "classifier.bias": "cls_classifier.bias",
            "distillation_classifier.weight": "distillation_classifier.weight",
            "distillation_classifier.bias": "distillation_classifier.bias",
        })
    return mapping


def convert_timm_deit_state_dict(state_dict: Mapping[str, torch.Tensor], config: DeiTLTConfig):
    """Official DeiT-LT state dict -> `(model_class, target_state_dict)` for `config` (from `infer_deit_lt_config`)."""
    model_class = timm_deit_model_class(state_dict)
    mapping = timm_deit_key_mapping(config, model_class)
    target = apply_key_mapping(state_dict, mapping, target_shapes(model_class, config), model_class.__name__)
    return model_class, target


def convert_deit_lt_checkpoint_file(path, config_overrides: Mapping | None = None, allowed_classes: Iterable = ()):
    """An official DeiT-LT (or DeiT distilled) `.pth` -> `DeiTLTForImageClassification` (or `DeiTLTModel`), eval.
    `path` may also be the checkpoint already loaded with `load_official_checkpoint`."""
    checkpoint = path if isinstance(path, Mapping) else load_official_checkpoint(path, allowed_classes)
    state_dict = extract_state_dict(checkpoint)
    config = infer_deit_lt_config(state_dict, checkpoint_args(checkpoint), **dict(config_overrides or {}))
    model_class, target = convert_timm_deit_state_dict(state_dict, config)
    return _instantiate(model_class, config, target)


def deit_lt_config_from_hf_deit(hf_config: Mapping, **overrides) -> DeiTLTConfig:
    """`DeiTLTConfig` fields from a transformers `DeiTConfig` dict (eps 1e-12 and the labels carried)."""
    check_override_keys(overrides, DeiTLTConfig)
    carried = {
        key: hf_config[key]
        for key in (
            "image_size", "patch_size", "num_channels", "hidden_size", "num_hidden_layers", "num_attention_heads",
            "intermediate_size", "hidden_act", "qkv_bias", "layer_norm_eps", "hidden_dropout_prob",
            "attention_probs_dropout_prob", "initializer_range",
        )
        if key in hf_config
    }
    carried.setdefault("layer_norm_eps", 1e-12)
    if hf_config.get("id2label"):
        carried["id2label"] = {int(k): v for k, v in hf_config["id2label"].items()}
        carried["label2id"] = {v: int(k) for k, v in hf_config["id2label"].items()}
    if "num_labels" in overrides:
        carried.pop("id2label", None)
        carried.pop("label2id", None)
    return DeiTLTConfig(**{**carried, **overrides})


def convert_deit_folder(path, config_overrides: Mapping | None = None):
    """A transformers `DeiTForImageClassificationWithTeacher` folder -> `DeiTLTForImageClassification` (a
    `DeiTModel` folder without pooler -> `DeiTLTModel`). Returns the model (eval mode)."""
    hf_config = _load_folder_config(path, ("deit",), "Use --source vit_mae for ViTMAE folders, deit_lt for .pth files.")
    state_dict = normalize_hf_vit_keys(load_hf_state_dict(path), "deit")
    if "classifier.weight" in state_dict:
        raise ConversionError(
            f"{path} is a DeiTForImageClassification (one head, no distillation head); DeiT-LT needs the distilled "
            "DeiTForImageClassificationWithTeacher (cls_classifier + distillation_classifier)."
        )
    config = deit_lt_config_from_hf_deit(hf_config, **dict(config_overrides or {}))
    is_classifier = "cls_classifier.weight" in state_dict or "distillation_classifier.weight" in state_dict
    model_class = DeiTLTForImageClassification if is_classifier else DeiTLTModel
    mapping = hf_deit_key_mapping(config, model_class)
    target = apply_key_mapping(state_dict, mapping, target_shapes(model_class, config), model_class.__name__)
    return _instantiate(model_class, config, target)


# ---------------------------------------------------------------------------------------------------------------------
# Image processor and entry point
# ---------------------------------------------------------------------------------------------------------------------
def build_eval_image_processor(image_size: int, mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD):
    """The eval transform of models trained here (`transforms.build_image_processor`: bicubic resize of the shorter
    side to int(size / 0.875) + center crop up to 224, no crop margin above, no crop for <= 32 px). Ported checkpoints
    get their official repository's transform instead (`official_eval.official_eval_image_processor`)."""
    from .transforms import build_image_processor  # lazy: torchvision and datasets are only needed when saving

    return build_image_processor(image_size, mean, std)


def _normalization_stats(normalization) -> tuple:
    """`(mean, std)` from a preset name of `transforms.NORMALIZATION_STATS` or a `(mean, std)` pair."""
    if isinstance(normalization, str):
        from .transforms import get_normalization  # lazy, as above

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
    folder_converter, file_converter = {
        "livt": (convert_vit_mae_folder, convert_livt_checkpoint_file),
        "deit_lt": (convert_deit_folder, convert_deit_lt_checkpoint_file),
    }[family]
    model = (folder_converter if isinstance(loaded, str) else file_converter)(loaded, overrides)

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


__all__ = [
    "SOURCES",
    "CheckpointLoadError",
    "ConversionError",
    "apply_key_mapping",
    "build_eval_image_processor",
    "checkpoint_args",
    "convert_checkpoint",
    "convert_timm_vit_state_dict",
    "convert_vit_mae_folder",
    "convert_deit_folder",
    "convert_timm_deit_state_dict",
    "infer_deit_lt_config",
    "timm_deit_key_mapping",
    "hf_deit_key_mapping",
    "extract_state_dict",
    "infer_livt_config",
    "load_official_checkpoint",
    "parse_config_overrides",
    "timm_vit_key_mapping",
    "vit_mae_key_mapping",
]
