"""Long-tailed image datasets on top of 🤗 `datasets`.

* `long_tailed_counts` / `long_tailed_indices` / `make_long_tailed`: CIFAR-LT style sub-sampling
  (exponential or step profile) that reads only the label column, so images are never decoded.
* `load_digits_dataset`: scikit-learn's 8x8 digits as an offline `DatasetDict` (the default data).
* `DataArguments` + `load_image_datasets`: one entry point for the CLIs (digits, Hub name, local
  parquet folder, imagefolder), with validation carving, long-tailing, class counts and streaming.
* `to_rgb` / `decode_image_or_raise`: robust image decoding (16-bit, alpha, corrupt bytes).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
from datasets import (
    ClassLabel,
    Dataset,
    DatasetDict,
    Features,
    IterableDataset,
    IterableDatasetDict,
    load_dataset,
    load_from_disk,
)
from datasets import Image as ImageFeature

logger = logging.getLogger(__name__)

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


def _check_labels(labels: Sequence[int], num_classes: int, what: str = "label") -> None:
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
    _check_labels(arr, num_classes)
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


def _require_column(dataset: Dataset | IterableDataset, column: str, argument: str) -> None:
    columns = dataset.column_names
    if columns is not None and column not in columns:
        raise ValueError(f"{argument}={column!r} is not a column of the dataset; available columns: {columns}")


def read_labels(dataset: Dataset, label_column: str = "label") -> list[int]:
    """All values of ``label_column`` of a map-style dataset, without touching (decoding) other columns."""
    _require_column(dataset, label_column, "label_column")
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


def _read_split_file(path: str | os.PathLike) -> dict:
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
    return list(_read_split_file(path)["indices"])


# ----------------------------------------------------------------------------------------------
# Class counts
# ----------------------------------------------------------------------------------------------


def class_counts_from_labels(labels: Iterable[int], num_classes: int) -> list[int]:
    """Images per class; a label outside [0, num_classes) raises a ValueError naming it and its row."""
    labels = list(labels)
    _check_labels(labels, num_classes)
    if not labels:
        return [0] * num_classes
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).tolist()


def class_counts_from_dataset(dataset: Dataset | IterableDataset, label_column: str, num_classes: int) -> list[int]:
    """Images per class of a dataset, reading only ``label_column``.

    Map-style: the label column is read in one Arrow slice. ``IterableDataset``: one pass over
    ``dataset.select_columns([label_column])`` (images are neither read into Python nor decoded).
    """
    if isinstance(dataset, IterableDataset):
        _require_column(dataset, label_column, "label_column")
        counts = [0] * num_classes
        for row, example in enumerate(dataset.select_columns([label_column])):
            label = example[label_column]
            if not isinstance(label, (int, np.integer)) or not 0 <= label < num_classes:
                raise ValueError(f"label {label!r} at row {row} is outside [0, {num_classes})")
            counts[int(label)] += 1
        return counts
    return class_counts_from_labels(read_labels(dataset, label_column), num_classes)


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
# Robust image decoding
# ----------------------------------------------------------------------------------------------


def to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """Convert any PIL image to 8-bit RGB.

    * ``RGB``: returned as is. ``L``, ``1``, ``P`` (no transparency), ``CMYK``, ``YCbCr``...: ``convert("RGB")``.
    * Alpha (``RGBA``, ``LA``, ``PA``, ``P`` with a transparency entry): composited over **white**, the
      same rule as transformers' ``convert_to_rgb``, so an image processor fed the raw image (e.g. in
      ``pipeline()``) and our eval transform give identical pixels.
    * 16-bit (``I;16*``, and ``I``, which is how Pillow opens 16-bit PNGs): the 0..65535 range is scaled to
      0..255 (``round(v / 257)``), not clipped as Pillow's own ``convert`` does.
    * ``F`` (float): values in [0, 1] are scaled by 255 when the maximum is <= 1, else clipped to 0..255.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        if mode == "F":
            arr = arr * 255.0 if arr.size and np.nanmax(arr) <= 1.0 else arr
        else:  # I;16, I;16B, I;16L, I: a 16-bit range
            arr = np.clip(arr, 0, 65535) / 257.0
        arr = np.clip(np.rint(np.nan_to_num(arr)), 0, 255).astype(np.uint8)
        return PIL.Image.fromarray(arr, mode="L").convert("RGB")
    has_alpha = "A" in image.getbands() or image.info.get("transparency") is not None
    if has_alpha:
        rgba = image.convert("RGBA")
        background = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


