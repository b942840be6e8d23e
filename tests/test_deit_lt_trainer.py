"""DeiTLTTrainer: the loss against an independent recomputation, the DRW switch (callback, training run, resume), the
frozen teacher, label-space checks, teacher input size and renormalisation and metrics (run_deit_lt.py end to end:
test_deit_lt_script.py)."""


import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from safetensors.torch import load_file
from transformers import (
    EvalPrediction,
    ResNetConfig,
    ResNetForImageClassification,
    TrainerCallback,
    TrainerState,
)

import modeling_livt as ml
from modeling_livt.data.transforms import (
    DefaultImageCollator,
    MixupCutmixCollator,
    build_image_processor,
)
from trainers import LongTailTrainingArguments
from trainers.arguments import DistillationArguments
from trainers.deit_lt import DeiTLTMetrics, DeiTLTTrainer, DistillationTeacher
from trainers.drw import DRWCallback

COUNTS = [150, 40, 10, 2]  # many, medium, few, few
LABELS = {0: "a", 1: "b", 2: "c", 3: "d"}
STUDENT = dict(image_size=32, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=64, drop_path_rate=0.0)
STUDENT_STATS = ((0.3, 0.4, 0.5), (0.2, 0.25, 0.3))
TEACHER_STATS = ((0.5, 0.45, 0.4), (0.3, 0.2, 0.25))


def _student(**overrides):
    torch.manual_seed(0)
    config = ml.DeiTLTConfig(**{**STUDENT, "id2label": LABELS, "class_counts": COUNTS, **overrides})
    return ml.DeiTLTForImageClassification(config)


def _teacher_model(num_labels=4, id2label=None, seed=1, size=32):
    torch.manual_seed(seed)
    id2label = id2label if id2label is not None else (LABELS if num_labels == 4 else None)
    config = ml.ResNetCifarConfig(depth=8, base_width=4, num_labels=num_labels,
                                  **({"id2label": id2label} if id2label else {}))
    model = ml.ResNetCifarForImageClassification(config)
    # non-trivial BatchNorm statistics (so "eval mode" is observable), and a head that spreads its predictions over the
    # classes (a random ResNet's pooled features barely vary: its argmax would be one class for every input)
    calibration = F.interpolate(torch.randn(32, 3, 32, 32), size=(size, size), mode="bicubic")  # student batches
    with torch.no_grad():
        model.train()(calibration)
        features, _ = model.eval().forward_features(calibration)
        weight = torch.randn(num_labels, features.shape[1]) / features.std(0)
        model.linear.weight.copy_(weight)
        model.linear.bias.copy_(-weight @ features.mean(0))
    return model


def _dataset(n=8, size=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randn(n, 3, size, size, generator=gen)
    labels = torch.arange(n) % 4
    return Dataset.from_dict({"pixel_values": pixels.numpy().tolist(), "labels": labels.tolist()}).with_format("torch")


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path), report_to="none", save_strategy="no", logging_steps=1, seed=0, use_cpu=True,
                disable_tqdm=True, learning_rate=1e-3, lr_scheduler_type="constant", warmup_steps=0, layer_decay=1.0,
                per_device_train_batch_size=4, remove_unused_columns=False)
    base.update(kw)
    return LongTailTrainingArguments(**base)


def _mixed_batch(n=6, seed=0):
    torch.manual_seed(seed)
    features = [{"pixel_values": torch.randn(3, 32, 32), "labels": i % 4} for i in range(n)]
    return MixupCutmixCollator(4, mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1)(features)


