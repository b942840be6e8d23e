"""Tests of modeling_livt.evaluation.metrics, the evaluate module and the plots.

Expected values are computed by hand (or by an independent brute-force loop in this file), never by the
code under test.
"""

import math
import os

import numpy as np
import pytest
import torch

from modeling_livt.evaluation.metrics import (
    DEIT_LT_INDEX_BOUNDS,
    LONG_TAIL_METRIC_PATH,
    long_tail_metrics,
    reliability_bins,
)

CIFAR10_LT_COUNTS = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]  # rho = 100: int(5000 * 0.01 ** (i / 9))


def onehot_logits(predictions, num_classes, scale=10.0):
    """Logits whose argmax is `predictions`."""
    logits = np.zeros((len(predictions), num_classes))
    logits[np.arange(len(predictions)), predictions] = scale
    return logits


def two_class_logits(confidences, predictions):
    """2-class logits whose softmax max is `confidence` on class `prediction`: log-odds on that class."""
    logits = np.zeros((len(confidences), 2))
    for i, (p, c) in enumerate(zip(confidences, predictions)):
        logits[i, c] = math.log(p / (1 - p))
    return logits


# ------------------------------------------------------------------------------------------------ groups
def test_three_classes_group_accuracies_by_hand():
    counts = [500, 50, 5]  # many, medium, few
    labels = [0, 0, 0, 0, 1, 1, 2, 2]
    preds = [0, 0, 0, 1, 1, 0, 0, 1]  # class 0: 3/4, class 1: 1/2, class 2: 0/2
    out = long_tail_metrics(onehot_logits(preds, 3), labels, counts)
    assert out["many_shot_classes"] == [0]
    assert out["medium_shot_classes"] == [1]
    assert out["few_shot_classes"] == [2]
    assert out["accuracy"] == pytest.approx(4 / 8)
    assert out["many_shot_accuracy"] == pytest.approx(0.75)
    assert out["medium_shot_accuracy"] == pytest.approx(0.5)
    assert out["few_shot_accuracy"] == 0.0
    assert out["per_class_accuracy"] == pytest.approx([0.75, 0.5, 0.0])
    assert out["split"] == "count"
    for key in ("accuracy", "many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy", "ece", "mce"):
        assert isinstance(out[key], float), key  # JSON-ready floats, not numpy scalars
    # one-hot logits (scale 10) of 3 classes: every confidence is softmax([10, 0, 0])[0], one bin: |accuracy - conf|
    confidence = np.exp(10) / (np.exp(10) + 2)
    assert out["ece"] == pytest.approx(abs(4 / 8 - confidence)) and out["mce"] == pytest.approx(out["ece"])


def test_threshold_boundaries_are_strict():
    # n > 100 is many, n < 20 is few: 100 and 20 themselves are medium.
    counts = [101, 100, 20, 19]
    out = long_tail_metrics(onehot_logits([0, 1, 2, 3], 4), [0, 1, 2, 3], counts)
    assert (out["many_shot_classes"], out["medium_shot_classes"], out["few_shot_classes"]) == ([0], [1, 2], [3])
    out = long_tail_metrics(onehot_logits([0, 1, 2, 3], 4), [0, 1, 2, 3], counts, many_threshold=99, few_threshold=21)
    assert (out["many_shot_classes"], out["medium_shot_classes"], out["few_shot_classes"]) == ([0, 1], [], [2, 3])
    assert out["medium_shot_accuracy"] is None


def test_empty_group_is_none_not_nan():
    counts = [500, 300, 5]  # no medium class
    out = long_tail_metrics(onehot_logits([0, 1, 2], 3), [0, 1, 2], counts)
    assert out["medium_shot_classes"] == []
    assert out["medium_shot_accuracy"] is None
    assert out["many_shot_accuracy"] == 1.0 and out["few_shot_accuracy"] == 1.0


def test_group_whose_classes_are_absent_from_eval_is_none():
    counts = [500, 50, 5]
    out = long_tail_metrics(onehot_logits([0, 1, 1], 3), [0, 1, 0], counts)  # class 2 never evaluated
    assert out["few_shot_classes"] == [2]
    assert out["few_shot_accuracy"] is None
    assert out["per_class_accuracy"] == [0.5, 1.0, None]
    assert not any(isinstance(v, float) and math.isnan(v) for v in out.values())


