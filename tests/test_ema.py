"""Model EMA (--model_ema): exact update rule, one update per optimizer step, saved in checkpoints, exact resume."""

import os

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import TrainerCallback

import modeling_livt as ml
from tests.helpers import tiny_livt_config
from trainers import BalancedTrainer, LongTailTrainingArguments
from trainers.base import STAGING_DIR
from trainers.ema import EMA_DIR_NAME, EMA_WEIGHTS_NAME

COUNTS = [40, 20, 8, 2]
DECAY = 0.9  # visible in a few steps (the DeiT default 0.99996 barely moves)


def _dataset(n=32, size=32):
    gen = torch.Generator().manual_seed(0)
    pixels = torch.randn(n, 3, size, size, generator=gen)
    labels = torch.arange(n) % 4
    return Dataset.from_dict({"pixel_values": pixels.numpy().tolist(), "labels": labels.tolist()}).with_format("torch")


def _model():
    torch.manual_seed(0)
    return ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS, num_labels=4))


def _args(out, **kw):
    base = dict(
        output_dir=str(out),
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=0,
        data_seed=0,
        use_cpu=True,
        disable_tqdm=True,
        learning_rate=1e-2,
        lr_scheduler_type="constant",
        warmup_steps=0,
        layer_decay=1.0,
        per_device_train_batch_size=4,
        max_steps=4,
        model_ema=True,
        model_ema_decay=DECAY,
    )
    base.update(kw)
    return LongTailTrainingArguments(**base)


def _trainer(out, callbacks=None, **kw):
    return BalancedTrainer(model=_model(), args=_args(out, **kw), train_dataset=_dataset(), callbacks=callbacks)


class _Recorder(TrainerCallback):
    """Weights at the start of training and after every optimizer step; micro-batches seen."""

    def __init__(self):
        self.start, self.after_step, self.substeps = None, [], 0

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.start = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.after_step.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    def on_substep_end(self, args, state, control, **kwargs):
        self.substeps += 1


def _ema_state(trainer):
    return {k: v.detach().clone() for k, v in trainer.model_ema.state_dict().items()}


def _assert_same(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=k)


def test_ema_matches_a_reference_computed_by_hand(tmp_path):
    recorder = _Recorder()
    trainer = _trainer(tmp_path, callbacks=[recorder], max_steps=5)
    trainer.train()
    assert len(recorder.after_step) == 5
    ema = {k: v.clone() for k, v in recorder.start.items()}  # timm ModelEma: starts as a copy of the model
    for weights in recorder.after_step:
        for k in ema:
            ema[k] = DECAY * ema[k] + (1 - DECAY) * weights[k]
    got = _ema_state(trainer)
    _assert_same(got, ema, atol=1e-6)
    # the EMA really lags: it is neither the start nor the final weights
    key = "classifier.weight" if "classifier.weight" in got else next(k for k in got if k.endswith("weight"))
    assert not torch.allclose(got[key], recorder.after_step[-1][key])
    assert not torch.allclose(got[key], recorder.start[key])
    assert trainer.model_ema is not trainer.model and not any(p.requires_grad for p in trainer.model_ema.parameters())


def test_one_update_per_optimizer_step_with_gradient_accumulation(tmp_path):
    recorder = _Recorder()
    trainer = _trainer(tmp_path, callbacks=[recorder], max_steps=3, gradient_accumulation_steps=2)
    trainer.train()
    assert trainer.state.global_step == 3 and recorder.substeps == 3  # 6 micro-batches, 3 optimizer steps
    assert trainer.model_ema_callback.num_updates == 3
    assert int(trainer.model_ema_callback.averaged.n_averaged) == 1 + 3