# ---------------------------------------------------------------------------------------------------------------------
# The loss
# ---------------------------------------------------------------------------------------------------------------------
def test_loss_equals_independent_recomputation_before_and_after_drw(tmp_path):
    """Teacher logits from the same mixed batch, renormalised and resized (bicubic) to the teacher's 64 px; CLS soft
    CE + DIST CE vs the teacher's argmax; after DRW the weighted mean with class-balanced weights."""
    student = _student().eval()
    teacher_model = _teacher_model(size=64).eval()
    teacher = DistillationTeacher(teacher_model, image_size=64, mean=TEACHER_STATS[0], std=TEACHER_STATS[1],
                                  student_mean=STUDENT_STATS[0], student_std=STUDENT_STATS[1])
    trainer = DeiTLTTrainer(model=student, args=_args(tmp_path, max_steps=1), train_dataset=_dataset(),
                            teacher=teacher, distillation_alpha=0.3, drw_epoch=1)
    batch = _mixed_batch()
    x, y = batch["pixel_values"], batch["labels"]
    assert y.shape == (6, 4) and y.is_floating_point()  # mixed soft targets

    with torch.no_grad():
        out = student(x)
        s_mean, s_std, t_mean, t_std = (torch.tensor(v).view(1, 3, 1, 1) for v in (*STUDENT_STATS, *TEACHER_STATS))
        teacher_in = F.interpolate((x * s_std + s_mean - t_mean) / t_std, size=(64, 64), mode="bicubic",
                                   align_corners=False)
        teacher_labels = teacher_model(teacher_in).logits.argmax(-1)
        cls = torch.sum(-y * F.log_softmax(out.cls_logits, -1), -1).mean()
        ce = F.cross_entropy(out.distillation_logits, teacher_labels, reduction="none")
        expected = 0.7 * cls + 0.3 * ce.mean()
        weights = ml.class_balanced_weights(COUNTS, 0.9999)[teacher_labels]
        expected_drw = 0.7 * cls + 0.3 * (weights * ce).sum() / weights.sum()
        loss = trainer.compute_loss(student, {"pixel_values": x, "labels": y})
        trainer.set_drw(True)
        loss_drw = trainer.compute_loss(student, {"pixel_values": x, "labels": y})
    assert len(set(teacher_labels.tolist())) > 1  # the weighting is visible
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss_drw.item() == pytest.approx(expected_drw.item(), rel=1e-5)
    assert loss_drw.item() != pytest.approx(loss.item(), rel=1e-4)


def test_cls_loss_follows_config_bal_bce(tmp_path):
    student = _student(cls_loss_type="bal_bce").eval()
    teacher_model = _teacher_model().eval()
    trainer = DeiTLTTrainer(model=student, args=_args(tmp_path, max_steps=1), train_dataset=_dataset(),
                            teacher=teacher_model)
    batch = _mixed_batch()
    with torch.no_grad():
        out = student(batch["pixel_values"])
        dist = F.cross_entropy(out.distillation_logits, teacher_model(batch["pixel_values"]).logits.argmax(-1))
        expected = 0.5 * ml.BalancedBCELoss(COUNTS)(out.cls_logits, batch["labels"]) + 0.5 * dist
        loss = trainer.compute_loss(student, dict(batch))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_alpha_and_beta_are_the_trainers_never_the_configs(tmp_path):
    """distillation_alpha and drw_beta are training choices: a student config carrying its own values (an old
    config.json) changes nothing; bad values fail when the trainer (or the command line) is built."""
    student = _student()
    student.config.distillation_alpha, student.config.drw_beta = 0.9, 0.5
    trainer = DeiTLTTrainer(model=student, args=_args(tmp_path, max_steps=1), train_dataset=_dataset(),
                            teacher=_teacher_model(), distillation_alpha=0.3, drw_beta=0.99, drw_epoch=1)
    trainer.set_drw(True)
    assert trainer.deit_lt_loss.alpha == 0.3
    torch.testing.assert_close(trainer.deit_lt_loss.class_weights, ml.class_balanced_weights(COUNTS, 0.99))
    defaults = DeiTLTTrainer(model=student, args=_args(tmp_path, max_steps=1), teacher=_teacher_model())
    assert defaults.deit_lt_loss.alpha == 0.5 and defaults.drw_beta == 0.9999
    with pytest.raises(ValueError, match=r"alpha=1.5 must be in \[0, 1\]"):
        DeiTLTTrainer(model=student, args=_args(tmp_path, max_steps=1), teacher=_teacher_model(),
                      distillation_alpha=1.5)
    with pytest.raises(ValueError, match=r"drw_beta=1.0 must be in \[0, 1\)"):
        DeiTLTTrainer(model=student, args=_args(tmp_path, max_steps=1), teacher=_teacher_model(), drw_beta=1.0)
    with pytest.raises(ValueError, match=r"--distillation_alpha -0.1 must be in \[0, 1\]"):
        DistillationArguments(teacher_name_or_path="t", distillation_alpha=-0.1)
    with pytest.raises(ValueError, match=r"drw_beta=1.0 must be in \[0, 1\)"):
        DistillationArguments(teacher_name_or_path="t", drw_beta=1.0)


