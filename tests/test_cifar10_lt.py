"""Real data: CIFAR-10-LT (rho = 100) built from ../shared/data/cifar10 (skips when absent)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import run_finetune  # noqa: E402

CIFAR10_LT_COUNTS = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_cifar10_lt_short_finetune_on_balanced_test_split(cifar10_dir, tmp_path):
    cifar = cifar10_dir
    out = tmp_path / "c10lt"
    metrics = run_finetune.main(
        [
            "--dataset_name",
            str(cifar),
            "--imbalance_factor",
            "100",
            "--validation_split_percentage",
            "2",
            "--normalization",
            "cifar",
            "--config_name",
            "tiny",
            "--image_size",
            "32",
            "--patch_size",
            "8",
            "--config_overrides",
            "hidden_size=32,num_hidden_layers=1,num_attention_heads=2,intermediate_size=64",
            "--output_dir",
            str(out),
            "--max_steps",
            "3",
            "--per_device_train_batch_size",
            "32",
            "--per_device_eval_batch_size",
            "500",
            "--eval_strategy",
            "no",
            "--save_strategy",
            "no",
            "--load_best_model_at_end",
            "false",
            "--report_to",
            "none",
            "--disable_tqdm",
            "true",
        ]
    )
    counts = json.loads((out / "class_counts.json").read_text())
    # the benchmark's training set: the full pool is long-tailed, validation comes from the unused images
    assert counts == CIFAR10_LT_COUNTS
    results = json.loads((out / "eval_results.json").read_text())
    assert results["num_examples"] == 10_000 and results["split"] == "test"  # the full balanced test split
    assert results["few_shot_accuracy"] is None  # no CIFAR-10-LT class has fewer than 20 training images
    # the returned metrics are the saved ones, an exact count over the 10,000 images, and the many-shot group is the
    # mean of its classes' accuracies (classes with > 100 training images)
    assert metrics["accuracy"] == pytest.approx(results["accuracy"])
    assert metrics["accuracy"] * 10_000 == pytest.approx(round(metrics["accuracy"] * 10_000))
    many = [c for c, n in enumerate(CIFAR10_LT_COUNTS) if n > 100]
    assert results["many_shot_accuracy"] == pytest.approx(np.mean([results["per_class_accuracy"][c] for c in many]))
    card = (out / "README.md").read_text()
    assert "model-index" in card and "Few-shot" not in card.split("## Training data")[0]


def test_cifar10_lt_counts_are_exact(cifar10_dir):
    from datasets import load_dataset

    from modeling_livt import make_long_tailed

    cifar = cifar10_dir
    train = load_dataset(str(cifar), split="train")
    lt = make_long_tailed(train, 100)
    counts = [0] * 10
    for label in lt["label"]:
        counts[label] += 1
    assert counts == CIFAR10_LT_COUNTS and len(lt) == 12_406
