"""CIFAR ResNet-32 teacher: architecture (checked against a transcription of LDAM-DRW's ResNet_s), parameter count,
resolution, loss, save/reload, remote code, and the PaCo (DeiT-LT teacher) weight port."""

import json
import textwrap

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForImageClassification

import modeling_livt as ml
from modeling_livt.models.resnet_cifar import resnet_cifar_config_from_state_dict
from tests.helpers import run_without_our_package


def _pixels(batch=2, size=32, seed=0):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _expected_param_count(blocks_per_stage: int, num_classes: int, width: int = 16) -> int:
    """He et al.'s CIFAR ResNet from its definition: 3x3 stem, 3 stages of BasicBlocks (two 3x3 convs without bias,
    two BatchNorms with weight and bias), option-A shortcuts (no parameters), linear head."""
    total = 3 * width * 3 * 3 + 2 * width  # stem conv + bn
    in_planes = width
    for planes in (width, 2 * width, 4 * width):
        for _ in range(blocks_per_stage):
            total += in_planes * planes * 9 + planes * planes * 9 + 2 * 2 * planes
            in_planes = planes
    return total + in_planes * num_classes + num_classes


def _ldam_reference_forward(sd, x, blocks_per_stage=5):
    """kaidic/LDAM-DRW models/resnet_cifar.py ResNet_s.forward in eval mode, transcribed with functional ops."""

    def bn(t, prefix):
        return F.batch_norm(t, sd[prefix + ".running_mean"], sd[prefix + ".running_var"], sd[prefix + ".weight"],
                            sd[prefix + ".bias"], training=False, eps=1e-5)

    out = F.relu(bn(F.conv2d(x, sd["conv1.weight"], padding=1), "bn1"))
    in_planes = 16
    for layer, (planes, stride) in enumerate([(16, 1), (32, 2), (64, 2)], start=1):
        for block in range(blocks_per_stage):
            s = stride if block == 0 else 1
            p = f"layer{layer}.{block}"
            y = F.relu(bn(F.conv2d(out, sd[p + ".conv1.weight"], stride=s, padding=1), p + ".bn1"))
            y = bn(F.conv2d(y, sd[p + ".conv2.weight"], padding=1), p + ".bn2")
            if s != 1 or in_planes != planes:  # option A: LambdaLayer(F.pad(x[:, :, ::2, ::2], ..., planes // 4))
                shortcut = F.pad(out[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0)
            else:
                shortcut = out
            out = F.relu(y + shortcut)
            in_planes = planes
    out = F.avg_pool2d(out, out.size()[3]).view(out.size(0), -1)
    return F.linear(out, sd["linear.weight"], sd["linear.bias"])


def _randomise_batchnorm(model):
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)


def test_resnet32_shape_param_count_and_resolution():
    model = ml.ResNetCifarForImageClassification(ml.ResNetCifarConfig(num_labels=10)).eval()
    count = sum(p.numel() for p in model.parameters())
    assert count == _expected_param_count(5, 10) == 464_154
    assert round(count / 1e6, 2) == 0.46  # "ResNet32 | 32 | 0.46M" (LDAM-DRW's table)
    out = model(_pixels(), output_hidden_states=True)
    assert out.logits.shape == (2, 10)
    assert [tuple(h.shape[1:]) for h in out.hidden_states] == [(16, 32, 32), (16, 32, 32), (32, 16, 16), (64, 8, 8)]
    assert len(model.layer1) == len(model.layer2) == len(model.layer3) == 5
    assert not any(p for n, p in model.named_parameters() if "shortcut" in n)  # option A: parameter-free
    resnet20 = ml.ResNetCifarForImageClassification(ml.ResNetCifarConfig(depth=20, num_labels=100))
    assert sum(p.numel() for p in resnet20.parameters()) == _expected_param_count(3, 100)


def test_matches_ldam_drw_reference_forward():
    torch.manual_seed(0)
    model = ml.ResNetCifarForImageClassification(ml.ResNetCifarConfig(num_labels=10))
    _randomise_batchnorm(model)
    model.eval()
    x = _pixels(3)
    expected = _ldam_reference_forward(model.state_dict(), x)
    torch.testing.assert_close(model(x).logits, expected, rtol=1e-5, atol=1e-5)


