"""DeiT-LT models: token layout, heads, CLS loss, init, save/reload, remote code, LiVT -> DeiT-LT init, checkpointing,
attention backends, and equivalence with timm's `VisionTransformerDistilled`."""

import json
import os
import textwrap

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

import modeling_livt as ml
from modeling_livt.models.modeling_vit import interpolate_pos_embed
from tests.helpers import run_without_our_package, tiny_livt_config

COUNTS = [60, 30, 12, 5]
TINY = dict(image_size=32, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64)


def tiny_config(**overrides) -> ml.DeiTLTConfig:
    return ml.DeiTLTConfig(**{**TINY, "num_labels": 4, **overrides})


def _pixels(batch=3, size=32, seed=0):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_forward_shapes_and_logits_are_the_mean_of_both_heads():
    torch.manual_seed(0)
    model = ml.DeiTLTForImageClassification(tiny_config())
    x = _pixels()
    for train in (True, False):
        model.train(train)
        out = model(x)
        assert isinstance(out, ml.DeiTLTImageClassifierOutput)
        assert out.logits.shape == out.cls_logits.shape == out.distillation_logits.shape == (3, 4)
        assert out.loss is None
        assert torch.equal(out.logits, (out.cls_logits + out.distillation_logits) / 2)
    model.eval()
    encoder = model.deit_lt(x, output_hidden_states=True)
    assert encoder.last_hidden_state.shape == (3, 2 + 64, 32)  # [CLS, DIST, 8x8 patches]
    out = model(x)
    torch.testing.assert_close(out.cls_logits, model.classifier(encoder.last_hidden_state[:, 0]))
    torch.testing.assert_close(out.distillation_logits, model.distillation_classifier(encoder.last_hidden_state[:, 1]))
    assert len(encoder.hidden_states) == 3  # embeddings + one per layer
    assert not torch.equal(out.cls_logits, out.distillation_logits)


def test_forward_is_forward_features_then_forward_head():
    torch.manual_seed(0)
    model = ml.DeiTLTForImageClassification(tiny_config()).eval()
    x = _pixels(2)
    tokens = model.forward_features(x).last_hidden_state  # [N, 2 + L, D], final-normed
    cls_features, distillation_features = model.forward_head(tokens, pre_logits=True)
    assert torch.equal(cls_features, tokens[:, 0]) and torch.equal(distillation_features, tokens[:, 1])
    cls_logits, distillation_logits = model.forward_head(tokens)
    out = model(x)
    torch.testing.assert_close(out.cls_logits, cls_logits)
    torch.testing.assert_close(out.distillation_logits, distillation_logits)
    torch.testing.assert_close(out.logits, (cls_logits + distillation_logits) / 2)


def test_token_layout_and_position_embeddings_cover_all_tokens():
    model = ml.DeiTLTModel(tiny_config()).eval()
    emb = model.embeddings
    assert emb.num_prefix_tokens == 2 and emb.position_embeddings.shape == (1, 66, 32)
    assert emb.position_embeddings.requires_grad and emb.distillation_token.requires_grad
    x = _pixels(2)
    tokens, mask, _ = emb(x)
    assert mask is None
    patches = emb.patch_embeddings(x)
    pos = emb.position_embeddings
    torch.testing.assert_close(tokens[:, 0], (emb.cls_token + pos[:, :1]).expand(2, -1, -1)[:, 0])
    torch.testing.assert_close(tokens[:, 1], (emb.distillation_token + pos[:, 1:2]).expand(2, -1, -1)[:, 0])
    torch.testing.assert_close(tokens[:, 2:], patches + pos[:, 2:])


def test_parameter_names():
    names = set(ml.DeiTLTForImageClassification(tiny_config()).state_dict())
    expected_fixed = {
        "deit_lt.embeddings.cls_token", "deit_lt.embeddings.distillation_token",
        "deit_lt.embeddings.position_embeddings",
        "deit_lt.embeddings.patch_embeddings.projection.weight", "deit_lt.embeddings.patch_embeddings.projection.bias",
        "deit_lt.layernorm.weight", "deit_lt.layernorm.bias", "classifier.weight", "classifier.bias",
        "distillation_classifier.weight", "distillation_classifier.bias",
    }
    assert expected_fixed <= names
    rest = names - expected_fixed
    assert all(n.startswith(("deit_lt.layers.0.", "deit_lt.layers.1.")) for n in rest), rest
    assert "deit_lt.layers.1.attn.qkv.weight" in rest and "deit_lt.layers.0.mlp.fc2.bias" in rest


