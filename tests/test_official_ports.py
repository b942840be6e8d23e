"""Official DeiT-LT checkpoints ported with the right label ids and the right parts.

* The CIFAR teachers: DDP(MoCo(resnet_cifar_paco.resnet32)) trained with `--paco --moco-dim 32 --moco-k 1024
  --feat_dim 64` (val-iisc/DeiT-LT sh/train_c*_if*.sh; `--mlp` True by default). The synthetic state dict below is
  built from the official key names of `moco/builder.py` and `teacher_models/resnet_cifar_paco.py`, not from our model.
* The ImageNet-LT / iNat18 students: the official code renumbers the classes by training count (`class_map`), and the
  port renumbers the heads back (`--class_map`, `--class_map_from_counts`, the checkpoint's `args.class_map`).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForImageClassification

import modeling_livt as ml
from modeling_livt.hub.class_map import (
    check_class_map,
    class_map_from_counts,
    permute_classifier_labels,
    read_class_counts,
    resolve_class_map,
)
from modeling_livt.models.resnet_cifar import resnet_cifar_config_from_state_dict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


# ---------------------------------------------------------------------------------------------------------------------
# PaCo / MoCo CIFAR teachers
# ---------------------------------------------------------------------------------------------------------------------
def _bn(prefix, channels, g):
    return {f"{prefix}.weight": torch.rand(channels, generator=g) + 0.5,
            f"{prefix}.bias": torch.randn(channels, generator=g),
            f"{prefix}.running_mean": torch.randn(channels, generator=g) * 0.1,
            f"{prefix}.running_var": torch.rand(channels, generator=g) + 0.5,
            f"{prefix}.num_batches_tracked": torch.tensor(100)}


def official_resnet32_keys(g, num_classes_of_fc=32, mlp=True):
    """`resnet_cifar_paco.ResNet_s(BasicBlock, [5, 5, 5], num_classes=moco_dim)`'s state dict, by the official names:
    conv1, bn1, layer1..3 of 5 BasicBlocks (option A shortcuts: no parameters), and `fc` (with MoCo's `mlp`:
    Sequential(Linear(64, 64), BatchNorm1d(64), ReLU, Linear(64, dim)))."""
    sd = {"conv1.weight": torch.randn(16, 3, 3, 3, generator=g) * 0.3, **_bn("bn1", 16, g)}
    in_planes = 16
    for stage, planes in enumerate((16, 32, 64), start=1):
        for block in range(5):
            prefix = f"layer{stage}.{block}"
            sd[f"{prefix}.conv1.weight"] = torch.randn(planes, in_planes, 3, 3, generator=g) * 0.1
            sd.update(_bn(f"{prefix}.bn1", planes, g))
            sd[f"{prefix}.conv2.weight"] = torch.randn(planes, planes, 3, 3, generator=g) * 0.1
            sd.update(_bn(f"{prefix}.bn2", planes, g))
            in_planes = planes
    if mlp:
        sd.update({"fc.0.weight": torch.randn(64, 64, generator=g), "fc.0.bias": torch.randn(64, generator=g),
                   **_bn("fc.1", 64, g), "fc.3.weight": torch.randn(num_classes_of_fc, 64, generator=g),
                   "fc.3.bias": torch.randn(num_classes_of_fc, generator=g)})
    else:
        sd.update({"fc.weight": torch.randn(num_classes_of_fc, 64, generator=g),
                   "fc.bias": torch.randn(num_classes_of_fc, generator=g)})
    return sd


def official_paco_checkpoint(num_classes=10, moco_dim=32, moco_k=1024, feat_dim=64, seed=0):
    """torch.save of DDP(MoCo(...)).state_dict() as the PaCo code saves it: {"state_dict": ..., "epoch", ...}."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for encoder in ("encoder_q", "encoder_k"):
        for key, value in official_resnet32_keys(g, moco_dim).items():
            sd[f"module.{encoder}.{key}"] = value
    sd["module.linear.weight"] = torch.randn(num_classes, feat_dim, generator=g)
    sd["module.linear.bias"] = torch.randn(num_classes, generator=g)
    sd["module.linear_k.weight"] = torch.randn(num_classes, feat_dim, generator=g)
    sd["module.linear_k.bias"] = torch.randn(num_classes, generator=g)
    sd["module.queue"] = F.normalize(torch.randn(moco_k, moco_dim, generator=g), dim=0)
    sd["module.queue_l"] = torch.randint(0, num_classes, (moco_k,), generator=g)
    sd["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    return {"epoch": 400, "arch": "resnet32", "state_dict": sd, "best_acc1": 81.2}


def test_paco_port_keeps_the_query_backbone_and_moco_linear_head():
    checkpoint = official_paco_checkpoint()
    source = checkpoint["state_dict"]
    converted, dropped = ml.convert_paco_resnet32_state_dict(checkpoint, return_dropped=True)
    config = resnet_cifar_config_from_state_dict(converted)
    assert (config.depth, config.num_labels, config.base_width, config.shortcut_type) == (32, 10, 16, "A")
    teacher = ml.ResNetCifarForImageClassification(config).eval()
    teacher.load_state_dict(converted, strict=True)  # every tensor of our model, none other
    for key, value in converted.items():
        official = f"module.linear.{key[len('linear.'):]}" if key.startswith("linear.") else f"module.encoder_q.{key}"
        assert torch.equal(value, source[official]), key
    # dropped: exactly MoCo's training-only parts, named as the checkpoint spells them
    expected_dropped = {k for k in source if k.startswith(("module.encoder_q.fc.", "module.encoder_k.",
                                                            "module.linear_k.", "module.queue"))}
    assert set(dropped) == expected_dropped and len(dropped) == len(expected_dropped)
    assert {"module.queue", "module.queue_l", "module.queue_ptr", "module.encoder_q.fc.3.weight"} <= set(dropped)
    assert set(dropped) | {f"module.encoder_q.{k}" for k in converted if not k.startswith("linear.")} | {
        "module.linear.weight", "module.linear.bias"} == set(source)
    # MoCo._inference: linear(flatten(avgpool(encoder_q backbone))): the head sees the pooled 64-d feature
    captured = []
    teacher.linear.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        logits = teacher(x).logits
    assert captured[0].shape == (2, 64)
    torch.testing.assert_close(logits, F.linear(captured[0], source["module.linear.weight"],
                                                source["module.linear.bias"]))
    # the returned dict alone, as before
    assert set(ml.convert_paco_resnet32_state_dict(checkpoint)) == set(converted)


def test_paco_port_refuses_keys_outside_moco(caplog):
    checkpoint = official_paco_checkpoint()
    checkpoint["state_dict"]["module.extra_head.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match="module.extra_head.weight"):
        ml.convert_paco_resnet32_state_dict(checkpoint)


def test_paco_port_logs_what_it_drops(caplog):
    import logging

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_info()
    try:
        with caplog.at_level(logging.INFO):
            ml.convert_paco_resnet32_state_dict(official_paco_checkpoint())
    finally:
        hf_logging.set_verbosity_warning()
    assert "module.queue_ptr" in caplog.text or any("queue_ptr" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------------------------------------------------
# Class maps
# ---------------------------------------------------------------------------------------------------------------------
def official_class_map(counts):
    """val-iisc/DeiT-LT datasets.py KD_IMAGENETLT.__init__, verbatim but for the names."""
    cls_num_list_old = np.array(counts)
    sorted_classes = np.argsort(-np.array(cls_num_list_old))
    class_map = [0 for i in range(len(counts))]
    for i in range(len(counts)):
        class_map[sorted_classes[i]] = i
    return class_map


def test_class_map_from_counts_is_the_official_one():
    rng = np.random.default_rng(0)
    for counts in ([5, 50, 20, 1, 100], rng.integers(1, 30, size=200).tolist()):  # with many ties
        assert class_map_from_counts(counts) == official_class_map(counts)
    assert class_map_from_counts([5, 50, 20, 1, 100]) == [3, 1, 2, 4, 0]
    with pytest.raises(ValueError, match="permutation"):
        check_class_map([0, 0, 1])


def _tiny_deit_lt(num_labels=5, counts=None):
    torch.manual_seed(0)
    config = ml.DeiTLTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=64, num_labels=num_labels, class_counts=counts)
    model = ml.DeiTLTForImageClassification(config).eval()
    with torch.no_grad():
        for head in (model.classifier, model.distillation_classifier):
            head.weight.normal_()
            head.bias.normal_()
    return model


def test_permuted_heads_give_the_unported_logits_permuted():
    dataset_counts = [5, 50, 20, 1, 100]  # label order
    class_map = class_map_from_counts(dataset_counts)
    official_counts = [dataset_counts[c] for c in np.argsort(class_map)]  # cls_num_list: counted after renumbering
    assert official_counts == sorted(dataset_counts, reverse=True)
    official = _tiny_deit_lt(counts=official_counts)
    ported = permute_classifier_labels(_tiny_deit_lt(counts=official_counts), class_map)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before, after = official(x), ported(x)
    index = torch.tensor(class_map)
    for name in ("logits", "cls_logits", "distillation_logits"):
        torch.testing.assert_close(getattr(after, name), getattr(before, name)[:, index], rtol=0, atol=1e-6)
    # dataset label c is output c; the prior is back in label order
    assert ported.config.class_counts == dataset_counts
    assert torch.equal(after.logits.argmax(1), torch.tensor([class_map.index(int(p)) for p in before.logits.argmax(1)]))


def test_read_counts_from_class_counts_json_and_the_official_split_file(tmp_path):
    (tmp_path / "counts.json").write_text(json.dumps([3, 1, 2]))
    (tmp_path / "train.txt").write_text("a/0.jpg 0\na/1.jpg 0\nb/0.jpg 2\na/2.jpg 0\nc/0.jpg 1\nb/1.jpg 2\n")
    assert read_class_counts(tmp_path / "counts.json") == [3, 1, 2]
    assert read_class_counts(tmp_path / "train.txt") == [3, 1, 2]


def _official_deit_lt_checkpoint(path, num_classes=5, **args):
    pytest.importorskip("timm")
    from timm.models.deit import VisionTransformerDistilled

    torch.manual_seed(0)
    reference = VisionTransformerDistilled(img_size=32, patch_size=4, embed_dim=32, depth=1, num_heads=2,
                                           mlp_ratio=2.0, num_classes=num_classes).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_(0, 0.2)
    torch.save({"model": reference.state_dict(), "args": argparse.Namespace(**args), "epoch": 3}, path)
    return reference


def _convert(argv):
    import convert_checkpoint

    return convert_checkpoint.main(argv)


def test_convert_script_renumbers_an_imagenet_lt_student(tmp_path):
    dataset_counts = [5, 50, 20, 1, 100]
    class_map = official_class_map(dataset_counts)
    official_counts = sorted(dataset_counts, reverse=True)
    reference = _official_deit_lt_checkpoint(tmp_path / "student.pth", data_set="IMAGENETLT", class_map=class_map,
                                             cls_num_list=official_counts, map_targets=True)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = reference(x)[:, torch.tensor(class_map)]  # timm: the heads' mean in eval, in the official order
    base = ["--source", "deit_lt", "--checkpoint", str(tmp_path / "student.pth"), "--config_overrides",
            "num_attention_heads=2", "--model_card", "false"]
    # default: the checkpoint's args.class_map
    _convert(base + ["--output_dir", str(tmp_path / "auto")])
    # the counts file (class_counts.json, label order), and a class-map file
    (tmp_path / "counts.json").write_text(json.dumps(dataset_counts))
    _convert(base + ["--output_dir", str(tmp_path / "counts"), "--class_map_from_counts",
                     str(tmp_path / "counts.json")])
    (tmp_path / "map.json").write_text(json.dumps(class_map))
    _convert(base + ["--output_dir", str(tmp_path / "file"), "--class_map", str(tmp_path / "map.json")])
    for folder in ("auto", "counts", "file"):
        model = AutoModelForImageClassification.from_pretrained(tmp_path / folder, trust_remote_code=True).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(x).logits, expected, atol=1e-4, rtol=0)
        assert model.config.class_counts == dataset_counts
        assert json.loads((tmp_path / folder / "ported_class_map.json").read_text())["class_map"] == class_map
    # --class_map none keeps the official order
    _convert(base + ["--output_dir", str(tmp_path / "none"), "--class_map", "none"])
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "none", trust_remote_code=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, reference(x), atol=1e-4, rtol=0)
    assert not (tmp_path / "none" / "ported_class_map.json").exists()


