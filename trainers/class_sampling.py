"""Class-aware sampling of the training images (Kang et al. 2020, "Decoupling representation and classifier for
long-tailed recognition"): `--sampler instance|class_balanced|square_root|progressive`.

A class j with n_j training images is drawn with probability p_j = n_j^q / sum_i n_i^q: q = 1 instance-balanced (every
image equally likely; the trainers keep Trainer's shuffle for `--sampler instance`, each image once per epoch),
q = 0 class-balanced, q = 1/2 square-root; progressive moves linearly from
instance- to class-balanced over the run, p_j(t) = (1 - t/T) p_j^IB + (t/T) p_j^CB with t the epoch (0-based) and T
the number of epochs. Within a class every image is equally likely. Classes without images are left out of the sums
(0^0 would otherwise give an empty class a share).

Decisions: images are drawn with replacement; an epoch draws as many images as the training set has (so schedules,
step counts and `--num_train_epochs` mean what they mean with the plain shuffle); the draw of epoch e is a pure
function of (seed, e), so a resumed run replays the same indices. Under DDP every process builds the same global
list and accelerate deals its batches round-robin to the processes (`BatchSamplerShard`: batch k goes to process
k % num_processes), so the processes' shares are disjoint and together cover the epoch's list.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from datasets import ClassLabel, Dataset, IterableDataset

from modeling_livt.data.long_tail import read_labels

SAMPLERS = ("instance", "class_balanced", "square_root", "progressive")
# q of p_j ∝ n_j^q for the fixed strategies
SAMPLER_EXPONENTS = {"instance": 1.0, "class_balanced": 0.0, "square_root": 0.5}
LABEL_COLUMN_GUESSES = ("label", "labels")
# how a model card's recipe names each sampler
SAMPLER_DESCRIPTIONS = {
    "instance": "instance-balanced (every image once per epoch, shuffled)",
    "class_balanced": "class-balanced (p_j = 1/C; with replacement, as many draws per epoch as images)",
    "square_root": "square-root (p_j ~ sqrt(n_j); with replacement, as many draws per epoch as images)",
    "progressive": "progressive (p_j(t) = (1 - t/T) n_j/N + (t/T)/C over the T epochs; with replacement, as many "
    "draws per epoch as images)",
}


def check_sampler_name(name: str) -> str:
    """`name` if it is one of `SAMPLERS`, else a ValueError listing them."""
    if name not in SAMPLERS:
        raise ValueError(f"Unknown sampler {name!r}; choose one of {list(SAMPLERS)} (--sampler).")
    return name


def class_probabilities(class_counts: Sequence[int], exponent: float) -> np.ndarray:
    """p_j = n_j^q / sum_i n_i^q over the classes with images (0 for a class without images)."""
    counts = np.asarray(class_counts, dtype=np.float64)
    present = counts > 0
    if not present.any():
        raise ValueError("Class-aware sampling needs at least one class with training images; all counts are 0.")
    weights = np.zeros_like(counts)
    weights[present] = counts[present] ** exponent
    return weights / weights.sum()


def progressive_probabilities(class_counts: Sequence[int], epoch: int, num_epochs: int) -> np.ndarray:
    """p_j(t) = (1 - t/T) p_j^IB + (t/T) p_j^CB, with t/T capped at 1 (epochs past T stay class-balanced)."""
    if num_epochs is None or num_epochs < 1:
        raise ValueError(f"The progressive sampler needs the number of epochs T >= 1, got {num_epochs}.")
    ratio = min(max(epoch, 0) / num_epochs, 1.0)
    return (1.0 - ratio) * class_probabilities(class_counts, 1.0) + ratio * class_probabilities(class_counts, 0.0)


class ClassAwareSampler(torch.utils.data.Sampler[int]):
    """Draws `num_samples` row indices per epoch, with replacement, class j with probability p_j (module docstring)
    and uniformly within the class.

    Args:
        labels: the class of every row of the training set (in row order).
        strategy: "instance", "class_balanced", "square_root" or "progressive".
        num_samples: indices per epoch (default: the number of rows, one epoch's worth).
        num_epochs: T of the progressive schedule (the run's number of epochs); unused by the other strategies.
        seed: the epoch's draw is a pure function of (seed, epoch): call `set_epoch` (Trainer does) before iterating.
    """

    def __init__(
        self,
        labels: Sequence[int],
        strategy: str = "class_balanced",
        num_samples: int | None = None,
        num_epochs: int | None = None,
        seed: int = 0,
    ):
        self.strategy = check_sampler_name(strategy)
        self.labels = np.asarray(labels, dtype=np.int64)
        if self.labels.ndim != 1 or len(self.labels) == 0:
            raise ValueError("ClassAwareSampler needs a non-empty list of integer class labels, one per row.")
        if (self.labels < 0).any():
            raise ValueError(f"Class labels must be >= 0; found {int(self.labels.min())}.")
        self.class_counts = np.bincount(self.labels)
        self.num_samples = len(self.labels) if num_samples is None else int(num_samples)
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
        if strategy == "progressive" and num_epochs is None:
            raise ValueError("The progressive sampler needs num_epochs (T of its schedule).")
        self.num_epochs = num_epochs
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def probabilities(self, epoch: int | None = None) -> np.ndarray:
        """The class probabilities p_j of `epoch` (default: the current one), indexed by label."""
        epoch = self.epoch if epoch is None else epoch
        if self.strategy == "progressive":
            return progressive_probabilities(self.class_counts, epoch, self.num_epochs)
        return class_probabilities(self.class_counts, SAMPLER_EXPONENTS[self.strategy])

    def epoch_indices(self, epoch: int | None = None) -> list[int]:
        """The row indices of `epoch` (default: the current one): the same (seed, epoch) gives the same list."""
        epoch = self.epoch if epoch is None else epoch
        class_p = self.probabilities(epoch)
        row_p = class_p[self.labels] / self.class_counts[self.labels]  # p_j spread evenly over class j's images
        rng = np.random.default_rng([self.seed, epoch])  # SeedSequence mixing: (0, 1) and (1, 0) draw differently
        return rng.choice(len(self.labels), size=self.num_samples, replace=True, p=row_p / row_p.sum()).tolist()

    def __iter__(self):
        return iter(self.epoch_indices())

    def __len__(self) -> int:
        return self.num_samples


def dataset_labels(dataset) -> list[int]:
    """The class label of every row of a map-style training set, read without decoding any image.

    A `datasets.Dataset` (a transform attached or not) is read through its label column: the one the package's
    transform names (`make_transform_fn(label_column=...)`), else its only `ClassLabel` column, else "label" or
    "labels". A torch dataset with a `targets` list (torchvision's ImageFolder, CIFAR10) gives that list.
    """
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
        raise ValueError(
            "Class-aware sampling (--sampler) needs a map-style training set (it draws images by index); a streamed "
            "dataset has no index. Drop --streaming or pass --sampler instance."
        )
    if isinstance(dataset, Dataset):
        return [int(v) for v in read_labels(dataset, _label_column(dataset))]
    targets = getattr(dataset, "targets", None)
    if targets is not None and len(targets) == len(dataset):
        return [int(v) for v in targets]
    raise ValueError(
        f"Cannot read the class labels of a {type(dataset).__name__} without loading its images: class-aware sampling "
        "needs a datasets.Dataset with a label column (ClassLabel, 'label' or 'labels') or a torch dataset with a "
        "`targets` list."
    )


def _label_column(dataset: Dataset) -> str:
    columns = dataset.column_names
    transform = dataset.format.get("format_kwargs", {}).get("transform") if dataset.format.get("type") else None
    named = getattr(transform, "label_column", None)
    if named in columns:
        return named
    features = dataset.features or {}
    class_labels = [name for name in columns if isinstance(features.get(name), ClassLabel)]
    if len(class_labels) == 1:
        return class_labels[0]
    for guess in LABEL_COLUMN_GUESSES:
        if guess in columns:
            return guess
    raise ValueError(
        f"Class-aware sampling (--sampler) cannot tell the label column among {columns}: cast it to ClassLabel "
        "(`dataset.class_encode_column(name)`) or rename it to 'label'."
    )


def training_epochs(args, epoch_length: int) -> int:
    """The number of epochs Trainer will run (T of the progressive schedule) for an epoch of `epoch_length` samples:
    `ceil(num_train_epochs)`, or with `max_steps` the epochs those steps span (Trainer's own arithmetic: batches per
    process, then optimizer steps per epoch)."""
    if args.max_steps is None or args.max_steps <= 0:
        return max(math.ceil(args.num_train_epochs), 1)
    global_batch = args.per_device_train_batch_size * args.world_size
    batches = epoch_length // global_batch if args.dataloader_drop_last else math.ceil(epoch_length / global_batch)
    updates_per_epoch = max(math.ceil(batches / args.gradient_accumulation_steps), 1)
    return max(math.ceil(args.max_steps / updates_per_epoch), 1)
