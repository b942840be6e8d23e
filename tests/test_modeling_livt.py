"""LiVT models: shapes, masking, losses, init, save/reload, remote code, interpolation, checkpointing, attention."""

import json
import os
import textwrap

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForImageClassification, AutoModelForPreTraining

import modeling_livt as ml
from modeling_livt.models.modeling_vit import get_2d_sincos_pos_embed
from tests.helpers import run_without_our_package, tiny_livt_config

COUNTS = [60, 30, 12, 5]


def _pixels(batch=3, size=32, seed=0):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _mae_numpy_sincos(embed_dim, grid_size):
    """facebookresearch/mae util/pos_embed.py, transcribed (numpy float64, cls row of zeros)."""

    def one_d(dim, pos):
        omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
        omega = 1.0 / 10000**omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape([2, 1, grid_size, grid_size])
    emb = np.concatenate([one_d(embed_dim // 2, grid[0]), one_d(embed_dim // 2, grid[1])], axis=1)
    return np.concatenate([np.zeros([1, embed_dim]), emb], axis=0)


def test_sincos_matches_official_mae():
    ours = get_2d_sincos_pos_embed(32, 8).numpy()
    np.testing.assert_allclose(ours, _mae_numpy_sincos(32, 8), atol=1e-6)


def test_classifier_shapes_loss_and_unadjusted_logits():
    config = tiny_livt_config(class_counts=COUNTS)
    assert config.num_labels == 4  # the prior defines the label space
    model = ml.LiVTForImageClassification(config).eval()
    x = _pixels()
    out = model(x, labels=torch.tensor([0, 1, 3]))
    assert out.logits.shape == (3, 4) and out.loss.ndim == 0
    # the prior is in the loss only: other counts change the loss, never the logits
    expected = ml.BalancedBCELoss(COUNTS)(out.logits, torch.tensor([0, 1, 3]))
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    model.config.class_counts = [5, 12, 30, 60]
    out2 = model(x, labels=torch.tensor([0, 1, 3]))
    assert torch.equal(out2.logits, out.logits) and out2.loss.item() != pytest.approx(out.loss.item())
    soft = torch.full((3, 4), 0.25)
    assert model(x, labels=soft).loss.item() == pytest.approx(
        ml.BalancedBCELoss([5, 12, 30, 60])(out.logits, soft).item(), rel=1e-6
    )


@pytest.mark.parametrize(
    "loss_type, cls", [("bal_ce", ml.BalancedCELoss), ("bce", ml.BCELoss), ("ce", ml.SoftTargetCrossEntropy)]
)
def test_loss_type_selects_loss(loss_type, cls):
    model = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS, loss_type=loss_type))
    assert isinstance(model.labels_loss, cls)


def test_mean_pooling_head_structure_and_init():
    model = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS, hidden_size=64))
    assert model.livt.layernorm is None and isinstance(model.fc_norm, torch.nn.LayerNorm)
    assert model.fc_norm.eps == 1e-6
    assert model.classifier.weight.std().item() < 1e-4  # head std 2e-5
    assert torch.count_nonzero(model.classifier.bias) == 0
    emb = model.livt.embeddings
    torch.testing.assert_close(emb.position_embeddings[0], get_2d_sincos_pos_embed(64, 8))
    assert 0.01 < emb.cls_token.std().item() < 0.03
    # xavier uniform: bound sqrt(6 / (fan_in + fan_out))
    qkv = model.livt.layers[0].attn.qkv.weight
    bound = (6 / (64 + 192)) ** 0.5
    assert qkv.abs().max().item() <= bound and qkv.abs().max().item() > 0.9 * bound
    cls_model = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS, pooling="cls"))
    assert cls_model.livt.layernorm is not None and isinstance(cls_model.fc_norm, torch.nn.Identity)