def test_cifar10_lt_count_split_has_no_few_shot_class():
    out = long_tail_metrics(onehot_logits(list(range(10)), 10), list(range(10)), CIFAR10_LT_COUNTS)
    assert out["many_shot_classes"] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert out["medium_shot_classes"] == [8, 9]
    assert out["few_shot_classes"] == [] and out["few_shot_accuracy"] is None


def test_group_accuracy_is_mean_of_per_class_accuracies_not_of_samples():
    counts = [1000, 800]  # both many-shot
    labels = [0] * 8 + [1] * 2
    preds = [0] * 8 + [0] * 2  # class 0: 8/8, class 1: 0/2
    out = long_tail_metrics(onehot_logits(preds, 2), labels, counts)
    sample_mean = 8 / 10
    per_class_mean = (1.0 + 0.0) / 2
    assert out["accuracy"] == pytest.approx(sample_mean)
    assert out["many_shot_accuracy"] == pytest.approx(per_class_mean)
    assert out["many_shot_accuracy"] != pytest.approx(sample_mean)


# ------------------------------------------------------------------------------------------------ index split
def test_deit_lt_bounds_table():
    assert DEIT_LT_INDEX_BOUNDS == {
        "cifar10": (3, 7),
        "cifar100": (36, 71),
        "imagenet_lt": (390, 835),
        "inat18": (842, 4543),
    }


def test_index_split_cifar10_matches_official_slices():
    # Official DeiT-LT engine.evaluate: head = cls_acc[:3], med = cls_acc[3:7], tail = cls_acc[7:] over
    # class ids that are in descending-count order (CIFAR-10-LT).
    labels = np.repeat(np.arange(10), 2)
    preds = labels.copy()
    preds[[1, 3, 5, 7, 9, 11]] = 9  # classes 0..5 get 1/2 (class-9 prediction is wrong for them)
    preds[[19]] = 0  # class 9: 1/2
    out = long_tail_metrics(onehot_logits(preds, 10), labels, CIFAR10_LT_COUNTS, split="index", index_bounds="cifar10")
    assert out["many_shot_classes"] == [0, 1, 2]
    assert out["medium_shot_classes"] == [3, 4, 5, 6]
    assert out["few_shot_classes"] == [7, 8, 9]
    assert out["split"] == "index"
    per_class = [0.5] * 6 + [1.0] * 3 + [0.5]
    assert out["per_class_accuracy"] == pytest.approx(per_class)
    assert out["many_shot_accuracy"] == pytest.approx(np.mean(per_class[:3]))
    assert out["medium_shot_accuracy"] == pytest.approx(np.mean(per_class[3:7]))
    assert out["few_shot_accuracy"] == pytest.approx(np.mean(per_class[7:]))
    # Explicit pair and the official --data-set spelling give the same groups.
    for bounds in ((3, 7), [3, 7], "CIFAR10LT", "cifar10-lt"):
        again = long_tail_metrics(
            onehot_logits(preds, 10), labels, CIFAR10_LT_COUNTS, split="index", index_bounds=bounds
        )
        assert again["many_shot_classes"] == [0, 1, 2] and again["few_shot_classes"] == [7, 8, 9]


def test_index_split_sorts_classes_by_count_with_ties_by_class_id():
    # Class ids not in count order (ImageNet-LT style): the official code relabels classes by descending
    # training count before slicing, i.e. the slices are over the count-sorted order.
    counts = [10, 500, 80, 80, 3, 1000]  # sorted desc: 5 (1000), 1 (500), 2 (80), 3 (80), 0 (10), 4 (3)
    out = long_tail_metrics(onehot_logits([0] * 6, 6), list(range(6)), counts, split="index", index_bounds=(2, 3))
    assert out["many_shot_classes"] == [1, 5]
    assert out["medium_shot_classes"] == [2]  # tie 2 vs 3 broken by class id
    assert out["few_shot_classes"] == [0, 3, 4]


def test_index_split_errors():
    logits, labels = onehot_logits([0, 1], 10), [0, 1]
    with pytest.raises(ValueError, match="index_bounds"):
        long_tail_metrics(logits, labels, CIFAR10_LT_COUNTS, split="index")
    with pytest.raises(ValueError, match="10 classes"):
        long_tail_metrics(onehot_logits([0], 100), [0], [5] * 100, split="index", index_bounds="cifar10")
    with pytest.raises(ValueError, match="unknown index_bounds"):
        long_tail_metrics(logits, labels, CIFAR10_LT_COUNTS, split="index", index_bounds="mnist")
    with pytest.raises(ValueError, match="<="):
        long_tail_metrics(logits, labels, CIFAR10_LT_COUNTS, split="index", index_bounds=(7, 3))
    with pytest.raises(ValueError, match="split"):
        long_tail_metrics(logits, labels, CIFAR10_LT_COUNTS, split="quantile")


