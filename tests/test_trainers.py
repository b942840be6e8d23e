"""Trainers: balanced loss for foreign models, gradient accumulation, optimizer groups, lr rules, NaN guard, Hub."""

import logging
import math

import pytest
import torch
from datasets import Dataset
from transformers import ViTConfig, ViTForImageClassification

import modeling_livt as ml
from tests.helpers import tiny_livt_config
from trainers import BalancedTrainer, LongTailTrainingArguments, MGPTrainer, MGPTrainingArguments, NonFiniteLossError
from trainers.optim import param_groups, scaled_learning_rate

COUNTS = [40, 20, 8, 2]


def _tensor_dataset(n=8, size=32, soft=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randn(n, 3, size, size, generator=gen)
    labels = torch.arange(n) % 4
    rows = {"pixel_values": pixels.numpy().tolist(), "labels": labels.tolist()}
    ds = Dataset.from_dict(rows).with_format("torch")
    return ds, pixels, labels


def _tiny_vit():
    torch.manual_seed(0)
    cfg = ViTConfig(
        image_size=32,
        patch_size=4,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=4,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return ViTForImageClassification(cfg)


def _args(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path),
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=0,
        use_cpu=True,
        disable_tqdm=True,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        warmup_steps=0,
        dataloader_drop_last=False,
        layer_decay=1.0,
    )
    base.update(kw)
    return LongTailTrainingArguments(**base)


def test_balanced_trainer_on_foreign_vit_uses_bal_bce_and_never_passes_labels(tmp_path):
    model = _tiny_vit()
    seen = []
    original_forward = model.forward

    def spy(*args, **kwargs):
        seen.append(set(kwargs))
        return original_forward(*args, **kwargs)

    model.forward = spy
    ds, pixels, labels = _tensor_dataset()
    trainer = BalancedTrainer(
        model=model,
        args=_args(tmp_path, max_steps=1, per_device_train_batch_size=8),
        train_dataset=ds,
        class_counts=COUNTS,
        loss_type="bal_bce",
    )
    model.eval()
    loss = trainer.compute_loss(model, {"pixel_values": pixels, "labels": labels})
    expected = ml.BalancedBCELoss(COUNTS)(original_forward(pixel_values=pixels).logits, labels)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    soft = torch.full((8, 4), 0.25)
    trainer.compute_loss(model, {"pixel_values": pixels, "labels": soft})
    assert all("labels" not in kwargs for kwargs in seen)
    assert model.config.problem_type is None  # soft labels never flipped it to multi-label
    assert trainer.model_accepts_loss_kwargs is False


def test_balanced_trainer_requires_counts_for_foreign_model(tmp_path):
    with pytest.raises(ValueError, match="pass class_counts"):
        BalancedTrainer(model=_tiny_vit(), args=_args(tmp_path, max_steps=1))
    with pytest.raises(ValueError, match="class_counts has 3 entries but the model has 4 labels"):
        BalancedTrainer(model=_tiny_vit(), args=_args(tmp_path, max_steps=1), class_counts=[1, 2, 3])


def _one_step_weights(tmp_path, batch_size, accumulation):
    model = _tiny_vit()
    ds, _, _ = _tensor_dataset()
    args = _args(
        tmp_path / f"ga{accumulation}",
        max_steps=1,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        optim="sgd",
        learning_rate=0.5,
    )
    trainer = BalancedTrainer(model=model, args=args, train_dataset=ds, class_counts=COUNTS)
    trainer.optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(ds)
    trainer.train()
    return {n: p.detach().clone() for n, p in model.named_parameters()}, trainer.state.log_history


def test_gradient_accumulation_2_equals_full_batch_on_foreign_vit(tmp_path):
    full, full_log = _one_step_weights(tmp_path, batch_size=8, accumulation=1)
    accumulated, acc_log = _one_step_weights(tmp_path, batch_size=4, accumulation=2)
    for name, value in full.items():
        torch.testing.assert_close(accumulated[name], value, rtol=1e-5, atol=1e-6, msg=name)
    full_loss = next(e["loss"] for e in full_log if "loss" in e)
    acc_loss = next(e["loss"] for e in acc_log if "loss" in e)
    assert acc_loss == pytest.approx(full_loss, rel=1e-4)


def test_our_model_loss_comes_from_config(tmp_path):
    model = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS, loss_type="bal_ce")).eval()
    ds, pixels, labels = _tensor_dataset()
    trainer = BalancedTrainer(model=model, args=_args(tmp_path, max_steps=1), train_dataset=ds)
    assert trainer.uses_model_loss and trainer.class_counts == COUNTS
    loss = trainer.compute_loss(model, {"pixel_values": pixels, "labels": labels})
    expected = ml.BalancedCELoss(COUNTS)(model(pixels).logits, labels)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_param_groups_decay_exclusions_and_layer_decay():
    model = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS, num_hidden_layers=2))
    groups = param_groups(model, weight_decay=0.05, layer_decay=0.5)
    by_param = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    # no decay: biases, norms, tokens, position embeddings; decay: weights
    for name in (
        "livt.embeddings.cls_token",
        "livt.embeddings.position_embeddings",
        "fc_norm.weight",
        "livt.layers.0.attn.qkv.bias",
        "classifier.bias",
    ):
        assert by_param[id(named[name])]["weight_decay"] == 0.0, name
    for name in (
        "livt.layers.0.attn.qkv.weight",
        "classifier.weight",
        "livt.embeddings.patch_embeddings.projection.weight",
    ):
        assert by_param[id(named[name])]["weight_decay"] == 0.05, name
    # scale = decay ** (num_layers + 1 - layer_id): embeddings 0, block i -> i + 1, head 3
    assert by_param[id(named["livt.embeddings.patch_embeddings.projection.weight"])]["lr_scale"] == 0.5**3
    assert by_param[id(named["livt.layers.0.mlp.fc1.weight"])]["lr_scale"] == 0.5**2
    assert by_param[id(named["livt.layers.1.mlp.fc1.weight"])]["lr_scale"] == 0.5**1
    assert by_param[id(named["classifier.weight"])]["lr_scale"] == 1.0
    assert sum(len(g["params"]) for g in groups) == len([p for p in model.parameters() if p.requires_grad])
    with pytest.raises(ValueError, match="layer_decay=0.75 needs a LiVT/DeiT-LT ViT"):
        param_groups(torch.nn.Sequential(torch.nn.Linear(2, 2)), 0.05, 0.75)


