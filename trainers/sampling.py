"""What the trainers do to the training data each epoch: advance the seeded augmentation, and DeiT's repeated
augmentation (every image several times per epoch, each copy augmented differently).

* `seeded_transforms` finds the per-example seeded transforms (`modeling_livt.data.transforms.make_transform_fn`)
  attached to a dataset, and `AugmentationEpochCallback` sets their epoch at every epoch start. The trainers add the
  callback themselves, so no caller can forget it (a frozen augmentation draws the same crop/flip/RandAugment/erasing
  for an image in every epoch).
* `RepeatedAugmentationSampler` is DeiT's `RASampler` laid out for Trainer + accelerate; `repeat_rows` gives each copy
  of an image its own row (and so its own augmentation seed).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence

import torch
from datasets import Dataset, IterableDataset, concatenate_datasets
from transformers import TrainerCallback

from modeling_livt.data.transforms import INDEX_COLUMN


def seeded_transforms(dataset) -> list:
    """The seeded batch transforms (only those have `set_epoch`) attached to `dataset`: a map-style dataset's
    `with_transform` function, the functions of an iterable dataset's lazy `map`s, or those of a wrapped dataset."""
    found = []
    if isinstance(dataset, Dataset) and dataset.format.get("type") == "custom":
        found.append(dataset.format.get("format_kwargs", {}).get("transform"))
    if isinstance(dataset, IterableDataset):
        node = dataset._ex_iterable
        while node is not None:
            found.append(getattr(node, "function", None))
            node = getattr(node, "ex_iterable", None)
    inner = getattr(dataset, "dataset", None)  # torch wrappers (Subset, IterableDatasetShard, ...)
    if inner is not None and inner is not dataset:
        found.extend(seeded_transforms(inner))
    return [fn for fn in found if callable(getattr(fn, "set_epoch", None))]


class AugmentationEpochCallback(TrainerCallback):
    """Sets the epoch of the training data's seeded transforms at every epoch start (resumed epochs included), before
    Trainer creates that epoch's DataLoader iterator; the value is in shared memory, so workers (persistent ones too)
    see it. Added by every trainer of the package.

    It holds the trainer by weak reference: a callback that owns its trainer makes the whole trainer (its persistent
    DataLoader workers included) garbage that only the cycle collector frees, which may close a loader's index queues
    before telling its workers to stop, and each worker then takes 5 s to time out."""

    def __init__(self, trainer):
        self.trainer = weakref.ref(trainer)

    def on_epoch_begin(self, args, state, control, **kwargs):
        trainer = self.trainer()
        if trainer is not None:
            for fn in seeded_transforms(trainer.train_dataset):
                fn.set_epoch(int(state.epoch or 0))


class RepeatedAugmentationSampler(torch.utils.data.Sampler):
    """DeiT's repeated-augmentation sampler (`RASampler`, 3 repeats) for Trainer + accelerate.

    Each epoch draws a permutation of the images (seeded by `seed + epoch`), repeats every image `num_repeats` times
    in a row and deals the list round-robin to the processes, as DeiT's sampler does, so that under DDP the copies of
    an image go to different processes; each process keeps `num_images // num_processes` samples (rounded down to
    whole batches), so an epoch has about as many samples as there are images (a third of the images, each three
    times, for 3 repeats). accelerate hands batch k of this sampler to process k % num_processes: the processes'
    lists are interleaved batch by batch so that each process gets exactly DeiT's list.

    With `copies_are_rows` the dataset holds each image `num_repeats` times (`repeat_rows`: copy c of image i is row
    `c * num_images + i`), so each copy has its own augmentation seed; otherwise the same row is yielded repeatedly.
    Deterministic given (seed, epoch): a resumed run replays the same order. `image_order(epoch)`, when given, replaces
    the epoch's permutation of the images (e.g. a class-aware draw, `ClassAwareSampler.epoch_indices`): its first
    images are the ones repeated.
    """

    def __init__(
        self,
        num_images: int,
        num_repeats: int = 3,
        num_processes: int = 1,
        batch_size: int = 1,
        seed: int = 0,
        copies_are_rows: bool = False,
        image_order: Callable[[int], Sequence[int]] | None = None,
    ):
        if num_repeats < 1:
            raise ValueError(f"num_repeats must be >= 1, got {num_repeats}")
        self.num_images = num_images
        self.num_repeats = num_repeats
        self.num_processes = num_processes
        self.batch_size = batch_size
        self.seed = seed
        self.copies_are_rows = copies_are_rows
        self.image_order = image_order
        self.epoch = 0
        per_process = num_images // num_processes
        whole_batches = per_process // batch_size * batch_size
        self.per_process = whole_batches if whole_batches > 0 else per_process

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def process_indices(self) -> list[list[int]]:
        """This epoch's sample list of every process (what DeiT's sampler gives each rank)."""
        if self.image_order is not None:
            order = list(self.image_order(self.epoch))
        else:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_images, generator=generator).tolist()
        n = self.num_images
        repeated = [i + copy * n if self.copies_are_rows else i for i in order for copy in range(self.num_repeats)]
        total = math.ceil(len(repeated) / self.num_processes) * self.num_processes
        repeated += repeated[: total - len(repeated)]  # pad so that every process gets as many samples
        return [repeated[rank::self.num_processes][: self.per_process] for rank in range(self.num_processes)]

    def __iter__(self):
        lists = self.process_indices()
        for start in range(0, self.per_process, self.batch_size):
            for rank_list in lists:
                yield from rank_list[start : start + self.batch_size]

    def __len__(self) -> int:
        return self.per_process * self.num_processes


def repeat_rows(dataset: Dataset, num_repeats: int) -> Dataset:
    """`num_repeats` copies of a seeded map-style dataset (from `modeling_livt.data.transforms.apply_transform`), copy c
    of row i at row `c * len(dataset) + i` with example index `c * len(dataset) + i`, so every copy draws its own
    augmentation. The transform is kept."""
    transform = dataset.format.get("format_kwargs", {}).get("transform")
    raw = dataset.with_format(None)
    n = len(raw)
    base = raw.remove_columns(INDEX_COLUMN)
    copies = [base.add_column(INDEX_COLUMN, list(range(c * n, (c + 1) * n))) for c in range(num_repeats)]
    return concatenate_datasets(copies).with_transform(transform)
