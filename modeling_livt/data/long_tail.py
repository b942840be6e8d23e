"""CIFAR-LT style long-tailed sub-sampling and the files that pin a split, reading labels only.

* `long_tailed_counts` / `long_tailed_indices` / `make_long_tailed`: the exponential or step profile of Cao et al.
  (LDAM), as LiVT and DeiT-LT use it; images are never decoded.
* `carve_validation_split` / `carve_unused_validation_split`: stratified, seeded validation splits.
* split-index and class-count files: a run's split restored exactly.

Plain numpy: importing this module does not import `datasets` (the datasets passed in bring it).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset

IMBALANCE_PROFILES = ("exp", "step")
VALIDATION_SPLIT_NAMES = ("validation", "val", "valid")
DEFAULT_VALIDATION_PERCENTAGE = 10
VALIDATION_SOURCES = ("auto", "unused", "pool")
LONG_TAILED_INDICES_FILE = "long_tailed_indices.json"
CLASS_COUNTS_FILE = "class_counts.json"


# ----------------------------------------------------------------------------------------------
# Long-tailed sub-sampling
# ----------------------------------------------------------------------------------------------


def long_tailed_counts(max_count: int, num_classes: int, imbalance_factor: float, profile: str = "exp") -> list[int]:
    """Per-class image counts of a long-tailed split (class 0 is the head).

    `imbalance_factor` is rho = n_max / n_min (>= 1). Profiles, as in the CIFAR-LT code of Cao et al.
    (LDAM) used by LiVT and DeiT-LT:

    * ``"exp"``: ``n_i = int(max_count * (1 / rho) ** (i / (C - 1)))``; CIFAR-10, rho=100, 5000 per
      class gives ``[5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]``.
    * ``"step"``: the first ``C // 2`` classes keep ``max_count``, the others get ``int(max_count / rho)``.

    A single class cannot be imbalanced: ``num_classes == 1`` gives ``[max_count]`` for every profile.
    """
    if profile not in IMBALANCE_PROFILES:
        raise ValueError(f"profile must be one of {list(IMBALANCE_PROFILES)}, got {profile!r}")
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if int(max_count) != max_count or max_count < 0:
        raise ValueError(f"max_count must be a non-negative integer, got {max_count!r}")
    if not imbalance_factor >= 1:  # also rejects NaN
        raise ValueError(
            f"imbalance_factor must be >= 1 (rho = n_max / n_min; 100 means the head class has 100x the "
            f"tail's images), got {imbalance_factor!r}"
        )
    num_classes, max_count = int(num_classes), int(max_count)
    if num_classes == 1:
        return [max_count]
    if profile == "exp":
        return [int(max_count * (1.0 / imbalance_factor) ** (i / (num_classes - 1.0))) for i in range(num_classes)]
    head = num_classes // 2
    return [max_count] * head + [int(max_count / imbalance_factor)] * (num_classes - head)


def check_labels(labels: Sequence[int], num_classes: int, what: str = "label") -> None:
    """Raise a ValueError naming the first label outside [0, num_classes) and its row index."""
    arr = np.asarray(labels)
    if arr.size == 0:
        return
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"{what}s must be integer class ids in [0, {num_classes}), got dtype {arr.dtype} "
            "(encode string labels with `dataset.class_encode_column(...)`)"
        )
    bad = np.flatnonzero((arr < 0) | (arr >= num_classes))
    if bad.size:
        row = int(bad[0])
        raise ValueError(
            f"{what} {int(arr[row])} at row {row} is outside [0, {num_classes}) ({bad.size} row(s) out of range)"
        )


def long_tailed_indices(
    labels: Sequence[int],
    imbalance_factor: float,
    profile: str = "exp",
    seed: int = 0,
    num_classes: int | None = None,
) -> list[int]:
    """Row indices of a long-tailed subset of a labelled pool.

    ``max_count`` is the size of the largest class in the pool; class ``i`` (label order) targets
    ``long_tailed_counts(max_count, C, imbalance_factor, profile)[i]`` images, drawn by a seeded random
    sample (``numpy.random.Generator(PCG64(seed))``, deterministic); a class with fewer images than its
    target keeps all it has. ``num_classes`` defaults to ``max(labels) + 1``. Indices are sorted ascending.
    """
    arr = np.asarray(labels, dtype=np.int64) if len(labels) else np.zeros(0, dtype=np.int64)
    if num_classes is None:
        num_classes = int(arr.max()) + 1 if arr.size else 1
    check_labels(arr, num_classes)
    per_class = [np.flatnonzero(arr == c) for c in range(num_classes)]
    max_count = max(len(idx) for idx in per_class)
    targets = long_tailed_counts(max_count, num_classes, imbalance_factor, profile)
    rng = np.random.default_rng(seed)
    chosen = []
    for idx, target in zip(per_class, targets):
        if len(idx) <= target:
            chosen.append(idx)
        else:
            chosen.append(rng.choice(idx, size=target, replace=False))
    return sorted(int(i) for i in np.concatenate(chosen)) if chosen else []


def require_column(dataset: Dataset | IterableDataset, column: str, argument: str) -> None:
    columns = dataset.column_names
    if columns is not None and column not in columns:
        raise ValueError(f"{argument}={column!r} is not a column of the dataset; available columns: {columns}")


def read_labels(dataset: Dataset, label_column: str = "label") -> list[int]:
    """All values of ``label_column`` of a map-style dataset, without touching (decoding) other columns."""
    require_column(dataset, label_column, "label_column")
    if len(dataset) == 0:
        return []
    # select_columns first: the image column is never read, let alone decoded; with_format(None) drops any
    # user transform (set_transform) that would otherwise run on the labels-only rows.
    return list(dataset.with_format(None).select_columns([label_column])[:][label_column])


def make_long_tailed(
    dataset: Dataset,
    imbalance_factor: float,
    label_column: str = "label",
    profile: str = "exp",
    seed: int = 0,
) -> Dataset:
    """Long-tailed subset of a (balanced) map-style dataset: ``dataset.select(long_tailed_indices(...))``.

    Only the label column is read, so images are never decoded (corrupt or huge images cost nothing).
    The number of classes comes from the ``ClassLabel`` feature when there is one, else ``max(label) + 1``.
    """
    from datasets import ClassLabel  # noqa: PLC0415 - the caller's dataset has imported it already

    labels = read_labels(dataset, label_column)
    feature = dataset.features.get(label_column) if dataset.features else None
    num_classes = feature.num_classes if isinstance(feature, ClassLabel) else None
    indices = long_tailed_indices(labels, imbalance_factor, profile=profile, seed=seed, num_classes=num_classes)
    return dataset.select(indices)


def save_split_indices(indices: Sequence[int], path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Write selected row indices (and optional metadata) to JSON so a split can be restored exactly."""
    payload = {"indices": [int(i) for i in indices]}
    if metadata:
        payload.update({k: v for k, v in metadata.items() if k != "indices"})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f)