def test_loss_init_and_validation():
    torch.manual_seed(0)
    model = ml.ResNetCifarForImageClassification(ml.ResNetCifarConfig(num_labels=10)).eval()
    x, y = _pixels(4), torch.tensor([0, 3, 9, 1])
    out = model(x, labels=y)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, y))
    soft = 0.7 * F.one_hot(y, 10) + 0.3 * F.one_hot(y.flip(0), 10)
    torch.testing.assert_close(model(x, labels=soft).loss, -(soft * out.logits.log_softmax(-1)).sum(-1).mean())
    conv = model.layer3[0].conv1.weight  # kaiming_normal (fan_in): std sqrt(2 / fan_in)
    assert conv.std().item() == pytest.approx((2 / (32 * 9)) ** 0.5, rel=0.05)
    assert torch.all(model.bn1.weight == 1) and torch.count_nonzero(model.bn1.bias) == 0
    assert ml.ResNetCifarForImageClassification.accepts_loss_kwargs is False
    for kwargs, match in [(dict(depth=33), "depth"), (dict(shortcut_type="C"), "shortcut_type"),
                          (dict(base_width=0), "base_width")]:
        with pytest.raises(ValueError, match=match):
            ml.ResNetCifarConfig(**kwargs)


def test_shortcut_b_and_cosine_head():
    model = ml.ResNetCifarForImageClassification(ml.ResNetCifarConfig(shortcut_type="B", use_norm=True, num_labels=5))
    names = set(model.state_dict())
    assert {"layer2.0.shortcut.0.weight", "layer2.0.shortcut.1.running_mean"} <= names
    assert model.linear.weight.shape == (64, 5) and "linear.bias" not in names
    torch.testing.assert_close(model.linear.weight.norm(dim=0), torch.full((5,), 1.0), rtol=1e-4, atol=1e-4)
    logits = model.eval()(_pixels()).logits
    assert logits.shape == (2, 5) and logits.abs().max() <= 1.0 + 1e-6  # cosines


def test_save_reload_and_auto_classes(tmp_path):
    torch.manual_seed(0)
    model = ml.ResNetCifarForImageClassification(ml.ResNetCifarConfig(num_labels=10))
    model.train()(_pixels(8))  # move the BatchNorm running statistics
    model.eval()
    x = _pixels(3, seed=1)
    ref = model(x).logits
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "resnet_cifar" and saved["depth"] == 32
    assert saved["auto_map"]["AutoModelForImageClassification"].endswith("ResNetCifarForImageClassification")
    assert (tmp_path / "resnet_cifar.py").exists() and (tmp_path / "losses.py").exists()
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is ml.ResNetCifarForImageClassification
    assert torch.equal(loaded(x).logits, ref)
    assert torch.equal(loaded.layer2[0].bn1.running_mean, model.layer2[0].bn1.running_mean)
    assert type(AutoConfig.for_model("resnet_cifar")) is ml.ResNetCifarConfig


def test_remote_code_load_without_our_package(tmp_path):
    model = ml.ResNetCifarForImageClassification(ml.ResNetCifarConfig(num_labels=10)).eval()
    x = _pixels()
    model.save_pretrained(tmp_path / "model")
    torch.save({"x": x, "logits": model(x).logits.detach()}, tmp_path / "ref.pt")
    script = textwrap.dedent(f"""
        import torch
        from transformers import AutoModelForImageClassification
        m = AutoModelForImageClassification.from_pretrained({str(tmp_path / 'model')!r}, trust_remote_code=True).eval()
        assert type(m).__module__.startswith('transformers_modules'), type(m).__module__
        ref = torch.load({str(tmp_path / 'ref.pt')!r})
        assert torch.equal(m(ref['x']).logits, ref['logits'])
        print('REMOTE_OK')
    """)
    result = run_without_our_package(script, tmp_path)
    assert "REMOTE_OK" in result.stdout, result.stderr[-3000:]