# ---------------------------------------------------------------------------------------------------------------------
# DRW
# ---------------------------------------------------------------------------------------------------------------------
def test_drw_callback_switches_at_the_epoch_and_not_before():
    calls = []
    callback = DRWCallback(calls.append, drw_epoch=2)
    callback.on_train_begin(None, TrainerState(epoch=0, global_step=0), None)
    for step, epoch in ((1, 0.5), (3, 1.5), (4, 1.999)):
        callback.on_step_end(None, TrainerState(epoch=epoch, global_step=step), None)
    assert calls == [False] and callback.active is False
    callback.on_step_end(None, TrainerState(epoch=2.0, global_step=5), None)
    callback.on_step_end(None, TrainerState(epoch=2.5, global_step=6), None)
    assert calls == [False, True] and callback.active is True

    # streaming: the step decides, whatever state.epoch says
    calls = []
    callback = DRWCallback(calls.append, drw_step=10)
    callback.on_train_begin(None, TrainerState(epoch=0.0, global_step=0), None)
    callback.on_step_end(None, TrainerState(epoch=0.99, global_step=9), None)
    assert calls == [False]
    callback.on_step_end(None, TrainerState(epoch=0.1, global_step=10), None)
    assert calls == [False, True]

    # a resumed run past the DRW point starts re-weighted (state restored before on_train_begin)
    calls = []
    DRWCallback(calls.append, drw_epoch=2).on_train_begin(None, TrainerState(epoch=2.5, global_step=12), None)
    assert calls == [True]
    calls = []
    never = DRWCallback(calls.append)
    never.on_train_begin(None, TrainerState(epoch=0, global_step=0), None)
    never.on_step_end(None, TrainerState(epoch=1e6, global_step=10**9), None)
    assert calls == [False] and not never.enabled
    with pytest.raises(ValueError, match="not both"):
        DRWCallback(calls.append, drw_epoch=1, drw_step=3)


class _Recorder(TrainerCallback):
    def __init__(self, trainer):
        self.trainer, self.steps = trainer, []

    def on_step_begin(self, args, state, control, **kwargs):
        self.steps.append((state.global_step, self.trainer.drw_active))


def _teacher_snapshot(teacher):
    return {k: v.detach().clone() for k, v in teacher.model.state_dict().items()}


def test_training_run_switches_drw_at_epoch_keeps_teacher_frozen_and_out_of_checkpoints(tmp_path):
    student = _student()
    teacher = DistillationTeacher(_teacher_model())
    before = _teacher_snapshot(teacher)
    collator = MixupCutmixCollator(4, label_smoothing=0.1)
    seen_labels = []
    trainer = DeiTLTTrainer(
        model=student, args=_args(tmp_path, num_train_epochs=3, eval_strategy="epoch"), train_dataset=_dataset(8),
        eval_dataset=_dataset(8, seed=1), data_collator=collator, eval_data_collator=DefaultImageCollator(),
        teacher=teacher, drw_epoch=1, no_mixup_after_drw=True,
    )
    recorder = _Recorder(trainer)
    trainer.add_callback(recorder)
    original = trainer.compute_loss

    def spy(model, inputs, *args, **kwargs):
        if model.training:
            seen_labels.append((trainer.state.global_step, inputs["labels"].is_floating_point()))
        return original(model, inputs, *args, **kwargs)

    trainer.compute_loss = spy
    trainer.train()
    # 8 examples, batch 4: 2 steps per epoch; DRW from epoch 1 = from step 2, mixing off from the same batch
    assert recorder.steps == [(0, False), (1, False), (2, True), (3, True), (4, True), (5, True)]
    assert seen_labels == [(0, True), (1, True), (2, False), (3, False), (4, False), (5, False)]
    torch.testing.assert_close(trainer.deit_lt_loss.class_weights, ml.class_balanced_weights(COUNTS, 0.9999))

    # the teacher: eval mode, no gradients, unchanged (BatchNorm statistics included), not optimized, not saved
    assert teacher.model.training is False
    assert all(p.grad is None and not p.requires_grad for p in teacher.model.parameters())
    after = teacher.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in teacher.model.parameters()}
    assert trainer.model is student and not any(m is teacher.model for m in student.modules())
    trainer.save_model()
    saved = load_file(str(tmp_path / "model.safetensors"))
    assert set(saved) == set(student.state_dict()) and not any(k.startswith("layer1") for k in saved)

    # evaluation: avg / cls / dist accuracy and the long-tail metrics
    metrics = trainer.evaluate()
    for key in ("eval_accuracy", "eval_cls_accuracy", "eval_distillation_accuracy", "eval_many_shot_accuracy",
                "eval_few_shot_accuracy", "eval_ece"):
        assert key in metrics, key


