"""Tests of modeling_livt.data.long_tail: CIFAR-LT counts, long-tailed draws, split files and class counts.

Expected values come from the papers / published dataset sizes or from formulas written out here.
"""

import itertools
import json

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Value
from datasets import Image as ImageFeature

from modeling_livt.data.loading import class_counts_from_dataset
from modeling_livt.data.long_tail import (
    class_counts_from_labels,
    load_class_counts,
    load_split_indices,
    long_tailed_counts,
    long_tailed_indices,
    make_long_tailed,
    save_split_indices,
)

CIFAR10_LT_100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
CORRUPT = {"bytes": b"\x89PNG\r\n\x1a\n this is not an image", "path": None}


def corrupt_image_dataset(labels, num_classes=None):
    """A dataset whose every image is undecodable bytes: any image decode fails loudly."""
    label_feature = ClassLabel(num_classes=num_classes) if num_classes else Value("int64")
    features = Features({"image": ImageFeature(), "label": label_feature})
    return Dataset.from_dict({"image": [CORRUPT] * len(labels), "label": list(labels)}, features=features)


# ---------------------------------------------------------------- long_tailed_counts


def test_cifar10_rho100_counts_exact():
    counts = long_tailed_counts(5000, 10, 100)
    assert counts == CIFAR10_LT_100
    assert sum(counts) == 12406


@pytest.mark.parametrize(
    ("max_count", "num_classes", "rho", "total"),
    # Published CIFAR-LT training-set sizes (Cao et al. 2019, Cui et al. 2019).
    [
        (5000, 10, 50, 13996),
        (5000, 10, 10, 20431),
        (500, 100, 100, 10847),
        (500, 100, 50, 12608),
        (500, 100, 10, 19573),
    ],
)
def test_published_cifar_lt_sizes(max_count, num_classes, rho, total):
    counts = long_tailed_counts(max_count, num_classes, rho)
    assert sum(counts) == total
    assert counts[0] == max_count and counts[-1] == int(max_count / rho)
    assert all(a >= b for a, b in itertools.pairwise(counts))


def test_step_profile():
    assert long_tailed_counts(5000, 10, 100, "step") == [5000] * 5 + [50] * 5
    assert long_tailed_counts(500, 5, 10, "step") == [500, 500, 50, 50, 50]


def test_balanced_and_single_class():
    assert long_tailed_counts(123, 7, 1) == [123] * 7
    assert long_tailed_counts(123, 7, 1, "step") == [123] * 7
    assert long_tailed_counts(40, 1, 100) == [40]
    assert long_tailed_counts(40, 1, 100, "step") == [40]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"imbalance_factor": 0.01}, "imbalance_factor"),
        ({"imbalance_factor": float("nan")}, "imbalance_factor"),
        ({"num_classes": 0}, "num_classes"),
        ({"profile": "linear"}, r"\['exp', 'step'\]"),
        ({"max_count": -1}, "max_count"),
    ],
)
def test_counts_validation(kwargs, match):
    args = {"max_count": 100, "num_classes": 10, "imbalance_factor": 10, "profile": "exp"} | kwargs
    with pytest.raises(ValueError, match=match):
        long_tailed_counts(**args)


# ---------------------------------------------------------------- long_tailed_indices / make_long_tailed


def test_long_tailed_indices_counts_determinism_and_seeds():
    labels = np.repeat(np.arange(5), 100)
    np.random.default_rng(1).shuffle(labels)
    idx = long_tailed_indices(labels, 10, seed=0)
    assert idx == sorted(idx) and len(set(idx)) == len(idx)
    expected = [int(100 * 0.1 ** (i / 4)) for i in range(5)]  # formula written out
    assert np.bincount(labels[idx], minlength=5).tolist() == expected
    assert long_tailed_indices(labels, 10, seed=0) == idx
    other = long_tailed_indices(labels, 10, seed=1)
    assert other != idx
    assert np.bincount(labels[other], minlength=5).tolist() == expected


def test_short_class_keeps_all_and_counts_never_exceed_available():
    # class 0 is the largest (max_count 50); class 1 has 3 images but targets 50 * 0.5 ** (1/3) = 39.
    labels = [0] * 50 + [1] * 3 + [2] * 40 + [3] * 30
    idx = long_tailed_indices(labels, 2, seed=3)
    counts = np.bincount(np.asarray(labels)[idx], minlength=4).tolist()
    targets = long_tailed_counts(50, 4, 2)
    assert counts == [min(t, a) for t, a in zip(targets, [50, 3, 40, 30])]
    assert [i for i in idx if labels[i] == 1] == [50, 51, 52]


