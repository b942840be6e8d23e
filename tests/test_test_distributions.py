"""Shifted test distributions (SADE's forward/uniform/backward re-sampling of the balanced test split) and the post-hoc
logit adjustment to a known target prior, checked against hand-built references on fixed prediction sets; then
`run_eval.py --test_distributions --target_prior` end to end on digits."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from modeling_livt.evaluation.test_distributions import (
    distribution_prior,
    evaluate_test_distributions,
    expected_accuracy,
    parse_distribution,
    parse_target_prior,
    parse_test_distributions,
    shifted_class_counts,
    shifted_test_indices,
    target_prior_logits,
    training_ranks,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

CIFAR10_LT = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def _fixed_predictions(num_classes=10, per_class=100, seed=0):
    """A balanced prediction set whose class c is right with probability ~ (c + 1) / (C + 1)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), per_class)
    logits = rng.normal(size=(labels.size, num_classes))
    right = rng.random(labels.size) < (labels + 1) / (num_classes + 1)
    logits[np.arange(labels.size), labels] += np.where(right, 10.0, -10.0)
    return logits, labels


def test_parse_names():
    assert parse_distribution("forward50") == ("forward", 50.0)
    assert parse_distribution("Backward10") == ("backward", 10.0)
    assert parse_distribution("uniform") == ("uniform", 1.0)
    assert parse_test_distributions("forward50, uniform,forward50,backward2") == ["forward50", "uniform", "backward2"]
    for bad in ("forward", "sideways10", "forward0.5", "10"):
        with pytest.raises(ValueError):
            parse_distribution(bad)


def test_counts_follow_the_long_tail_profile_exactly():
    # SADE / LDAM-DRW: n_r = int(m * (1/N) ** (r / (C - 1))), head = the training head; backward reverses it
    m, num_classes = 1000, 10
    forward = [int(m * (1 / 50) ** (r / (num_classes - 1))) for r in range(num_classes)]
    assert shifted_class_counts("forward50", m, CIFAR10_LT) == forward
    assert shifted_class_counts("backward50", m, CIFAR10_LT) == forward[::-1]
    assert shifted_class_counts("uniform", m, CIFAR10_LT) == [m] * num_classes
    # a training split whose head is not label 0: the counts follow the training ranks
    train = [10, 500, 40, 500, 1]  # ranks: 1 -> 0, 3 -> 1 (tie by label), 2 -> 2, 0 -> 3, 4 -> 4
    assert training_ranks(train).tolist() == [3, 0, 2, 1, 4]
    profile = [int(20 * (1 / 10) ** (r / 4)) for r in range(5)]
    assert shifted_class_counts("forward10", 20, train) == [profile[3], profile[0], profile[2], profile[1], profile[4]]
    assert shifted_class_counts("backward10", 20, train) == [profile[1], profile[4], profile[2], profile[3], profile[0]]


def test_resampled_class_counts_and_seeds():
    logits, labels = _fixed_predictions(per_class=100)
    for name in ("forward50", "forward10", "backward10", "backward50"):
        rows = shifted_test_indices(labels, name, CIFAR10_LT, seed=3)
        assert rows == sorted(set(rows))
        counts = np.bincount(labels[rows], minlength=10).tolist()
        assert counts == shifted_class_counts(name, 100, CIFAR10_LT)
        assert rows == shifted_test_indices(labels, name, CIFAR10_LT, seed=3)  # a seed reproduces the draw
        assert rows != shifted_test_indices(labels, name, CIFAR10_LT, seed=4)  # another seed draws other images
    assert shifted_test_indices(labels, "uniform", CIFAR10_LT) == list(range(labels.size))  # the split itself
    # an unbalanced split: cut to its smallest class's size
    uneven = np.concatenate([labels, [0, 0, 1]])
    assert np.bincount(uneven[shifted_test_indices(uneven, "uniform", CIFAR10_LT)]).tolist() == [100] * 10


