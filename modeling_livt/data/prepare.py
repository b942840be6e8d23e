"""Turn a long-tailed benchmark (images + official split files) into a Hugging Face dataset folder.

The folder has the layout ``DatasetDict.push_to_hub`` writes, so ``load_dataset(folder)`` (also with
``streaming=True``), the scripts' ``--dataset_name folder`` and the Hub all read it alike:

```
README.md                          dataset card: YAML (configs -> data files, features, split sizes) + text
class_counts.json                  training images per class, a JSON list in label order (CLASS_COUNTS_FILE)
data/train-00000-of-00016.parquet  image (original file bytes, never re-encoded; path as in the split file), label
data/validation-*.parquet, data/test-*.parquet
```

Rows are shuffled (seeded) before sharding: the official lists are sorted by class, and a streamed, buffer-shuffled
split needs mixed shards. Split files are read by `modeling_livt.data.split_files`, which checks every line first.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
from datasets import ClassLabel, DatasetInfo, Features, SplitDict, SplitInfo
from datasets import Image as ImageFeature
from datasets.arrow_writer import ParquetWriter
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from datasets.utils.py_utils import convert_file_size_to_int
from huggingface_hub import DatasetCard, DatasetCardData

from .long_tail import CLASS_COUNTS_FILE
from .split_files import (
    ImageRecord,
    SplitFileError,
    SplitListing,
    folder_label_names,
    is_json_split_file,
    read_label_names,
    read_split,
)

logger = logging.getLogger(__name__)

DATA_DIR = "data"
ROWS_PER_WRITE = 100  # rows read and written per batch (one parquet row group for image datasets)


@dataclass
class BenchmarkSplits:
    """The checked records of each split (train first) and the class names, ready to be written."""

    splits: dict[str, list[ImageRecord]]
    label_names: list[str]
    validation_as_test: bool = False

    @property
    def class_counts(self) -> list[int]:
        """Training images per class, in label order."""
        labels = np.asarray([r.label for r in self.splits["train"]], dtype=np.int64)
        return np.bincount(labels, minlength=len(self.label_names)).tolist()


def read_benchmark_splits(
    data_root: str | os.PathLike,
    train_file: str | os.PathLike,
    validation_file: str | os.PathLike | None = None,
    test_file: str | os.PathLike | None = None,
    label_names_file: str | os.PathLike | None = None,
    num_classes: int | None = None,
    validation_as_test: bool = False,
) -> BenchmarkSplits:
    """Read and check the split files; nothing is written.

    The number of classes is, in order: the length of ``label_names_file``, ``num_classes``, the JSON categories, or
    the largest training label + 1; every label of every split must lie below it. Class names: ``label_names_file``,
    else the JSON category names, else the image folders of the training list when they identify the classes
    (ImageNet-LT synsets, Places-LT scene names), else ``"0"``, ``"1"``, ...
    ``validation_as_test`` declares the validation files as the test split too (iNat18: the papers report val2018).
    """
    files = {"train": train_file, "validation": validation_file, "test": test_file}
    files = {split: f for split, f in files.items() if f is not None}
    if len({is_json_split_file(f) for f in files.values()}) > 1:
        raise ValueError(f"split files mix COCO-style .json and text lists: {files}; give all splits in one format")
    if validation_as_test and (validation_file is None or test_file is not None):
        raise ValueError("validation_as_test needs a validation file and no test file")
    names = read_label_names(label_names_file) if label_names_file is not None else None
    if names is not None and num_classes is not None and num_classes != len(names):
        raise ValueError(f"num_classes={num_classes} but {label_names_file} names {len(names)} classes")
    if names is not None:
        num_classes = len(names)

    train = read_split(train_file, data_root, num_classes)
    if not train.records:
        raise ValueError(f"{train_file}: the training split is empty")
    if train.category_names is not None:  # JSON: the categories define the classes
        if num_classes is not None and num_classes != len(train.category_names):
            raise ValueError(f"{train_file} has {len(train.category_names)} categories, expected {num_classes}")
        num_classes = len(train.category_names)
    num_classes = num_classes or max(r.label for r in train.records) + 1
    listings: dict[str, SplitListing] = {"train": train}
    for split in ("validation", "test"):
        if split in files:
            listings[split] = read_split(files[split], data_root, num_classes)
            _check_same_categories(train, listings[split])
    _check_disjoint(listings)

    if names is None:
        names = _default_label_names(train, num_classes)
    counts = np.bincount([r.label for r in train.records], minlength=num_classes)
    if (counts == 0).any():
        logger.warning(
            "classes %s have no training image (a balanced loss needs every class seen; check the label range)",
            np.flatnonzero(counts == 0)[:20].tolist(),
        )
    return BenchmarkSplits({s: lst.records for s, lst in listings.items()}, names, validation_as_test)


def _check_same_categories(train: SplitListing, other: SplitListing) -> None:
    if train.category_ids is not None and other.category_ids != train.category_ids:
        raise SplitFileError(
            other.file,
            [
                f"{Path(other.file).name}: its 'categories' ids differ from those of "
                f"{Path(train.file).name}; all splits must share one label space"
            ],
        )


def _check_disjoint(listings: dict[str, SplitListing]) -> None:
    """An image listed in two splits would leak evaluation data into training (or select on the test set)."""
    seen: dict[str, str] = {}
    problems = []
    for listing in listings.values():
        for record in listing.records:
            if record.path in seen:
                problems.append(f"{record.where}: {record.path!r} is also listed at {seen[record.path]}")
            else:
                seen[record.path] = record.where
    if problems:
        raise SplitFileError(", ".join(lst.file for lst in listings.values()), problems)


def _default_label_names(train: SplitListing, num_classes: int) -> list[str]:
    if train.category_names is not None:
        if len(set(train.category_names)) == num_classes:
            return train.category_names
        logger.warning("category names of %s are not unique: naming classes by category id", train.file)
        return [str(cid) for cid in train.category_ids]
    names = folder_label_names(train.records, num_classes)
    if names is None:
        logger.info("image folders do not identify the classes one to one: classes are named 0..%d", num_classes - 1)
        return [str(i) for i in range(num_classes)]
    return names


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def _read_image_bytes(data_root: Path, record: ImageRecord) -> bytes:
    data = (data_root / record.path).read_bytes()
    try:
        PIL.Image.open(io.BytesIO(data))  # header only: catches non-image files without decoding pixels
    except Exception as err:  # PIL raises several types (UnidentifiedImageError, OSError, SyntaxError...)
        raise SplitFileError(
            record.where.split(":")[0],
            [f"{record.where}: {record.path!r} is not a readable image ({type(err).__name__}: {err})"],
        ) from None
    return data


def _num_shards(num_rows: int, num_bytes: int, max_shard_size: int, min_shards: int) -> int:
    return max(1, min(num_rows, max(math.ceil(num_bytes / max_shard_size), min_shards)))


def write_split(
    records: Sequence[ImageRecord],
    split: str,
    data_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    features: Features,
    max_shard_size: int | str = "500MB",
    min_shards: int = 16,
    seed: int = 0,
    num_workers: int = 8,
) -> SplitInfo:
    """Write one split as ``data/{split}-{i:05d}-of-{n:05d}.parquet`` shards of seeded-shuffled rows.

    Images keep their original bytes (``path`` = the split file's relative path). Shards: enough to stay under
    ``max_shard_size`` (of image bytes), at least ``min_shards`` (DataLoader workers of a streamed split each
    read whole shards), never more than rows. Files are read by ``num_workers`` threads (I/O bound).
    """
    data_root, out_dir = Path(data_root), Path(out_dir)
    total_bytes = sum((data_root / r.path).stat().st_size for r in records)
    num_shards = _num_shards(len(records), total_bytes, convert_file_size_to_int(max_shard_size), min_shards)
    order = np.random.default_rng(seed).permutation(len(records))
    (out_dir / DATA_DIR).mkdir(parents=True, exist_ok=True)
    num_bytes = 0
    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        for shard, rows in enumerate(np.array_split(order, num_shards)):
            path = out_dir / DATA_DIR / f"{split}-{shard:05d}-of-{num_shards:05d}.parquet"
            with ParquetWriter(features=features, path=str(path)) as writer:
                for start in range(0, len(rows), ROWS_PER_WRITE):
                    batch = [records[i] for i in rows[start : start + ROWS_PER_WRITE]]
                    data = list(pool.map(lambda r: _read_image_bytes(data_root, r), batch))
                    writer.write_batch(
                        {
                            "image": [{"bytes": d, "path": r.path} for d, r in zip(data, batch)],
                            "label": [r.label for r in batch],
                        }
                    )
                num_bytes += writer.finalize()[1]
            logger.info("wrote %s (%d rows)", path, len(rows))
    return SplitInfo(name=split, num_bytes=num_bytes, num_examples=len(records))


def dataset_card(
    benchmark: BenchmarkSplits, features: Features, split_infos: Sequence[SplitInfo], pretty_name: str, sources: dict
) -> DatasetCard:
    """The README.md: YAML metadata as ``push_to_hub`` writes it (configs, dataset_info) and a short description."""
    card_data = DatasetCardData(pretty_name=pretty_name, task_categories=["image-classification"])
    info = DatasetInfo(features=features, splits=SplitDict(), dataset_size=sum(s.num_bytes for s in split_infos))
    data_files = [{"split": s.name, "path": f"{DATA_DIR}/{s.name}-*"} for s in split_infos]
    declared = list(split_infos)
    if benchmark.validation_as_test:  # an alias: same files, declared (and verified by load_dataset) as its own split
        validation = next(s for s in split_infos if s.name == "validation")
        declared.append(SplitInfo(name="test", num_bytes=validation.num_bytes, num_examples=validation.num_examples))
        data_files.append({"split": "test", "path": f"{DATA_DIR}/validation-*"})
    for split_info in declared:
        info.splits.add(split_info)
    DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
    MetadataConfigs({"default": {"data_files": data_files}}).to_dataset_card_data(card_data)

    counts = benchmark.class_counts
    rows = "\n".join(f"| {s.name} | {s.num_examples:,} | `{sources[s.name]}` |" for s in split_infos)
    if benchmark.validation_as_test:
        rows += f"\n| test | {len(benchmark.splits['validation']):,} | the validation files (see below) |"
    note = (
        "\n`test` reads the same files as `validation`: the long-tailed literature (LiVT, DeiT-LT, ...) reports this "
        "benchmark on its validation set, which has no separate test set. Select checkpoints without it (e.g. keep "
        "the last one) so that the reported number stays a held-out result.\n"
        if benchmark.validation_as_test
        else ""
    )
    body = f"""
# {pretty_name}

Made by `scripts/prepare_dataset.py` (modeling_livt) from the official split files; images keep their original
bytes (`image.path` is the path written in the split file), `label` is a `ClassLabel` of {len(counts):,} classes.
Rows are shuffled (seed fixed) across shards, so streaming sees mixed classes.

| split | images | split file |
|---|---|---|
{rows}
{note}
Training images per class (label order): `{CLASS_COUNTS_FILE}`; largest class {max(counts):,}, smallest
{min(counts):,} (imbalance factor {max(counts) / max(min(counts), 1):.1f}).

```python
from datasets import load_dataset
ds = load_dataset("path/to/this/folder_or_repo", streaming=True)
```
"""
    return DatasetCard(f"---\n{card_data.to_yaml()}\n---\n{body}")


def prepare_dataset(
    benchmark: BenchmarkSplits,
    data_root: str | os.PathLike,
    output_dir: str | os.PathLike,
    sources: dict[str, str],
    pretty_name: str,
    max_shard_size: int | str = "500MB",
    min_shards: int = 16,
    seed: int = 0,
    num_workers: int = 8,
    overwrite: bool = False,
) -> dict[str, SplitInfo]:
    """Write the dataset folder (parquet shards, README.md, class_counts.json); returns the split infos.

    Everything is written to ``output_dir/.staging`` first and moved into place at the end, so a failure (an
    unreadable image) leaves no half-written dataset behind.
    """
    output_dir = Path(output_dir)
    existing = [
        output_dir / name for name in (DATA_DIR, "README.md", CLASS_COUNTS_FILE) if (output_dir / name).exists()
    ]
    if existing and not overwrite:
        raise FileExistsError(f"{output_dir} already holds {[p.name for p in existing]}; pass --overwrite to replace")
    staging = output_dir / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=benchmark.label_names)})
    try:
        infos = {
            split: write_split(
                records, split, data_root, staging, features, max_shard_size, min_shards, seed, num_workers
            )
            for split, records in benchmark.splits.items()
        }
        dataset_card(benchmark, features, list(infos.values()), pretty_name, sources).save(staging / "README.md")
        (staging / CLASS_COUNTS_FILE).write_text(json.dumps(benchmark.class_counts), encoding="utf-8")
        for path in existing:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        for name in (DATA_DIR, "README.md", CLASS_COUNTS_FILE):
            (staging / name).rename(output_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return infos