def test_long_tailed_indices_num_classes_and_range():
    # an empty last class still counts when num_classes says so, and shifts the profile
    labels = [0] * 10 + [1] * 10
    assert len(long_tailed_indices(labels, 10, num_classes=3)) == 10 + int(10 * 0.1**0.5)
    with pytest.raises(ValueError, match=r"label 2 at row 1 .*\[0, 2\)"):
        long_tailed_indices([0, 2], 10, num_classes=2)


def test_make_long_tailed_never_decodes_images():
    labels = np.repeat(np.arange(4), 30).tolist()
    ds = corrupt_image_dataset(labels, num_classes=4)
    with pytest.raises(Exception):  # noqa: B017 - proves the images really are undecodable
        ds[0]["image"]
    lt = make_long_tailed(ds, 10, seed=0)
    assert isinstance(lt, Dataset)
    assert class_counts_from_dataset(lt, "label", 4) == long_tailed_counts(30, 4, 10)
    assert make_long_tailed(ds, 10, seed=0)["label"][:] == lt["label"][:]
    # a user transform that would decode images is not run either
    with_transform = ds.with_transform(lambda batch: {"pixels": [im.size for im in batch["image"]]})
    assert make_long_tailed(with_transform, 10, seed=0)._indices.column(0).to_pylist() == (
        lt._indices.column(0).to_pylist()
    )


def test_make_long_tailed_missing_label_column_lists_columns():
    ds = Dataset.from_dict({"img": [1, 2], "target": [0, 1]})
    with pytest.raises(ValueError, match=r"'label'.*\['img', 'target'\]"):
        make_long_tailed(ds, 10)


def test_split_indices_roundtrip(tmp_path):
    save_split_indices([5, 1, 9], tmp_path / "a" / "idx.json", metadata={"pool_size": 10})
    assert load_split_indices(tmp_path / "a" / "idx.json") == [5, 1, 9]
    assert json.loads((tmp_path / "a" / "idx.json").read_text())["pool_size"] == 10
    (tmp_path / "plain.json").write_text("[3, 4]")
    assert load_split_indices(tmp_path / "plain.json") == [3, 4]
    (tmp_path / "bad.json").write_text('{"indices": [1, -2]}')
    with pytest.raises(ValueError, match="non-negative"):
        load_split_indices(tmp_path / "bad.json")


# ---------------------------------------------------------------- class counts


def test_class_counts_from_labels():
    assert class_counts_from_labels([2, 0, 2, 2], 4) == [1, 0, 3, 0]
    assert class_counts_from_labels([], 3) == [0, 0, 0]
    with pytest.raises(ValueError, match=r"label 7 at row 2"):
        class_counts_from_labels([0, 1, 7], 3)
    with pytest.raises(ValueError, match=r"label -1 at row 0"):
        class_counts_from_labels([-1], 3)


def test_class_counts_from_dataset_map_and_iterable_read_labels_only():
    ds = corrupt_image_dataset([0, 1, 1, 2, 2, 2], num_classes=3)
    assert class_counts_from_dataset(ds, "label", 3) == [1, 2, 3]
    stream = ds.to_iterable_dataset(num_shards=2)
    assert class_counts_from_dataset(stream, "label", 3) == [1, 2, 3]
    bad = Dataset.from_dict({"label": [0, 1, 5]}).to_iterable_dataset()
    with pytest.raises(ValueError, match=r"label 5 at row 2"):
        class_counts_from_dataset(bad, "label", 3)


def test_load_class_counts_forms(tmp_path):
    (tmp_path / "l.json").write_text("[3, 2, 1]")
    (tmp_path / "d.json").write_text('{"b": 2, "a": 3, "c": 1}')
    assert load_class_counts(tmp_path / "l.json") == [3, 2, 1]
    assert load_class_counts(tmp_path / "d.json", ["a", "b", "c"]) == [3, 2, 1]
    with pytest.raises(ValueError, match="missing"):
        load_class_counts(tmp_path / "d.json", ["a", "b", "x"])
