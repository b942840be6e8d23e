"""Long-tailed evaluation metrics: overall / many / medium / few-shot accuracy, ECE and MCE.

One implementation, used by the scripts, the Trainer ``compute_metrics`` hooks, the plots and the
``evaluate`` module in ``long_tail_metric/`` (``evaluate.load(LONG_TAIL_METRIC_PATH)``).

Conventions (from the LiVT and DeiT-LT papers and official code):

* **Shot groups** come from the *training* class counts. ``split="count"`` (LiVT, default): many-shot
  ``n > many_threshold`` (100), few-shot ``n < few_threshold`` (20), medium-shot otherwise.
  ``split="index"`` (DeiT-LT): classes sorted by training count, cut at the official index bounds.
* **Group accuracy** is the mean of the per-class accuracies of the group's classes that appear in the
  evaluation labels (not the mean over samples). A group with no (evaluated) class is ``None``.
* **ECE / MCE**: confidence = max softmax probability (float64), prediction = argmax; ``n_bins``
  equal-width bins ``(lo, hi]`` with edges ``k / n_bins`` (a confidence of exactly 0 goes to the first
  bin); ECE = sum_b |B_b|/N |acc_b - conf_b|, MCE = max over non-empty bins of |acc_b - conf_b|.

All returned numbers are Python floats in 0..1 (or ``None``), never NaN.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "DEIT_LT_INDEX_BOUNDS",
    "LONG_TAIL_METRIC_PATH",
    "long_tail_metrics",
    "parse_index_bounds",
    "reliability_bins",
    "shot_groups",
]

#: Folder of the ``evaluate`` metric module: ``evaluate.load(LONG_TAIL_METRIC_PATH)`` works offline.
LONG_TAIL_METRIC_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "long_tail_metric")

# DeiT-LT's head / mid / tail index bounds, as in the official code (github.com/val-iisc/DeiT-LT):
#   main.py:    args.categories = [3, 7] (CIFAR10LT), [36, 71] (CIFAR100LT), [390, 835] (IMAGENETLT),
#               [842, 4543] (INAT18)
#   engine.py (evaluate): per-class accuracies cls_acc[c] for c in range(nb_classes) (confusion matrix
#               rows), then head = mean(cls_acc[:categories[0]]), med = mean(cls_acc[categories[0]:categories[1]]),
#               tail = mean(cls_acc[categories[1]:]) -- 0-based, half-open Python slices: for CIFAR-10 the head is
#               3 classes (positions 0-2), mid 4 (3-6), tail 3 (7-9).
#   The slices are over *class ids*, which are in descending training-count order: CIFAR-LT by construction
#   (IMBALANCECIFAR10.get_img_num_per_cls gives class i max*f^(i/(C-1)) images), and ImageNet-LT / iNat18
#   because datasets.py (KD_IMAGENETLT, KD_INAT2018) relabels classes with
#   class_map[np.argsort(-counts)[i]] = i on the training split (the eval split reuses the train class_map).
# Here the same slices are taken over the classes sorted by training count (descending) without relabelling,
# so our class ids stay the dataset's. Ties: the official np.argsort(-counts) (default quicksort) leaves the
# order of equal counts unspecified; we break ties by class id (stable sort), which is deterministic.
DEIT_LT_INDEX_BOUNDS: dict[str, tuple[int, int]] = {
    "cifar10": (3, 7),
    "cifar100": (36, 71),
    "imagenet_lt": (390, 835),
    "inat18": (842, 4543),
}

# Number of classes each named bound set is meant for (a name used with another C is an error).
_NAMED_BOUNDS_NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet_lt": 1000, "inat18": 8142}

# Accepted spellings (lower-case, non-alphanumerics removed) -> key of DEIT_LT_INDEX_BOUNDS; includes the
# official --data-set names CIFAR10LT, CIFAR100LT, IMAGENETLT, INAT18.
_BOUNDS_ALIASES = {
    "cifar10": "cifar10",
    "cifar10lt": "cifar10",
    "cifar100": "cifar100",
    "cifar100lt": "cifar100",
    "imagenetlt": "imagenet_lt",
    "inat18": "inat18",
    "inat2018": "inat18",
    "inaturalist2018": "inat18",
}


#: What a command-line ``--index_bounds`` takes (error messages list these).
INDEX_BOUNDS_CHOICES = (
    "cifar10, cifar100, imagenet_lt, inat18 (DeiT-LT's bounds), 'auto' (one of those, told by the dataset's name or "
    "folder), or an explicit pair HEAD_END,TAIL_START (e.g. 3,7)"
)


def _bounds_key(name: str) -> str | None:
    return _BOUNDS_ALIASES.get(re.sub(r"[^0-9a-z]", "", str(name).lower()))


def parse_index_bounds(value, dataset=None):
    """A command-line ``--index_bounds`` value as :func:`long_tail_metrics` takes it (``split="index"``), or None.

    ``None`` / ``""`` / ``"none"``: off. A name (``cifar10``, ``cifar100``, ``imagenet_lt``, ``inat18``, or an official
    ``--data-set`` spelling such as ``CIFAR10LT``) gives its key in :data:`DEIT_LT_INDEX_BOUNDS`; ``"3,7"`` or a pair
    gives ``(3, 7)``. ``"auto"`` picks the benchmark named by ``dataset`` (a dataset name or folder, or several: every
    path component is tried, e.g. ``uoft-cs/cifar10``, ``../shared/data/cifar10``, ``data/ImageNet-LT/train``) and is an
    error when no known benchmark (or more than one) is named: nothing is inferred silently. Without ``dataset``,
    ``"auto"`` is returned as is (a syntax check). Whether the bounds fit the number of classes is checked where the
    class counts are known (:func:`shot_groups`).
    """
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"index_bounds must be a pair (head_end, tail_start), got {value!r}")
        return _index_pair(value)
    text = str(value).strip()
    if text.lower() in ("", "none", "off"):
        return None
    if "," in text:
        parts = text.split(",")
        if len(parts) != 2:
            raise ValueError(f"--index_bounds {value!r}: expected HEAD_END,TAIL_START (e.g. 3,7)")
        return _index_pair(parts)
    if text.lower() == "auto":
        if dataset is None:
            return "auto"
        sources = [dataset] if isinstance(dataset, str) else [d for d in dataset if d]
        components = [c for source in sources for c in re.split(r"[/\\]+", str(source)) if c]
        keys = {k for k in map(_bounds_key, components) if k is not None}
        if len(keys) != 1:
            found = f"several ({sorted(keys)})" if keys else "none"
            raise ValueError(
                f"--index_bounds auto: cannot tell which DeiT-LT benchmark {sources} is ({found} of "
                f"{sorted(DEIT_LT_INDEX_BOUNDS)} named in it); pass one of: {INDEX_BOUNDS_CHOICES}"
            )
        return keys.pop()
    key = _bounds_key(text)
    if key is None:
        raise ValueError(f"unknown --index_bounds {value!r}; choose one of: {INDEX_BOUNDS_CHOICES}")
    return key


def _index_pair(parts) -> tuple[int, int]:
    try:
        low, high = (int(str(p).strip()) for p in parts)
    except ValueError:
        raise ValueError(f"--index_bounds {parts!r}: HEAD_END and TAIL_START must be integers (e.g. 3,7)") from None
    if not 0 <= low <= high:
        raise ValueError(f"--index_bounds {low},{high}: need 0 <= HEAD_END <= TAIL_START")
    return low, high


# ----------------------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------------------
def _as_float64_logits(logits) -> np.ndarray:
    if isinstance(logits, torch.Tensor):
        # bf16 / fp16 have no numpy dtype: cast on the torch side first.
        array = logits.detach().to(device="cpu", dtype=torch.float64).numpy()
    else:
        array = np.asarray(logits, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"logits must be 2-D [num_samples, num_classes], got shape {tuple(array.shape)}")
    return array


def _as_int_labels(labels) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"labels must be 1-D [num_samples], got shape {tuple(array.shape)}")
    integral = np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.bool_)
    integral_floats = np.issubdtype(array.dtype, np.floating) and bool(np.all(np.mod(array, 1) == 0))
    if array.size and not (integral or integral_floats):
        raise ValueError(f"labels must be integer class ids, got dtype {array.dtype}")
    return array.astype(np.int64)


def _validate(logits, labels, train_class_counts=None):
    """Returns (logits float64 [N, C], labels int64 [N], counts int64 [C] or None)."""
    logits = _as_float64_logits(logits)
    labels = _as_int_labels(labels)
    if logits.shape[0] != labels.shape[0]:
        raise ValueError(
            f"logits and labels disagree on the number of samples: logits shape {tuple(logits.shape)}, "
            f"labels shape {tuple(labels.shape)}"
        )
    num_samples, num_classes = logits.shape
    if num_samples == 0:
        raise ValueError("cannot compute metrics on 0 samples (logits and labels are empty)")
    if num_classes == 0:
        raise ValueError(f"logits have 0 classes (shape {tuple(logits.shape)})")
    if not np.all(np.isfinite(logits)):
        raise ValueError("logits contain non-finite values (NaN or inf)")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise ValueError(f"label {int(bad[0])} is outside [0, {num_classes}) (logits have {num_classes} classes)")
    counts = None
    if train_class_counts is not None:
        if isinstance(train_class_counts, torch.Tensor):
            train_class_counts = train_class_counts.tolist()
        counts = np.asarray(train_class_counts)
        if counts.ndim != 1:
            raise ValueError(f"train_class_counts must be a flat list, got shape {tuple(counts.shape)}")
        if counts.shape[0] != num_classes:
            raise ValueError(
                f"train_class_counts has {counts.shape[0]} entries but logits have {num_classes} classes "
                f"(shape {tuple(logits.shape)})"
            )
        if counts.size and np.any(counts < 0):
            raise ValueError(f"train_class_counts must be >= 0, got {counts.min()}")
    return logits, labels, counts


def _softmax_confidence(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(max softmax probability, argmax prediction), softmax in float64."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    probs = exp / exp.sum(axis=1, keepdims=True)
    return probs.max(axis=1), logits.argmax(axis=1)


# ----------------------------------------------------------------------------------------------------------
# calibration: one binning implementation, shared by ECE / MCE and the reliability diagram
# ----------------------------------------------------------------------------------------------------------
def _bin_statistics(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> dict:
    if not isinstance(n_bins, (int, np.integer)) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    n_bins = int(n_bins)
    # Edges k / n_bins, each a correctly rounded division (so 1/5 == 3/15 exactly, as 0.2 in float64).
    edges = np.arange(n_bins + 1, dtype=np.float64) / n_bins
    # Bin b is (edges[b], edges[b + 1]]: the first upper edge >= confidence. Confidence 0 -> bin 0.
    index = np.searchsorted(edges[1:], confidence, side="left")
    index = np.clip(index, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    hits = np.bincount(index, weights=correct.astype(np.float64), minlength=n_bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=n_bins)
    nonempty = count > 0
    accuracy = np.where(nonempty, hits / np.maximum(count, 1), np.nan)
    mean_conf = np.where(nonempty, conf_sum / np.maximum(count, 1), np.nan)
    gap = np.abs(accuracy - mean_conf)
    total = int(count.sum())
    ece = float(np.sum(count[nonempty] / total * gap[nonempty]))
    mce = float(gap[nonempty].max())
    return {
        "bin_lower": edges[:-1].tolist(),
        "bin_upper": edges[1:].tolist(),
        "count": count.astype(int).tolist(),
        "accuracy": [float(a) if ok else None for a, ok in zip(accuracy, nonempty)],
        "confidence": [float(c) if ok else None for c, ok in zip(mean_conf, nonempty)],
        "ece": ece,
        "mce": mce,
    }


def reliability_bins(logits, labels, n_bins: int = 15) -> dict:
    """Per-bin calibration statistics (the data of a reliability diagram).

    Returns a dict of lists of length ``n_bins``: ``bin_lower``, ``bin_upper`` (bin b is
    ``(bin_lower[b], bin_upper[b]]``), ``count``, ``accuracy`` and ``confidence`` (mean max-softmax
    probability; both ``None`` for an empty bin), plus the scalars ``ece`` and ``mce`` derived from them.
    """
    logits, labels, _ = _validate(logits, labels)
    confidence, prediction = _softmax_confidence(logits)
    return _bin_statistics(confidence, prediction == labels, n_bins)


# ----------------------------------------------------------------------------------------------------------
# shot groups
# ----------------------------------------------------------------------------------------------------------
def _resolve_index_bounds(index_bounds, num_classes: int) -> tuple[int, int]:
    if index_bounds is None:
        raise ValueError(
            "split='index' needs index_bounds: a name from DEIT_LT_INDEX_BOUNDS "
            f"({sorted(DEIT_LT_INDEX_BOUNDS)}) or an explicit (head_end, tail_start) pair"
        )
    if isinstance(index_bounds, str):
        key = _BOUNDS_ALIASES.get(re.sub(r"[^0-9a-z]", "", index_bounds.lower()))
        if key is None:
            raise ValueError(
                f"unknown index_bounds name {index_bounds!r}; known: {sorted(DEIT_LT_INDEX_BOUNDS)} "
                "(or pass an explicit (head_end, tail_start) pair)"
            )
        expected = _NAMED_BOUNDS_NUM_CLASSES[key]
        if expected != num_classes:
            raise ValueError(
                f"index_bounds={index_bounds!r} is DeiT-LT's split for {expected} classes, but logits have "
                f"{num_classes}; pass an explicit (head_end, tail_start) pair for other datasets"
            )
        low, high = DEIT_LT_INDEX_BOUNDS[key]
    else:
        try:
            low, high = (int(b) for b in index_bounds)
        except (TypeError, ValueError):
            raise ValueError(
                f"index_bounds must be a name or a (head_end, tail_start) pair of ints, got {index_bounds!r}"
            ) from None
    if not 0 <= low <= high <= num_classes:
        raise ValueError(f"index_bounds must satisfy 0 <= {low} <= {high} <= num_classes={num_classes}")
    return low, high


def shot_groups(
    train_class_counts: Sequence[int],
    many_threshold: int = 100,
    few_threshold: int = 20,
    split: str = "count",
    index_bounds=None,
) -> tuple[list[int], list[int], list[int]]:
    """Class ids of the (many, medium, few)-shot groups, each sorted ascending.

    ``split="count"``: many ``n > many_threshold``, few ``n < few_threshold``, medium otherwise.
    ``split="index"``: classes sorted by training count, descending (ties by class id); head = sorted
    positions ``[0, lo)``, mid = ``[lo, hi)``, tail = ``[hi, C)``, as DeiT-LT's ``engine.evaluate``.
    """
    counts = np.asarray(train_class_counts)
    num_classes = counts.shape[0]
    ids = np.arange(num_classes)
    if split == "count":
        if index_bounds is not None:
            raise ValueError("index_bounds is only used with split='index'")
        if few_threshold > many_threshold:
            raise ValueError(
                f"few_threshold ({few_threshold}) must not exceed many_threshold ({many_threshold}): "
                "the groups would overlap"
            )
        many = ids[counts > many_threshold]
        few = ids[counts < few_threshold]
        medium = ids[(counts <= many_threshold) & (counts >= few_threshold)]
    elif split == "index":
        low, high = _resolve_index_bounds(index_bounds, num_classes)
        order = np.argsort(-counts, kind="stable")
        many, medium, few = np.sort(order[:low]), np.sort(order[low:high]), np.sort(order[high:])
    else:
        raise ValueError(f"split must be 'count' or 'index', got {split!r}")
    return many.tolist(), medium.tolist(), few.tolist()


# ----------------------------------------------------------------------------------------------------------
# main entry point
# ----------------------------------------------------------------------------------------------------------
def long_tail_metrics(
    logits,
    labels,
    train_class_counts: Sequence[int],
    many_threshold: int = 100,
    few_threshold: int = 20,
    n_bins: int = 15,
    split: str = "count",
    index_bounds=None,
) -> dict:
    """Accuracy by shot group and calibration of a classifier on a (usually balanced) evaluation set.

    Args:
        logits: ``[N, C]`` numpy array or torch tensor (any float dtype, bf16 included; computed in float64).
        labels: ``[N]`` integer class ids in ``[0, C)``.
        train_class_counts: the ``C`` training-split class counts that define the shot groups.
        many_threshold, few_threshold: ``split="count"`` thresholds (many ``n > 100``, few ``n < 20``).
        n_bins: number of equal-width confidence bins for ECE / MCE.
        split: ``"count"`` (LiVT convention) or ``"index"`` (DeiT-LT convention).
        index_bounds: with ``split="index"``: a key of :data:`DEIT_LT_INDEX_BOUNDS` (``"cifar10"``,
            ``"cifar100"``, ``"imagenet_lt"``, ``"inat18"``) or an explicit ``(head_end, tail_start)`` pair.

    Returns:
        dict with ``accuracy`` (over samples), ``many_shot_accuracy``, ``medium_shot_accuracy``,
        ``few_shot_accuracy`` (mean of the group's per-class accuracies; ``None`` for a group with no
        evaluated class), ``ece``, ``mce``, ``per_class_accuracy`` (``C`` values, ``None`` for a class absent
        from ``labels``), ``many_shot_classes``, ``medium_shot_classes``, ``few_shot_classes`` and ``split``.
        Accuracies and calibration errors are fractions in 0..1.
    """
    logits, labels, counts = _validate(logits, labels, train_class_counts)
    if counts is None:
        raise ValueError("train_class_counts is required (the training-split count of every class)")
    num_classes = logits.shape[1]
    many, medium, few = shot_groups(counts, many_threshold, few_threshold, split, index_bounds)

    confidence, prediction = _softmax_confidence(logits)
    correct = prediction == labels
    support = np.bincount(labels, minlength=num_classes)
    hits = np.bincount(labels, weights=correct.astype(np.float64), minlength=num_classes)
    per_class = [float(hits[c] / support[c]) if support[c] > 0 else None for c in range(num_classes)]

    def group_accuracy(classes: list[int]) -> float | None:
        values = [per_class[c] for c in classes if per_class[c] is not None]
        return float(np.mean(values)) if values else None

    calibration = _bin_statistics(confidence, correct, n_bins)
    return {
        "accuracy": float(correct.mean()),
        "many_shot_accuracy": group_accuracy(many),
        "medium_shot_accuracy": group_accuracy(medium),
        "few_shot_accuracy": group_accuracy(few),
        "ece": calibration["ece"],
        "mce": calibration["mce"],
        "per_class_accuracy": per_class,
        "many_shot_classes": many,
        "medium_shot_classes": medium,
        "few_shot_classes": few,
        "split": split,
    }
