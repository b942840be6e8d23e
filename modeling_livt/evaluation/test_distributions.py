"""Evaluation under shifted test class distributions (SADE: Zhang et al., "Self-Supervised Aggregation of Diverse
Experts for Test-Agnostic Long-Tailed Recognition", NeurIPS 2022), and post-hoc logit adjustment to a known target
prior.

SADE's protocol (Vanint/SADE-AgnosticLT, `data_loader/imbalance_cifar.py` with `reverse`, `test_all_cifar.py`) builds
each test distribution from the balanced test split, with the training split's long-tail profile:

* ``forward<N>``: class at training-frequency rank r keeps ``int(m * (1 / N) ** (r / (C - 1)))`` of its test images
  (m = images per class of the balanced split, SADE's ``len(test) / C``): the head of training is the head of the test
  distribution; ``N`` is the imbalance factor, as ``--imbalance_factor`` (n_max / n_min);
* ``backward<N>``: the same counts in the reverse order (rank r gets the count of rank C - 1 - r);
* ``uniform``: the balanced split itself (equal counts; an unequal split is cut to its smallest class's size).

The images of a class are drawn by a seeded random sample without replacement (SADE seeds numpy with 0 and shuffles
each class in label order; here ``numpy.random.default_rng(seed)``, classes in label order). Training ranks are by
count, descending, ties by label id (a stable sort): for CIFAR-LT, rank = label. The evaluation re-weights a fixed
prediction set: no image is predicted twice, and `expected_accuracy` (sum over classes of the distribution's class
prior times the class's accuracy on the balanced split) is the same quantity without the sampling noise.

`target_prior_logits` adapts logits fitted for the training prior to a known test prior:
``z - tau * (log pi_train - log pi_target)`` (Menon et al.'s logit adjustment with the target prior in place of the
uniform one; tau = 1 is Bayes-optimal for calibrated logits). For a target named by a distribution, pi_target is the
profile itself (``N ** (-r / (C - 1))`` normalised, forward or backward), not the integer counts of one test draw (a
tail class may draw 0 images from a small split).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence

import numpy as np

from ..data.long_tail import long_tailed_counts
from .metrics import _bin_statistics, _softmax_confidence

__all__ = [
    "TEST_DISTRIBUTIONS_HELP",
    "distribution_prior",
    "evaluate_test_distributions",
    "expected_accuracy",
    "parse_distribution",
    "parse_target_prior",
    "parse_test_distributions",
    "per_class_accuracy",
    "shifted_class_counts",
    "shifted_test_indices",
    "target_prior_logits",
    "training_ranks",
]

_PATTERN = re.compile(r"^(forward|backward)(\d+(?:\.\d+)?)$")
TEST_DISTRIBUTIONS_HELP = (
    "forward<N> (the training long-tail profile with imbalance N = n_max / n_min, head = the training head), "
    "backward<N> (the reverse order) or uniform"
)


def parse_distribution(name: str) -> tuple[str, float]:
    """``"forward50"`` -> ``("forward", 50.0)``, ``"backward10"`` -> ``("backward", 10.0)``, ``"uniform"`` ->
    ``("uniform", 1.0)``. Raises `ValueError` for anything else (and for N < 1)."""
    text = str(name).strip().lower()
    if text == "uniform":
        return "uniform", 1.0
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(f"unknown test distribution {name!r}: expected {TEST_DISTRIBUTIONS_HELP}, e.g. forward50.")
    factor = float(match.group(2))
    if not factor >= 1:
        raise ValueError(f"test distribution {name!r}: the imbalance factor must be >= 1 (n_max / n_min).")
    if factor == 1:
        return "uniform", 1.0
    return match.group(1), factor


def parse_test_distributions(value: str | Sequence[str] | None) -> list[str]:
    """A comma list (or list) of distribution names -> the names, normalised (lower case), each once, in order."""
    if value is None:
        return []
    names = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for name in names:
        name = str(name).strip().lower()
        if not name:
            continue
        parse_distribution(name)
        if name not in out:
            out.append(name)
    return out


def training_ranks(train_class_counts: Sequence[int]) -> np.ndarray:
    """rank[c] = position of class c when the classes are sorted by training count, descending (ties by label id)."""
    counts = np.asarray(train_class_counts, dtype=np.float64)
    order = np.argsort(-counts, kind="stable")
    ranks = np.empty(len(counts), dtype=np.int64)
    ranks[order] = np.arange(len(counts))
    return ranks


def _rank_positions(name: str, train_class_counts: Sequence[int]) -> tuple[str, float, np.ndarray]:
    direction, factor = parse_distribution(name)
    ranks = training_ranks(train_class_counts)
    positions = ranks if direction != "backward" else len(ranks) - 1 - ranks
    return direction, factor, positions


def shifted_class_counts(name: str, per_class: int, train_class_counts: Sequence[int]) -> list[int]:
    """Images per class (label order) of distribution `name` drawn from a split with `per_class` images per class."""
    direction, factor, positions = _rank_positions(name, train_class_counts)
    num_classes = len(positions)
    if direction == "uniform":
        return [int(per_class)] * num_classes
    profile = long_tailed_counts(int(per_class), num_classes, factor)  # profile[r]: the count of rank r
    return [int(profile[p]) for p in positions]


def distribution_prior(name: str, train_class_counts: Sequence[int]) -> np.ndarray:
    """The class prior (label order, sums to 1) of distribution `name`: ``N ** (-position / (C - 1))`` normalised."""
    direction, factor, positions = _rank_positions(name, train_class_counts)
    num_classes = len(positions)
    if direction == "uniform" or num_classes == 1:
        return np.full(num_classes, 1.0 / num_classes)
    weights = factor ** (-positions.astype(np.float64) / (num_classes - 1))
    return weights / weights.sum()


def shifted_test_indices(
    labels: Sequence[int], name: str, train_class_counts: Sequence[int], seed: int = 0
) -> list[int]:
    """Row indices (ascending) of distribution `name` re-sampled from the (balanced) split with these `labels`.

    m = the size of the split's smallest class (its per-class size when balanced); class c keeps
    `shifted_class_counts(name, m, train_class_counts)[c]` of its rows, a seeded sample without replacement.
    ``uniform`` on a balanced split is the split itself."""
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = len(train_class_counts)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be class ids in [0, {num_classes}).")
    per_class_rows = [np.flatnonzero(labels == c) for c in range(num_classes)]
    sizes = [len(rows) for rows in per_class_rows]
    if min(sizes) == 0:
        missing = [c for c, n in enumerate(sizes) if n == 0]
        raise ValueError(
            f"test distributions are re-sampled from a split holding every class; class(es) {missing[:5]} have no "
            "example in it."
        )
    per_class = min(sizes)
    targets = shifted_class_counts(name, per_class, train_class_counts)
    if targets == sizes:
        return list(range(len(labels)))
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(rows)[:target] for rows, target in zip(per_class_rows, targets, strict=True)]
    return sorted(int(i) for i in np.concatenate(chosen))


def per_class_accuracy(logits, labels, num_classes: int) -> np.ndarray:
    """Top-1 accuracy of each class (NaN for a class absent from `labels`)."""
    logits, labels = np.asarray(logits), np.asarray(labels, dtype=np.int64)
    correct = (logits.argmax(axis=1) == labels).astype(np.float64)
    hits = np.bincount(labels, weights=correct, minlength=num_classes)
    totals = np.bincount(labels, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, hits / np.maximum(totals, 1), np.nan)


def expected_accuracy(logits, labels, prior: Sequence[float]) -> float:
    """sum_c prior_c * accuracy_c: the accuracy expected under a test distribution with class prior `prior` (the
    re-sampling's value without its noise)."""
    prior = np.asarray(prior, dtype=np.float64)
    accuracy = per_class_accuracy(logits, labels, len(prior))
    present = prior > 0
    if np.isnan(accuracy[present]).any():
        raise ValueError("every class with a non-zero prior needs examples in the split.")
    return float(np.sum(prior[present] * accuracy[present]) / prior[present].sum())


def _accuracy_and_ece(logits: np.ndarray, labels: np.ndarray, n_bins: int) -> tuple[float, float]:
    confidence, prediction = _softmax_confidence(logits)
    correct = prediction == labels
    return float(correct.mean()), _bin_statistics(confidence, correct, n_bins)["ece"]


def evaluate_test_distributions(
    logits, labels, train_class_counts: Sequence[int], names: Sequence[str], seed: int = 0, n_bins: int = 15
) -> dict[str, dict]:
    """{name: {accuracy, ece, num_examples, expected_accuracy, class_counts}} of a fixed prediction set (`logits`
    `[N, C]`, `labels` `[N]` of the balanced split) re-sampled to each distribution (`shifted_test_indices`, one
    seeded draw per distribution, the same `seed`)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = len(train_class_counts)
    if logits.ndim != 2 or logits.shape[1] != num_classes or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits {tuple(logits.shape)} do not match {labels.shape[0]} labels and {num_classes} "
                         "classes.")
    results = {}
    for name in parse_test_distributions(names):
        rows = np.asarray(shifted_test_indices(labels, name, train_class_counts, seed), dtype=np.int64)
        accuracy, ece = _accuracy_and_ece(logits[rows], labels[rows], n_bins)
        results[name] = {
            "accuracy": accuracy,
            "ece": ece,
            "num_examples": int(rows.size),
            "expected_accuracy": expected_accuracy(logits, labels, distribution_prior(name, train_class_counts)),
            "class_counts": np.bincount(labels[rows], minlength=num_classes).astype(int).tolist(),
        }
    return results


def parse_target_prior(value, train_class_counts: Sequence[int]) -> tuple[str, np.ndarray]:
    """`--target_prior` -> (description, prior `[C]` summing to 1): a distribution name (``forward50``,
    ``backward10``, ``uniform``), a comma list of C non-negative numbers (normalised), or a ``.json`` file holding
    such a list (or ``{"prior": [...]}`` / ``{"class_counts": [...]}``). Every class needs a positive prior (its log
    enters the logits)."""
    num_classes = len(train_class_counts)
    if isinstance(value, str):
        text = value.strip()
        if text.lower().endswith(".json") or os.path.isfile(text):
            if not os.path.isfile(text):
                raise ValueError(f"--target_prior {value}: no such file.")
            with open(text, encoding="utf-8") as f:
                loaded = json.load(f)
            if isinstance(loaded, dict):
                loaded = loaded.get("prior", loaded.get("class_counts"))
            if not isinstance(loaded, list):
                raise ValueError(f"--target_prior {value}: expected a json list of {num_classes} numbers (or "
                                 '{"prior": [...]}).')
            description, values = os.path.basename(text), loaded
        elif "," in text:
            try:
                values = [float(v) for v in text.split(",") if v.strip()]
            except ValueError:
                raise ValueError(f"--target_prior {value!r}: expected numbers separated by commas.") from None
            description = "custom"
        else:
            return text.lower(), distribution_prior(text, train_class_counts)
    else:
        values, description = list(value), "custom"
    prior = np.asarray([float(v) for v in values], dtype=np.float64)
    if prior.size != num_classes:
        raise ValueError(f"--target_prior has {prior.size} values but the model has {num_classes} classes.")
    if not np.all(np.isfinite(prior)) or np.any(prior <= 0):
        raise ValueError("--target_prior: every class needs a positive, finite prior (its log adjusts the logits).")
    return description, prior / prior.sum()


def target_prior_logits(
    logits,
    train_class_counts: Sequence[float],
    target_prior: Sequence[float],
    tau: float = 1.0,
    applied_tau: float | None = None,
    temperature: float | None = None,
) -> np.ndarray:
    """Logits adjusted from the training prior to `target_prior`: ``z - tau * (log pi_train - log pi_target)``.

    `logits` may already be the output of a model that applies its own post-hoc values, ``(z - applied_tau * log
    pi_train) / temperature`` (`posthoc_adjustment.adjust_logits`); the result is then ``(z - tau * (log pi_train -
    log pi_target)) / temperature``, the target prior entering before the temperature, as the training prior does."""
    logits = np.asarray(logits, dtype=np.float64)
    counts = np.asarray([float(c) for c in train_class_counts], dtype=np.float64)
    if np.any(counts <= 0):
        raise ValueError("target-prior adjustment needs every class present in the training counts.")
    log_train = np.log(counts / counts.sum())
    log_target = np.log(np.asarray(target_prior, dtype=np.float64))
    if log_train.shape != log_target.shape or logits.shape[-1] != log_train.shape[0]:
        raise ValueError("logits, training counts and target prior disagree on the number of classes.")
    applied = 0.0 if applied_tau is None else float(applied_tau)
    shift = (applied - tau) * log_train + tau * log_target
    scale = 1.0 if temperature is None else float(temperature)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"temperature must be positive, got {temperature!r}.")
    return logits + shift / scale