def test_drop_path_linear_over_depth():
    model = ml.LiVTModel(tiny_livt_config(num_hidden_layers=4, drop_path_rate=0.3))
    rates = [layer.drop_path.drop_prob for layer in model.layers]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_save_reload_identical_logits_and_loss(tmp_path):
    model = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS, loss_type="bal_bce")).eval()
    x, y = _pixels(), torch.tensor([0, 2, 3])
    ref = model(x, labels=y)
    model.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pth")) for f in files)
    assert {"modeling_livt.py", "configuration_livt.py", "losses.py"} <= files
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["class_counts"] == COUNTS and saved["model_type"] == "livt"
    assert saved["auto_map"]["AutoModelForImageClassification"].endswith("LiVTForImageClassification")
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    out = loaded(x, labels=y)
    torch.testing.assert_close(out.logits, ref.logits, rtol=0, atol=0)
    assert out.loss.item() == ref.loss.item()


def test_remote_code_load_without_our_package(tmp_path):
    """A user with only transformers installed loads the folder with trust_remote_code and gets identical logits."""
    model = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS)).eval()
    x = _pixels(2)
    model.save_pretrained(tmp_path / "model")
    torch.save({"x": x, "logits": model(x).logits.detach()}, tmp_path / "ref.pt")
    script = textwrap.dedent(f"""
        import torch
        from transformers import AutoModelForImageClassification
        m = AutoModelForImageClassification.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True).eval()
        assert type(m).__module__.startswith('transformers_modules'), type(m).__module__
        ref = torch.load({str(tmp_path / "ref.pt")!r})
        out = m(ref['x'])
        assert torch.equal(out.logits, ref['logits']), (out.logits - ref['logits']).abs().max()
        print('REMOTE_OK')
    """)
    result = run_without_our_package(script, tmp_path)
    assert "REMOTE_OK" in result.stdout, result.stderr[-3000:]


def test_mgp_model_remote_code_load_without_our_package(tmp_path):
    """The MGP stage's folder (AutoModelForPreTraining) loads by remote code alone: same loss and reconstruction under
    the same masking noise."""
    model = ml.LiVTForMaskedImageModeling(tiny_livt_config()).eval()
    x, noise = _pixels(2), torch.rand(2, 64, generator=torch.Generator().manual_seed(5))
    model.save_pretrained(tmp_path / "mgp")
    out = model(x, noise=noise)
    torch.save({"x": x, "noise": noise, "loss": out.loss.detach(), "logits": out.logits.detach()}, tmp_path / "ref.pt")
    script = textwrap.dedent(f"""
        import torch
        from transformers import AutoModelForPreTraining
        m = AutoModelForPreTraining.from_pretrained({str(tmp_path / "mgp")!r}, trust_remote_code=True).eval()
        assert type(m).__module__.startswith('transformers_modules'), type(m).__module__
        assert type(m).__name__ == 'LiVTForMaskedImageModeling', type(m).__name__
        ref = torch.load({str(tmp_path / "ref.pt")!r})
        out = m(ref['x'], noise=ref['noise'])
        assert torch.equal(out.logits, ref['logits']), (out.logits - ref['logits']).abs().max()
        assert torch.equal(out.loss, ref['loss']), (out.loss, ref['loss'])
        print('REMOTE_OK')
    """)
    result = run_without_our_package(script, tmp_path)
    assert "REMOTE_OK" in result.stdout, result.stderr[-3000:]


def test_mgp_masking_is_deterministic_with_noise_and_keeps_25_percent():
    config = tiny_livt_config()
    model = ml.LiVTForMaskedImageModeling(config).eval()
    x = _pixels(2)
    noise = torch.rand(2, 64, generator=torch.Generator().manual_seed(3))
    a, b = model(x, noise=noise), model(x, noise=noise)
    assert torch.equal(a.loss, b.loss) and torch.equal(a.mask, b.mask)
    assert a.mask.sum(1).tolist() == [48.0, 48.0] and a.logits.shape == (2, 64, 48)
    # the kept patches are the 16 with the smallest noise
    kept = (a.mask == 0).nonzero()[:, 1].reshape(2, 16)
    assert torch.equal(kept.sort(1).values, noise.argsort(1)[:, :16].sort(1).values)
    # the encoder really only sees the kept tokens
    enc = model.livt(x, noise=noise, mask_ratio=0.75)
    assert enc.last_hidden_state.shape == (2, 1 + 16, 32)