def test_resampled_accuracy_is_the_prior_weighted_per_class_accuracy():
    logits, labels = _fixed_predictions(per_class=100)
    predictions = logits.argmax(1)
    per_class = np.array([(predictions[labels == c] == c).mean() for c in range(10)])  # independent reference
    results = evaluate_test_distributions(logits, labels, CIFAR10_LT, ["forward50", "uniform", "backward50"], seed=0)
    for name, result in results.items():
        counts = np.array(shifted_class_counts(name, 100, CIFAR10_LT))
        assert result["class_counts"] == counts.tolist() and result["num_examples"] == counts.sum()
        # the expectation, computed independently: the continuous profile N^(-r/(C-1)) as class prior
        direction, factor = parse_distribution(name)
        ranks = np.arange(10) if direction != "backward" else np.arange(10)[::-1]
        prior = factor ** (-ranks / 9.0)
        prior /= prior.sum()
        assert result["expected_accuracy"] == pytest.approx(float(prior @ per_class), abs=1e-12)
        # one draw: within sampling noise of the expectation given its own class counts
        rows = shifted_test_indices(labels, name, CIFAR10_LT, seed=0)
        assert result["accuracy"] == pytest.approx((predictions[rows] == labels[rows]).mean(), abs=1e-12)
        count_weighted = float(counts @ per_class / counts.sum())
        assert abs(result["accuracy"] - count_weighted) < 0.1
    # class c is more often right for larger c: backward (tail-heavy) beats forward
    assert results["backward50"]["expected_accuracy"] > results["uniform"]["expected_accuracy"]
    assert results["uniform"]["expected_accuracy"] > results["forward50"]["expected_accuracy"]
    assert results["uniform"]["accuracy"] == pytest.approx(per_class.mean())


def test_exact_when_every_class_is_all_right_or_all_wrong():
    # per-class accuracy 0 or 1: any draw with the profile's counts gives exactly the count-weighted accuracy
    labels = np.repeat(np.arange(10), 50)
    logits = np.zeros((labels.size, 10))
    right = labels % 3 == 0
    logits[np.arange(labels.size), np.where(right, labels, (labels + 1) % 10)] = 5.0
    for seed in (0, 1, 2):
        result = evaluate_test_distributions(logits, labels, CIFAR10_LT, ["forward10"], seed=seed)["forward10"]
        counts = np.array(shifted_class_counts("forward10", 50, CIFAR10_LT))
        assert result["accuracy"] == pytest.approx(counts[np.arange(10) % 3 == 0].sum() / counts.sum(), abs=1e-12)


def test_expected_accuracy_and_priors():
    logits, labels = _fixed_predictions()
    assert distribution_prior("uniform", CIFAR10_LT) == pytest.approx(np.full(10, 0.1))
    forward = distribution_prior("forward50", CIFAR10_LT)
    assert forward.sum() == pytest.approx(1) and forward[0] / forward[-1] == pytest.approx(50)
    assert distribution_prior("backward50", CIFAR10_LT) == pytest.approx(forward[::-1])
    one_hot = np.eye(10)[4]
    predictions = logits.argmax(1)
    assert expected_accuracy(logits, labels, one_hot) == pytest.approx((predictions[labels == 4] == 4).mean())


def test_target_prior_parsing(tmp_path):
    name, prior = parse_target_prior("forward50", CIFAR10_LT)
    assert name == "forward50" and prior == pytest.approx(distribution_prior("forward50", CIFAR10_LT))
    _, prior = parse_target_prior("1,1,1,1,1,1,1,1,1,2", CIFAR10_LT)
    assert prior == pytest.approx(np.array([1] * 9 + [2]) / 11)
    path = tmp_path / "prior.json"
    path.write_text(json.dumps({"prior": list(range(1, 11))}))
    assert parse_target_prior(str(path), CIFAR10_LT)[1] == pytest.approx(np.arange(1, 11) / 55)
    with pytest.raises(ValueError, match="10 classes"):
        parse_target_prior("1,2", CIFAR10_LT)
    with pytest.raises(ValueError, match="positive"):
        parse_target_prior(",".join(["0"] + ["1"] * 9), CIFAR10_LT)


def test_target_prior_adjustment_equals_the_formula():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(7, 10))
    log_train = np.log(np.array(CIFAR10_LT) / sum(CIFAR10_LT))
    target = rng.random(10) + 0.1
    target /= target.sum()
    for tau in (0.0, 0.5, 1.0, 1.7):
        expected = z - tau * (log_train - np.log(target))
        np.testing.assert_allclose(target_prior_logits(z, CIFAR10_LT, target, tau), expected, rtol=0, atol=1e-12)
    # logits of a model that already applies its logit adjustment (tau_m) and a temperature T
    tau_m, temperature, tau = 0.8, 1.5, 1.2
    model_logits = (z - tau_m * log_train) / temperature
    expected = (z - tau * (log_train - np.log(target))) / temperature
    np.testing.assert_allclose(target_prior_logits(model_logits, CIFAR10_LT, target, tau, tau_m, temperature),
                               expected, rtol=0, atol=1e-12)
    # the uniform target is plain logit adjustment: z - tau * log pi_train
    uniform = np.full(10, 0.1)
    assert target_prior_logits(z, CIFAR10_LT, uniform, 1.0).argmax(1).tolist() == (z - log_train).argmax(1).tolist()