def test_resume_restores_the_drw_state(tmp_path):
    def trainer_for(max_steps):
        return DeiTLTTrainer(
            model=_student(), args=_args(tmp_path, max_steps=max_steps, save_strategy="steps", save_steps=2),
            train_dataset=_dataset(8), data_collator=MixupCutmixCollator(4), teacher=_teacher_model(),
            drw_epoch=1, no_mixup_after_drw=True,
        )

    first = trainer_for(2)
    first.train()
    assert first.state.epoch == 1.0 and first.drw_active  # switched on after the last step of epoch 0
    resumed = trainer_for(4)
    assert not resumed.drw_active and resumed.train_collator.mixup_enabled  # a fresh trainer starts without DRW
    recorder = _Recorder(resumed)
    resumed.add_callback(recorder)
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    assert recorder.steps == [(2, True), (3, True)]
    assert resumed.train_collator.mixup_enabled is False


def test_drw_arguments_are_checked(tmp_path):
    args = _args(tmp_path, max_steps=1)
    with pytest.raises(ValueError, match="needs a mixing training collator"):
        DeiTLTTrainer(model=_student(), args=args, train_dataset=_dataset(), teacher=_teacher_model(), drw_epoch=1,
                      no_mixup_after_drw=True)
    streamed = _dataset().to_iterable_dataset()
    with pytest.raises(ValueError, match="--drw_step"):
        DeiTLTTrainer(model=_student(), args=args, train_dataset=streamed, teacher=_teacher_model(), drw_epoch=1)
    with pytest.raises(TypeError, match="DeiT-LT student"):
        DeiTLTTrainer(model=_teacher_model(), args=args, teacher=_teacher_model())


# ---------------------------------------------------------------------------------------------------------------------
# The teacher
# ---------------------------------------------------------------------------------------------------------------------
def test_label_space_mismatch_is_a_clear_error(tmp_path):
    args = _args(tmp_path, max_steps=1)
    with pytest.raises(ValueError, match=r"teacher's label space \(5 classes .*student's \(4 classes \[a, b, c, d\]\)"):
        DeiTLTTrainer(model=_student(), args=args, teacher=_teacher_model(num_labels=5))
    swapped = {0: "b", 1: "a", 2: "c", 3: "d"}
    with pytest.raises(ValueError, match="class 0 is 'b' for the teacher and 'a' for the student"):
        DeiTLTTrainer(model=_student(), args=args, teacher=_teacher_model(id2label=swapped))
    # generic names (e.g. a ported checkpoint) match by position
    generic = {i: f"LABEL_{i}" for i in range(4)}
    DistillationTeacher(_teacher_model(id2label=generic)).check_label_space(LABELS)