# ------------------------------------------------------------------------------------------------ calibration
def test_ece_mce_four_samples_by_hand():
    # confidences 0.95 / 0.7 / 0.7 / 0.55 with 15 bins of width 1/15:
    #   0.95 in (14/15, 1]      -> bin 14: 1 sample, correct        -> |1 - 0.95| = 0.05
    #   0.70 in (10/15, 11/15]  -> bin 10: 2 samples, 1 correct     -> |0.5 - 0.7| = 0.2
    #   0.55 in (8/15, 9/15]    -> bin 8: 1 sample, wrong           -> |0 - 0.55| = 0.55
    # ECE = 1/4 * 0.05 + 2/4 * 0.2 + 1/4 * 0.55 = 0.25, MCE = 0.55
    logits = two_class_logits([0.95, 0.7, 0.7, 0.55], [0, 1, 0, 1])
    labels = [0, 1, 1, 0]
    out = long_tail_metrics(logits, labels, [500, 500])
    assert out["ece"] == pytest.approx(0.25, abs=1e-12)
    assert out["mce"] == pytest.approx(0.55, abs=1e-12)
    bins = reliability_bins(logits, labels)
    expected_counts = [0] * 15
    expected_counts[14], expected_counts[10], expected_counts[8] = 1, 2, 1
    assert bins["count"] == expected_counts
    assert bins["accuracy"][10] == 0.5 and bins["accuracy"][14] == 1.0 and bins["accuracy"][8] == 0.0
    assert bins["confidence"][10] == pytest.approx(0.7)
    assert bins["accuracy"][0] is None and bins["confidence"][0] is None


@pytest.mark.parametrize(
    "num_classes, n_bins, expected_bin",
    [
        (5, 15, 2),  # conf 1/5 = 3/15: upper edge of (2/15, 3/15] -> bin 2, not bin 3
        (3, 15, 4),  # conf 1/3 = 5/15 -> (4/15, 5/15] -> bin 4
        (2, 10, 4),  # conf 1/2 -> (0.4, 0.5] -> bin 4
        (5, 10, 1),  # conf 1/5 -> (0.1, 0.2] -> bin 1
        (10, 10, 0),  # conf 1/10 -> (0, 0.1] -> bin 0
    ],
)
def test_confidence_on_a_bin_edge_goes_to_the_lower_bin(num_classes, n_bins, expected_bin):
    logits = np.zeros((1, num_classes))  # all-equal logits: max softmax probability is exactly 1/C
    bins = reliability_bins(logits, [0], n_bins=n_bins)
    assert bins["count"][expected_bin] == 1 and sum(bins["count"]) == 1
    assert bins["bin_upper"][expected_bin] == pytest.approx(1 / num_classes)


def test_confidence_one_goes_to_last_bin():
    bins = reliability_bins(np.array([[0.0, -1000.0]]), [0])  # softmax underflows to exactly 1.0
    assert bins["count"][-1] == 1
    assert bins["accuracy"][-1] == 1.0 and bins["confidence"][-1] == 1.0


def _brute_force_ece(logits, labels, n_bins):
    """Independent reference: explicit loops over bins (k/n, (k+1)/n], softmax via math.exp."""
    n = len(labels)
    conf, correct = [], []
    for row, y in zip(logits, labels):
        exps = [math.exp(v - max(row)) for v in row]
        probs = [e / sum(exps) for e in exps]
        best = max(range(len(row)), key=lambda j: row[j])
        conf.append(probs[best])
        correct.append(best == y)
    ece, mce = 0.0, 0.0
    for k in range(n_bins):
        lo, hi = k / n_bins, (k + 1) / n_bins
        members = [i for i in range(n) if (lo < conf[i] <= hi) or (k == 0 and conf[i] == 0)]
        if not members:
            continue
        acc = sum(correct[i] for i in members) / len(members)
        avg = sum(conf[i] for i in members) / len(members)
        ece += len(members) / n * abs(acc - avg)
        mce = max(mce, abs(acc - avg))
    return ece, mce


