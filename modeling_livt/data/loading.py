"""The one loader the scripts use: `DataOptions` + `load_image_datasets` (digits, a Hub name, a local parquet or
image folder), with validation carving, long-tailing, class counts, corrupt-image handling and streaming.

The pieces live beside it: `long_tail.py` (sub-sampling, split files), `images.py` (decoding), `digits.py` (the
offline default data).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import (
    ClassLabel,
    Dataset,
    DatasetDict,
    IterableDataset,
    IterableDatasetDict,
    load_dataset,
    load_from_disk,
)
from datasets import Image as ImageFeature

from .digits import load_digits_dataset
from .images import CorruptImageCounter, filter_corrupt_images
from .long_tail import (
    CLASS_COUNTS_FILE,
    DEFAULT_VALIDATION_PERCENTAGE,
    IMBALANCE_PROFILES,
    LONG_TAILED_INDICES_FILE,
    VALIDATION_SOURCES,
    VALIDATION_SPLIT_NAMES,
    carve_unused_validation_split,
    carve_validation_split,
    check_labels,
    class_counts_from_labels,
    labels_fingerprint,
    load_class_counts,
    long_tailed_indices,
    read_labels,
    read_split_file,
    require_column,
    save_split_indices,
    seeded_subset,
)

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# The options and the one loader the scripts use
# ----------------------------------------------------------------------------------------------


@dataclass
class DataOptions:
    """What `load_image_datasets` reads: which data, how to make it long-tailed, validation carving, streaming and
    debugging subsets. A plain dataclass (the scripts' flags, with their help: `trainers.arguments.DataArguments`).
    Bad values fail here."""

    dataset_name: str = "digits"
    dataset_config_name: str | None = None
    train_dir: str | None = None
    validation_dir: str | None = None
    test_dir: str | None = None
    image_column_name: str = "image"
    label_column_name: str = "label"
    imbalance_factor: float | None = None
    imbalance_profile: str = "exp"
    lt_seed: int = 0
    validation_split_percentage: int | None = None
    streaming: bool = False
    shuffle_buffer_size: int = 1000
    streaming_num_shards: int = 8
    class_counts_file: str | None = None
    skip_corrupt_images: bool = False
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    validation_source: str = "auto"
    split_indices_file: str | None = None

    def __post_init__(self):
        if self.imbalance_profile not in IMBALANCE_PROFILES:
            raise ValueError(
                f"imbalance_profile must be one of {list(IMBALANCE_PROFILES)}, got {self.imbalance_profile!r}"
            )
        if self.imbalance_factor is not None and not self.imbalance_factor >= 1:
            raise ValueError(f"imbalance_factor must be >= 1 (rho = n_max / n_min), got {self.imbalance_factor!r}")
        if self.validation_source not in VALIDATION_SOURCES:
            raise ValueError(
                f"validation_source must be one of {list(VALIDATION_SOURCES)}, got {self.validation_source!r}"
            )
        pct = self.validation_split_percentage
        if pct is not None and not 0 < pct < 100:
            raise ValueError(f"validation_split_percentage must be in (0, 100), got {pct!r}")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(
                    f"{name} must be a positive number of examples, got {value!r}; leave it unset to keep them all "
                    "(an empty split would fail later with an unrelated shape error)."
                )


@dataclass
class LongTailedData:
    """What `load_image_datasets` returns: the splits plus what the trainers need to know about them."""

    train: Dataset | IterableDataset | None
    validation: Dataset | IterableDataset | None
    test: Dataset | IterableDataset | None
    class_counts: list[int]
    label_names: list[str]
    image_column: str = "image"
    label_column: str = "label"
    split_indices: list[int] | None = None
    corrupt_images: CorruptImageCounter = field(default_factory=CorruptImageCounter)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}


def _is_local_path(name: str) -> bool:
    return os.path.isdir(os.path.expanduser(name))


def _load_source(args: DataOptions, streaming: bool) -> DatasetDict | IterableDatasetDict:
    """Load the raw splits from digits, imagefolder dirs, a saved/parquet folder or the Hub."""
    if args.train_dir or args.validation_dir or args.test_dir:
        data_files = {}
        for split, directory in (
            ("train", args.train_dir),
            ("validation", args.validation_dir),
            ("test", args.test_dir),
        ):
            if directory:
                if not os.path.isdir(directory):
                    raise ValueError(f"{split}_dir={directory!r} is not a directory")
                data_files[split] = os.path.join(directory, "**")
        return load_dataset("imagefolder", data_files=data_files, streaming=streaming)
    name = args.dataset_name
    # In-memory / on-disk Arrow sources stay map-style here; the caller streams the train split itself
    # (Dataset.to_iterable_dataset with shards), after any carve or long-tail draw.
    if name == "digits":
        return load_digits_dataset()  # fixed splits: lt_seed only drives the long-tail draw
    path = os.path.expanduser(name)
    if _is_local_path(path) and (
        os.path.exists(os.path.join(path, "dataset_dict.json")) or os.path.exists(os.path.join(path, "state.json"))
    ):
        data = load_from_disk(path)
        return DatasetDict({"train": data}) if isinstance(data, Dataset) else data
    try:
        data = load_dataset(path if _is_local_path(path) else name, args.dataset_config_name, streaming=streaming)
    except (ConnectionError, FileNotFoundError) as err:
        if _is_local_path(path):
            raise
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        raise ValueError(
            f"dataset_name={name!r} is not a local folder and could not be loaded from the Hub"
            f"{' (HF_HUB_OFFLINE is set)' if offline else ''}: {err}"
        ) from err
    if isinstance(data, (Dataset, IterableDataset)):
        data = (IterableDatasetDict if streaming else DatasetDict)({"train": data})
    return data



def class_counts_from_dataset(dataset: Dataset | IterableDataset, label_column: str, num_classes: int) -> list[int]:
    """Images per class of a dataset, reading only ``label_column``.

    Map-style: the label column is read in one Arrow slice. ``IterableDataset``: one pass over
    ``dataset.select_columns([label_column])`` (images are neither read into Python nor decoded).
    """
    if isinstance(dataset, IterableDataset):
        require_column(dataset, label_column, "label_column")
        counts = [0] * num_classes
        for row, example in enumerate(dataset.select_columns([label_column])):
            label = example[label_column]
            if not isinstance(label, (int, np.integer)) or not 0 <= label < num_classes:
                raise ValueError(f"label {label!r} at row {row} is outside [0, {num_classes})")
            counts[int(label)] += 1
        return counts
    return class_counts_from_labels(read_labels(dataset, label_column), num_classes)




def _label_names(dataset: Dataset | IterableDataset, label_column: str, labels: Sequence[int] | None) -> list[str]:
    feature = dataset.features.get(label_column) if dataset.features else None
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    if labels is None:
        labels = [example[label_column] for example in dataset.select_columns([label_column])]
    unique = sorted(set(labels))
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in unique):
        raise ValueError(
            f"label column {label_column!r} must be a ClassLabel or hold integer class ids; found values such as "
            f"{unique[:5]} (encode them with `dataset.class_encode_column({label_column!r})`)"
        )
    return [str(v) for v in unique]


def _resolve_validation_source(args: DataOptions, long_tailing: bool, saved_split: dict | None) -> str:
    source = args.validation_source
    if saved_split is not None and source == "auto":
        source = saved_split.get("validation_source") or "pool"  # as it was drawn
    if source == "auto":
        source = "unused" if long_tailing else "pool"
    if source == "unused" and not long_tailing:
        raise ValueError(
            "--validation_source unused needs --imbalance_factor (or --split_indices_file): without a long-tail "
            "draw no training image is left unused. Use --validation_source pool (or auto)."
        )
    return source


def load_image_datasets(
    data_args: DataOptions, seed: int = 0, output_dir: str | os.PathLike | None = None
) -> LongTailedData:
    """Load, split and long-tail the data described by ``data_args``: a `DataOptions` (the scripts pass
    `trainers.arguments.DataArguments`, its subclass with the help of each flag).

    Order of operations on the training pool: carve validation (only when the dataset has no
    validation/val/valid split; ``validation_split_percentage`` or 10%, stratified, ``lt_seed``) ->
    long-tail (``imbalance_factor``, or the saved ``split_indices_file``) -> ``max_train_samples`` ->
    drop corrupt images (``skip_corrupt_images``) -> class counts. The test split is returned untouched
    (balanced) and is never used for model selection.

    Streaming: a source is streamed directly (``load_dataset(..., streaming=True)``) only when nothing
    needs random access; carving or long-tailing draws the subset map-style (labels only, memory-mapped),
    then streams it with ``Dataset.to_iterable_dataset(num_shards=streaming_num_shards)``. The streamed
    train split is ``.shuffle(seed=seed, buffer_size=shuffle_buffer_size)`` (Trainer's ``set_epoch``
    reshuffles each epoch). With ``skip_corrupt_images``, map-style splits are cleaned up front
    (`filter_corrupt_images`); a directly streamed source gets its image column cast to
    ``Image(decode=False)``: decode it in the batched transform (``transforms.make_transform_fn``
    with ``skip_corrupt=True``), which drops and counts corrupt rows.

    When ``output_dir`` is given, writes ``long_tailed_indices.json`` (if a long-tailed split was made
    or reused) and ``class_counts.json`` (a JSON list in label order).
    """
    args = data_args
    image_col, label_col = args.image_column_name, args.label_column_name
    needs_indices = args.imbalance_factor is not None or args.split_indices_file is not None
    data = _load_source(args, streaming=args.streaming)
    splits = list(data.keys())
    if "train" not in data:
        raise ValueError(f"the dataset has no 'train' split; available splits: {splits}")
    val_name = next((s for s in VALIDATION_SPLIT_NAMES if s in data), None)
    must_carve = val_name is None
    if args.streaming and (needs_indices or must_carve):
        logger.info("carving/long-tailing needs random access: drawing the split map-style, then streaming it")
        data = _load_source(args, streaming=False)
    streamed_source = isinstance(data["train"], IterableDataset)

    train = data["train"]
    validation = data[val_name] if val_name else None
    test = data.get("test")
    for split in (train, validation, test):
        if split is not None:
            require_column(split, image_col, "image_column_name")
            require_column(split, label_col, "label_column_name")

    counter = CorruptImageCounter()
    split_indices = None
    if streamed_source:
        # True streaming: no carve (a validation split exists), no long-tail (no indices to select).
        if args.max_train_samples is not None:
            train = train.take(args.max_train_samples)
        if args.max_eval_samples is not None:
            validation = validation.take(args.max_eval_samples) if validation is not None else None
            test = test.take(args.max_eval_samples) if test is not None else None
        if args.skip_corrupt_images:
            train, validation, test = (
                s.cast_column(image_col, ImageFeature(decode=False)) if s is not None else None
                for s in (train, validation, test)
            )
        label_names = _label_names(train, label_col, None)
        # a folder written by scripts/prepare_dataset.py carries its train counts: no counting pass over the stream
        beside = os.path.join(args.dataset_name, CLASS_COUNTS_FILE) if _is_local_path(args.dataset_name) else None
        counts_file = args.class_counts_file
        if counts_file is None and beside and os.path.isfile(beside) and args.max_train_samples is None:
            logger.info("class counts of the streamed training split read from %s", beside)
            counts_file = beside
        if counts_file:
            class_counts = load_class_counts(counts_file, label_names)
        else:
            class_counts = class_counts_from_dataset(train, label_col, len(label_names))
    else:
        saved_split = read_split_file(args.split_indices_file) if args.split_indices_file is not None else None
        validation_source = None
        if must_carve:
            validation_source = _resolve_validation_source(args, needs_indices, saved_split)
            pct = args.validation_split_percentage
            if pct is None:
                pct = DEFAULT_VALIDATION_PERCENTAGE
                logger.warning(
                    "the dataset has no validation split (splits: %s): carving %d%% of each class (stratified, seed "
                    "%d, %s) for model selection; the test split is kept for the final evaluation",
                    splits,
                    pct,
                    args.lt_seed,
                    "from the images the long-tail draw leaves unused" if validation_source == "unused"
                    else "from the training pool before long-tailing",
                )
            if validation_source == "pool":
                train, validation = carve_validation_split(train, label_col, pct, seed=args.lt_seed)
        pool_labels = read_labels(train, label_col)
        label_names = _label_names(train, label_col, pool_labels)
        num_classes = len(label_names)
        check_labels(pool_labels, num_classes)
        for split_name, split in (("validation", validation), ("test", test)):
            if split is not None:
                try:
                    check_labels(read_labels(split, label_col), num_classes)
                except ValueError as err:
                    raise ValueError(f"{split_name} split: {err}") from None

        metadata = {
            "imbalance_factor": args.imbalance_factor,
            "imbalance_profile": args.imbalance_profile,
            "lt_seed": args.lt_seed,
            "dataset_name": args.dataset_name,
            "validation_source": validation_source,
        }
        if saved_split is not None:
            split_indices = saved_split["indices"]
            saved_factor = saved_split.get("imbalance_factor")
            if args.imbalance_factor is not None and saved_factor not in (None, args.imbalance_factor):
                logger.warning(
                    "split_indices_file %s was drawn with imbalance_factor=%s, not %s: using the saved split",
                    args.split_indices_file,
                    saved_factor,
                    args.imbalance_factor,
                )
            metadata.update({k: v for k, v in saved_split.items() if k != "indices"})  # keep how it was drawn
            pool_size = saved_split.get("pool_size")
            if pool_size is not None and pool_size != len(train):
                raise ValueError(
                    f"{args.split_indices_file} was drawn from a pool of {pool_size} images, this pool has "
                    f"{len(train)} (different dataset, validation carve or lt_seed?)"
                )
            fingerprint = saved_split.get("pool_labels_sha1")
            if fingerprint is not None and fingerprint != labels_fingerprint(pool_labels):
                raise ValueError(
                    f"{args.split_indices_file} was drawn from a different training pool (its labels differ: another "
                    "dataset, or a validation carve with another lt_seed / validation_split_percentage?)"
                )
            if split_indices and max(split_indices) >= len(train):
                raise ValueError(
                    f"{args.split_indices_file}: index {max(split_indices)} out of range for a pool of {len(train)}"
                )
        elif args.imbalance_factor is not None:
            split_indices = long_tailed_indices(
                pool_labels, args.imbalance_factor, args.imbalance_profile, seed=args.lt_seed, num_classes=num_classes
            )
        if split_indices is not None:
            pool_size = len(train)
            pool = train
            train = train.select(split_indices)
            if validation_source == "unused":
                val_rows, short = carve_unused_validation_split(pool_labels, split_indices, pct, seed=args.lt_seed)
                validation = pool.select(val_rows)
                if short:
                    logger.warning(
                        "validation: classes %s have fewer unused images than their %d%% share (the long-tail draw "
                        "kept them for training); they are under-represented in the validation split. Pass "
                        "--validation_source pool to carve validation before long-tailing instead.",
                        short,
                        pct,
                    )
            if output_dir is not None:
                save_split_indices(
                    split_indices,
                    Path(output_dir) / LONG_TAILED_INDICES_FILE,
                    metadata={**metadata, "pool_size": pool_size, "pool_labels_sha1": labels_fingerprint(pool_labels)},
                )

        train = seeded_subset(train, args.max_train_samples, args.lt_seed)
        if validation is not None:
            validation = seeded_subset(validation, args.max_eval_samples, args.lt_seed)
        if test is not None:
            test = seeded_subset(test, args.max_eval_samples, args.lt_seed)
        if args.skip_corrupt_images:
            train, validation, test = (
                filter_corrupt_images(s, image_col, counter) if s is not None else None
                for s in (train, validation, test)
            )
            if counter.count:
                logger.warning("skipped %d corrupt image(s), e.g. %s", counter.count, counter.examples[:5])

        class_counts = class_counts_from_dataset(train, label_col, num_classes)
        if args.class_counts_file:
            given = load_class_counts(args.class_counts_file, label_names)
            if given != class_counts:
                raise ValueError(
                    f"class_counts_file {args.class_counts_file} disagrees with the training data: file {given}, "
                    f"data {class_counts}"
                )
        if args.streaming:
            num_shards = max(1, min(args.streaming_num_shards, len(train)))
            train = train.to_iterable_dataset(num_shards=num_shards)  # corrupt images already filtered out

    if isinstance(train, IterableDataset):
        # max_buffer_input_shards=1: datasets' default (10) feeds the buffer from several shards with
        # prefetch threads and, for parquet sources, then sleeps 5 s at the end of every epoch (an Arrow
        # workaround). Shard order is still reshuffled each epoch (set_epoch); the buffer does the rest.
        train = train.shuffle(seed=seed, buffer_size=args.shuffle_buffer_size, max_buffer_input_shards=1)
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(output_dir) / CLASS_COUNTS_FILE, "w", encoding="utf-8") as f:
            json.dump(class_counts, f)
    return LongTailedData(
        train=train,
        validation=validation,
        test=test,
        class_counts=class_counts,
        label_names=label_names,
        image_column=image_col,
        label_column=label_col,
        split_indices=split_indices,
        corrupt_images=counter,
    )