@pytest.mark.parametrize("arch", ["livt", "deit_lt", "transformers_vit"])
def test_param_groups_match_an_independent_mae_layer_decay_rule(arch):
    """timm's `param_groups_layer_decay` over our `group_matcher` gives MAE's `param_groups_lrd` scales for every
    parameter (independent rule: embeddings/tokens 0, `layers.i` -> i + 1, anything else num_layers + 1), also for
    transformers' ViT (no `group_matcher`: the same name rule) and behind a wrapper's name prefix."""
    import re

    if arch == "transformers_vit":
        from transformers import ViTConfig, ViTForImageClassification

        model = ViTForImageClassification(ViTConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                                     intermediate_size=64, image_size=32, patch_size=8, num_labels=4))
    elif arch == "livt":
        model = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS, num_hidden_layers=3))
    else:
        model = ml.DeiTLTForImageClassification(ml.DeiTLTConfig(
            image_size=32, patch_size=4, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
            intermediate_size=64, num_labels=4, class_counts=COUNTS))
    decay, num_layers = 0.6, 3

    def expected(name, param):
        if ".embeddings." in name or name.split(".")[-1] in ("cls_token", "distillation_token"):
            layer_id = 0
        elif match := re.search(r"\.layers\.(\d+)\.", name):
            layer_id = int(match.group(1)) + 1
        else:
            layer_id = num_layers + 1
        no_decay = param.ndim == 1 or name.endswith(".bias") or "token" in name or "position_embeddings" in name
        return decay ** (num_layers + 1 - layer_id), 0.0 if no_decay else 0.05

    for wrapped, prefix in ((model, ""), (torch.nn.ModuleDict({"inner": model}), "inner.")):  # a wrapper's prefix
        if prefix and hasattr(model, "group_matcher"):
            wrapped.group_matcher = model.group_matcher
        groups = param_groups(wrapped, weight_decay=0.05, layer_decay=decay)
        by_param = {id(p): g for g in groups for p in g["params"]}
        for name, param in model.named_parameters():
            scale, wd = expected(name, param)
            assert by_param[id(param)]["lr_scale"] == pytest.approx(scale), prefix + name
            assert by_param[id(param)]["weight_decay"] == wd, prefix + name
        assert len({(g["lr_scale"], g["weight_decay"]) for g in groups}) == len(groups) == 2 * (num_layers + 2)
    # no layer decay: one decay and one no-decay group, every parameter once
    groups = param_groups(model, weight_decay=0.05)
    assert sorted(g["weight_decay"] for g in groups) == [0.0, 0.05] and {g["lr_scale"] for g in groups} == {1.0}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_mgp_trainer_optimizer_lr_rule_betas_and_frozen_pos(tmp_path):
    model = ml.LiVTForMaskedImageModeling(tiny_livt_config())
    ds, _, _ = _tensor_dataset()
    args = MGPTrainingArguments(
        output_dir=str(tmp_path),
        report_to="none",
        per_device_train_batch_size=8,
        gradient_accumulation_steps=4,
        base_learning_rate=1.5e-4,
        max_steps=1,
        use_cpu=True,
    )
    trainer = MGPTrainer(model=model, args=args, train_dataset=ds)
    assert trainer.args.learning_rate == pytest.approx(scaled_learning_rate(1.5e-4, 32)) == pytest.approx(1.875e-5)
    optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["betas"] == (0.9, 0.95)
    frozen = {id(model.livt.embeddings.position_embeddings), id(model.decoder.decoder_pos_embed)}
    assert not frozen & {id(p) for g in optimizer.param_groups for p in g["params"]}
    before = model.livt.embeddings.position_embeddings.detach().clone()
    trainer.train()
    assert torch.equal(model.livt.embeddings.position_embeddings, before)