@dataclass
class CorruptImageCounter:
    """Counts examples skipped because their image could not be decoded (``--skip_corrupt_images``).

    Each process keeps its own counter: with DataLoader workers, skips are also logged as warnings.
    """

    count: int = 0
    examples: list = field(default_factory=list)  # first few (index, path) pairs, for the log
    max_examples: int = 20

    def record(self, index: Any, path: str | None = None) -> None:
        self.count += 1
        if len(self.examples) < self.max_examples:
            self.examples.append((index, path))


def _image_path(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("path")
    if isinstance(value, (str, os.PathLike)):
        return str(value)
    return None


def decode_image_or_raise(
    value: Any,
    index: Any,
    skip_corrupt: bool = False,
    counter: CorruptImageCounter | None = None,
) -> PIL.Image.Image | None:
    """Decode one image value of an ``Image(decode=False)`` column (or pass a PIL image through).

    ``value`` may be a PIL image, ``{"bytes": ..., "path": ...}``, raw bytes or a file path. A value
    that cannot be decoded raises ``ValueError("corrupt image at example {index} ...")`` or, with
    ``skip_corrupt``, returns None and records the example in ``counter``. Cast a column with
    ``dataset.cast_column(image_column, datasets.Image(decode=False))`` to decode it here, since
    ``datasets``' own decoding raises inside its formatter with no example index.
    """
    if isinstance(value, PIL.Image.Image):
        return value
    path = _image_path(value)
    try:
        if isinstance(value, dict):
            data = value.get("bytes")
            source = io.BytesIO(data) if data is not None else value.get("path")
        elif isinstance(value, (bytes, bytearray)):
            source = io.BytesIO(value)
        else:
            source = value
        if source is None:
            raise ValueError("no bytes and no path")
        image = PIL.Image.open(source)
        image.load()  # force the full decode now: truncated files fail here, not in a worker later
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError, struct.error...)
        where = f" ({path})" if path else ""
        if skip_corrupt:
            if counter is not None:
                counter.record(index, path)
            logger.warning("skipping corrupt image at example %s%s: %s", index, where, err)
            return None
        raise ValueError(
            f"corrupt image at example {index}{where}: {type(err).__name__}: {err}; "
            "hint: pass --skip_corrupt_images to skip such examples"
        ) from err
    return image


def filter_corrupt_images(
    dataset: Dataset, image_column: str = "image", counter: CorruptImageCounter | None = None
) -> Dataset:
    """Map-style datasets: drop rows whose image cannot be decoded (one decode pass over the images).

    Returns a dataset with the image column decoding as before; skipped rows go into ``counter``.
    """
    _require_column(dataset, image_column, "image_column")
    original = dataset.features[image_column]
    raw = dataset.select_columns([image_column]).cast_column(image_column, ImageFeature(decode=False))
    keep = []
    for start in range(0, len(raw), 256):
        values = raw[start : start + 256][image_column]
        for offset, value in enumerate(values):
            if decode_image_or_raise(value, start + offset, skip_corrupt=True, counter=counter) is not None:
                keep.append(start + offset)
    if len(keep) == len(dataset):
        return dataset
    out = dataset.select(keep)
    return out.cast_column(image_column, original) if isinstance(original, ImageFeature) else out


# ----------------------------------------------------------------------------------------------
# Offline default data: scikit-learn's digits
# ----------------------------------------------------------------------------------------------

