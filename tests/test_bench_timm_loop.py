"""bench/timm_loop.py, the independent loop: the same split, losses and scores as the package, from its own code."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import timm_loop  # noqa: E402

from modeling_livt.data.long_tail import carve_unused_validation_split, long_tailed_indices  # noqa: E402
from modeling_livt.evaluation.metrics import long_tail_metrics  # noqa: E402
from modeling_livt.models.losses import BalancedBCELoss, BalancedCELoss  # noqa: E402

COUNTS = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]  # CIFAR-10-LT rho = 100


def test_split_is_the_packages():
    labels = np.random.default_rng(3).permutation(np.repeat(np.arange(10), 500))
    train, validation = timm_loop.long_tail_split(labels, 100.0)
    assert np.bincount(labels[train]).tolist() == [int(500 * 0.01 ** (i / 9)) for i in range(10)]
    assert train == long_tailed_indices(labels, 100.0, seed=0)
    assert validation == carve_unused_validation_split(labels, train, 10, seed=0)[0]
    assert not set(train) & set(validation)
    # the head class keeps all 500 images, so it gives none to validation; the others give 50 each
    assert np.bincount(labels[validation], minlength=10).tolist() == [0] + [50] * 9


def test_losses_are_the_papers_and_the_packages():
    torch.manual_seed(0)
    logits, labels = torch.randn(16, 10), torch.randint(0, 10, (16,))
    prior = np.asarray(COUNTS, dtype=np.float64) / sum(COUNTS)
    z = logits.double().numpy() + np.log(prior) - np.log1p(-prior)
    y = np.eye(10)[labels.numpy()]
    longhand = np.mean(np.sum(np.logaddexp(0, z) - y * z, axis=1))  # BCE with logits, summed over classes
    bal_bce = timm_loop.balanced_loss("bal_bce", COUNTS)(logits, labels)
    assert bal_bce.item() == pytest.approx(longhand, rel=1e-5)
    assert bal_bce.item() == pytest.approx(BalancedBCELoss(COUNTS)(logits, labels).item(), rel=1e-6)
    bal_ce = timm_loop.balanced_loss("bal_ce", COUNTS)(logits, labels)
    assert bal_ce.item() == pytest.approx(BalancedCELoss(COUNTS)(logits, labels).item(), rel=1e-6)
    assert bal_ce.item() != pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-3)


def test_scores_match_long_tail_metrics():
    torch.manual_seed(1)
    labels = torch.arange(300) % 10
    logits = torch.randn(300, 10) + 2.0 * torch.nn.functional.one_hot(labels, 10) * (torch.rand(300, 1) > 0.4)
    ours = timm_loop.score_predictions(logits, labels, COUNTS)
    by_count = long_tail_metrics(logits, labels, COUNTS)
    by_index = long_tail_metrics(logits, labels, COUNTS, split="index", index_bounds="cifar10")
    for key in ("accuracy", "ece", "many_shot_accuracy", "medium_shot_accuracy"):
        assert ours[key] == pytest.approx(by_count[key], abs=1e-6), key
    assert ours["few_shot_accuracy"] is None and by_count["few_shot_accuracy"] is None
    for key, theirs in (("index_head_accuracy", "many_shot_accuracy"), ("index_mid_accuracy", "medium_shot_accuracy"),
                        ("index_tail_accuracy", "few_shot_accuracy")):
        assert ours[key] == pytest.approx(by_index[theirs], abs=1e-6), key
    per_class = [(logits.argmax(-1)[labels == c] == c).float().mean().item() for c in range(10)]
    assert ours["index_tail_accuracy"] == pytest.approx(np.mean(per_class[7:]))


def test_bad_flags_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        timm_loop.parse_args(["--losses", "focal", "--dataset", str(tmp_path)])
    assert "--losses: unknown ['focal']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        timm_loop.parse_args(["--dataset", str(tmp_path / "missing")])
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_a_short_run_end_to_end_and_its_resume(cifar10_dir, tmp_path):
    data = cifar10_dir
    prefix = tmp_path / "loop"
    argv = ["--dataset", str(data), "--epochs", "1", "--max_train_samples", "64", "--max_eval_samples", "64",
            "--results_prefix", str(prefix), "--threads", "1"]
    results = timm_loop.main(argv)
    saved = json.loads(prefix.with_suffix(".json").read_text())
    assert [(r["recipe"], r["seed"]) for r in saved["results"]] == [("bal_bce", 0)] == \
        [(r["recipe"], r["seed"]) for r in results]
    run = saved["results"][0]
    assert run["class_counts"] == COUNTS and run["validation"]["best_epoch"] == 1
    assert 0.0 <= run["metrics"]["accuracy"] <= 1.0 and len(run["metrics"]["per_class_accuracy"]) == 10
    report = prefix.with_suffix(".md").read_text()
    assert "| Bal-BCE | 0 |" in report and "bench/timm_loop.py --dataset" in report
    before = prefix.with_suffix(".json").read_text()
    timm_loop.main(argv)  # the finished run is skipped, not retrained
    assert prefix.with_suffix(".json").read_text() == before