def read_split_file(path: str | os.PathLike) -> dict:
    with open(path, encoding="utf-8") as f:
        payload = json.load(f)
    if isinstance(payload, list):
        payload = {"indices": payload}
    well_formed = isinstance(payload, dict) and isinstance(payload.get("indices"), list)
    if not well_formed:  # a malformed file, not a wrong argument type: ValueError
        raise ValueError(f"{path}: expected a JSON list of row indices or an object with an 'indices' list")
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in payload["indices"]):
        raise ValueError(f"{path}: indices must be non-negative integers")
    return payload


def load_split_indices(path: str | os.PathLike) -> list[int]:
    """Row indices written by `save_split_indices` (a plain JSON list is accepted too)."""
    return list(read_split_file(path)["indices"])


# ----------------------------------------------------------------------------------------------
# Class counts
# ----------------------------------------------------------------------------------------------


def class_counts_from_labels(labels: Iterable[int], num_classes: int) -> list[int]:
    """Images per class; a label outside [0, num_classes) raises a ValueError naming it and its row."""
    labels = list(labels)
    check_labels(labels, num_classes)
    if not labels:
        return [0] * num_classes
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).tolist()


def load_class_counts(path: str | os.PathLike, label_names: Sequence[str] | None = None) -> list[int]:
    """Class counts from JSON: a list of ints (label order) or ``{label_name: count}``."""
    with open(path, encoding="utf-8") as f:
        payload = json.load(f)
    if isinstance(payload, dict):
        if label_names is None:
            raise ValueError(f"{path}: a {{label_name: count}} mapping needs the label names to be known")
        missing = [name for name in label_names if name not in payload]
        extra = [name for name in payload if name not in set(label_names)]
        if missing or extra:
            raise ValueError(f"{path}: label names do not match the dataset (missing {missing}, unknown {extra})")
        payload = [payload[name] for name in label_names]
    if not isinstance(payload, list) or not all(isinstance(c, int) and c >= 0 for c in payload):
        raise ValueError(f"{path}: expected a JSON list of non-negative ints or a {{label_name: count}} object")
    if label_names is not None and len(payload) != len(label_names):
        raise ValueError(f"{path}: {len(payload)} counts for {len(label_names)} classes")
    return payload