@pytest.mark.parametrize("loss_type", ["ce", "bal_bce", "bal_ce", "bce"])
def test_labels_give_the_mean_of_both_heads_losses(loss_type):
    """No teacher: both heads learn the labels with cls_loss_type, and the loss is their mean (DeiT without one)."""
    model = ml.DeiTLTForImageClassification(tiny_config(cls_loss_type=loss_type, class_counts=COUNTS)).eval()
    x, y = _pixels(), torch.tensor([0, 3, 1])
    out = model(x, labels=y)
    loss = ml.build_loss(loss_type, COUNTS)
    torch.testing.assert_close(out.loss, (loss(out.cls_logits, y) + loss(out.distillation_logits, y)) / 2)
    assert not torch.allclose(out.loss, loss(out.cls_logits, y))  # not the CLS head's loss alone
    if loss_type == "ce":
        expected = (F.cross_entropy(out.cls_logits, y) + F.cross_entropy(out.distillation_logits, y)) / 2
        torch.testing.assert_close(out.loss, expected)
        soft = torch.full((3, 4), 0.1 / 4) + 0.9 * F.one_hot(y, 4)

        def soft_ce(logits):
            return -(soft * logits.log_softmax(-1)).sum(-1).mean()

        expected = (soft_ce(out.cls_logits) + soft_ce(out.distillation_logits)) / 2
        torch.testing.assert_close(model(x, labels=soft).loss, expected)


def test_own_loss_trains_both_heads():
    model = ml.DeiTLTForImageClassification(tiny_config(class_counts=COUNTS, cls_loss_type="bal_bce")).train()
    model(_pixels(), labels=torch.tensor([0, 3, 1])).loss.backward()
    for head in (model.classifier, model.distillation_classifier):
        assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
        assert head.bias.grad.abs().sum() > 0
    assert model.deit_lt.embeddings.distillation_token.grad.abs().sum() > 0


def test_plain_trainer_step_updates_both_heads(tmp_path):
    """A plain transformers.Trainer (the model's own loss, no teacher) moves the DIST head as well as the CLS head."""
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    model = ml.DeiTLTForImageClassification(tiny_config())
    before = {name: p.detach().clone() for name, p in model.named_parameters() if "classifier" in name}
    data = [{"pixel_values": x, "labels": int(y)} for x, y in zip(_pixels(8), torch.arange(8) % 4)]
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=8, learning_rate=1e-2,
        use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True, remove_unused_columns=False,
    )
    Trainer(model=model, args=args, train_dataset=data).train()
    for name, old in before.items():
        assert not torch.equal(dict(model.named_parameters())[name].detach(), old), name


def test_balanced_loss_without_counts_fails_clearly():
    model = ml.DeiTLTForImageClassification(tiny_config(cls_loss_type="bal_bce"))
    with pytest.raises(ValueError, match="class_counts"):
        model(_pixels(), labels=torch.tensor([0, 1, 2]))


