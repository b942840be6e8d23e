"""Tests of the weight ports (modeling_livt.hub.convert and scripts/convert_checkpoint.py).

References are independent implementations: timm's VisionTransformer / VisionTransformerDistilled (the official
LiVT / MAE / DeiT-LT layouts) and transformers' ViTMAE / DeiT, randomised (LayerNorms and position embeddings
included), saved the way their owners save them, converted, reloaded with `from_pretrained(trust_remote_code=True)`
and compared output for output. The timm-layout MGP checkpoint is our own model re-keyed by hand (below).
"""

import argparse
import os
import re
import sys
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
    DeiTConfig,
    DeiTForImageClassificationWithTeacher,
    ViTMAEConfig,
    ViTMAEForPreTraining,
    ViTMAEModel,
)

import modeling_livt as ml
from modeling_livt.hub.convert import (
    CheckpointLoadError,
    ConversionError,
    convert_checkpoint,
    extract_state_dict,
    infer_livt_config,
    load_official_checkpoint,
    parse_config_overrides,
)
from tests.helpers import tiny_livt_config

timm = pytest.importorskip("timm")
from timm.models.deit import VisionTransformerDistilled  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import convert_checkpoint as convert_script  # noqa: E402

TINY_TIMM = dict(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0)
HEADS = "num_attention_heads=2"


class NotAllowed:
    """A class pickled into a checkpoint that torch.load(weights_only=True) must refuse."""


@torch.no_grad()
def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random values for every parameter: LayerNorm weights around 1, everything else (tokens, position embeddings,
    biases, LayerNorm biases) around 0, so no port can pass by leaving a default in place."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in module.named_parameters():
        noise = torch.randn(param.shape, generator=generator)
        is_norm_weight = param.dim() == 1 and name.endswith("weight") and re.search(r"norm|layernorm", name)
        param.copy_(1.0 + 0.2 * noise if is_norm_weight else 0.2 * noise)
    return module.eval()


def images(batch: int = 3, size: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def noise_for(batch: int = 3, patches: int = 64, seed: int = 2) -> torch.Tensor:
    return torch.rand(batch, patches, generator=torch.Generator().manual_seed(seed))


def save_official(path: Path, state_dict: dict, **args) -> Path:
    """An official-shaped checkpoint: weights under "model", training args pickled as an argparse.Namespace, plus
    the optimizer-ish entries the official scripts add."""
    torch.save({"model": state_dict, "args": argparse.Namespace(**args), "epoch": 7,
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]}}, path)
    return path


def timm_livt_classifier(global_pool: str = "avg") -> VisionTransformer:
    model = VisionTransformer(**TINY_TIMM, global_pool=global_pool, fc_norm=global_pool == "avg", class_token=True,
                              num_classes=5)
    return randomize_(model)


# ---------------------------------------------------------------------------------------------------------------------
# Official LiVT / MAE checkpoints (timm layout)
# ---------------------------------------------------------------------------------------------------------------------
def test_livt_classifier_through_the_script_matches_timm(tmp_path):
    reference = timm_livt_classifier("avg")
    counts = [50, 20, 10, 5, 2]
    checkpoint = save_official(
        tmp_path / "checkpoint.pth", reference.state_dict(), model="vit_custom_patch4", input_size=32,
        nb_classes=5, cls_num=counts, loss="bal_bce", bal_tau=1.0, drop_path=0.1, global_pool=True,
    )
    out = tmp_path / "converted"
    convert_script.main(["--source", "livt", "--checkpoint", str(checkpoint), "--output_dir", str(out),
                         "--config_overrides", HEADS])

    model = AutoModelForImageClassification.from_pretrained(out, trust_remote_code=True).eval()
    pixel_values = images()
    with torch.no_grad():
        expected = reference(pixel_values)
        logits = model(pixel_values).logits
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)
    assert logits.abs().max() > 0.1  # the comparison is not between two near-zero tensors

    config = model.config
    assert (config.pooling, config.num_labels, config.num_attention_heads) == ("mean", 5, 2)
    assert config.layer_norm_eps == 1e-6
    assert config.class_counts == counts and config.loss_type == "bal_bce" and config.drop_path_rate == 0.1
    files = os.listdir(out)
    assert "model.safetensors" in files and not [f for f in files if f.endswith((".bin", ".pth", ".pt"))]
    processor = AutoImageProcessor.from_pretrained(out)
    assert list(processor.image_mean) == pytest.approx([0.485, 0.456, 0.406])
    from PIL import Image

    assert processor(Image.new("RGB", (40, 48)), return_tensors="pt")["pixel_values"].shape == (1, 3, 32, 32)