def _paco_checkpoint(model, num_classes, moco_dim=32, queue=1024):
    """A synthetic checkpoint in the layout of the DeiT-LT PaCo teachers: DDP(MoCo(resnet_cifar_paco.resnet32,
    mlp=True, feat_dim=64)) saved as {"state_dict": ...} (val-iisc/DeiT-LT main.py strips `module.`, loads strict)."""
    g = torch.Generator().manual_seed(3)
    backbone = {k: v for k, v in model.state_dict().items() if not k.startswith("linear.")}
    sd = {}
    for encoder in ("encoder_q", "encoder_k"):
        for key, value in backbone.items():
            noise = torch.randn(value.shape, generator=g) if value.is_floating_point() else 0
            sd[f"module.{encoder}.{key}"] = value.clone() if encoder == "encoder_q" else value + noise
        sd[f"module.{encoder}.fc.0.weight"] = torch.randn(64, 64, generator=g)  # mlp head: Linear, BN1d, ReLU, Linear
        sd[f"module.{encoder}.fc.0.bias"] = torch.randn(64, generator=g)
        for name, shape in (("weight", 64), ("bias", 64), ("running_mean", 64), ("running_var", 64)):
            sd[f"module.{encoder}.fc.1.{name}"] = torch.rand(shape, generator=g)
        sd[f"module.{encoder}.fc.1.num_batches_tracked"] = torch.tensor(7)
        sd[f"module.{encoder}.fc.3.weight"] = torch.randn(moco_dim, 64, generator=g)
        sd[f"module.{encoder}.fc.3.bias"] = torch.randn(moco_dim, generator=g)
    sd["module.linear.weight"] = model.linear.weight.detach().clone()
    sd["module.linear.bias"] = model.linear.bias.detach().clone()
    sd["module.linear_k.weight"] = torch.randn(num_classes, 64, generator=g)
    sd["module.linear_k.bias"] = torch.randn(num_classes, generator=g)
    sd["module.queue"] = torch.randn(queue, moco_dim, generator=g)
    sd["module.queue_l"] = torch.randint(0, num_classes, (queue,), generator=g)
    sd["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    return {"epoch": 400, "arch": "resnet32", "state_dict": sd, "best_acc1": 80.0}


def test_convert_paco_teacher_checkpoint():
    torch.manual_seed(0)
    source = ml.ResNetCifarForImageClassification(ml.ResNetCifarConfig(num_labels=10))
    _randomise_batchnorm(source)
    source.eval()
    converted = ml.convert_paco_resnet32_state_dict(_paco_checkpoint(source, 10))
    assert set(converted) == set(source.state_dict())
    for key, value in source.state_dict().items():
        assert torch.equal(converted[key], value), key
    config = resnet_cifar_config_from_state_dict(converted)
    assert (config.depth, config.num_labels, config.shortcut_type, config.use_norm) == (32, 10, "A", False)
    teacher = ml.ResNetCifarForImageClassification(config).eval()
    teacher.load_state_dict(converted, strict=True)
    x = _pixels(3)
    # MoCo._inference: logits = linear(flatten(avgpool(encoder_q backbone))) with normalize=False
    torch.testing.assert_close(teacher(x).logits, _ldam_reference_forward(converted, x), rtol=1e-5, atol=1e-5)


def test_convert_plain_cifar_resnet_checkpoints():
    model = ml.ResNetCifarForImageClassification(ml.ResNetCifarConfig(depth=20, num_labels=100))
    sd = model.state_dict()
    ldam = {"state_dict": {"module." + k: v for k, v in sd.items()}}  # LDAM-DRW: DDP, head `linear`
    converted = ml.convert_paco_resnet32_state_dict(ldam)
    assert set(converted) == set(sd) and resnet_cifar_config_from_state_dict(converted).depth == 20
    paco_plain = {k.replace("linear.", "fc."): v for k, v in sd.items()}  # resnet_cifar_paco.ResNet_s: head `fc`
    assert set(ml.convert_paco_resnet32_state_dict(paco_plain)) == set(sd)
    with pytest.raises(ValueError, match="conv1.weight"):
        ml.convert_paco_resnet32_state_dict({"blocks.0.weight": torch.zeros(1)})