def test_ece_matches_brute_force_reference_on_random_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(300, 7))
    labels = rng.integers(0, 7, size=300)
    for n_bins in (15, 10, 4):
        ece, mce = _brute_force_ece(logits.tolist(), labels.tolist(), n_bins)
        out = long_tail_metrics(logits, labels, [100] * 7, n_bins=n_bins)
        assert out["ece"] == pytest.approx(ece, abs=1e-12)
        assert out["mce"] == pytest.approx(mce, abs=1e-12)
        bins = reliability_bins(logits, labels, n_bins=n_bins)
        assert sum(bins["count"]) == 300 and bins["ece"] == out["ece"]


# ------------------------------------------------------------------------------------------------ inputs
def test_bf16_and_torch_inputs_accepted():
    rng = np.random.default_rng(1)
    logits32 = torch.from_numpy(rng.normal(size=(40, 5)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 5, size=40))
    counts = [300, 120, 60, 25, 8]
    bf16 = logits32.to(torch.bfloat16)
    out = long_tail_metrics(bf16, labels, counts)
    # Same values as the float64 numpy copy of the bf16 logits.
    ref = long_tail_metrics(bf16.to(torch.float64).numpy(), labels.numpy(), counts)
    assert out == ref
    assert long_tail_metrics(logits32, labels, counts)["accuracy"] == pytest.approx(
        float((logits32.argmax(1) == labels).float().mean())
    )


def test_error_messages():
    logits = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(5,\)"):
        long_tail_metrics(logits, [0, 1, 2, 0, 1], [10, 10, 10])
    with pytest.raises(ValueError, match="train_class_counts has 2 entries.*3 classes"):
        long_tail_metrics(logits, [0, 1, 2, 0], [10, 10])
    with pytest.raises(ValueError, match="label 3 is outside"):
        long_tail_metrics(logits, [0, 1, 3, 0], [10, 10, 10])
    with pytest.raises(ValueError, match="label -1 is outside"):
        long_tail_metrics(logits, [0, -1, 2, 0], [10, 10, 10])
    with pytest.raises(ValueError, match="0 samples"):
        long_tail_metrics(np.zeros((0, 3)), [], [10, 10, 10])
    with pytest.raises(ValueError, match="2-D"):
        long_tail_metrics(np.zeros(3), [0, 1, 2], [10, 10, 10])
    with pytest.raises(ValueError, match="non-finite"):
        long_tail_metrics(np.full((1, 3), np.nan), [0], [10, 10, 10])
    with pytest.raises(ValueError, match="n_bins"):
        long_tail_metrics(logits, [0, 1, 2, 0], [10, 10, 10], n_bins=0)


# ------------------------------------------------------------------------------------------------ evaluate
def test_evaluate_load_local_folder_offline_matches_function(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
        monkeypatch.setenv(var, "1")
    evaluate = pytest.importorskip("evaluate")
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)  # read at import time
    assert os.path.isfile(os.path.join(LONG_TAIL_METRIC_PATH, "long_tail_metric.py"))
    metric = evaluate.load(LONG_TAIL_METRIC_PATH, keep_in_memory=True)
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(60, 4)).astype(np.float32)  # float32: what the module's features store
    labels = rng.integers(0, 4, size=60)
    counts = [400, 90, 30, 10]
    for kwargs in ({}, {"split": "index", "index_bounds": (1, 3)}, {"n_bins": 10, "many_threshold": 50}):
        got = metric.compute(predictions=logits, references=labels, train_class_counts=counts, **kwargs)
        assert got == long_tail_metrics(logits, labels, counts, **kwargs)
    # add_batch streaming gives the same result as one call.
    for start in range(0, 60, 25):
        metric.add_batch(predictions=logits[start : start + 25], references=labels[start : start + 25])
    assert metric.compute(train_class_counts=counts) == long_tail_metrics(logits, labels, counts)
    with pytest.raises(ValueError, match="train_class_counts"):
        metric.compute(predictions=logits, references=labels)


