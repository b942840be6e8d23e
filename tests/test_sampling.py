"""Each epoch draws new augmentations (every trainer of the package, every script, any DataLoader worker setting) and
DeiT's repeated augmentation (layout under DDP, distinct augmentation per copy, resume)."""

import gc
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import Trainer

import modeling_livt as ml
from modeling_livt.data.digits import load_digits_dataset
from modeling_livt.data.transforms import (
    INDEX_COLUMN,
    DefaultImageCollator,
    apply_transform,
    build_finetune_transform,
    get_normalization,
    make_transform_fn,
)
from trainers import BalancedTrainer
from trainers.arguments import FinetuneTrainingArguments
from trainers.sampling import AugmentationEpochCallback, RepeatedAugmentationSampler, repeat_rows

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import run_deit_lt  # noqa: E402
import run_finetune  # noqa: E402
import run_mgp  # noqa: E402
import run_teacher  # noqa: E402

# a random 16 of digits may miss a class: the scripts train with plain CE here (a balanced loss refuses empty classes)
NUM_EXAMPLES = 16  # one batch holds every training example: an epoch's batch is a permutation of all of them


@pytest.fixture
def recorded_batches(monkeypatch):
    """Every training batch's pixel values, by epoch, as seen by Trainer.training_step (all trainers go through it)."""
    batches = {}
    original = Trainer.training_step

    def recording(self, model, inputs, num_items_in_batch=None):
        epoch = int(self.state.epoch or 0)
        batches.setdefault(epoch, []).extend(inputs["pixel_values"].detach().clone().unbind(0))
        return original(self, model, inputs, num_items_in_batch)

    monkeypatch.setattr(Trainer, "training_step", recording)
    return batches


def as_multiset(tensors):
    return Counter(t.numpy().tobytes() for t in tensors)


def assert_epochs_differ(batches):
    """Epoch 1 is not epoch 0 reshuffled: at most a few of its tensors already appeared in epoch 0."""
    first, second = as_multiset(batches[0]), as_multiset(batches[1])
    assert sum(first.values()) == sum(second.values()) == NUM_EXAMPLES
    repeated = sum((first & second).values())
    assert repeated <= NUM_EXAMPLES // 4, f"{repeated} of {NUM_EXAMPLES} augmented images repeat across epochs"


def seeded_digits_train(seed=0):
    train = load_digits_dataset()["train"].select(range(NUM_EXAMPLES))
    mean, std = get_normalization("digits")
    fn = make_transform_fn(build_finetune_transform(32, mean, std), seed=seed)
    return apply_transform(train, fn)


def tiny_classifier():
    config = ml.LiVTConfig(image_size=32, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, num_labels=10, class_counts=[10] * 10)
    return ml.LiVTForImageClassification(config)


def python_trainer(tmp_path, workers=0, persistent=False, **extra):
    args = FinetuneTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=NUM_EXAMPLES, num_train_epochs=2, report_to="none",
        eval_strategy="no", save_strategy="no", load_best_model_at_end=False, disable_tqdm=True,
        dataloader_num_workers=workers, dataloader_persistent_workers=persistent, seed=0, **extra,
    )
    return BalancedTrainer(model=tiny_classifier(), args=args, train_dataset=seeded_digits_train(),
                           data_collator=DefaultImageCollator())


@pytest.mark.parametrize("workers,persistent", [(0, False), (2, False), (2, True)])
def test_python_trainer_draws_new_augmentations_each_epoch(tmp_path, recorded_batches, workers, persistent):
    python_trainer(tmp_path, workers, persistent).train()
    assert_epochs_differ(recorded_batches)


def test_without_the_epoch_callback_augmentations_freeze(tmp_path, recorded_batches):
    """The counterfactual that the tests above guard against: no epoch update, the same images every epoch."""
    trainer = python_trainer(tmp_path)
    trainer.remove_callback(AugmentationEpochCallback)
    trainer.train()
    assert as_multiset(recorded_batches[0]) == as_multiset(recorded_batches[1])


NO_MIX = ["--mixup", "0", "--cutmix", "0", "--label_smoothing", "0"]
COMMON = ["--dataset_name", "digits", "--normalization", "digits", "--max_train_samples", str(NUM_EXAMPLES),
          "--max_eval_samples", "16", "--per_device_train_batch_size", str(NUM_EXAMPLES), "--num_train_epochs", "2",
          "--report_to", "none", "--disable_tqdm", "true", "--save_strategy", "no", "--eval_strategy", "no",
          "--seed", "0"]
VIT = ["--config_name", "tiny", "--image_size", "32", "--patch_size", "4", "--config_overrides",
       "hidden_size=32,num_hidden_layers=1,num_attention_heads=2,intermediate_size=64"]


