"""The DeiT-LT teacher: LDAM(-DRW) against the official formulation, SAM inside TeacherTrainer (one first_step and one
second_step per optimizer step, equal to a hand-driven SAM update, scheduler on the base optimizer, BatchNorm
statistics counted once), and run_teacher.py end to end (a loadable teacher with processor, labels and card)."""

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import AutoImageProcessor, AutoModelForImageClassification, TrainerCallback, pipeline

import modeling_livt as ml
from modeling_livt.data.transforms import get_normalization
from modeling_livt.models.losses import LDAMLoss, build_loss
from trainers.arguments import TeacherModelArguments, TeacherTrainingArguments
from trainers.deit_lt import DistillationTeacher
from trainers.teacher import (
    TeacherTrainer,
    TrainerSAM,
    build_teacher_model,
    frozen_batch_norm_stats,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import run_teacher  # noqa: E402

COUNTS = [40, 20, 8, 2]


# ---------------------------------------------------------------------------------------------------------------------
# LDAM
# ---------------------------------------------------------------------------------------------------------------------
def reference_ldam(logits, target, cls_num_list, max_m=0.5, s=30, weight=None):
    """kaidic/LDAM-DRW `losses.LDAMLoss.forward`, on CPU."""
    m_list = 1.0 / np.sqrt(np.sqrt(np.asarray(cls_num_list, dtype=np.float64)))
    m_list = torch.tensor(m_list * (max_m / np.max(m_list)), dtype=torch.float32)
    index = torch.zeros_like(logits, dtype=torch.bool)
    index.scatter_(1, target.view(-1, 1), True)
    batch_m = torch.matmul(m_list[None, :], index.float().transpose(0, 1)).view(-1, 1)
    output = torch.where(index, logits - batch_m, logits)
    return F.cross_entropy(s * output, target, weight=weight)


def test_ldam_matches_the_official_formulation_with_and_without_drw_weights():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 4, generator=gen).tanh()  # cosine-head range
    target = torch.randint(0, 4, (16,), generator=gen)
    loss = LDAMLoss(COUNTS)
    assert max(loss.margins) == pytest.approx(0.5) and loss.margins == sorted(loss.margins)  # rarest: largest margin
    assert loss(logits, target).item() == pytest.approx(reference_ldam(logits, target, COUNTS).item(), rel=1e-6)
    weights = ml.class_balanced_weights(COUNTS, 0.9999)
    loss.class_weights = weights
    expected = reference_ldam(logits, target, COUNTS, weight=weights)
    assert loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
    # one-hot soft targets are int labels
    assert loss(logits, F.one_hot(target, 4).float()).item() == pytest.approx(expected.item(), rel=1e-6)
    custom = LDAMLoss(COUNTS, max_m=0.3, s=10)
    assert custom(logits, target).item() == pytest.approx(
        reference_ldam(logits, target, COUNTS, max_m=0.3, s=10).item(), rel=1e-6)
    assert isinstance(build_loss("ldam", COUNTS), LDAMLoss)
    with pytest.raises(ValueError, match="needs the training class counts"):
        build_loss("ldam", None)
    with pytest.raises(ValueError, match=r"class_weights must be a 1-D tensor of 4 class weights, got shape \(2,\)"):
        loss.class_weights = [1.0, 2.0]
    with pytest.raises(ValueError, match="class_weights must hold finite, non-negative"):
        loss.class_weights = [1.0, 2.0, -1.0, 0.0]


# ---------------------------------------------------------------------------------------------------------------------
# SAM inside Trainer
# ---------------------------------------------------------------------------------------------------------------------
def _resnet(num_labels=4, **overrides):
    torch.manual_seed(0)
    return ml.ResNetCifarForImageClassification(
        ml.ResNetCifarConfig(depth=8, base_width=4, num_labels=num_labels, **overrides))


def _dataset(n=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randn(n, 3, 16, 16, generator=gen)
    labels = torch.arange(n) % 4
    return Dataset.from_dict({"pixel_values": pixels.numpy().tolist(), "labels": labels.tolist()}).with_format("torch")


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path), report_to="none", save_strategy="no", eval_strategy="no",
                load_best_model_at_end=False, logging_steps=1, seed=0, use_cpu=True, disable_tqdm=True,
                learning_rate=0.05, lr_scheduler_type="constant", warmup_steps=0, per_device_train_batch_size=8)
    base.update(kw)
    return TeacherTrainingArguments(**base)