def test_checkpoints_carry_the_ema_and_resume_is_exact(tmp_path):
    full = _trainer(tmp_path / "full", save_strategy="steps", save_steps=2)
    full.train()
    full_ema = _ema_state(full)
    for step in (2, 4):
        ckpt = tmp_path / "full" / f"checkpoint-{step}"
        saved = load_file(ckpt / EMA_WEIGHTS_NAME)
        assert saved.keys() == full.model.state_dict().keys()
    _assert_same(load_file(tmp_path / "full" / "checkpoint-4" / EMA_WEIGHTS_NAME), full_ema)
    assert not any((tmp_path / "full" / STAGING_DIR).glob("*"))  # written before the atomic rename, not after

    resumed = _trainer(tmp_path / "resumed", save_strategy="steps", save_steps=2)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    assert resumed.state.global_step == 4 and resumed.model_ema_callback.num_updates == 2
    _assert_same(resumed.model.state_dict(), full.model.state_dict(), atol=1e-7)
    _assert_same(_ema_state(resumed), full_ema, atol=1e-7)

    # the final save: OUTPUT_DIR/ema is a from_pretrained folder holding the EMA
    resumed.save_model()
    ema_dir = tmp_path / "resumed" / EMA_DIR_NAME
    loaded = ml.LiVTForImageClassification.from_pretrained(ema_dir)
    _assert_same({k: v.detach() for k, v in loaded.state_dict().items()}, _ema_state(resumed))
    assert (tmp_path / "resumed" / "model.safetensors").is_file()  # the raw model stays the main one


def test_resume_from_a_checkpoint_without_ema_fails_clearly(tmp_path):
    _trainer(tmp_path / "plain", model_ema=False, save_strategy="steps", save_steps=2, max_steps=2).train()
    ckpt = tmp_path / "plain" / "checkpoint-2"
    trainer = _trainer(tmp_path / "ema")
    with pytest.raises(RuntimeError, match="has no model_ema.safetensors"):
        trainer.train(resume_from_checkpoint=str(ckpt))


def test_off_switch_writes_no_ema(tmp_path):
    trainer = _trainer(tmp_path, model_ema=False, save_strategy="steps", save_steps=2)
    trainer.train()
    trainer.save_model()
    assert trainer.model_ema is None and trainer.model_ema_callback is None
    assert not any(type(cb).__name__ == "ModelEMACallback" for cb in trainer.callback_handler.callbacks)
    written = [os.path.join(root, f) for root, _, files in os.walk(tmp_path) for f in files]
    assert not any(EMA_WEIGHTS_NAME in f for f in written) and not (tmp_path / EMA_DIR_NAME).exists()
    assert (tmp_path / "checkpoint-2" / "model.safetensors").is_file()


def test_decay_is_validated_and_defaults_to_deit():
    assert LongTailTrainingArguments(output_dir="x").model_ema_decay == 0.99996
    assert LongTailTrainingArguments(output_dir="x").model_ema is False
    from trainers.ema import ModelEMACallback

    with pytest.raises(ValueError, match="model_ema_decay"):
        ModelEMACallback(decay=1.5)


def test_load_best_model_at_end_brings_back_that_checkpoints_ema(tmp_path):
    # "best" = highest eval loss, so that the best checkpoint is an early one, not the last
    trainer = BalancedTrainer(
        model=_model(),
        args=_args(tmp_path, save_strategy="steps", save_steps=2, eval_strategy="steps", eval_steps=2,
                   load_best_model_at_end=True, metric_for_best_model="loss", greater_is_better=True),
        train_dataset=_dataset(),
        eval_dataset=_dataset(8),
    )
    trainer.train()
    best = trainer.state.best_model_checkpoint
    assert best is not None and not best.endswith("checkpoint-4")
    _assert_same(_ema_state(trainer), load_file(os.path.join(best, EMA_WEIGHTS_NAME)))
    assert not torch.equal(_ema_state(trainer)["fc_norm.weight"],
                           load_file(tmp_path / "checkpoint-4" / EMA_WEIGHTS_NAME)["fc_norm.weight"])