SCRIPTS = {
    "run_mgp": lambda out, teacher, common: run_mgp.main(common + VIT + ["--output_dir", out]),
    "run_finetune": lambda out, teacher, common: run_finetune.main(
        common + VIT + NO_MIX + ["--output_dir", out, "--load_best_model_at_end", "false", "--loss_type", "ce"]),
    "run_teacher": lambda out, teacher, common: run_teacher.main(
        common + ["--config_overrides", "depth=8,base_width=4", "--output_dir", out, "--load_best_model_at_end",
                  "false", "--loss_type", "ce"]),
    "run_deit_lt": lambda out, teacher, common: run_deit_lt.main(
        common + VIT + NO_MIX + ["--teacher_name_or_path", str(teacher), "--output_dir", out,
                        "--load_best_model_at_end", "false", "--repeated_augmentation", "1"]),
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
@pytest.mark.parametrize("workers", ["0", "2", "2-persistent"])
def test_every_script_draws_new_augmentations_each_epoch(tmp_path, recorded_batches, teacher_dir, script, workers):
    flags = ["--dataloader_num_workers", workers.split("-")[0]]
    persistent = workers.endswith("persistent")
    if persistent:
        flags += ["--dataloader_persistent_workers", "true"]
        gc.collect()
        gc.disable()  # what the script leaves must be freed by reference counting alone
    try:
        SCRIPTS[script](str(tmp_path / "out"), teacher_dir, COMMON + flags)
        if persistent:
            # No reference cycle holds the trainer (callbacks hold it weakly; matplotlib's cycles are collected after
            # each plot): its persistent workers stopped cleanly when the script returned. A trainer left to the cycle
            # collector may lose its loaders' index queues first, and then each worker takes 5 s to be killed.
            assert not [obj for obj in gc.get_objects() if isinstance(obj, Trainer)]
    finally:
        gc.enable()
    assert_epochs_differ(recorded_batches)


# ---------------------------------------------------------------------------------------------------- repeated aug
def test_repeated_augmentation_sampler_is_deits_layout_under_ddp():
    n, repeats, processes, batch = 24, 3, 2, 4
    sampler = RepeatedAugmentationSampler(n, repeats, num_processes=processes, batch_size=batch, seed=1)
    sampler.set_epoch(2)
    order = list(sampler)
    # DeiT's RASampler, independently: permutation, each index repeated, dealt round-robin, truncated per rank
    generator = torch.Generator()
    generator.manual_seed(1 + 2)
    repeated = [i for i in torch.randperm(n, generator=generator).tolist() for _ in range(repeats)]
    deit = [repeated[rank::processes][: n // processes] for rank in range(processes)]
    # what each process receives through accelerate's batch sharding (as Trainer's prepared DataLoader does)
    from accelerate.data_loader import BatchSamplerShard

    batch_sampler = torch.utils.data.BatchSampler(sampler, batch, drop_last=False)
    got = [sum(BatchSamplerShard(batch_sampler, num_processes=processes, process_index=rank), [])
           for rank in range(processes)]
    assert got == deit and len(sampler) == n
    # the first image's three copies are spread over both processes (2 + 1)
    first = repeated[0]
    assert got[0][:2] == [first, first] and got[1][0] == first and got[1][1] != first
    assert set(Counter(order).values()) <= {1, 2, 3}
    sampler.set_epoch(3)
    assert list(sampler) != order


def test_repeated_augmentation_copies_get_their_own_augmentation(tmp_path):
    dataset = seeded_digits_train()
    expanded = repeat_rows(dataset, 3)
    assert len(expanded) == 3 * NUM_EXAMPLES and expanded.format["type"] == "custom"
    first, copy = expanded[0], expanded[NUM_EXAMPLES]
    assert first["labels"] == copy["labels"]
    assert not torch.equal(first["pixel_values"], copy["pixel_values"])  # same image, another augmentation
    raw = expanded.with_format(None)
    assert raw[NUM_EXAMPLES][INDEX_COLUMN] == NUM_EXAMPLES and raw[NUM_EXAMPLES]["image"] == raw[0]["image"]


def test_trainer_repeated_augmentation_epoch_is_three_copies_of_a_third(tmp_path, recorded_batches):
    trainer = python_trainer(tmp_path, repeated_augmentation=2)
    trainer.train()
    for epoch in (0, 1):
        seen = recorded_batches[epoch]
        assert len(seen) == NUM_EXAMPLES
        distinct = as_multiset(seen)
        assert len(distinct) == NUM_EXAMPLES  # every copy augmented differently


def test_repeated_augmentation_refuses_streamed_data(tmp_path):
    stream = Dataset.from_dict({"pixel_values": [[0.0]] * 4, "labels": [0] * 4}).to_iterable_dataset()
    args = FinetuneTrainingArguments(output_dir=str(tmp_path), max_steps=1, repeated_augmentation=3, report_to="none",
                                     eval_strategy="no", save_strategy="no", load_best_model_at_end=False)
    with pytest.raises(ValueError, match="needs a map-style training set"):
        BalancedTrainer(model=tiny_classifier(), args=args, train_dataset=stream)