def test_livt_classifier_cls_pooling_matches_timm(tmp_path):
    reference = timm_livt_classifier("token")
    assert "norm.weight" in reference.state_dict() and "fc_norm.weight" not in reference.state_dict()
    checkpoint = save_official(tmp_path / "cls.pth", reference.state_dict(), model="vit_custom")
    model = convert_checkpoint("mae", checkpoint, tmp_path / "out", config_overrides=HEADS)
    assert isinstance(model, ml.LiVTForImageClassification) and model.config.pooling == "cls"
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "out", trust_remote_code=True).eval()
    pixel_values = images()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values).logits, reference(pixel_values), atol=1e-4, rtol=0)


# Our MGP keys -> the official MAE/LiVT names, written out by hand (independent of the converter's table).
OFFICIAL_MAE_NAMES = (
    (r"^livt\.embeddings\.cls_token$", "cls_token"),
    (r"^livt\.embeddings\.position_embeddings$", "pos_embed"),
    (r"^livt\.embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^livt\.layers\.", "blocks."),
    (r"^livt\.layernorm\.", "norm."),
    (r"^decoder\.decoder_layers\.", "decoder_blocks."),
    (r"^decoder\.", ""),
)


def to_official_mae_keys(state_dict):
    renamed = {}
    for key, value in state_dict.items():
        for pattern, replacement in OFFICIAL_MAE_NAMES:
            key = re.sub(pattern, replacement, key)
        renamed[key] = value.clone()
    return renamed


def test_mgp_checkpoint_gives_the_same_loss(tmp_path):
    source = randomize_(ml.LiVTForMaskedImageModeling(tiny_livt_config(norm_pix_loss=False, mask_ratio=0.5)))
    official = to_official_mae_keys(source.state_dict())
    assert {"decoder_embed.weight", "mask_token", "decoder_pos_embed", "decoder_blocks.0.attn.qkv.weight",
            "decoder_norm.weight", "decoder_pred.weight", "norm.weight", "blocks.1.mlp.fc2.bias"} <= set(official)
    checkpoint = save_official(tmp_path / "mgp.pth", official, model="mae_vit_custom", norm_pix_loss=False,
                               mask_ratio=0.5)
    convert_checkpoint("livt", checkpoint, tmp_path / "out",
                       config_overrides="num_attention_heads=2,decoder_num_attention_heads=2")
    model = AutoModelForPreTraining.from_pretrained(tmp_path / "out", trust_remote_code=True).eval()
    # carried from the pickled args (our config defaults are norm_pix_loss=True, mask_ratio=0.75)
    assert model.config.norm_pix_loss is False and model.config.mask_ratio == 0.5
    pixel_values, noise = images(), noise_for()
    with torch.no_grad():
        expected, got = source(pixel_values, noise=noise), model(pixel_values, noise=noise)
    torch.testing.assert_close(got.loss, expected.loss, atol=2e-6, rtol=0)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-5, rtol=0)


def test_encoder_only_mae_checkpoint_becomes_livt_model(tmp_path):
    reference = randomize_(VisionTransformer(**TINY_TIMM, global_pool="token", num_classes=0, class_token=True))
    assert "head.weight" not in reference.state_dict() and "norm.weight" in reference.state_dict()
    checkpoint = tmp_path / "mae_pretrain_vit_tiny.pth"
    torch.save({"model": reference.state_dict()}, checkpoint)
    model = convert_checkpoint("mae", checkpoint, tmp_path / "out", config_overrides={"num_attention_heads": 2})
    assert type(model) is ml.LiVTModel
    reloaded = AutoModel.from_pretrained(tmp_path / "out", trust_remote_code=True).eval()
    pixel_values = images()
    with torch.no_grad():
        expected = reference.forward_features(pixel_values)  # [N, 1 + L, D], final norm applied
        torch.testing.assert_close(reloaded(pixel_values).last_hidden_state, expected, atol=1e-5, rtol=0)


def test_heads_come_from_the_official_model_name_or_width():
    state_dict = timm_livt_classifier().state_dict()
    with pytest.raises(ConversionError, match="num_attention_heads"):
        infer_livt_config(state_dict)  # width 32: no preset, and the ViT-B default 12 does not divide it
    assert infer_livt_config(state_dict, {"model": "vit_tiny_patch16"}, num_attention_heads=4).num_attention_heads == 4
    wide = {**state_dict, "patch_embed.proj.weight": torch.zeros(192, 3, 4, 4)}
    assert infer_livt_config(wide).num_attention_heads == 3  # ViT-Ti width
    assert infer_livt_config(wide, {"model": "vit_small_patch16"}).num_attention_heads == 6