def test_mgp_loss_reference_norm_pix_masked_only():
    model = ml.LiVTForMaskedImageModeling(tiny_livt_config()).eval()
    x = _pixels(2)
    noise = torch.rand(2, 64, generator=torch.Generator().manual_seed(4))
    out = model(x, noise=noise)
    # independent reference: loop over patches
    p = 4
    pred, mask = out.logits.double(), out.mask.double()
    total, count = 0.0, 0.0
    for n in range(2):
        for idx in range(64):
            row, col = divmod(idx, 8)
            patch = x[n, :, row * p : (row + 1) * p, col * p : (col + 1) * p].permute(1, 2, 0).reshape(-1).double()
            target = (patch - patch.mean()) / torch.sqrt(patch.var(unbiased=True) + 1e-6)
            if mask[n, idx] == 1:
                total += ((pred[n, idx] - target) ** 2).mean().item()
                count += 1
    assert out.loss.item() == pytest.approx(total / count, rel=1e-5)
    model.config.norm_pix_loss = False
    plain = model(x, noise=noise)
    assert plain.loss.item() != pytest.approx(out.loss.item(), rel=1e-3)


def test_patchify_unpatchify_roundtrip():
    model = ml.LiVTForMaskedImageModeling(tiny_livt_config())
    x = _pixels(2)
    assert torch.equal(model.unpatchify(model.patchify(x)), x)
    assert torch.equal(model.patchify(x)[0, 9].reshape(4, 4, 3).permute(2, 0, 1), x[0, :, 4:8, 4:8])


def test_position_embeddings_frozen_in_mgp_trainable_in_finetune_and_survive_reload(tmp_path):
    mgp = ml.LiVTForMaskedImageModeling(tiny_livt_config())
    assert not mgp.livt.embeddings.position_embeddings.requires_grad
    assert not mgp.decoder.decoder_pos_embed.requires_grad
    with torch.no_grad():
        mgp.livt.embeddings.position_embeddings.add_(0.5)  # learned-looking values must be kept, not recomputed
    mgp.save_pretrained(tmp_path)
    reloaded = AutoModelForPreTraining.from_pretrained(tmp_path)
    assert not reloaded.livt.embeddings.position_embeddings.requires_grad
    torch.testing.assert_close(reloaded.livt.embeddings.position_embeddings, mgp.livt.embeddings.position_embeddings)
    torch.testing.assert_close(reloaded.decoder.decoder_pos_embed, mgp.decoder.decoder_pos_embed)
    clf = ml.LiVTForImageClassification.from_pretrained(tmp_path, num_labels=4, class_counts=COUNTS)
    assert clf.livt.embeddings.position_embeddings.requires_grad
    torch.testing.assert_close(clf.livt.embeddings.position_embeddings, mgp.livt.embeddings.position_embeddings)


def test_mgp_checkpoint_to_classifier_keeps_encoder_drops_decoder(tmp_path):
    mgp = ml.LiVTForMaskedImageModeling(tiny_livt_config())
    mgp.save_pretrained(tmp_path)
    clf = ml.LiVTForImageClassification.from_pretrained(tmp_path, num_labels=4, class_counts=COUNTS)
    assert clf.config.num_labels == 4 and clf.config.class_counts == COUNTS
    src = mgp.state_dict()
    for key, value in clf.state_dict().items():
        if key.startswith("livt."):
            assert torch.equal(value, src[key]), key
    assert "livt.layernorm.weight" not in clf.state_dict() and not hasattr(clf, "decoder")
    assert clf.classifier.weight.std().item() < 1e-4 and torch.equal(clf.fc_norm.weight, torch.ones(32))


