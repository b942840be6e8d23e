"""Declarative weight ports: one ordered table of regex rename rules per source layout, and one function applying them.

A table maps each key of the target model (its `state_dict()` names) to the source key that fills it: the rules'
`(pattern, replacement)` pairs are applied in order, each to the result of the one before, as in timm's
`checkpoint_filter_fn` - read from the target side, so that a missing tensor is named as the checkpoint spells it.
A replacement holding `{a,b,c}` names several source tensors concatenated along dim 0 in that order: the declared
transform that fuses transformers' separate query, key and value projections into our `attn.qkv`.
"""

import re
from collections.abc import Mapping

import torch

Rules = tuple[tuple[str, str], ...]


class ConversionError(ValueError):
    """A checkpoint does not fit the target model: keys left over or missing, shapes that disagree."""


# Our key -> official LiVT / MAE / DeiT-LT key (timm `VisionTransformer(Distilled)` and MAE decoder layout). The
# blocks' inner names (norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2) are the same on both sides.
TIMM_RULES: Rules = (
    (r"^(livt|deit_lt)\.", ""),  # timm keeps the encoder and the heads at the top level
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.distillation_token$", "dist_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^layers\.", "blocks."),
    (r"^layernorm\.", "norm."),
    (r"^classifier\.", "head."),
    (r"^distillation_classifier\.", "head_dist."),
    (r"^decoder\.decoder_layers\.", "decoder_blocks."),
    (r"^decoder\.mask_token$", "mask_token"),
    (r"^decoder\.", ""),  # decoder_embed, decoder_pos_embed, decoder_norm, decoder_pred
)

# Our key -> transformers ViTMAE / DeiT key, as `save_pretrained` writes it (the legacy 4.x names Hub files have).
HF_RULES: Rules = (
    (r"^livt\.", "vit."),
    (r"^deit_lt\.", "deit."),
    (r"^classifier\.", "cls_classifier."),  # DeiTForImageClassificationWithTeacher's CLS head
    (r"^(vit\.|deit\.|)layers\.", r"\1encoder.layer."),
    (r"^decoder\.decoder_layers\.", "decoder.decoder_encoder.layer."),
    (r"\.norm1\.", ".layernorm_before."),
    (r"\.norm2\.", ".layernorm_after."),
    (r"\.attn\.qkv\.", ".attention.attention.{query,key,value}."),
    (r"\.attn\.proj\.", ".attention.output.dense."),
    (r"\.mlp\.fc1\.", ".intermediate.dense."),
    (r"\.mlp\.fc2\.", ".output.dense."),
)

# transformers 5.x in-memory names (what `model.state_dict()` gives) -> the on-disk names `HF_RULES` produces, applied
# to the source keys so that folders written either way convert.
HF_IN_MEMORY_TO_ON_DISK: Rules = (
    (r"^(vit\.|deit\.|decoder\.decoder_|)layers\.", r"\1encoder.layer."),
    (r"\.attention\.q_proj\.", ".attention.attention.query."),
    (r"\.attention\.k_proj\.", ".attention.attention.key."),
    (r"\.attention\.v_proj\.", ".attention.attention.value."),
    (r"\.attention\.o_proj\.", ".attention.output.dense."),
    (r"\.mlp\.fc1\.", ".intermediate.dense."),
    (r"\.mlp\.fc2\.", ".output.dense."),
)


def apply_rules(key: str, rules: Rules) -> str:
    """`key` rewritten by every rule in order (a rule that does not match leaves it unchanged)."""
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


def source_names(target_key: str, rules: Rules) -> tuple[str, ...]:
    """The source key(s) filling `target_key`: several when the rules give a `{a,b,c}` concatenation."""
    name = apply_rules(target_key, rules)
    fused = re.search(r"\{([^{}]+)\}", name)
    if fused is None:
        return (name,)
    head, tail = name[: fused.start()], name[fused.end():]
    return tuple(f"{head}{part}{tail}" for part in fused.group(1).split(","))


def target_shapes(model_class, config) -> dict[str, torch.Size]:
    """Shapes of every tensor of `model_class(config)`, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = model_class(config)
    return {key: tensor.shape for key, tensor in model.state_dict().items()}


def rename_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    rules: Rules,
    expected: Mapping[str, torch.Size],
    model_name: str = "the model",
    source_rules: Rules = (),
) -> dict[str, torch.Tensor]:
    """Build the target state dict with keys and shapes `expected`, each tensor taken from the source key(s) `rules`
    give (`source_rules` first bring the source keys to the names `rules` produce).

    Guards, each raising `ConversionError` naming the keys: every target key is filled (a source key it needs is
    absent), every shape matches, and every source key is consumed (no leftovers).
    """
    original = {}  # source name after `source_rules` -> the key in `state_dict`
    for key in state_dict:
        name = apply_rules(key, source_rules)
        if name in original:
            raise ConversionError(f"the checkpoint holds {name} twice, as {original[name]} and as {key}.")
        original[name] = key
    plan = {key: source_names(key, rules) for key in expected}
    absent = [name for names in plan.values() for name in names if name not in original]
    if absent:
        raise ConversionError(f"the checkpoint lacks {len(absent)} key(s) that {model_name} needs: {absent}.")
    target, used = {}, set()
    for key, names in plan.items():
        keys = [original[name] for name in names]
        tensor = state_dict[keys[0]] if len(keys) == 1 else torch.cat([state_dict[k] for k in keys], dim=0)
        if tuple(tensor.shape) != tuple(expected[key]):
            parts = ", ".join(f"{k} {tuple(state_dict[k].shape)}" for k in keys)
            raise ConversionError(
                f"shape mismatch for {key}: the model expects {tuple(expected[key])}, the checkpoint gives {parts}."
            )
        target[key] = tensor
        used.update(keys)
    leftovers = sorted(set(state_dict) - used)
    if leftovers:
        raise ConversionError(
            f"{len(leftovers)} checkpoint key(s) have no place in {model_name}: {leftovers}. "
            "The checkpoint holds weights this architecture cannot use; convert it with the matching --source, "
            "or drop those keys deliberately before converting."
        )
    return target