def test_init_matches_official_deit():
    torch.manual_seed(0)
    config = ml.DeiTLTConfig(image_size=64, patch_size=4, hidden_size=384, num_hidden_layers=2,
                             num_attention_heads=6, intermediate_size=1536, num_labels=10)
    model = ml.DeiTLTForImageClassification(config)
    emb = model.deit_lt.embeddings
    assert emb.position_embeddings.std().item() == pytest.approx(0.02, abs=0.0005)  # 99k values
    assert emb.position_embeddings.mean().abs().item() < 0.001
    for token in (emb.cls_token, emb.distillation_token):  # 384 values each
        assert token.std().item() == pytest.approx(0.02, abs=0.003)
    assert not torch.equal(emb.cls_token, emb.distillation_token)
    layer = model.deit_lt.layers[0]
    for linear in (layer.attn.qkv, layer.attn.proj, layer.mlp.fc1, layer.mlp.fc2):
        assert linear.weight.std().item() == pytest.approx(0.02, abs=0.001)
        assert linear.weight.mean().abs().item() < 0.001  # (timm's truncation is at +-2 absolute: no visible cut)
        assert torch.count_nonzero(linear.bias) == 0
    for head in (model.classifier, model.distillation_classifier):
        assert head.weight.std().item() == pytest.approx(0.02, abs=0.002)
        assert torch.count_nonzero(head.bias) == 0
    for norm in (layer.norm1, layer.norm2, model.deit_lt.layernorm):
        assert torch.all(norm.weight == 1) and torch.count_nonzero(norm.bias) == 0
    proj = emb.patch_embeddings.projection  # PyTorch's Conv2d default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    bound = 1 / (3 * 4 * 4) ** 0.5
    assert proj.weight.abs().max().item() <= bound
    assert proj.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.05)
    assert proj.bias.abs().max().item() <= bound and torch.count_nonzero(proj.bias) > 0


def test_save_reload_identical(tmp_path):
    model = ml.DeiTLTForImageClassification(tiny_config(class_counts=COUNTS, cls_loss_type="bal_ce")).eval()
    x, y = _pixels(), torch.tensor([0, 2, 3])
    ref = model(x, labels=y)
    model.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert {"model.safetensors", "modeling_deit_lt.py", "configuration_deit_lt.py", "modeling_vit.py",
            "configuration_vit.py", "losses.py"} <= files
    assert "modeling_livt.py" not in files  # DeiT-LT's remote code needs only the shared encoder, not LiVT's model
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "deit_lt" and saved["class_counts"] == COUNTS
    assert saved["auto_map"]["AutoModelForImageClassification"].endswith("DeiTLTForImageClassification")
    assert saved["drop_path_rate"] == 0.1 and saved["layer_norm_eps"] == 1e-6
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is ml.DeiTLTForImageClassification
    out = loaded(x, labels=y)
    for field in ("logits", "cls_logits", "distillation_logits", "loss"):
        assert torch.equal(getattr(out, field), getattr(ref, field)), field
    base = AutoModel.from_pretrained(tmp_path).eval()
    assert type(base) is ml.DeiTLTModel
    torch.testing.assert_close(base(x).last_hidden_state, model.deit_lt(x).last_hidden_state, rtol=0, atol=0)


def test_remote_code_load_without_our_package(tmp_path):
    model = ml.DeiTLTForImageClassification(tiny_config()).eval()
    x = _pixels(2)
    model.save_pretrained(tmp_path / "model")
    out = model(x)
    torch.save({"x": x, "logits": out.logits.detach(), "cls": out.cls_logits.detach()}, tmp_path / "ref.pt")
    script = textwrap.dedent(f"""
        import torch
        from transformers import AutoModelForImageClassification
        m = AutoModelForImageClassification.from_pretrained({str(tmp_path / 'model')!r}, trust_remote_code=True).eval()
        assert type(m).__module__.startswith('transformers_modules'), type(m).__module__
        assert type(m).__name__ == 'DeiTLTForImageClassification'
        ref = torch.load({str(tmp_path / 'ref.pt')!r})
        out = m(ref['x'])
        assert torch.equal(out.logits, ref['logits']), (out.logits - ref['logits']).abs().max()
        assert torch.equal(out.cls_logits, ref['cls'])
        print('REMOTE_OK')
    """)
    result = run_without_our_package(script, tmp_path)
    assert "REMOTE_OK" in result.stdout, result.stderr[-3000:]


def _mgp_checkpoint(path):
    torch.manual_seed(1)
    mgp = ml.LiVTForMaskedImageModeling(tiny_livt_config())
    with torch.no_grad():  # distinguishable values everywhere (the sin-cos table has a zero CLS row)
        mgp.livt.layernorm.weight.normal_()
        mgp.livt.embeddings.cls_token.normal_()
    mgp.save_pretrained(path)
    return mgp