# ---------------------------------------------------------------------------------------------------------------------
# transformers ViTMAE folders (legacy key names on disk)
# ---------------------------------------------------------------------------------------------------------------------
def tiny_vit_mae_config(**overrides) -> ViTMAEConfig:
    return ViTMAEConfig(**{
        **dict(image_size=32, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=64, decoder_hidden_size=32, decoder_num_hidden_layers=1,
               decoder_num_attention_heads=2, decoder_intermediate_size=64),
        **overrides,
    })


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_vit_mae_for_pretraining_folder_gives_the_same_loss(tmp_path, norm_pix_loss):
    reference = randomize_(ViTMAEForPreTraining(tiny_vit_mae_config(norm_pix_loss=norm_pix_loss)))
    reference.save_pretrained(tmp_path / "hf")
    convert_checkpoint("vit_mae", tmp_path / "hf", tmp_path / "out")
    model = AutoModelForPreTraining.from_pretrained(tmp_path / "out", trust_remote_code=True).eval()
    assert model.config.layer_norm_eps == 1e-12 and model.config.norm_pix_loss is norm_pix_loss
    pixel_values, noise = images(), noise_for()
    with torch.no_grad():
        expected, got = reference(pixel_values, noise=noise), model(pixel_values, noise=noise)
    torch.testing.assert_close(got.loss, expected.loss, atol=2e-6, rtol=0)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-5, rtol=0)


def test_vit_mae_folder_with_in_memory_key_names(tmp_path):
    """A folder holding `state_dict()` names (transformers 5.x: q_proj/k_proj/v_proj, `layers.N`) converts too."""
    from safetensors.torch import save_file

    reference = randomize_(ViTMAEForPreTraining(tiny_vit_mae_config()))
    (tmp_path / "hf").mkdir()
    reference.config.save_pretrained(tmp_path / "hf")
    state_dict = {k: v.contiguous() for k, v in reference.state_dict().items()}
    assert any(".q_proj." in key for key in state_dict)
    save_file(state_dict, tmp_path / "hf" / "model.safetensors")
    model = convert_checkpoint("vit_mae", tmp_path / "hf")
    pixel_values, noise = images(), noise_for()
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values, noise=noise).loss, reference(pixel_values, noise=noise).loss,
                                   atol=2e-6, rtol=0)


def test_vit_mae_model_folder_becomes_livt_model(tmp_path):
    reference = randomize_(ViTMAEModel(tiny_vit_mae_config()))
    reference.save_pretrained(tmp_path / "hf")
    convert_checkpoint("vit_mae", tmp_path / "hf", tmp_path / "out")
    model = AutoModel.from_pretrained(tmp_path / "out", trust_remote_code=True).eval()
    assert type(model).__name__ == "LiVTModel"
    pixel_values, noise = images(), noise_for()
    with torch.no_grad():
        expected = reference(pixel_values, noise=noise).last_hidden_state  # includes ViTMAE's final layernorm
        got = model(pixel_values, noise=noise, mask_ratio=reference.config.mask_ratio).last_hidden_state
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# DeiT-LT: official checkpoints (timm VisionTransformerDistilled) and transformers DeiT folders
# ---------------------------------------------------------------------------------------------------------------------
def test_deit_lt_checkpoint_matches_timm_distilled(tmp_path):
    reference = randomize_(VisionTransformerDistilled(**TINY_TIMM, num_classes=5))
    counts = [100, 40, 20, 8, 3]
    checkpoint = save_official(tmp_path / "deit_lt.pth", reference.state_dict(),
                               model="deit_custom_distilled_patch4_32", cls_num_list=counts, drop_path=0.05)
    convert_checkpoint("deit_lt", checkpoint, tmp_path / "out", config_overrides=HEADS)
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "out", trust_remote_code=True).eval()
    assert model.config.model_type == "deit_lt" and model.config.class_counts == counts
    assert model.config.drop_path_rate == 0.05 and model.config.layer_norm_eps == 1e-6
    pixel_values = images()
    with torch.no_grad():
        tokens = reference.forward_features(pixel_values)  # [N, 2 + L, D], final norm applied
        expected_cls, expected_dist = reference.head(tokens[:, 0]), reference.head_dist(tokens[:, 1])
        expected = reference(pixel_values)  # timm averages the two heads in eval
        out = model(pixel_values)
    torch.testing.assert_close(expected, (expected_cls + expected_dist) / 2)
    torch.testing.assert_close(out.logits, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.cls_logits, expected_cls, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.distillation_logits, expected_dist, atol=1e-4, rtol=0)