def test_pos_embed_interpolation_to_new_resolution(tmp_path):
    mgp = ml.LiVTForMaskedImageModeling(tiny_livt_config())
    mgp.save_pretrained(tmp_path)
    clf = ml.LiVTForImageClassification.from_pretrained(tmp_path, num_labels=4, class_counts=COUNTS, image_size=64)
    pos = clf.livt.embeddings.position_embeddings
    assert pos.shape == (1, 1 + 16 * 16, 32) and clf.config.image_size == 64
    src = mgp.livt.embeddings.position_embeddings.detach()
    grid = src[:, 1:].reshape(1, 8, 8, 32).permute(0, 3, 1, 2)
    ref = torch.nn.functional.interpolate(grid, size=(16, 16), mode="bicubic", align_corners=False)
    torch.testing.assert_close(pos[:, 1:].detach(), ref.permute(0, 2, 3, 1).reshape(1, 256, 32))
    torch.testing.assert_close(pos[:, :1].detach(), src[:, :1])
    assert clf(_pixels(1, 64)).logits.shape == (1, 4)
    with pytest.raises(ValueError, match="interpolate_pos_encoding"):
        clf(_pixels(1, 32))
    assert clf(_pixels(1, 32), interpolate_pos_encoding=True).logits.shape == (1, 4)


def test_mgp_interpolate_pos_encoding_runs_at_another_size():
    torch.manual_seed(0)
    model = ml.LiVTForMaskedImageModeling(tiny_livt_config()).eval()  # configured for 32 px: an 8x8 grid
    x = _pixels(2, size=48)  # a 12x12 grid
    with pytest.raises(ValueError, match="interpolate_pos_encoding"):
        model(x)
    noise = torch.rand(2, 144, generator=torch.Generator().manual_seed(5))
    out = model(x, noise=noise, interpolate_pos_encoding=True)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.logits.shape == (2, 144, 48) and out.mask.shape == (2, 144) and out.mask.sum(1).tolist() == [108, 108]
    torch.testing.assert_close(out.loss, model.forward_loss(x, out.logits, out.mask))
    assert torch.equal(model(x, noise=noise, interpolate_pos_encoding=True).loss, out.loss)
    # the stored (configured-size) position embeddings are left as they are
    assert model.livt.embeddings.position_embeddings.shape == (1, 1 + 64, 32)
    assert model.decoder.decoder_pos_embed.shape == (1, 1 + 64, 32)

    # encoder and decoder interpolate their 2-D sin-cos tables bicubically (MAE's interpolate_pos_embed)
    def bicubic(pos, grid):
        patches = pos[:, 1:].reshape(1, 8, 8, -1).permute(0, 3, 1, 2)
        patches = torch.nn.functional.interpolate(patches, size=grid, mode="bicubic", align_corners=False)
        return torch.cat([pos[:, :1], patches.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1)], dim=1)

    decoder_pos = model.decoder.decoder_pos_embed.detach()
    torch.testing.assert_close(model.decoder.position_embeddings_for((12, 12)), bicubic(decoder_pos, (12, 12)))
    assert model.decoder.position_embeddings_for((8, 8)) is model.decoder.decoder_pos_embed
    encoder_pos = model.livt.embeddings.position_embeddings_for(48, 48, interpolate=True)
    torch.testing.assert_close(encoder_pos, bicubic(model.livt.embeddings.position_embeddings.detach(), (12, 12)))
    # non-square inputs too (patch grid 8 x 12)
    wide = torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(6))
    out = model(wide, interpolate_pos_encoding=True)
    assert out.logits.shape == (2, 96, 48) and torch.isfinite(out.loss)
    # and the configured size is unchanged by the flag
    x32 = _pixels(2)
    noise32 = torch.rand(2, 64, generator=torch.Generator().manual_seed(7))
    assert torch.equal(model(x32, noise=noise32, interpolate_pos_encoding=True).loss, model(x32, noise=noise32).loss)


