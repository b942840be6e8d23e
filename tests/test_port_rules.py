"""Tests of the declarative port machinery (modeling_livt.hub.port_rules) on hand-written state dicts: the renamer's
guards (leftover, missing, misshaped keys named), the `{a,b,c}` concatenation order, and the rule tables against key
names written out by hand."""

import pytest
import torch

from modeling_livt.hub.convert import DEIT_LT, LIVT, ConversionError, model_class_for
from modeling_livt.hub.port_rules import (
    HF_IN_MEMORY_TO_ON_DISK,
    HF_RULES,
    TIMM_RULES,
    apply_rules,
    rename_state_dict,
    source_names,
)
from modeling_livt.models.modeling_livt import LiVTForImageClassification

RULES = ((r"^enc\.", "blocks."), (r"\.qkv\.", ".{q,k,v}."))
EXPECTED = {"enc.0.qkv.weight": torch.Size([6, 2]), "enc.0.fc.bias": torch.Size([3])}


def source(**replace) -> dict[str, torch.Tensor]:
    tensors = {
        "blocks.0.q.weight": torch.full((2, 2), 1.0),
        "blocks.0.k.weight": torch.full((2, 2), 2.0),
        "blocks.0.v.weight": torch.full((2, 2), 3.0),
        "blocks.0.fc.bias": torch.arange(3.0),
    }
    tensors.update(replace)
    return {key: value for key, value in tensors.items() if value is not None}


def test_rename_fills_every_target_key_and_concatenates_in_the_declared_order():
    target = rename_state_dict(source(), RULES, EXPECTED)
    assert set(target) == set(EXPECTED)
    # rows 0-1 from q, 2-3 from k, 4-5 from v: the order the rule lists, not the source dict's or alphabetical
    assert target["enc.0.qkv.weight"][:, 0].tolist() == [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]
    assert target["enc.0.fc.bias"].tolist() == [0.0, 1.0, 2.0]


def test_unconsumed_source_key_is_named():
    with pytest.raises(ConversionError, match=r"1 checkpoint key\(s\) have no place in Tiny: \['blocks\.0\.extra'\]"):
        rename_state_dict(source(**{"blocks.0.extra": torch.zeros(1)}), RULES, EXPECTED, "Tiny")


def test_missing_source_key_is_named_as_the_checkpoint_spells_it():
    with pytest.raises(ConversionError, match=r"lacks 1 key\(s\) that Tiny needs: \['blocks\.0\.k\.weight'\]"):
        rename_state_dict(source(**{"blocks.0.k.weight": None}), RULES, EXPECTED, "Tiny")


def test_shape_mismatch_names_the_target_and_every_source_part():
    with pytest.raises(ConversionError) as error:
        rename_state_dict(source(**{"blocks.0.v.weight": torch.zeros(3, 2)}), RULES, EXPECTED)
    assert str(error.value) == (
        "shape mismatch for enc.0.qkv.weight: the model expects (6, 2), the checkpoint gives "
        "blocks.0.q.weight (2, 2), blocks.0.k.weight (2, 2), blocks.0.v.weight (3, 2)."
    )


def test_source_rules_keep_the_original_names_in_errors_and_refuse_duplicates():
    renamed = {key.replace("blocks.", "old."): value for key, value in source().items()}
    to_current = ((r"^old\.", "blocks."),)
    assert set(rename_state_dict(renamed, RULES, EXPECTED, source_rules=to_current)) == set(EXPECTED)
    with pytest.raises(ConversionError, match=r"\['old\.0\.stray'\]"):
        rename_state_dict({**renamed, "old.0.stray": torch.zeros(1)}, RULES, EXPECTED, source_rules=to_current)
    with pytest.raises(ConversionError, match=r"blocks\.0\.fc\.bias twice, as blocks\.0\.fc\.bias and as old\.0\.fc"):
        rename_state_dict({"blocks.0.fc.bias": torch.zeros(3), **renamed}, RULES, EXPECTED, source_rules=to_current)