def test_deit_lt_from_livt_copies_the_encoder(tmp_path):
    mgp = _mgp_checkpoint(tmp_path / "mgp")
    student = ml.deit_lt_from_livt(tmp_path / "mgp", num_labels=4, class_counts=COUNTS)
    assert student.config.class_counts == COUNTS and student.config.num_labels == 4
    assert student.config.drop_path_rate == 0.1  # the DeiT default, not the MGP one
    src = mgp.livt.state_dict()
    dst = student.deit_lt.state_dict()
    for key, value in src.items():
        if key == "embeddings.position_embeddings":
            continue
        assert torch.equal(dst[key], value), key
    src_pos, dst_pos = src["embeddings.position_embeddings"], dst["embeddings.position_embeddings"]
    assert torch.equal(dst_pos[:, 0], src_pos[:, 0]) and torch.equal(dst_pos[:, 1], src_pos[:, 0])
    assert torch.equal(dst_pos[:, 2:], src_pos[:, 1:])
    assert set(dst) - set(src) == {"embeddings.distillation_token"}
    assert dst["embeddings.distillation_token"].std().item() > 0.005  # fresh, trunc_normal(0.02)
    assert torch.count_nonzero(student.classifier.bias) == 0 and student.classifier.weight.std() > 0.005
    assert all(p.requires_grad for p in student.parameters())  # MGP froze the position embeddings; DeiT-LT trains them
    # the same through load_deit_lt_student (the config says model_type "livt"); from_pretrained would load none of
    # the weights (other key names), so it refuses, pointing to the conversion
    routed = ml.load_deit_lt_student(tmp_path / "mgp", num_labels=4)
    for key, value in src.items():
        if key != "embeddings.position_embeddings":
            assert torch.equal(routed.deit_lt.state_dict()[key], value), key
    with pytest.raises(ValueError, match=r"LiVT checkpoint .*deit_lt_from_livt"):
        ml.DeiTLTForImageClassification.from_pretrained(tmp_path / "mgp")
    with pytest.raises(ValueError, match=r"LiVT checkpoint .*deit_lt_from_livt"):
        ml.DeiTLTConfig.from_pretrained(tmp_path / "mgp")
    # a fresh DIST position, and a finished student saves / reloads as a normal DeiT-LT
    fresh = ml.deit_lt_from_livt(tmp_path / "mgp", distillation_position="fresh")
    assert not torch.equal(fresh.deit_lt.embeddings.position_embeddings[:, 1], src_pos[:, 0])
    student.save_pretrained(tmp_path / "student")
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "student").eval()
    torch.testing.assert_close(reloaded(_pixels()).logits, student.eval()(_pixels()).logits, rtol=0, atol=0)
    assert type(ml.load_deit_lt_student(tmp_path / "student")) is ml.DeiTLTForImageClassification
    with pytest.raises(TypeError, match="not_a_field"):
        ml.deit_lt_from_livt(tmp_path / "mgp", not_a_field=1)


def test_from_livt_classifier_carries_labels_and_resizes(tmp_path):
    torch.manual_seed(2)
    clf = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS, id2label={i: f"c{i}" for i in range(4)}))
    clf.save_pretrained(tmp_path / "clf")
    student = ml.deit_lt_from_livt(tmp_path / "clf", image_size=48)
    assert student.config.id2label == {i: f"c{i}" for i in range(4)} and student.config.class_counts == COUNTS
    assert student.config.image_size == 48
    src_pos = clf.livt.embeddings.position_embeddings.detach()
    expected = interpolate_pos_embed(src_pos, 1, (12, 12))
    dst_pos = student.deit_lt.embeddings.position_embeddings.detach()
    assert dst_pos.shape == (1, 2 + 144, 32)
    torch.testing.assert_close(dst_pos[:, 2:], expected[:, 1:], rtol=0, atol=0)
    # the mean-pooling classifier has no final norm: the student's stays freshly initialised
    assert torch.all(student.deit_lt.layernorm.weight == 1)
    torch.testing.assert_close(student.deit_lt.layers[1].attn.qkv.weight, clf.livt.layers[1].attn.qkv.weight,
                               rtol=0, atol=0)
    assert student(_pixels(2, size=48)).logits.shape == (2, 4)
    same = ml.deit_lt_from_livt(tmp_path / "clf", num_labels=4)
    assert same.config.id2label[3] == "c3" and same.config.class_counts == COUNTS
    other = ml.deit_lt_from_livt(tmp_path / "clf", num_labels=6)
    assert other.config.num_labels == 6 and other.config.class_counts is None
    ml.DeiTLTForImageClassification(tiny_config()).save_pretrained(tmp_path / "deit")
    with pytest.raises(ValueError, match="not a LiVT checkpoint"):
        ml.deit_lt_from_livt(tmp_path / "deit")


