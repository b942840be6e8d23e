"""Class-aware sampling (`--sampler`, Kang et al. 2020) and classifier re-training (`--freeze_encoder`, cRT):
distributions against the paper's formulas over many draws, the progressive schedule, determinism per epoch, the
DDP layout through accelerate, an exact kill-and-resume, the frozen encoder, and the errors on bad input."""

import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from datasets import ClassLabel, Dataset, Features, Value
from scipy.stats import chisquare
from transformers import Trainer

import modeling_livt as ml
from tests.helpers import TINY
from trainers import BalancedTrainer, DeiTLTTrainer
from trainers.arguments import FinetuneTrainingArguments
from trainers.class_sampling import ClassAwareSampler, dataset_labels, training_epochs
from trainers.freezing import classification_heads, freeze_encoder
from trainers.optim import param_groups
from trainers.sampling import RepeatedAugmentationSampler
from trainers.script_builder import sampling_recipe

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import run_finetune  # noqa: E402

COUNTS = [400, 120, 30, 8]  # a long tail: 558 images, imbalance 50
LABELS = [c for c, n in enumerate(COUNTS) for _ in range(n)]


def kang_probabilities(counts, q):
    """Kang et al. 2020, eq. 1, written out: p_j = n_j^q / sum_i n_i^q."""
    powered = [n**q for n in counts]
    return [p / sum(powered) for p in powered]


def empirical_class_frequencies(sampler, epochs):
    drawn = Counter()
    for epoch in epochs:
        sampler.set_epoch(epoch)
        drawn.update(LABELS[i] for i in sampler)
    total = sum(drawn.values())
    return np.array([drawn[c] / total for c in range(len(COUNTS))]), total


# ------------------------------------------------------------------------------------------------- distributions
@pytest.mark.parametrize("strategy,q", [("instance", 1.0), ("class_balanced", 0.0), ("square_root", 0.5)])
def test_class_frequencies_follow_kang_formula_over_many_draws(strategy, q):
    sampler = ClassAwareSampler(LABELS, strategy, seed=3)
    expected = np.array(kang_probabilities(COUNTS, q))
    np.testing.assert_allclose(sampler.probabilities(), expected, rtol=1e-12)
    frequencies, total = empirical_class_frequencies(sampler, range(60))  # 33,480 draws
    assert total == 60 * len(LABELS)  # an epoch draws as many images as the training set has
    assert np.abs(frequencies - expected).max() < 0.01
    assert chisquare(frequencies * total, expected * total).pvalue > 1e-3


def test_images_within_a_class_are_equally_likely():
    sampler = ClassAwareSampler(LABELS, "class_balanced", seed=0)
    tail_rows = [i for i, label in enumerate(LABELS) if label == 3]
    drawn = Counter()
    for epoch in range(40):
        sampler.set_epoch(epoch)
        drawn.update(i for i in sampler if LABELS[i] == 3)
    observed = [drawn[i] for i in tail_rows]
    assert sum(drawn.values()) == sum(observed)  # only the tail's own rows carry its label
    assert chisquare(observed).pvalue > 1e-3  # uniform over the class's 8 images


def test_progressive_moves_from_instance_to_class_balanced():
    num_epochs = 10
    sampler = ClassAwareSampler(LABELS, "progressive", num_epochs=num_epochs, seed=0)
    instance, balanced = np.array(kang_probabilities(COUNTS, 1)), np.array(kang_probabilities(COUNTS, 0))
    np.testing.assert_allclose(sampler.probabilities(0), instance, rtol=1e-12)
    np.testing.assert_allclose(sampler.probabilities(num_epochs), balanced, rtol=1e-12)
    np.testing.assert_allclose(sampler.probabilities(3), 0.7 * instance + 0.3 * balanced, rtol=1e-12)
    np.testing.assert_allclose(sampler.probabilities(25), balanced, rtol=1e-12)  # past T: stays class-balanced
    for epoch, expected in ((0, instance), (num_epochs, balanced)):
        many = ClassAwareSampler(LABELS, "progressive", num_epochs=num_epochs, num_samples=30_000, seed=1)
        frequencies, total = empirical_class_frequencies(many, [epoch])
        assert chisquare(frequencies * total, expected * total).pvalue > 1e-3