def test_the_bayes_adjustment_helps_on_its_own_distribution():
    # a classifier whose logits are log p(x|y) + log pi_train: adjusted to the target prior it is Bayes-optimal there
    rng = np.random.default_rng(0)
    counts = np.array(CIFAR10_LT, dtype=float)
    labels = np.repeat(np.arange(10), 300)
    likelihood = rng.normal(size=(labels.size, 10))
    likelihood[np.arange(labels.size), labels] += 1.0
    logits = likelihood + np.log(counts / counts.sum())
    _, target = parse_target_prior("backward50", CIFAR10_LT)
    adjusted = target_prior_logits(logits, CIFAR10_LT, target, 1.0)
    before = evaluate_test_distributions(logits, labels, CIFAR10_LT, ["backward50"])["backward50"]
    after = evaluate_test_distributions(adjusted, labels, CIFAR10_LT, ["backward50"])["backward50"]
    assert after["accuracy"] > before["accuracy"] + 0.1


# ---------------------------------------------------------------------------------------------------------------------
# run_eval.py end to end
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    import torch

    import modeling_livt as ml
    from modeling_livt.data.transforms import build_image_processor, get_normalization
    from tests.helpers import TINY

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_classifier")
    encoder = {k: v for k, v in TINY.items() if not k.startswith("decoder_")}
    ml.LiVTForImageClassification(ml.LiVTConfig(**encoder, num_labels=10, loss_type="ce")).save_pretrained(out)
    build_image_processor(32, *get_normalization("digits")).save_pretrained(out)
    return out


def test_run_eval_test_distributions_and_target_prior(tiny_classifier, tmp_path):
    import run_eval

    out = tmp_path / "eval"
    argv = ["--model_name_or_path", str(tiny_classifier), "--output_dir", str(out), "--dataset_name", "digits",
            "--imbalance_factor", "10", "--per_device_eval_batch_size", "256",
            "--test_distributions", "forward10,uniform,backward10", "--target_prior", "backward5",
            "--target_prior_tau", "1.0", "--test_distribution_seed", "2"]
    metrics = run_eval.main(argv)
    written = json.loads((out / "eval_results.json").read_text())
    assert set(written["test_distributions"]) == {"forward10", "uniform", "backward10", "backward5"}
    assert written["test_distribution_seed"] == 2
    uniform = written["test_distributions"]["uniform"]
    assert uniform["num_examples"] <= written["num_examples"]
    target = written["target_prior"]
    assert target["prior"] == "backward5" and target["tau"] == 1.0 and target["tau_source"] == "--target_prior_tau"
    assert set(target["test_distributions"]) == set(written["test_distributions"])
    assert metrics["test_distributions"] == written["test_distributions"]
    card = (out / "README.md").read_text()
    assert "## Shifted test distributions" in card and "| backward10 |" in card
    # the same predictions, re-weighted here from the test split's logits, give the script's numbers
    class_counts = json.loads((out / "class_counts.json").read_text())
    again = run_eval.main(argv[:-1] + ["2"])
    assert again["test_distributions"] == written["test_distributions"]
    forward = written["test_distributions"]["forward10"]
    assert sum(forward["class_counts"]) == forward["num_examples"]
    ranks = training_ranks(class_counts)
    assert forward["class_counts"][int(np.argmin(ranks))] == max(forward["class_counts"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--test_distributions", "sideways10"], "unknown test distribution"),
        (["--test_distribution_seed", "3"], "--test_distribution_seed 3: it seeds"),
        (["--target_prior_tau", "0.5"], "--target_prior_tau 0.5: it sets"),
        (["--target_prior", "forward"], "unknown test distribution"),
        (["--target_prior", "missing.json"], "no such file"),
        (["--test_distributions", "forward10", "--split", "train"], "re-weight a balanced split"),
    ],
)
def test_run_eval_refusals(argv, message, tmp_path):
    import run_eval

    with pytest.raises(ValueError, match=message):
        run_eval.main(["--model_name_or_path", str(tmp_path / "none"), "--output_dir", str(tmp_path / "o")] + argv)