@pytest.mark.parametrize(
    ("ours", "timm", "hf"),
    [
        ("livt.embeddings.cls_token", "cls_token", "vit.embeddings.cls_token"),
        ("livt.embeddings.position_embeddings", "pos_embed", "vit.embeddings.position_embeddings"),
        ("deit_lt.embeddings.distillation_token", "dist_token", "deit.embeddings.distillation_token"),
        ("embeddings.patch_embeddings.projection.weight", "patch_embed.proj.weight",
         "embeddings.patch_embeddings.projection.weight"),
        ("livt.layers.3.norm1.bias", "blocks.3.norm1.bias", "vit.encoder.layer.3.layernorm_before.bias"),
        ("deit_lt.layers.0.norm2.weight", "blocks.0.norm2.weight", "deit.encoder.layer.0.layernorm_after.weight"),
        ("layers.1.attn.proj.weight", "blocks.1.attn.proj.weight", "encoder.layer.1.attention.output.dense.weight"),
        ("livt.layers.0.mlp.fc1.bias", "blocks.0.mlp.fc1.bias", "vit.encoder.layer.0.intermediate.dense.bias"),
        ("livt.layers.0.mlp.fc2.weight", "blocks.0.mlp.fc2.weight", "vit.encoder.layer.0.output.dense.weight"),
        ("livt.layernorm.weight", "norm.weight", "vit.layernorm.weight"),
        ("classifier.bias", "head.bias", "cls_classifier.bias"),
        ("distillation_classifier.weight", "head_dist.weight", "distillation_classifier.weight"),
        ("decoder.mask_token", "mask_token", "decoder.mask_token"),
        ("decoder.decoder_pos_embed", "decoder_pos_embed", "decoder.decoder_pos_embed"),
        ("decoder.decoder_layers.7.norm1.weight", "decoder_blocks.7.norm1.weight",
         "decoder.decoder_encoder.layer.7.layernorm_before.weight"),
        ("decoder.decoder_pred.bias", "decoder_pred.bias", "decoder.decoder_pred.bias"),
    ],
)
def test_tables_give_the_official_and_transformers_names(ours, timm, hf):
    assert source_names(ours, TIMM_RULES) == (timm,)
    assert source_names(ours, HF_RULES) == (hf,)


def test_hf_qkv_is_three_sources_and_in_memory_names_reach_them():
    assert source_names("livt.layers.2.attn.qkv.bias", HF_RULES) == tuple(
        f"vit.encoder.layer.2.attention.attention.{part}.bias" for part in ("query", "key", "value")
    )
    assert source_names("livt.layers.2.attn.qkv.bias", TIMM_RULES) == ("blocks.2.attn.qkv.bias",)
    in_memory_to_on_disk = {
        "vit.layers.2.attention.k_proj.bias": "vit.encoder.layer.2.attention.attention.key.bias",
        "layers.0.attention.o_proj.weight": "encoder.layer.0.attention.output.dense.weight",
        "decoder.decoder_layers.1.mlp.fc1.weight": "decoder.decoder_encoder.layer.1.intermediate.dense.weight",
        "deit.layers.0.mlp.fc2.bias": "deit.encoder.layer.0.output.dense.bias",
        "deit.layers.0.layernorm_before.bias": "deit.encoder.layer.0.layernorm_before.bias",
    }
    assert {key: apply_rules(key, HF_IN_MEMORY_TO_ON_DISK) for key in in_memory_to_on_disk} == in_memory_to_on_disk


def test_model_class_comes_from_the_heads_and_the_decoder():
    assert model_class_for({"head.weight": 0}, LIVT, TIMM_RULES) is LiVTForImageClassification
    assert model_class_for({"decoder_embed.weight": 0}, LIVT, TIMM_RULES).__name__ == "LiVTForMaskedImageModeling"
    assert model_class_for({"decoder.decoder_embed.weight": 0}, LIVT, HF_RULES).__name__ == "LiVTForMaskedImageModeling"
    assert model_class_for({"cls_token": 0}, LIVT, TIMM_RULES).__name__ == "LiVTModel"
    with pytest.raises(ConversionError, match="both a classification head and an MAE decoder"):
        model_class_for({"head.weight": 0, "decoder_embed.weight": 0}, LIVT, TIMM_RULES)
    assert model_class_for({"cls_classifier.weight": 0, "distillation_classifier.weight": 0}, DEIT_LT,
                           HF_RULES).__name__ == "DeiTLTForImageClassification"
    both_heads = (r"DeiTLTForImageClassification needs all of \['head\.weight', 'head_dist\.weight'\]; "
                  r".* \['head\.weight'\]\.$")
    with pytest.raises(ConversionError, match=both_heads):
        model_class_for({"head.weight": 0}, DEIT_LT, TIMM_RULES)