def test_warmup_cosine_schedule_per_step(tmp_path):
    model = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS))
    ds, _, _ = _tensor_dataset()
    args = _args(tmp_path, max_steps=10, lr_scheduler_type="cosine", warmup_steps=2, per_device_train_batch_size=8)
    trainer = BalancedTrainer(model=model, args=args, train_dataset=ds)
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(trainer.lr_scheduler.get_last_lr()[-1])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    expected = [1e-3 * s / 2 for s in range(2)] + [
        1e-3 * 0.5 * (1 + math.cos(math.pi * (s - 2) / 8)) for s in range(2, 10)
    ]
    assert lrs == pytest.approx(expected, rel=1e-6)


def test_nan_loss_stops_with_clear_message(tmp_path):
    model = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS))
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    ds, _, _ = _tensor_dataset()
    trainer = BalancedTrainer(
        model=model, args=_args(tmp_path, max_steps=2, per_device_train_batch_size=4), train_dataset=ds
    )
    with pytest.raises(NonFiniteLossError, match=r"at step 1 .*fp16 overflow.*learning rate.*zero training images"):
        trainer.train()


def test_push_to_hub_offline_fails_before_training(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    model = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS))
    args = _args(tmp_path, max_steps=1, push_to_hub=True, hub_model_id="me/livt")
    with pytest.raises(RuntimeError, match="--push_to_hub needs the Hugging Face Hub.*HF_HUB_OFFLINE"):
        BalancedTrainer(model=model, args=args, train_dataset=_tensor_dataset()[0])


@pytest.mark.parametrize("native_bf16", [False, True])
def test_bf16_on_a_cpu_without_native_bf16_warns_at_start_up(tmp_path, monkeypatch, caplog, native_bf16):
    """bf16 autocast emulated on an AVX2-only CPU is ~10x slower than fp32: every trainer (hence every training
    script) says so when it is built with --bf16 there."""
    from trainers.base import LongTailTrainerMixin
    from trainers.deit_lt import DeiTLTTrainer
    from trainers.teacher import TeacherTrainer

    assert all(issubclass(cls, LongTailTrainerMixin) for cls in (BalancedTrainer, MGPTrainer, TeacherTrainer,
                                                                 DeiTLTTrainer))
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native_bf16)
    model = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS))
    for bf16 in (True, False):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="trainers.base"):
            BalancedTrainer(model=model, args=_args(tmp_path, max_steps=1, bf16=bf16),
                            train_dataset=_tensor_dataset()[0])
        warned = [record.getMessage() for record in caplog.records if "--bf16" in record.getMessage()]
        if bf16 and not native_bf16:
            (message,) = warned
            assert torch.backends.cpu.get_cpu_capability() in message and "fp32 is faster" in message
        else:
            assert not warned