def test_teacher_with_another_input_size_gets_a_bicubic_resize(tmp_path):
    teacher_model = _teacher_model().eval()
    shapes = []
    teacher_model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(kwargs.get("pixel_values", args[0] if args else None).shape),
        with_kwargs=True,
    )
    teacher = DistillationTeacher(teacher_model, image_size=64)
    x = torch.randn(3, 3, 32, 32)
    expected = F.interpolate(x, size=(64, 64), mode="bicubic", align_corners=False)
    assert torch.equal(teacher.prepare(x), expected)
    assert not torch.equal(expected, F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False))
    logits = teacher(x)
    assert shapes == [(3, 3, 64, 64)] and logits.shape == (3, 4) and not logits.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(logits, teacher_model(expected).logits)
    # shrinking: bicubic with antialiasing
    small = DistillationTeacher(teacher_model, image_size=16)
    assert torch.equal(small.prepare(x), F.interpolate(x, size=(16, 16), mode="bicubic", align_corners=False,
                                                       antialias=True))
    # a full training step with a 64-px teacher and a 32-px student
    trainer = DeiTLTTrainer(model=_student(), args=_args(tmp_path, max_steps=2), train_dataset=_dataset(8),
                            data_collator=MixupCutmixCollator(4), teacher=teacher)
    trainer.train()
    assert shapes[-1] == (4, 3, 64, 64)


def test_teacher_runs_channels_last_with_the_logits_of_the_default_layout():
    reference = _teacher_model()  # same seed: the same weights, in PyTorch's default (NCHW) layout
    teacher = DistillationTeacher(_teacher_model())
    conv_weights = [p for p in teacher.model.parameters() if p.dim() == 4]
    assert conv_weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights)
    assert not any(p.is_contiguous(memory_format=torch.channels_last) for p in reference.parameters() if p.dim() == 4)
    pixels = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        expected = reference.eval()(pixel_values=pixels).logits
    torch.testing.assert_close(teacher(pixels), expected, rtol=1e-5, atol=1e-5)


def test_renormalisation_gives_the_teacher_its_own_normalisation():
    raw = torch.rand(2, 3, 32, 32)  # pixels in [0, 1]
    s_mean, s_std, t_mean, t_std = (torch.tensor(v).view(1, 3, 1, 1) for v in (*STUDENT_STATS, *TEACHER_STATS))
    student_batch = (raw - s_mean) / s_std
    teacher = DistillationTeacher(_teacher_model(), mean=TEACHER_STATS[0], std=TEACHER_STATS[1],
                                  student_mean=STUDENT_STATS[0], student_std=STUDENT_STATS[1])
    assert teacher.renormalizes
    torch.testing.assert_close(teacher.prepare(student_batch), (raw - t_mean) / t_std, rtol=0, atol=1e-6)
    same = DistillationTeacher(_teacher_model(), mean=STUDENT_STATS[0], std=STUDENT_STATS[1],
                               student_mean=STUDENT_STATS[0], student_std=STUDENT_STATS[1])
    assert not same.renormalizes and torch.equal(same.prepare(student_batch), student_batch)
    # renormalising then resizing = resizing the raw pixels then normalising (both are affine / linear)
    both = DistillationTeacher(_teacher_model(), image_size=48, mean=TEACHER_STATS[0], std=TEACHER_STATS[1],
                               student_mean=STUDENT_STATS[0], student_std=STUDENT_STATS[1])
    resized_raw = F.interpolate(raw, size=(48, 48), mode="bicubic", align_corners=False)
    torch.testing.assert_close(both.prepare(student_batch), (resized_raw - t_mean) / t_std, rtol=0, atol=1e-5)