# ------------------------------------------------------------------------------------------------ plots
def _assert_png(path):
    assert os.path.getsize(path) > 1000
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plots_write_png(tmp_path):
    from modeling_livt.evaluation.plots import plot_per_class_accuracy, plot_reliability_diagram

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(100, 10))
    labels = rng.integers(0, 10, size=100)
    out = long_tail_metrics(logits, labels, CIFAR10_LT_COUNTS)
    path = tmp_path / "a" / "b" / "per_class.png"
    returned = plot_per_class_accuracy(
        out["per_class_accuracy"], CIFAR10_LT_COUNTS, path, label_names=[f"c{i}" for i in range(10)], title="test"
    )
    assert returned == str(path)
    _assert_png(path)
    # A class absent from the eval set (None) and a class with 0 training images are fine.
    per_class = [None] + out["per_class_accuracy"][1:]
    _assert_png(
        plot_per_class_accuracy(
            per_class, [0] + CIFAR10_LT_COUNTS[1:], tmp_path / "none.png", label_names={i: f"c{i}" for i in range(10)}
        )
    )
    path = tmp_path / "c" / "reliability.png"
    assert plot_reliability_diagram(torch.from_numpy(logits).bfloat16(), labels, path, title="t") == str(path)
    _assert_png(path)


def test_parse_index_bounds_names_pairs_and_auto():
    from modeling_livt.evaluation.metrics import parse_index_bounds

    assert parse_index_bounds(None) is None and parse_index_bounds("none") is None
    assert parse_index_bounds("CIFAR10LT") == "cifar10" and parse_index_bounds("imagenet-lt") == "imagenet_lt"
    assert parse_index_bounds("3, 7") == (3, 7) and parse_index_bounds([36, 71]) == (36, 71)
    assert parse_index_bounds("auto") == "auto"  # syntax check only: resolved where the data is known
    assert parse_index_bounds("auto", "uoft-cs/cifar100") == "cifar100"
    assert parse_index_bounds("auto", "../shared/data/cifar10") == "cifar10"
    assert parse_index_bounds("auto", ["data/ImageNet-LT/train"]) == "imagenet_lt"
    assert parse_index_bounds("auto", "data/iNat18/train") == "inat18"
    with pytest.raises(ValueError, match="cifar10, cifar100, imagenet_lt, inat18"):
        parse_index_bounds("places_lt")
    with pytest.raises(ValueError, match="cannot tell which DeiT-LT benchmark"):
        parse_index_bounds("auto", "digits")
    with pytest.raises(ValueError, match="HEAD_END <= TAIL_START"):
        parse_index_bounds("7,3")
    with pytest.raises(ValueError, match="integers"):
        parse_index_bounds("a,b")


def test_reliability_diagram_bars_read_back_match_the_bins():
    """Bar heights read back from the figure's artists: 'accuracy' bars end at each bin's accuracy, the hatched 'gap'
    spans accuracy..mean confidence, and the markers sit at the confidence (numbers built by hand, not by the code)."""
    from modeling_livt.evaluation.plots import reliability_diagram_figure

    def two_class_logits(confidence, n):  # softmax max-probability exactly `confidence` on class 0
        return np.tile([np.log(confidence), np.log(1 - confidence)], (n, 1))

    # bin [0.5, 0.6): 20 images at confidence 0.55, all right (underconfident: accuracy 1.0)
    # bin [0.9, 1.0]: 20 images at confidence 0.95, half right (overconfident: accuracy 0.5)
    logits = np.concatenate([two_class_logits(0.55, 20), two_class_logits(0.95, 20)])
    labels = np.array([0] * 20 + [0] * 10 + [1] * 10)
    ax = reliability_diagram_figure(logits, labels, n_bins=10).axes[0]
    bars = {container.get_label(): container.patches for container in ax.containers}
    assert set(bars) == {"accuracy", "gap to confidence"}

    def boxes(patches):
        return [(round(p.get_x(), 6), round(p.get_y(), 6), round(p.get_y() + p.get_height(), 6)) for p in patches]

    assert boxes(bars["accuracy"]) == [(0.5, 0.0, 1.0), (0.9, 0.0, 0.5)]
    assert boxes(bars["gap to confidence"]) == [(0.5, 0.55, 1.0), (0.9, 0.5, 0.95)]
    markers = next(line for line in ax.lines if line.get_label() == "mean confidence")
    np.testing.assert_allclose(markers.get_ydata(), [0.55, 0.95])
    # the gap is drawn unfilled above the accuracy bars: the accuracy bar stays visible under it
    assert not bars["gap to confidence"][0].get_fill()
    assert bars["gap to confidence"][0].get_zorder() > bars["accuracy"][0].get_zorder()
    # the legend names what is drawn, in drawing order
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "mean confidence", "perfect calibration", "accuracy", "gap to confidence"]