def test_mgp_interpolate_pos_encoding_trains():
    torch.manual_seed(0)
    model = ml.LiVTForMaskedImageModeling(tiny_livt_config()).train()
    model(_pixels(2, size=48), interpolate_pos_encoding=True).loss.backward()
    assert model.decoder.decoder_pred.weight.grad is not None
    assert model.livt.embeddings.position_embeddings.grad is None  # frozen in MGP


def test_forward_is_forward_features_then_forward_head():
    torch.manual_seed(0)
    for pooling in ("mean", "cls"):
        model = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS, pooling=pooling)).eval()
        x = _pixels(2)
        tokens = model.forward_features(x).last_hidden_state  # [N, 1 + L, D]
        features = model.forward_head(tokens, pre_logits=True)
        assert tokens.shape == (2, 1 + 64, 32) and features.shape == (2, 32)
        torch.testing.assert_close(model.forward_head(tokens), model.classifier(features))
        torch.testing.assert_close(model(x).logits, model.forward_head(tokens))
    # post-hoc tau-normalisation reads the head's pre-logits (eval only)
    model.config.posthoc_tau_norm = 1.0
    weight = model.classifier.weight
    expected = torch.nn.functional.linear(features, weight / weight.norm(dim=1, keepdim=True), model.classifier.bias)
    torch.testing.assert_close(model(x).logits, expected)


def test_class_names_are_our_own():
    """No class of the shared encoder reuses one of transformers' ViT class names: all are `LongTailViT*`, and
    `_no_split_modules` names classes the models really contain."""
    import transformers
    from transformers.models.vit import modeling_vit as hf_vit

    from modeling_livt.models import configuration_vit, modeling_vit

    for module in (modeling_vit, configuration_vit):
        classes = [v for v in vars(module).values() if isinstance(v, type) and v.__module__ == module.__name__]
        assert classes
        for cls in classes:
            assert cls.__name__.startswith("LongTailViT"), cls.__name__
            assert not hasattr(hf_vit, cls.__name__) and not hasattr(transformers, cls.__name__), cls.__name__
    assert ml.LiVTPreTrainedModel._no_split_modules == ["LongTailViTEmbeddings", "LongTailViTLayer"]
    model = ml.LiVTForMaskedImageModeling(tiny_livt_config())
    names = {type(m).__name__ for m in model.modules()}
    assert set(model._no_split_modules) <= names


def test_gradient_checkpointing_matches():
    torch.manual_seed(0)
    model = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS))
    model.train()
    x, y = _pixels(), torch.tensor([0, 1, 2])
    loss = model(x, labels=y).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.gradient_checkpointing_enable()
    assert model.livt.layers[0].gradient_checkpointing
    loss_ckpt = model(x, labels=y).loss
    loss_ckpt.backward()
    assert loss_ckpt.item() == pytest.approx(loss.item(), rel=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, rtol=1e-5, atol=1e-6)