# ----------------------------------------------------------------------------------------------
# Validation splits
# ----------------------------------------------------------------------------------------------


def seeded_subset(dataset: Dataset, n: int | None, seed: int) -> Dataset:
    """A seeded random subset of n rows (row order kept), or the dataset itself."""
    if n is None or n >= len(dataset):
        return dataset
    rng = np.random.default_rng(seed)
    return dataset.select(sorted(rng.choice(len(dataset), size=n, replace=False).tolist()))


def carve_validation_split(
    dataset: Dataset, label_column: str, percentage: float, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Split a map-style pool into (train, validation), stratified by label and seeded.

    Every class gives ``round(n_c * percentage / 100)`` of its images to validation (at least one when
    it has two or more), so a balanced pool gives a balanced validation split. Only labels are read.
    Kept over `Dataset.train_test_split(stratify_by_column=)`: that needs a ClassLabel column, raises on a 1-image
    class and gives a 3-image class no validation image; switching would also change committed benchmark splits.
    """
    labels = np.asarray(read_labels(dataset, label_column), dtype=np.int64)
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = round(len(idx) * percentage / 100.0)
        if k == 0 and len(idx) >= 2:
            k = 1
        k = min(k, len(idx) - 1)  # never empty a class of the training pool
        if k > 0:
            val.extend(rng.choice(idx, size=k, replace=False).tolist())
    val_set = set(val)
    train_idx = [i for i in range(len(labels)) if i not in val_set]
    return dataset.select(train_idx), dataset.select(sorted(val))


def carve_unused_validation_split(
    pool_labels: Sequence[int], used_indices: Sequence[int], percentage: float, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Validation rows drawn from the images a long-tail draw left unused (CIFAR-LT protocol).

    Every class gives ``round(n_c * percentage / 100)`` images, ``n_c`` its size in the (balanced) pool, so the
    split is balanced wherever the leftovers allow; a class with fewer unused images gives all it has (the head
    class of CIFAR-LT keeps every image for training and gives none). Returns (sorted validation rows, classes
    that gave fewer than their share). Only labels are read; seeded, so a resume draws the same rows.
    Kept: no library split draws from a subset (the leftovers) with per-class shares sized by the whole pool.
    """
    labels = np.asarray(pool_labels, dtype=np.int64)
    unused = np.ones(len(labels), dtype=bool)
    unused[np.asarray(list(used_indices), dtype=np.int64)] = False
    rng = np.random.default_rng(seed)
    val, short = [], []
    for c in np.unique(labels):
        share = round(int((labels == c).sum()) * percentage / 100.0)
        candidates = np.flatnonzero((labels == c) & unused)
        if len(candidates) < share:
            short.append(int(c))
        k = min(share, len(candidates))
        if k > 0:
            val.extend(rng.choice(candidates, size=k, replace=False).tolist())
    return sorted(int(i) for i in val), short


def labels_fingerprint(labels: Sequence[int]) -> str:
    """SHA-1 of the pool's label sequence: detects a saved split being applied to another pool."""
    return hashlib.sha1(np.asarray(labels, dtype=np.int64).tobytes()).hexdigest()