def test_gradient_checkpointing_matches():
    torch.manual_seed(0)
    model = ml.DeiTLTForImageClassification(tiny_config(drop_path_rate=0.0)).train()
    x, y = _pixels(), torch.tensor([0, 1, 2])
    out = model(x, labels=y)
    (out.loss + out.distillation_logits.square().mean()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.gradient_checkpointing_enable()
    assert model.deit_lt.layers[0].gradient_checkpointing
    out_ckpt = model(x, labels=y)
    (out_ckpt.loss + out_ckpt.distillation_logits.square().mean()).backward()
    assert out_ckpt.loss.item() == pytest.approx(out.loss.item(), rel=1e-6)
    params = dict(model.named_parameters())
    assert "deit_lt.embeddings.distillation_token" in grads
    for name, grad in grads.items():
        torch.testing.assert_close(params[name].grad, grad, rtol=1e-5, atol=1e-6)


def test_sdpa_and_eager_agree(tmp_path):
    model = ml.DeiTLTForImageClassification(tiny_config()).eval()
    assert model.config._attn_implementation == "sdpa"
    model.save_pretrained(tmp_path)
    eager = ml.DeiTLTForImageClassification.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert eager.config._attn_implementation == "eager"
    x = _pixels()
    torch.testing.assert_close(eager(x).logits, model(x).logits, rtol=1e-5, atol=1e-5)
    out = eager(x, output_attentions=True, output_hidden_states=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (3, 2, 66, 66)
    assert len(out.hidden_states) == 3


def _timm_key(name: str) -> str:
    """Our key -> timm `VisionTransformerDistilled` key (hand-written map)."""
    fixed = {
        "deit_lt.embeddings.cls_token": "cls_token",
        "deit_lt.embeddings.distillation_token": "dist_token",
        "deit_lt.embeddings.position_embeddings": "pos_embed",
        "deit_lt.embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
        "deit_lt.embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
        "deit_lt.layernorm.weight": "norm.weight",
        "deit_lt.layernorm.bias": "norm.bias",
        "classifier.weight": "head.weight",
        "classifier.bias": "head.bias",
        "distillation_classifier.weight": "head_dist.weight",
        "distillation_classifier.bias": "head_dist.bias",
    }
    if name in fixed:
        return fixed[name]
    assert name.startswith("deit_lt.layers."), name
    return "blocks." + name[len("deit_lt.layers."):]  # norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2


def test_matches_timm_vision_transformer_distilled():
    """Same dims, copied weights: identical logits in eval mode -> the architecture is DeiT's."""
    deit = pytest.importorskip("timm.models.deit")
    torch.manual_seed(0)
    timm_model = deit.VisionTransformerDistilled(
        img_size=32, patch_size=4, in_chans=3, num_classes=4, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0,
        qkv_bias=True,
    ).eval()
    model = ml.DeiTLTForImageClassification(tiny_config()).eval()
    timm_state = timm_model.state_dict()
    ours = model.state_dict()
    mapping = {name: _timm_key(name) for name in ours}
    assert sorted(mapping.values()) == sorted(timm_state), set(timm_state) ^ set(mapping.values())
    model.load_state_dict({name: timm_state[key] for name, key in mapping.items()})
    x = _pixels(4)
    with torch.no_grad():
        expected = timm_model(x)  # (head + head_dist) / 2 in eval mode
        out = model(x)
        features = timm_model.forward_features(x)
    torch.testing.assert_close(out.logits, expected, rtol=0, atol=1e-4)
    torch.testing.assert_close(out.cls_logits, timm_model.head(features[:, 0]), rtol=0, atol=1e-4)
    torch.testing.assert_close(out.distillation_logits, timm_model.head_dist(features[:, 1]), rtol=0, atol=1e-4)


def test_interpolate_pos_encoding_and_resize():
    model = ml.DeiTLTForImageClassification(tiny_config()).eval()
    x = _pixels(2, size=48)
    with pytest.raises(ValueError, match="interpolate_pos_encoding"):
        model(x)
    out = model(x, interpolate_pos_encoding=True)
    assert out.logits.shape == (2, 4)
    prefix = model.deit_lt.embeddings.position_embeddings[:, :2].detach().clone()
    model.resize_position_embeddings(48)
    assert model.config.image_size == 48
    assert model.deit_lt.embeddings.position_embeddings.shape == (1, 2 + 144, 32)
    assert torch.equal(model.deit_lt.embeddings.position_embeddings[:, :2], prefix)  # CLS and DIST rows kept
    torch.testing.assert_close(model(x).logits, out.logits)


def test_presets_config_validation_and_auto_classes():
    for name, (dim, heads) in {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}.items():
        config = ml.DeiTLTConfig.from_preset(name, num_labels=10)
        assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers) == (dim, heads, 12)
        assert config.intermediate_size == 4 * dim and config.patch_size == 16 and config.drop_path_rate == 0.1
    assert ml.DeiTLTConfig.from_preset("tiny", image_size=32, patch_size=4).image_size == 32
    with pytest.raises(ValueError, match="preset"):
        ml.DeiTLTConfig.from_preset("huge")
    config = ml.DeiTLTConfig(class_counts=[10, 5, 1])
    assert config.num_labels == 3 and config.cls_loss_type == "ce"
    assert config.initializer_range == 0.02 and config.layer_norm_eps == 1e-6
    for kwargs, match in [
        (dict(cls_loss_type="focal"), "cls_loss_type"),
        (dict(hidden_size=30, num_attention_heads=4), "num_attention_heads"),
        (dict(image_size=30, patch_size=4), "patch_size"),
        (dict(drop_path_rate=-0.1), "drop_path_rate"),
        (dict(num_labels=3, class_counts=[5, 4]), "class_counts"),
        (dict(cls_loss_type="bal_bce", class_counts=[5, 0]), "Class 1"),
    ]:
        with pytest.raises(ValueError, match=match):
            ml.DeiTLTConfig(**kwargs)
    assert type(AutoConfig.for_model("deit_lt")) is ml.DeiTLTConfig
    assert type(AutoModelForImageClassification.from_config(tiny_config())) is ml.DeiTLTForImageClassification
    assert ml.DeiTLTForImageClassification.accepts_loss_kwargs is False


def test_config_saved_with_the_old_trainer_fields_still_loads(tmp_path):
    """`distillation_alpha` and `drw_beta` were model-config fields before they became DeiTLTTrainer arguments: a
    config.json (and a model folder) carrying them loads, and the values are not carried on."""
    model = ml.DeiTLTForImageClassification(tiny_config())
    model.save_pretrained(tmp_path)
    config_path = tmp_path / "config.json"
    saved = json.loads(config_path.read_text())
    assert "distillation_alpha" not in saved and "drw_beta" not in saved
    config_path.write_text(json.dumps({**saved, "distillation_alpha": 0.7, "drw_beta": 0.99}))
    config = ml.DeiTLTConfig.from_pretrained(tmp_path)
    assert not hasattr(config, "distillation_alpha") and not hasattr(config, "drw_beta")
    reloaded = ml.DeiTLTForImageClassification.from_pretrained(tmp_path).eval()
    pixels = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(reloaded(pixels).logits, model.eval()(pixels).logits, rtol=0, atol=0)


def test_model_type_is_none_only_for_a_folder_without_config(tmp_path):
    """A folder without config.json is "not a model" (None); an unreadable config raises, never swallowed."""
    from modeling_livt.hub.convert import checkpoint_model_type

    assert checkpoint_model_type(tmp_path) is None
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(OSError):
        checkpoint_model_type(tmp_path)