def test_from_pretrained_reads_size_and_normalisation_of_a_transformers_resnet(tmp_path):
    """Any AutoModelForImageClassification folder: a (tiny) transformers ResNet with a 64-px processor."""
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                          num_labels=4, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    torch.manual_seed(0)
    ResNetForImageClassification(config).save_pretrained(tmp_path / "resnet")
    build_image_processor(64, *TEACHER_STATS).save_pretrained(tmp_path / "resnet")
    teacher = DistillationTeacher.from_pretrained(str(tmp_path / "resnet"), student_mean=STUDENT_STATS[0],
                                                  student_std=STUDENT_STATS[1])
    assert isinstance(teacher.model, ResNetForImageClassification) and teacher.image_size == 64
    assert teacher.mean == TEACHER_STATS[0] and teacher.std == TEACHER_STATS[1] and teacher.renormalizes
    assert teacher.model.training is False
    assert DistillationTeacher.from_pretrained(str(tmp_path / "resnet"), image_size=40).image_size == 40
    trainer = DeiTLTTrainer(model=_student(), args=_args(tmp_path / "out", max_steps=1), train_dataset=_dataset(4),
                            data_collator=MixupCutmixCollator(4), teacher=teacher)
    trainer.train()
    assert np.isfinite(trainer.state.log_history[0]["loss"])


def test_metrics_handle_the_three_heads():
    labels = np.array([0, 1, 2, 3])
    avg = np.eye(4)[[0, 1, 2, 0]]
    cls = np.eye(4)[[0, 1, 0, 0]]
    dist = np.eye(4)[[0, 1, 2, 3]]
    metrics = DeiTLTMetrics(COUNTS)(EvalPrediction(predictions=(avg, cls, dist), label_ids=labels))
    assert metrics["accuracy"] == 0.75 and metrics["cls_accuracy"] == 0.5 and metrics["distillation_accuracy"] == 1.0
    assert "few_shot_accuracy" in metrics and "ece" in metrics
    # each expert's shot groups, scalars only (COUNTS: class 0 many, 1 medium, 2 and 3 few)
    assert metrics["cls_many_shot_accuracy"] == 1.0 and metrics["cls_medium_shot_accuracy"] == 1.0
    assert metrics["cls_few_shot_accuracy"] == 0.0 and metrics["distillation_few_shot_accuracy"] == 1.0
    assert not any(isinstance(v, list) for v in metrics.values())


def test_expert_report_scores_each_head_alone():
    """Two images per class; CLS right on classes 0 and 1 and on one image of class 2, DIST right on classes 2 and 3
    and one image of class 0. Groups by hand: COUNTS' count split (many {0}, medium {1}, few {2, 3}) and the index
    split at (1, 3) (head {0}, mid {1, 2}, tail {3}); a group's accuracy is the mean of its classes'."""
    from trainers.workflow import evaluate_and_report, expert_report

    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    cls = np.eye(4)[[0, 0, 1, 1, 2, 0, 0, 0]]
    dist = np.eye(4)[[0, 1, 0, 0, 2, 2, 3, 3]]
    avg = (cls + dist) / 2
    report = expert_report((avg, cls, dist), labels, COUNTS, index_bounds=(1, 3))
    assert report["cls_per_class_accuracy"] == [1.0, 1.0, 0.5, 0.0]
    assert report["distillation_per_class_accuracy"] == [0.5, 0.0, 1.0, 1.0]
    expected = {"cls_accuracy": 5 / 8, "cls_many_shot_accuracy": 1.0, "cls_medium_shot_accuracy": 1.0,
                "cls_few_shot_accuracy": 0.25, "cls_index_head_accuracy": 1.0, "cls_index_mid_accuracy": 0.75,
                "cls_index_tail_accuracy": 0.0, "distillation_accuracy": 5 / 8,
                "distillation_many_shot_accuracy": 0.5, "distillation_medium_shot_accuracy": 0.0,
                "distillation_few_shot_accuracy": 1.0, "distillation_index_head_accuracy": 0.5,
                "distillation_index_mid_accuracy": 0.5, "distillation_index_tail_accuracy": 1.0}
    for key, value in expected.items():
        assert report[key] == pytest.approx(value, abs=1e-12), key
    assert expert_report(avg, labels, COUNTS) == {}  # one head: nothing to add

    class Predicting:  # what evaluate_and_report needs of a Trainer
        def predict(self, dataset, metric_key_prefix):
            return EvalPrediction(predictions=(avg, cls, dist), label_ids=labels)

        def is_world_process_zero(self):
            return False

    metrics = evaluate_and_report(Predicting(), None, COUNTS, "unused", index_bounds=(1, 3))
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-12), key