def test_hf_deit_with_teacher_folder_matches(tmp_path):
    config = DeiTConfig(image_size=32, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=4, id2label={i: f"class_{i}" for i in range(4)})
    reference = randomize_(DeiTForImageClassificationWithTeacher(config))
    reference.save_pretrained(tmp_path / "hf")
    convert_checkpoint("deit", tmp_path / "hf", tmp_path / "out")
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "out", trust_remote_code=True).eval()
    assert model.config.layer_norm_eps == 1e-12 and model.config.id2label[3] == "class_3"
    pixel_values = images()
    with torch.no_grad():
        expected, out = reference(pixel_values), model(pixel_values)
    torch.testing.assert_close(out.logits, expected.logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.cls_logits, expected.cls_logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.distillation_logits, expected.distillation_logits, atol=1e-4, rtol=0)

    from PIL import Image
    from transformers import pipeline

    classify = pipeline("image-classification", model=str(tmp_path / "out"), trust_remote_code=True)
    image = Image.new("RGB", (36, 36), (200, 10, 10))
    top = classify(image, top_k=4)
    # the pipeline's ranking is the converted model's own softmax over the saved processor's pixels
    with torch.no_grad():
        probs = model(**classify.image_processor(image, return_tensors="pt")).logits.softmax(-1)[0]
    order = probs.argsort(descending=True).tolist()
    assert [p["label"] for p in top] == [f"class_{i}" for i in order]
    assert [p["score"] for p in top] == pytest.approx(probs[order].tolist(), abs=1e-5)


def test_deit_lt_checkpoint_with_numpy_class_counts(tmp_path):
    """DeiT-LT's ImageNet-LT / iNat datasets count classes with np.sum, so the pickled args hold numpy scalars:
    refused by default, loadable once the classes the message lists are allowed, and the counts come out as ints."""
    import numpy as np

    reference = randomize_(VisionTransformerDistilled(**TINY_TIMM, num_classes=3))
    counts = [np.sum(np.arange(9) < n) for n in (7, 4, 2)]  # numpy int64, as in DeiT-LT's datasets.py
    checkpoint = save_official(tmp_path / "deit_lt_inat.pth", reference.state_dict(),
                               model="deit_base_distilled_patch16_224", cls_num_list=counts)
    with pytest.raises(CheckpointLoadError, match="numpy") as error:
        convert_checkpoint("deit_lt", checkpoint)
    listed = re.search(r"--allowed_classes (\S+)`", str(error.value)).group(1)
    model = convert_checkpoint("deit_lt", checkpoint, allowed_classes=listed, config_overrides=HEADS)
    assert model.config.class_counts == [7, 4, 2] and all(type(c) is int for c in model.config.class_counts)


def test_state_dict_is_found_in_official_containers():
    weight = torch.zeros(2)
    assert extract_state_dict({"model": {"a": weight}, "args": None})["a"] is weight
    assert extract_state_dict({"state_dict": {"module.a": weight, "module.b": weight}}).keys() == {"a", "b"}
    assert extract_state_dict({"a": weight}) == {"a": weight}
    with pytest.raises(ConversionError, match="no weights found"):
        extract_state_dict({"epoch": 3, "optimizer": {}})


def test_wrong_family_is_named(tmp_path):
    deit = save_official(tmp_path / "deit.pth", randomize_(VisionTransformerDistilled(**TINY_TIMM)).state_dict())
    with pytest.raises(ConversionError, match="deit_lt"):
        convert_checkpoint("livt", deit, config_overrides=HEADS)
    livt = save_official(tmp_path / "livt.pth", timm_livt_classifier().state_dict())
    with pytest.raises(ConversionError, match="dist_token"):
        convert_checkpoint("deit_lt", livt, config_overrides=HEADS)