def test_a_class_without_images_gets_no_share():
    labels = [0] * 6 + [2] * 2  # class 1 is empty
    sampler = ClassAwareSampler(labels, "class_balanced")
    np.testing.assert_allclose(sampler.probabilities(), [0.5, 0.0, 0.5])
    assert 1 not in {labels[i] for i in sampler}


# ------------------------------------------------------------------------------------------- determinism, DDP
def test_an_epochs_indices_are_a_pure_function_of_seed_and_epoch():
    first = ClassAwareSampler(LABELS, "square_root", seed=7)
    second = ClassAwareSampler(LABELS, "square_root", seed=7)  # another process, or a resumed run
    for epoch in (5, 0, 3):  # the order of calls does not matter
        first.set_epoch(epoch)
    second.set_epoch(3)
    assert list(first) == list(second) == first.epoch_indices(3)
    assert first.epoch_indices(3) != first.epoch_indices(4)
    assert first.epoch_indices(0) != ClassAwareSampler(LABELS, "square_root", seed=8).epoch_indices(0)
    # (seed, epoch) are mixed, not added: seed 1 epoch 0 is not seed 0 epoch 1
    assert ClassAwareSampler(LABELS, "square_root", seed=1).epoch_indices(0) != first.epoch_indices(1)


@pytest.mark.parametrize("drop_last", [False, True])
def test_ddp_processes_get_disjoint_shares_covering_the_epoch(drop_last):
    """Each process builds its own sampler; accelerate (as Trainer's prepared DataLoader) deals batch k to process
    k % num_processes: the shares are disjoint slices of the epoch's list and, interleaved, give it back."""
    processes, batch, num_samples = 3, 8, 240  # 30 batches: 10 per process
    shares = []
    for rank in range(processes):
        sampler = ClassAwareSampler(LABELS, "class_balanced", num_samples=num_samples, seed=11)
        sampler.set_epoch(2)
        batches = torch.utils.data.BatchSampler(sampler, batch, drop_last=drop_last)
        shares.append(list(BatchSamplerShard(batches, num_processes=processes, process_index=rank)))
    epoch = ClassAwareSampler(LABELS, "class_balanced", num_samples=num_samples, seed=11).epoch_indices(2)
    dealt = [epoch[k * batch : (k + 1) * batch] for k in range(num_samples // batch)]
    for rank in range(processes):
        assert shares[rank] == dealt[rank::processes]
    positions = [k for rank in range(processes) for k in range(rank, len(dealt), processes)]
    assert sorted(positions) == list(range(len(dealt)))  # disjoint and covering, batch by batch


def test_repeated_augmentation_repeats_the_class_aware_draw():
    n, repeats = len(LABELS), 3
    class_aware = ClassAwareSampler(LABELS, "class_balanced", seed=0)
    sampler = RepeatedAugmentationSampler(n, repeats, copies_are_rows=True, image_order=class_aware.epoch_indices)
    sampler.set_epoch(4)
    order = class_aware.epoch_indices(4)
    # the first third of the epoch's class-balanced draw, each image three times (copy c of image i is row c*n + i)
    assert list(sampler) == [i + copy * n for i in order[: n // repeats] for copy in range(repeats)]


# ------------------------------------------------------------------------------------------------- trainer wiring
def tiny_livt(**overrides):
    return ml.LiVTForImageClassification(ml.LiVTConfig(**{**TINY, "num_labels": 4, "class_counts": COUNTS,
                                                          "loss_type": "ce", **overrides}))


def tensor_dataset(labels, seed=0):
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.rand(len(labels), 3, 32, 32, generator=generator)
    return Dataset.from_dict({"pixel_values": pixels.numpy(), "labels": labels}).with_format("torch")


def trainer_args(tmp_path, **extra):
    return FinetuneTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=16, report_to="none", eval_strategy="no",
        save_strategy="no", load_best_model_at_end=False, disable_tqdm=True, seed=0, learning_rate=1e-2,
        warmup_steps=0, weight_decay=0.0, **extra,
    )


def test_trainer_trains_on_the_progressive_samplers_indices(tmp_path, monkeypatch):
    labels = [0] * 30 + [1] * 10 + [2] * 5 + [3] * 3  # 48 rows: 3 batches of 16 per epoch
    seen = {}
    original = Trainer.training_step

    def recording(self, model, inputs, num_items_in_batch=None):
        seen.setdefault(int(self.state.epoch or 0), []).extend(inputs["labels"].tolist())
        return original(self, model, inputs, num_items_in_batch)

    monkeypatch.setattr(Trainer, "training_step", recording)
    trainer = BalancedTrainer(model=tiny_livt(), args=trainer_args(tmp_path, max_steps=6, sampler="progressive"),
                              train_dataset=tensor_dataset(labels))
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, ClassAwareSampler) and list(sampler.labels) == labels
    trainer.train()
    assert sampler.num_epochs == trainer.state.num_train_epochs == 2  # T as Trainer counts the run's epochs
    for epoch in (0, 1):
        assert seen[epoch] == [labels[i] for i in sampler.epoch_indices(epoch)]


def test_labels_are_read_from_the_transforms_label_column_without_decoding():
    features = Features({"image": Value("string"), "digit": Value("int64"), "label": Value("int64")})
    raw = Dataset.from_dict({"image": ["not an image"] * 3, "digit": [2, 0, 1], "label": [9, 9, 9]}, features=features)

    def transform(batch):  # would fail on the fake images: only the label column may be read
        raise AssertionError("the transform ran")

    transform.label_column = "digit"
    assert dataset_labels(raw.with_transform(transform)) == [2, 0, 1]
    class_label = Dataset.from_dict({"y": [1, 0]}, features=Features({"y": ClassLabel(names=["a", "b"])}))
    assert dataset_labels(class_label) == [1, 0]


def test_training_epochs_matches_trainers_count(tmp_path):
    args = trainer_args(tmp_path, max_steps=7, gradient_accumulation_steps=2)  # 50 rows: 4 batches, 2 updates
    assert training_epochs(args, 50) == math.ceil(7 / 2)
    assert training_epochs(trainer_args(tmp_path, num_train_epochs=2.5), 50) == 3


def test_card_recipe_names_the_sampler_and_crt(tmp_path):
    recipe = sampling_recipe(trainer_args(tmp_path, sampler="square_root", freeze_encoder=True))
    assert recipe["sampler"].startswith("square-root (p_j ~ sqrt(n_j)")
    assert recipe["classifier re-training (cRT)"] == (
        "encoder frozen, classification head(s) re-initialised and re-trained")
    assert "classifier re-training (cRT)" not in sampling_recipe(trainer_args(tmp_path))


# ------------------------------------------------------------------------------------------ cRT (frozen encoder)
def tiny_deit_lt():
    return ml.DeiTLTForImageClassification(ml.DeiTLTConfig(
        image_size=32, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        num_labels=4, class_counts=COUNTS))


def tiny_resnet():
    return ml.ResNetCifarForImageClassification(ml.ResNetCifarConfig(depth=8, base_width=4, num_labels=4))


MODELS = {  # model, expected heads, trainer class and its kwargs
    "livt": (lambda: tiny_livt(drop_path_rate=0.5), {"classifier"}, BalancedTrainer, dict),
    "deit_lt": (tiny_deit_lt, {"classifier", "distillation_classifier"}, DeiTLTTrainer,
                lambda: {"teacher": tiny_resnet()}),  # the DIST head learns from the teacher
    "resnet_cifar": (tiny_resnet, {"linear"}, BalancedTrainer, lambda: {"class_counts": COUNTS, "loss_type": "ce"}),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_freeze_encoder_trains_only_the_heads(tmp_path, name):
    build, head_names, trainer_class, trainer_kwargs = MODELS[name]
    torch.manual_seed(0)
    model = build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args = trainer_args(tmp_path, max_steps=3, freeze_encoder=True, sampler="class_balanced", layer_decay=1.0)
    trainer = trainer_class(model=model, args=args, train_dataset=tensor_dataset(LABELS[::8]), **trainer_kwargs())
    assert set(classification_heads(model)) == head_names
    head_keys = {k for k in before if k.split(".")[0] in head_names}
    after_init = model.state_dict()
    for key in head_keys:  # cRT re-initialises the heads (biases start at zero again)
        if key.endswith("weight"):
            assert not torch.equal(after_init[key], before[key]), key
    reinitialised = {k: v.clone() for k, v in after_init.items()}
    trainer.train()
    after = model.state_dict()
    for key in before.keys() - head_keys:  # weights, BatchNorm statistics, counters: bit for bit
        assert torch.equal(after[key], before[key]), key
    assert all(not torch.equal(after[k], reinitialised[k]) for k in head_keys if k.endswith("weight"))
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    heads = [p for head in classification_heads(model).values() for p in head.parameters()]
    assert optimized == {id(p) for p in heads}


def test_freeze_encoder_can_keep_the_trained_head_and_copes_with_layer_decay():
    model = tiny_livt()
    head = model.classifier.weight.clone()
    trainable, total = freeze_encoder(model, reinit_head=False)
    assert torch.equal(model.classifier.weight, head)
    assert trainable == sum(p.numel() for p in model.classifier.parameters()) and total > trainable
    groups = param_groups(model, weight_decay=0.05, layer_decay=0.75)  # only the head, at the top layer's scale
    assert sorted(sum(p.numel() for p in g["params"]) for g in groups) == [4, 32 * 4]
    assert {g["lr_scale"] for g in groups} == {1.0}
    model.train()
    model(torch.rand(2, 3, 32, 32))
    assert not model.livt.training and not model.fc_norm.training and model.classifier.training


def test_crt_from_a_trained_folder_with_the_finetune_script(tmp_path):
    """The README's cRT command: run_finetune.py --model_name_or_path <trained> --freeze_encoder --sampler ..."""
    trained = tmp_path / "trained"
    torch.manual_seed(0)
    model = ml.LiVTForImageClassification(ml.LiVTConfig(**{**TINY, "num_labels": 10, "class_counts": [10] * 10}))
    model.save_pretrained(trained)
    out = tmp_path / "crt"
    run_finetune.main([
        "--model_name_or_path", str(trained), "--freeze_encoder", "true", "--sampler", "class_balanced",
        "--dataset_name", "digits", "--imbalance_factor", "10", "--normalization", "digits", "--max_steps", "2",
        "--per_device_train_batch_size", "16", "--max_eval_samples", "16", "--eval_strategy", "no",
        "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true", "--mixup", "0", "--cutmix", "0",
        "--output_dir", str(out),
    ])
    card = (out / "README.md").read_text()
    assert "class-balanced (p_j = 1/C" in card and "encoder frozen, classification head(s) re-initialised" in card
    saved = ml.LiVTForImageClassification.from_pretrained(out).state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith("classifier."):
            assert torch.equal(saved[key], value), key


# ------------------------------------------------------------------------------------------------- bad input
def test_unknown_sampler_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown sampler 'balanced'; choose one of \['instance', 'class_balanced'"):
        trainer_args(tmp_path, sampler="balanced")
    with pytest.raises(ValueError, match="Unknown sampler 'sqrt'"):
        ClassAwareSampler(LABELS, "sqrt")


def test_class_aware_sampling_refuses_streamed_data(tmp_path):
    stream = tensor_dataset([0, 1, 2, 3]).with_format(None).to_iterable_dataset()
    args = trainer_args(tmp_path, max_steps=1, sampler="class_balanced")
    with pytest.raises(ValueError, match="--sampler class_balanced needs a map-style training set.*--sampler instance"):
        BalancedTrainer(model=tiny_livt(), args=args, train_dataset=stream)
    with pytest.raises(ValueError, match="streamed dataset has no index. Drop --streaming or pass --sampler instance"):
        dataset_labels(stream)


def test_other_bad_inputs_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="progressive sampler needs num_epochs"):
        ClassAwareSampler(LABELS, "progressive")
    unlabeled = Dataset.from_dict({"pixel_values": [[0.0]] * 2, "target_id": [0, 1]})
    with pytest.raises(ValueError, match="cannot tell the label column among.*class_encode_column"):
        dataset_labels(unlabeled)
    mgp = ml.LiVTForMaskedImageModeling(ml.LiVTConfig(**TINY))
    with pytest.raises(ValueError, match="LiVTForMaskedImageModeling has no classification head"):
        freeze_encoder(mgp)