DIGITS_LABEL_NAMES = [str(i) for i in range(10)]


def load_digits_dataset(
    image_size: int = 32,
    seed: int = 0,
    num_validation_per_class: int = 20,
    num_test_per_class: int = 30,
) -> DatasetDict:
    """scikit-learn's 1,797 real 8x8 handwritten digits as a ``DatasetDict`` of RGB PIL images.

    Splits: ``validation`` and ``test`` are fixed balanced splits (``num_*_per_class`` images of every
    class, drawn with ``numpy.random.default_rng(seed)``); ``train`` is the rest (the pool, nearly
    balanced, 1,297 images by default) to be made long-tailed with `make_long_tailed`.

    Pixels 0..16 are scaled to 0..255 (``round(v * 255 / 16)``) and upscaled to ``image_size`` with
    **nearest** interpolation: each digit pixel becomes a uniform block, so no ringing is invented and
    per-channel mean/std equal those of the 8x8 images (when ``image_size`` is a multiple of 8).
    Features: ``image: Image()``, ``label: ClassLabel(names=["0", ..., "9"])``.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    splits: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) <= num_validation_per_class + num_test_per_class:
            raise ValueError(
                f"class {c} has {len(idx)} images: too few for {num_validation_per_class} validation + "
                f"{num_test_per_class} test images"
            )
        splits["validation"] += idx[:num_validation_per_class].tolist()
        splits["test"] += idx[num_validation_per_class : num_validation_per_class + num_test_per_class].tolist()
        splits["train"] += idx[num_validation_per_class + num_test_per_class :].tolist()

    features = Features({"image": ImageFeature(), "label": ClassLabel(names=DIGITS_LABEL_NAMES)})

    def build(indices: list[int]) -> Dataset:
        indices = sorted(indices)
        pil = [
            PIL.Image.fromarray(images[i], mode="L")
            .resize((image_size, image_size), PIL.Image.Resampling.NEAREST)
            .convert("RGB")
            for i in indices
        ]
        return Dataset.from_dict({"image": pil, "label": labels[indices].tolist()}, features=features)

    return DatasetDict({name: build(idx) for name, idx in splits.items()})


# ----------------------------------------------------------------------------------------------
# CLI arguments and the one loader the scripts use
# ----------------------------------------------------------------------------------------------


@dataclass
class DataArguments:
    """Which data to train on and how to make it long-tailed (for ``transformers.HfArgumentParser``)."""

    dataset_name: str = field(
        default="digits",
        metadata={
            "help": "'digits' (scikit-learn's 8x8 digits, offline), a Hub dataset name, a local folder in the HF "
            "parquet layout (e.g. ../shared/data/cifar10) or a folder written by Dataset(Dict).save_to_disk."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Dataset configuration name (Hub)."})
    train_dir: str | None = field(default=None, metadata={"help": "imagefolder directory of training images."})
    validation_dir: str | None = field(default=None, metadata={"help": "imagefolder directory of validation images."})
    test_dir: str | None = field(default=None, metadata={"help": "imagefolder directory of test images."})
    image_column_name: str = field(default="image", metadata={"help": "Column holding the images."})
    label_column_name: str = field(default="label", metadata={"help": "Column holding the integer class labels."})
    imbalance_factor: float | None = field(
        default=None,
        metadata={
            "help": "Make the training pool long-tailed with rho = n_max / n_min (e.g. 100 for CIFAR-10-LT). "
            "None uses the data as is (for data that is long-tailed already)."
        },
    )
    imbalance_profile: str = field(
        default="exp", metadata={"help": "Long-tail profile: 'exp' (CIFAR-LT) or 'step'.", "choices": ["exp", "step"]}
    )
    lt_seed: int = field(
        default=0,
        metadata={
            "help": "Seed of every data-split decision (validation carve, long-tail draw, max_*_samples), kept "
            "apart from the training seed so that changing the latter keeps the same images."
        },
    )
    validation_split_percentage: int | None = field(
        default=None,
        metadata={
            "help": "Percentage of the training pool carved out (stratified, seeded, before long-tailing) as the "
            "validation split when the dataset has none. Default: 10 when there is no validation split."
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Stream the training split as an IterableDataset (shuffled with a buffer; needs max_steps). "
            "Long-tailing or carving a validation split draws the subset map-style first, then streams it."
        },
    )
    shuffle_buffer_size: int = field(default=1000, metadata={"help": "Shuffle buffer of the streamed train split."})
    streaming_num_shards: int = field(
        default=8,
        metadata={"help": "Shards when a map-style train split is streamed (DataLoader workers <= shards)."},
    )
    class_counts_file: str | None = field(
        default=None,
        metadata={
            "help": "JSON with the training class counts (a list in label order or {label_name: count}). Needed "
            "to skip the counting pass over a streamed dataset; checked against the data when labels are at hand."
        },
    )
    skip_corrupt_images: bool = field(
        default=False,
        metadata={"help": "Skip (and count) examples whose image cannot be decoded instead of failing."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep a seeded random subset of this many training examples (debugging)."}
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={"help": "Keep a seeded random subset of this many validation and test examples (debugging)."},
    )
    validation_source: str = field(
        default="auto",
        metadata={
            "help": "Where a carved validation split comes from when the dataset has none. 'unused': long-tail the "
            "full training pool (the benchmark's counts, e.g. CIFAR-10-LT 5000 ... 50) and draw validation from the "
            "images the long-tail draw left unused; 'pool': carve validation from the pool first, then long-tail "
            "the rest (counts shrink by the percentage); 'auto': 'unused' when --imbalance_factor is set, else "
            "'pool' (nothing is left over).",
            "choices": list(VALIDATION_SOURCES),
        },
    )
    split_indices_file: str | None = field(
        default=None,
        metadata={
            "help": "long_tailed_indices.json of an earlier run: reuse that long-tailed split instead of drawing "
            "one again (resume must not re-draw)."
        },
    )

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


def _load_source(args: DataArguments, streaming: bool) -> DatasetDict | IterableDatasetDict:
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


def _seeded_subset(dataset: Dataset, n: int | None, seed: int) -> Dataset:
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


def _labels_fingerprint(labels: Sequence[int]) -> str:
    """SHA-1 of the pool's label sequence: detects a saved split being applied to another pool."""
    return hashlib.sha1(np.asarray(labels, dtype=np.int64).tobytes()).hexdigest()


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