def test_convert_script_refuses_an_imagenet_lt_student_without_a_class_map(tmp_path):
    _official_deit_lt_checkpoint(tmp_path / "student.pth", data_set="INAT18")
    argv = ["--source", "deit_lt", "--checkpoint", str(tmp_path / "student.pth"), "--output_dir", str(tmp_path / "o"),
            "--config_overrides", "num_attention_heads=2"]
    with pytest.raises(ValueError, match="renumbers the classes by training frequency"):
        _convert(argv)
    assert not (tmp_path / "o").exists()  # refused before anything is written
    with pytest.raises(ValueError, match="pickles no args.class_map"):
        _convert(argv + ["--class_map", "checkpoint"])
    # a CIFAR student (no renumbering in the official code): ported as is
    _official_deit_lt_checkpoint(tmp_path / "cifar.pth", data_set="CIFAR10LT")
    assert resolve_class_map(tmp_path / "cifar.pth") == (None, "none")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--class_map", "a.json", "--class_map_from_counts", "b.json"], "both give the class map"),
        (["--source", "mae", "--class_map", "a.json"], "ports no classifier"),
    ],
)
def test_convert_script_class_map_refusals(argv, message, tmp_path):
    base = ["--source", "livt", "--checkpoint", str(tmp_path / "no.pth"), "--output_dir", str(tmp_path / "o")]
    with pytest.raises(ValueError, match=message):
        _convert(base + argv)