def test_create_model_card_uses_our_writer(tmp_path):
    written = []
    model = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS))
    trainer = BalancedTrainer(
        model=model,
        args=_args(tmp_path, max_steps=1),
        train_dataset=_tensor_dataset()[0],
        model_card_writer=lambda: written.append(True),
    )
    trainer.create_model_card(model_name="x")
    assert written == [True]



# ------------------------------------------------------------------------------------------------- --optim
def _optimizer_for(tmp_path, optim, **kw):
    model = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS))
    args = _args(tmp_path, max_steps=1, optim=optim, weight_decay=0.05, layer_decay=0.5, **kw)
    trainer = BalancedTrainer(model=model, args=args, train_dataset=_tensor_dataset()[0])
    return model, trainer.create_optimizer()


def _group_of(model, optimizer, name):
    param = dict(model.named_parameters())[name]
    return next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))


@pytest.mark.parametrize(
    "optim, expected",
    [("sgd", torch.optim.SGD), ("adafactor", "Adafactor"), ("adagrad", torch.optim.Adagrad),
     ("rmsprop", torch.optim.RMSprop), ("adamw_torch", torch.optim.AdamW)],
)
def test_optim_flag_builds_trainers_optimizer_on_our_groups(tmp_path, optim, expected):
    from transformers.optimization import Adafactor

    expected = Adafactor if expected == "Adafactor" else expected
    model, optimizer = _optimizer_for(tmp_path, optim)
    assert type(optimizer) is expected
    # our groups: no decay on biases/norms/tokens, the layer-decay scales on the learning rate (1e-3)
    assert _group_of(model, optimizer, "livt.embeddings.cls_token")["weight_decay"] == 0.0
    assert _group_of(model, optimizer, "classifier.bias")["weight_decay"] == 0.0
    assert _group_of(model, optimizer, "livt.layers.0.mlp.fc1.weight")["weight_decay"] == 0.05
    assert _group_of(model, optimizer, "livt.layers.0.mlp.fc1.weight")["lr"] == pytest.approx(1e-3 * 0.5**2)
    assert _group_of(model, optimizer, "classifier.weight")["lr"] == pytest.approx(1e-3)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_optim_args_reach_the_optimizer_and_the_default_stays_fused_adamw(tmp_path):
    _, optimizer = _optimizer_for(tmp_path / "sgd", "sgd", optim_args="momentum=0.9,nesterov=true")
    assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["nesterov"] is True
    for optim in (None, "adamw_torch_fused"):  # left at the default, or the default given explicitly
        kw = {} if optim is None else {"optim": optim}
        model = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS))
        args = _args(tmp_path / str(optim), max_steps=1, adam_beta2=0.95, **kw)
        optimizer = BalancedTrainer(model=model, args=args, train_dataset=_tensor_dataset()[0]).create_optimizer()
        assert type(optimizer) is torch.optim.AdamW and optimizer.defaults["fused"] is True
        assert optimizer.defaults["betas"] == (0.9, 0.95)


@pytest.mark.parametrize("optim", ["adamw_8bit", "galore_adamw", "lomo", "adamw_torch_xla", "schedule_free_adamw"])
def test_optim_that_cannot_take_our_groups_is_refused_at_start_up(tmp_path, optim):
    model = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS))
    message = rf"--optim {optim} is not supported.*adamw_torch_fused, adamw_torch, sgd, adagrad, rmsprop, adafactor"
    with pytest.raises(ValueError, match=message):
        BalancedTrainer(model=model, args=_args(tmp_path, max_steps=1, optim=optim),
                        train_dataset=_tensor_dataset()[0])


def test_optimizer_cls_and_kwargs_of_the_trainer_take_our_groups(tmp_path):
    model = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS))
    trainer = BalancedTrainer(model=model, args=_args(tmp_path, max_steps=1, layer_decay=0.5),
                              train_dataset=_tensor_dataset()[0],
                              optimizer_cls_and_kwargs=(torch.optim.SGD, {"lr": 0.1, "momentum": 0.5}))
    optimizer = trainer.create_optimizer()
    assert type(optimizer) is torch.optim.SGD and optimizer.defaults["momentum"] == 0.5
    assert _group_of(model, optimizer, "livt.layers.0.mlp.fc1.weight")["lr"] == pytest.approx(1e-3 * 0.5**2)