def test_one_trainer_step_equals_a_hand_driven_sam_update(tmp_path):
    model = _resnet()
    reference = copy.deepcopy(model)
    ds = _dataset()
    trainer = TeacherTrainer(model=model, args=_args(tmp_path / "a", max_steps=1, sam_rho=0.1), train_dataset=ds,
                             class_counts=COUNTS, loss_type="bal_ce")
    trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(ds)
    trainer.train()

    helper = TeacherTrainer(model=reference, args=_args(tmp_path / "b", sam_rho=0.1), class_counts=COUNTS)
    sam = helper.create_optimizer()
    assert isinstance(sam, TrainerSAM) and isinstance(sam.base_optimizer, torch.optim.SGD)
    assert sam.param_groups[0]["rho"] == 0.1 and sam.base_optimizer.param_groups is sam.param_groups
    loss_fn = ml.BalancedCELoss(COUNTS)
    x, y = ds[:]["pixel_values"], ds[:]["labels"]
    reference.train()
    loss_fn(reference(x).logits, y).backward()
    sam.first_step(zero_grad=True)
    with frozen_batch_norm_stats(reference):
        loss_fn(reference(x).logits, y).backward()
    sam.second_step(zero_grad=True)
    trained, expected = model.state_dict(), reference.state_dict()
    for name in expected:
        torch.testing.assert_close(trained[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
    # BatchNorm counted the batch once (the ascent pass leaves running statistics alone)
    assert int(model.bn1.num_batches_tracked) == 1
    assert not torch.equal(trained["conv1.weight"], _resnet().state_dict()["conv1.weight"])


class _LrRecorder(TrainerCallback):
    def __init__(self):
        self.trainer, self.lrs = None, []

    def on_step_end(self, args, state, control, **kwargs):
        sam = self.trainer.sam
        self.lrs.append((sam.base_optimizer.param_groups[0]["lr"], self.trainer.lr_scheduler.get_last_lr()[0]))


def test_sam_steps_once_per_optimizer_step_and_the_scheduler_drives_the_base_optimizer(tmp_path, monkeypatch):
    calls = {"first_step": 0, "second_step": 0}
    for name in calls:
        original = getattr(TrainerSAM, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(TrainerSAM, name, counted)
    trainer = TeacherTrainer(model=_resnet(), args=_args(tmp_path, max_steps=3, per_device_train_batch_size=4,
                                                         lr_scheduler_type="linear"),
                             train_dataset=_dataset(), class_counts=COUNTS)
    recorder = _LrRecorder()
    recorder.trainer = trainer
    trainer.add_callback(recorder)
    trainer.train()
    assert calls == {"first_step": 3, "second_step": 3}
    assert [base for base, _ in recorder.lrs] == [sched for _, sched in recorder.lrs]
    # the linear decay reached the base optimizer
    assert recorder.lrs[0][0] > recorder.lrs[1][0] > recorder.lrs[2][0] == 0.0
    assert all(np.isfinite(e["loss"]) for e in trainer.state.log_history if "loss" in e)


def test_gradient_accumulation_is_refused(tmp_path):
    with pytest.raises(ValueError, match="does not support --gradient_accumulation_steps > 1"):
        TeacherTrainer(model=_resnet(), args=_args(tmp_path, max_steps=1, gradient_accumulation_steps=2),
                       class_counts=COUNTS)


def test_ldam_drw_teacher_reweights_from_the_drw_step(tmp_path):
    args = _args(tmp_path, max_steps=3, per_device_train_batch_size=4)
    trainer = TeacherTrainer(model=_resnet(use_norm=True), args=args, train_dataset=_dataset(), class_counts=COUNTS,
                             loss_type="ldam_drw", drw_step=1)
    seen = []

    class Spy(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            seen.append(trainer.loss_fn.class_weights is not None)

    trainer.add_callback(Spy())
    trainer.train()
    assert isinstance(trainer.loss_fn, LDAMLoss) and seen == [False, True, True]
    torch.testing.assert_close(trainer.loss_fn.class_weights, ml.class_balanced_weights(COUNTS, 0.9999))
    # default DRW point: 80 % of training (LDAM-DRW: epoch 160 of 200)
    default = TeacherTrainer(model=_resnet(), args=_args(tmp_path, num_train_epochs=10), class_counts=COUNTS,
                             loss_type="ldam_drw")
    assert default.drw_callback.drw_epoch == 8.0
    with pytest.raises(ValueError, match="DRW re-weights the LDAM loss"):
        TeacherTrainer(model=_resnet(), args=_args(tmp_path, max_steps=1), class_counts=COUNTS, drw_epoch=2)


def test_build_teacher_model_defaults():
    class Data:
        num_classes, class_counts = 4, COUNTS
        id2label = {i: str(i) for i in range(4)}
        label2id = {str(i): i for i in range(4)}

    model = build_teacher_model(TeacherModelArguments(), Data, image_size=32)
    assert model.config.depth == 32 and model.config.id2label == Data.id2label and model.config.class_counts == COUNTS
    ldam = build_teacher_model(TeacherModelArguments(loss_type="ldam_drw", config_overrides="depth=20"), Data, 32)
    assert ldam.config.use_norm and ldam.config.depth == 20  # LDAM's cosine head
    with pytest.raises(ValueError, match="No default teacher for 224-px images.*--model_name_or_path"):
        build_teacher_model(TeacherModelArguments(), Data, image_size=224)
    assert build_teacher_model(TeacherModelArguments(teacher_arch="resnet_cifar"), Data, 224).config.depth == 32


class _Digits:
    num_classes, class_counts = 10, [10] * 10
    id2label = {i: str(i) for i in range(10)}
    label2id = {str(i): i for i in range(10)}


def test_config_overrides_on_a_pretrained_teacher_apply_when_they_keep_its_weights(teacher_dir):
    saved = AutoModelForImageClassification.from_pretrained(teacher_dir, trust_remote_code=True)
    args = TeacherModelArguments(model_name_or_path=str(teacher_dir),
                                 config_overrides="batch_norm_eps=0.001,batch_norm_momentum=0.2")
    model = build_teacher_model(args, _Digits, image_size=32)
    assert model.config.batch_norm_eps == 0.001 and model.config.batch_norm_momentum == 0.2
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.eps == 0.001 and m.momentum == 0.2 for m in norms)  # the modules built with them
    for name, tensor in saved.state_dict().items():  # the checkpoint's weights, all of them
        torch.testing.assert_close(model.state_dict()[name], tensor, msg=name)
    # the checkpoint's own value is no change; a shape change is refused, naming the override and a weight
    assert build_teacher_model(TeacherModelArguments(model_name_or_path=str(teacher_dir),
                                                     config_overrides="base_width=4"), _Digits, 32).config.depth == 8
    with pytest.raises(ValueError, match=r"--config_overrides use_norm=true \(\d+ weight\(s\) change, e\.g\. "
                                         r"linear.*--config_overrides depth=14 \("):
        build_teacher_model(TeacherModelArguments(model_name_or_path=str(teacher_dir),
                                                  config_overrides="use_norm=true,depth=14"), _Digits, 32)
    with pytest.raises(ValueError, match="unknown config key"):
        build_teacher_model(TeacherModelArguments(model_name_or_path=str(teacher_dir),
                                                  config_overrides="hidden_size=8"), _Digits, 32)
    for checkpoint in (str(teacher_dir), None):  # the classes come from the data, with or without a checkpoint
        with pytest.raises(ValueError, match="--config_overrides num_labels=5: the teacher's classes come from"):
            build_teacher_model(TeacherModelArguments(model_name_or_path=checkpoint, config_overrides="num_labels=5"),
                                _Digits, 32)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(optim="sgd"), "--optim sgd: the teacher's optimizer is SAM around --sam_base_optimizer.*sgd or adamw"),
    (dict(layer_decay=0.75), "--layer_decay 0.75: the teacher trains every layer at one learning rate"),
    (dict(adam_beta2=0.95), "--adam_beta2 0.95: they set AdamW, and SAM's base optimizer is SGD"),
    (dict(sam_base_optimizer="adamw", momentum=0.5), "--momentum 0.5: they set SGD"),
])
def test_teacher_refuses_the_optimizer_flags_it_would_ignore(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        TeacherTrainer(model=_resnet(), args=_args(tmp_path, max_steps=1, **kwargs), class_counts=COUNTS)


def test_teacher_refuses_the_loss_flags_its_loss_would_ignore(tmp_path):
    def build(**kwargs):
        return TeacherTrainer(model=_resnet(), args=_args(tmp_path, max_steps=4), class_counts=COUNTS, **kwargs)

    with pytest.raises(ValueError, match="--bal_tau 0.5: .*the loss here is ce"):
        build(loss_type="ce", bal_tau=0.5)
    with pytest.raises(ValueError, match="--ldam_s 1: they set LDAM's margins and logit scale, and --loss_type is "
                                         "bal_ce"):
        build(ldam_s=1)
    with pytest.raises(ValueError, match="--drw_beta 0.99: it sets the class-balanced weights of deferred"):
        build(loss_type="ldam", drw_beta=0.99)
    assert build(loss_type="ldam", drw_step=2, drw_beta=0.99, ldam_s=1).drw_beta == 0.99  # with DRW: honoured
    assert build(loss_type="bal_bce", bal_tau=0.5).loss_fn.tau == 0.5


# ---------------------------------------------------------------------------------------------------------------------
# scripts/run_teacher.py
# ---------------------------------------------------------------------------------------------------------------------
DATA = ["--dataset_name", "digits", "--imbalance_factor", "10", "--normalization", "digits"]
FAST = ["--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "64", "--disable_tqdm", "true",
        "--report_to", "none", "--seed", "0"]


def test_run_teacher_writes_a_loadable_teacher_with_processor_labels_and_card(tmp_path):
    out = tmp_path / "teacher"
    metrics = run_teacher.main(DATA + FAST + [
        "--output_dir", str(out), "--max_steps", "2", "--config_overrides", "depth=8,base_width=8",
        "--eval_strategy", "steps", "--eval_steps", "1", "--save_strategy", "steps", "--save_steps", "1",
        "--sam_rho", "0.05", "--learning_rate", "0.01",
    ])
    for name in ("model.safetensors", "config.json", "preprocessor_config.json", "README.md", "eval_results.json",
                 "per_class_accuracy.png", "class_counts.json", "resnet_cifar.py"):
        assert (out / name).exists(), name
    config = json.loads((out / "config.json").read_text())
    counts = json.loads((out / "class_counts.json").read_text())
    assert config["class_counts"] == counts and config["id2label"]["3"] == "3" and config["depth"] == 8
    results = json.loads((out / "eval_results.json").read_text())
    assert results["num_examples"] == 300 and results["accuracy"] == pytest.approx(metrics["accuracy"])
    card = (out / "README.md").read_text()
    assert "flat teacher" in card and "SAM (rho 0.05)" in card and "bal_ce" in card and "Few-shot" in card
    assert "run_deit_lt.py --teacher_name_or_path" in card

    model = AutoModelForImageClassification.from_pretrained(out, trust_remote_code=True).eval()
    assert model.config.id2label[0] == "0"
    processor = AutoImageProcessor.from_pretrained(out)
    assert tuple(processor.image_mean) == pytest.approx(get_normalization("digits")[0])
    from modeling_livt.data.digits import load_digits_dataset

    images = list(load_digits_dataset()["test"].select(range(4))["image"])
    with torch.no_grad():
        probs = model(processor(images, return_tensors="pt")["pixel_values"]).logits.softmax(-1)
    predictions = pipeline("image-classification", model=str(out), trust_remote_code=True, top_k=1)(images)
    for i, (top,) in enumerate(predictions):
        assert top["label"] == model.config.id2label[int(probs[i].argmax())]
        assert top["score"] == pytest.approx(probs[i].max().item(), abs=1e-5)
    teacher = DistillationTeacher.from_pretrained(str(out))
    assert teacher.image_size == 32 and teacher.mean == pytest.approx(get_normalization("digits")[0])

    # re-evaluated with run_eval.py, in place and elsewhere: still the teacher's card, with its recipe, and the new
    # results (head/mid/tail here)
    import run_eval

    def recipe_of(text):
        return text.split("## Recipe", 1)[1].split("\n## ", 1)[0]

    assert "SAM (rho 0.05)" in recipe_of(card)
    for eval_dir in (out, tmp_path / "evaluation"):
        again = run_eval.main(["--model_name_or_path", str(out), "--output_dir", str(eval_dir), *DATA[:4],
                               "--index_bounds", "3,7"])
        assert again["accuracy"] == pytest.approx(metrics["accuracy"])
        refreshed = (eval_dir / "README.md").read_text()
        assert "A **flat teacher**" in refreshed and "A **LiVT** vision transformer" not in refreshed
        assert recipe_of(refreshed) == recipe_of(card)
        assert f"| Tail (the 3 least frequent classes) | {100 * again['index_tail_accuracy']:.2f} % |" in refreshed
    # a folder whose card does not keep its inputs: the template of its model type, without a recipe
    (out / "README.md").unlink()
    run_eval.main(["--model_name_or_path", str(out), "--output_dir", str(tmp_path / "bare"), *DATA[:4]])
    bare = (tmp_path / "bare" / "README.md").read_text()
    assert "A **flat teacher**" in bare and "SAM (rho" not in bare
    # and it claims no loss it was not told: a bal_ce default on an LDAM-DRW teacher would be a false card
    assert "a loss not recorded in this card." in bare and "**bal_ce**" not in bare
    assert "Not recorded: this card was written without its training recipe" in bare
    assert "only while training" not in bare


def test_run_teacher_refuses_optim_before_the_data_is_loaded(tmp_path, monkeypatch):
    monkeypatch.setattr(run_teacher.ClassificationScript, "build_trainer",
                        lambda self: pytest.fail("the data was loaded"))
    with pytest.raises(ValueError, match="--optim adamw_torch: .*pass --sam_base_optimizer sgd or adamw"):
        run_teacher.main(DATA + FAST + ["--output_dir", str(tmp_path), "--optim", "adamw_torch"])


@pytest.mark.parametrize("flags, warmup_steps", [
    (dict(num_train_epochs=8), 8),                     # default: 5 epochs, at most a quarter of the run (2 x 4)
    (dict(num_train_epochs=40), 20),                   # default: the official 5 epochs (5 x 4)
    (dict(num_train_epochs=8, warmup_epochs=3), 12),   # explicit epochs
    (dict(num_train_epochs=8, warmup_epochs=0), 0),    # off
    (dict(num_train_epochs=8, warmup_steps=5), 5),     # explicit steps instead
])
def test_warmup_epochs_become_optimizer_steps(tmp_path, flags, warmup_steps):
    ds = _dataset(n=32)  # batch 8: 4 optimizer steps per epoch
    args = _args(tmp_path, lr_scheduler_type="linear", **{"warmup_steps": 0, **flags})
    trainer = TeacherTrainer(model=_resnet(), args=args, train_dataset=ds, class_counts=COUNTS)
    trainer.create_optimizer_and_scheduler(num_training_steps=4 * flags["num_train_epochs"])
    assert trainer.warmup_optimizer_steps(4 * flags["num_train_epochs"]) == warmup_steps
    assert trainer.args.warmup_steps == flags.get("warmup_steps", 0)  # the arguments are left as given
    lrs = []
    for _ in range(warmup_steps + 1):
        lrs.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    assert lrs[-1] == pytest.approx(0.05)  # the peak right after the warmup
    if warmup_steps:
        assert lrs[0] == 0.0 and lrs[warmup_steps // 2] == pytest.approx(0.05 * (warmup_steps // 2) / warmup_steps)


def test_warmup_epochs_under_max_steps_count_the_dataloaders_steps_per_epoch(tmp_path):
    """--max_steps 6 over 4 optimizer steps per epoch: 1 warmup epoch is 4 steps (the linear ramp reaches the peak
    lr 0.05 after step 4), read from Trainer's own count; a second train() gets the same schedule again."""
    args = _args(tmp_path, lr_scheduler_type="constant_with_warmup", max_steps=6, warmup_epochs=1)
    trainer = TeacherTrainer(model=_resnet(), args=args, train_dataset=_dataset(n=32), class_counts=COUNTS)
    for _ in range(2):
        trainer.train()
        lrs = [entry["learning_rate"] for entry in trainer.state.log_history if "learning_rate" in entry]
        # the lr logged at step k is the one the step used: k-1 of 4 warmup increments, then the peak
        assert lrs == pytest.approx([0.0, 0.0125, 0.025, 0.0375, 0.05, 0.05])
        assert trainer.args.warmup_steps == 0


def test_lr_decay_epochs_step_a_constant_rate_down_as_the_official_cifar_schedule(tmp_path):
    """8 epochs of 4 optimizer steps, 1 warmup epoch, x0.1 at epochs 4 and 6: the lr of every step against the
    official LDAM-DRW formula written out (warmup, then lr x gamma^(milestones passed)); resumed from a saved state, the
    same rates."""
    args = _args(tmp_path, lr_scheduler_type="constant_with_warmup", num_train_epochs=8, warmup_epochs=1,
                 lr_decay_epochs="4,6", lr_decay_gamma=0.1)
    trainer = TeacherTrainer(model=_resnet(), args=args, train_dataset=_dataset(n=32), class_counts=COUNTS)
    trainer.create_optimizer_and_scheduler(num_training_steps=32)
    lrs = []
    for _ in range(32):
        lrs.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    expected = [0.05 * (step / 4 if step < 4 else 1.0) * (0.1 if step >= 16 else 1.0) * (0.1 if step >= 24 else 1.0)
                for step in range(32)]
    assert lrs == pytest.approx(expected, rel=1e-9)
    assert lrs[3] == pytest.approx(0.0375) and lrs[15] == pytest.approx(0.05) and lrs[16] == pytest.approx(0.005)
    assert lrs[31] == pytest.approx(0.0005)
    # a resumed run: Trainer loads the scheduler's state into a new one of the same kind
    state = trainer.lr_scheduler.state_dict()
    again = TeacherTrainer(model=_resnet(), args=args, train_dataset=_dataset(n=32), class_counts=COUNTS)
    again.create_optimizer_and_scheduler(num_training_steps=32)
    again.lr_scheduler.load_state_dict(state)
    assert again.lr_scheduler.get_last_lr()[0] == pytest.approx(0.0005)


@pytest.mark.parametrize("flags, message", [
    (dict(lr_decay_epochs="4,6"), "--lr_decay_epochs 4,6: it steps a constant learning rate down, and "
                                  "--lr_scheduler_type is constant. Pass --lr_scheduler_type constant_with_warmup"),
    (dict(lr_decay_gamma=0.01), "--lr_decay_gamma 0.01: it is the factor of the --lr_decay_epochs steps, which are "
                                "not given"),
    (dict(lr_scheduler_type="constant_with_warmup", lr_decay_epochs="6,4"), "--lr_decay_epochs '6,4': give increasing"),
    (dict(lr_scheduler_type="constant_with_warmup", lr_decay_epochs="4,8"), r"inside the run \(0 < epoch < "
                                                                             r"--num_train_epochs 8\)"),
    (dict(lr_scheduler_type="constant_with_warmup", lr_decay_epochs="four"), "--lr_decay_epochs 'four': give"),
    (dict(lr_scheduler_type="constant_with_warmup", lr_decay_epochs="4", lr_decay_gamma=1.5),
     "--lr_decay_gamma 1.5: each step multiplies the learning rate by it; give a value between 0 and 1"),
])
def test_lr_decay_flags_refused_when_malformed_or_without_a_constant_schedule(tmp_path, flags, message):
    with pytest.raises(ValueError, match=message):
        _args(tmp_path, num_train_epochs=8, **flags)


def test_warmup_flags_refused_together_or_too_long(tmp_path):
    with pytest.raises(ValueError, match="--warmup_steps 5 and --warmup_epochs 2 both set the warmup: give one"):
        _args(tmp_path, warmup_steps=5, warmup_epochs=2)
    with pytest.raises(ValueError, match="--warmup_epochs 8 must be below --num_train_epochs 8"):
        _args(tmp_path, num_train_epochs=8, warmup_epochs=8)