def _resolve_validation_source(args: DataArguments, long_tailing: bool, saved_split: dict | None) -> str:
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
    data_args: DataArguments, seed: int = 0, output_dir: str | os.PathLike | None = None
) -> LongTailedData:
    """Load, split and long-tail the data described by ``data_args`` (see `DataArguments`).

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
    ``Image(decode=False)``: decode it in the batched transform (``transforms.make_train_transform_fn``
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
            _require_column(split, image_col, "image_column_name")
            _require_column(split, label_col, "label_column_name")

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
        saved_split = _read_split_file(args.split_indices_file) if args.split_indices_file is not None else None
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
        _check_labels(pool_labels, num_classes)
        for split_name, split in (("validation", validation), ("test", test)):
            if split is not None:
                try:
                    _check_labels(read_labels(split, label_col), num_classes)
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
            if fingerprint is not None and fingerprint != _labels_fingerprint(pool_labels):
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
                    metadata={**metadata, "pool_size": pool_size, "pool_labels_sha1": _labels_fingerprint(pool_labels)},
                )

        train = _seeded_subset(train, args.max_train_samples, args.lt_seed)
        if validation is not None:
            validation = _seeded_subset(validation, args.max_eval_samples, args.lt_seed)
        if test is not None:
            test = _seeded_subset(test, args.max_eval_samples, args.lt_seed)
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