def test_sdpa_and_eager_agree(tmp_path):
    model = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS)).eval()
    assert model.config._attn_implementation == "sdpa"
    model.save_pretrained(tmp_path)
    eager = ml.LiVTForImageClassification.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert eager.config._attn_implementation == "eager"
    x = _pixels()
    torch.testing.assert_close(eager(x).logits, model(x).logits, rtol=1e-5, atol=1e-5)
    out = eager(x, output_attentions=True, output_hidden_states=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (3, 2, 65, 65)
    assert len(out.hidden_states) == 3  # embeddings + one per layer


def test_presets():
    for name, dims in {
        "tiny": (192, 12, 3),
        "small": (384, 12, 6),
        "base": (768, 12, 12),
        "large": (1024, 24, 16),
    }.items():
        cfg = ml.LiVTConfig.from_preset(name)
        assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == dims
    assert ml.LiVTConfig.from_preset("base").decoder_hidden_size == 512
    assert ml.LiVTConfig.from_preset("large").decoder_num_hidden_layers == 8
    assert ml.LiVTConfig.from_preset("tiny").decoder_hidden_size < 512
    with pytest.raises(ValueError, match="Unknown LiVTConfig preset 'huge'"):
        ml.LiVTConfig.from_preset("huge")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(class_counts=[5, 3], num_labels=3), "class_counts` has 2 entries but the model has num_labels=3"),
        (dict(class_counts=[5, 0, 3]), "Class 1 has 0 training images"),
        (dict(hidden_size=33), "hidden_size=33 is not divisible by num_attention_heads=2"),
        (dict(image_size=30), "image_size=30 is not divisible by patch_size=4"),
        (dict(loss_type="focal"), "Unknown loss_type='focal'"),
        (dict(pooling="max"), "Unknown pooling='max'"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_livt_config(**kwargs)


def test_zero_count_allowed_with_unbalanced_loss():
    cfg = tiny_livt_config(class_counts=[5, 0, 3], loss_type="ce")
    out = ml.LiVTForImageClassification(cfg)(_pixels(1), labels=torch.tensor([1]))
    # plain CE ignores the prior: the zero count changes nothing
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, torch.tensor([1])))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(class_counts=[1, 2]), "class_counts` has 2 entries but the model has num_labels=4"),
        (dict(class_counts=[1, 0, 2, 3]), "Class 1 has 0"),
        (dict(loss_type="focal"), "Unknown loss_type"),
        (dict(hidden_size=33), "not divisible"),
    ],
)
def test_from_pretrained_kwargs_are_validated(tmp_path, kwargs, match):
    ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=match):
        ml.LiVTForImageClassification.from_pretrained(tmp_path, **kwargs)


def test_auto_classes_and_trainer_flags():
    assert AutoConfig.for_model("livt").__class__ is ml.LiVTConfig
    model = AutoModelForPreTraining.from_config(tiny_livt_config())
    assert isinstance(model, ml.LiVTForMaskedImageModeling)
    assert ml.LiVTForImageClassification.accepts_loss_kwargs is False


def test_bad_pixel_values_raise():
    model = ml.LiVTModel(tiny_livt_config())
    with pytest.raises(ValueError, match="pixel_values must be"):
        model(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        model(torch.zeros(1, 3, 30, 30))


def test_reheading_a_saved_classifier_drops_the_stale_class_counts(tmp_path, caplog):
    """from_pretrained(dir, num_labels=K, ignore_mismatched_sizes=True) re-heads a 10-class classifier: the saved
    10-entry prior no longer fits, so it is dropped with a warning; a class_counts= of the new size wins."""
    ml.LiVTForImageClassification(tiny_livt_config(class_counts=list(range(10, 0, -1)))).save_pretrained(tmp_path)
    with caplog.at_level("WARNING", logger="modeling_livt.models.configuration_vit"):
        model = ml.LiVTForImageClassification.from_pretrained(tmp_path, num_labels=3, ignore_mismatched_sizes=True)
    assert model.classifier.weight.shape == (3, 32) and model.config.num_labels == 3
    assert model.config.class_counts is None
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "class_counts has 10 entries" in warning and "num_labels=3" in warning
    assert "config.class_counts" in warning and "class_counts=" in warning
    with pytest.raises(ValueError, match="class_counts"):  # a balanced loss needs a prior again
        model(_pixels(1), labels=torch.tensor([1]))

    caplog.clear()
    with caplog.at_level("WARNING", logger="modeling_livt.models.configuration_vit"):
        kept = ml.LiVTForImageClassification.from_pretrained(
            tmp_path, num_labels=3, class_counts=[5, 3, 1], ignore_mismatched_sizes=True
        )
    assert kept.config.class_counts == [5, 3, 1] and kept.classifier.weight.shape == (3, 32)
    assert not any("class_counts has 10 entries" in r.getMessage() for r in caplog.records)
    out = kept(_pixels(2), labels=torch.tensor([0, 2]))
    torch.testing.assert_close(out.loss, ml.BalancedBCELoss([5, 3, 1])(out.logits, torch.tensor([0, 2])))
    # the same label count keeps the saved prior
    same = ml.LiVTForImageClassification.from_pretrained(tmp_path, num_labels=10)
    assert same.config.class_counts == list(range(10, 0, -1))