# ---------------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------------
def test_leftover_missing_and_misshaped_keys_are_named(tmp_path):
    state_dict = timm_livt_classifier().state_dict()

    extra = save_official(tmp_path / "extra.pth", {**state_dict, "blocks.0.attn.extra.weight": torch.zeros(2)})
    with pytest.raises(ConversionError, match=r"blocks\.0\.attn\.extra\.weight"):
        convert_checkpoint("livt", extra, config_overrides=HEADS)

    missing = dict(state_dict)
    del missing["blocks.1.norm2.bias"]
    with pytest.raises(ConversionError, match=r"blocks\.1\.norm2\.bias"):
        convert_checkpoint("livt", save_official(tmp_path / "missing.pth", missing), config_overrides=HEADS)

    misshaped = {**state_dict, "blocks.1.mlp.fc1.weight": torch.zeros(65, 32)}
    with pytest.raises(ConversionError, match=r"livt\.layers\.1\.mlp\.fc1\.weight.*\(64, 32\).*blocks\.1\.mlp\.fc1"):
        convert_checkpoint("livt", save_official(tmp_path / "shape.pth", misshaped), config_overrides=HEADS)


def test_hf_folder_leftover_is_named(tmp_path):
    from safetensors.torch import load_file, save_file

    ViTMAEForPreTraining(tiny_vit_mae_config()).save_pretrained(tmp_path / "hf")
    weights = load_file(tmp_path / "hf" / "model.safetensors")
    weights["vit.pooler.dense.weight"] = torch.zeros(2, 2)
    save_file(weights, tmp_path / "hf" / "model.safetensors")
    with pytest.raises(ConversionError, match=r"vit\.pooler\.dense\.weight"):
        convert_checkpoint("vit_mae", tmp_path / "hf")


def test_pickled_unknown_class_gets_a_helpful_error(tmp_path):
    state_dict = timm_livt_classifier().state_dict()
    path = tmp_path / "unsafe.pth"
    torch.save({"model": state_dict, "args": argparse.Namespace(model="vit"), "extra": NotAllowed()}, path)
    with pytest.raises(CheckpointLoadError) as error:
        load_official_checkpoint(path)
    message = str(error.value)
    assert "NotAllowed" in message and "weights_only" in message
    assert "re-save only the weights" in message and "--allowed_classes" in message
    # the way forward the message gives works, and argparse.Namespace never needs listing
    loaded = load_official_checkpoint(path, allowed_classes=[f"{__name__}.NotAllowed"])
    assert isinstance(loaded["extra"], NotAllowed) and isinstance(loaded["args"], argparse.Namespace)
    model = convert_checkpoint("livt", path, config_overrides=HEADS, allowed_classes=[NotAllowed])
    assert isinstance(model, ml.LiVTForImageClassification)


def test_config_overrides_are_parsed_and_checked(tmp_path):
    parsed = parse_config_overrides(
        "num_attention_heads=2, layer_norm_eps=1e-12,norm_pix_loss=false,class_counts=[3,2,1],pooling=cls,"
        "initializer_range=None"
    )
    assert parsed == {"num_attention_heads": 2, "layer_norm_eps": 1e-12, "norm_pix_loss": False,
                      "class_counts": [3, 2, 1], "pooling": "cls", "initializer_range": None}
    assert parse_config_overrides("") == {}
    with pytest.raises(ValueError, match="num_heads"):
        parse_config_overrides("num_heads=2")
    with pytest.raises(ValueError, match="cls_loss_type"):
        parse_config_overrides("cls_loss_type=bal_bce")  # a DeiT-LT field, not a LiVT one
    assert parse_config_overrides("cls_loss_type=bal_bce", ml.DeiTLTConfig) == {"cls_loss_type": "bal_bce"}
    with pytest.raises(ValueError, match="key=value"):
        parse_config_overrides("hidden_size")

    checkpoint = save_official(tmp_path / "c.pth", timm_livt_classifier().state_dict())
    with pytest.raises(ValueError, match="num_heads"):
        convert_checkpoint("livt", checkpoint, config_overrides="num_heads=2")
    with pytest.raises(ConversionError, match=r"hidden_size=64 \(checkpoint: 32\)"):
        convert_checkpoint("livt", checkpoint, config_overrides="num_attention_heads=2,hidden_size=64")
    with pytest.raises(ValueError, match="unknown source"):
        convert_checkpoint("vit", checkpoint)


def test_script_reads_a_json_file(tmp_path):
    import json

    checkpoint = save_official(tmp_path / "c.pth", timm_livt_classifier("token").state_dict())
    arguments = tmp_path / "convert.json"
    arguments.write_text(json.dumps({"source": "livt", "checkpoint": str(checkpoint),
                                     "output_dir": str(tmp_path / "out"), "config_overrides": HEADS}))
    model = convert_script.main([str(arguments)])
    assert isinstance(model, ml.LiVTForImageClassification)
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert (tmp_path / "out" / "preprocessor_config.json").is_file()
