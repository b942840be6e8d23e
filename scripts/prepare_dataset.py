#!/usr/bin/env python
"""ImageNet-LT, Places-LT or iNaturalist 2018 from the images and the official split files -> a Hugging Face dataset
folder (parquet shards, ClassLabel, class_counts.json, dataset card), optionally pushed to the Hub.

    python scripts/prepare_dataset.py --data_root /data/ImageNet --train_file ImageNet_LT_train.txt \
        --validation_file ImageNet_LT_val.txt --test_file ImageNet_LT_test.txt --output_dir data/imagenet_lt
    python scripts/prepare_dataset.py --data_root /data/iNat2018 --train_file train2018.json \
        --validation_file val2018.json --validation_as_test --output_dir data/inat18

Then `--dataset_name data/imagenet_lt` in any training script, or `load_dataset("data/imagenet_lt")`.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

from modeling_livt.data.prepare import prepare_dataset, read_benchmark_splits
from modeling_livt.hub.repos import check_dataset_push, push_dataset_folder
from trainers.arguments import refuse_flags
from trainers.cli import parse_args, setup_logging

logger = logging.getLogger(__name__)


@dataclass
class PrepareDatasetArguments:
    """Where the images and split files are, and where the dataset goes."""

    data_root: str = field(metadata={"help": "Folder the split files' image paths are relative to."})
    train_file: str = field(
        metadata={
            "help": "Training split file: a 'relative/path.jpg label' list (ImageNet_LT_train.txt, "
            "Places_LT_train.txt) or a COCO-style .json (iNat 2018 train2018.json)."
        }
    )
    output_dir: str = field(metadata={"help": "Folder to write (data/*.parquet, README.md, class_counts.json)."})
    validation_file: str | None = field(default=None, metadata={"help": "Validation split file (same format)."})
    test_file: str | None = field(default=None, metadata={"help": "Test split file (same format)."})
    validation_as_test: bool = field(
        default=False,
        metadata={
            "help": "Declare the validation files as the test split too, without copying them (iNat18: the "
            "papers report val2018, there is no separate test set)."
        },
    )
    label_names_file: str | None = field(
        default=None,
        metadata={
            "help": "Class names, one per line (line i names class i). Default: JSON category names, else the "
            "training list's image folders when they identify the classes, else 0..C-1."
        },
    )
    num_classes: int | None = field(
        default=None,
        metadata={"help": "Number of classes (default: from the names, or the largest training label + 1)."},
    )
    pretty_name: str | None = field(
        default=None, metadata={"help": "Dataset card title (default: output folder name)."}
    )
    max_shard_size: str = field(default="500MB", metadata={"help": "Largest parquet shard (of image bytes)."})
    min_shards: int = field(
        default=16, metadata={"help": "Fewest shards per split (streaming DataLoader workers each read whole shards)."}
    )
    shuffle_seed: int = field(default=0, metadata={"help": "Seed of the row shuffle across shards."})
    num_workers: int = field(default=8, metadata={"help": "Threads reading image files."})
    overwrite: bool = field(default=False, metadata={"help": "Replace a dataset already in output_dir."})
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the folder as a Hub dataset repository."})
    hub_dataset_id: str | None = field(
        default=None, metadata={"help": "Hub repository id, e.g. your-name/imagenet-lt (with --push_to_hub)."}
    )
    hub_private: bool = field(
        default=False, metadata={"help": "Create the Hub repository as private (with --push_to_hub)."}
    )


def main(argv=None) -> dict:
    (args,) = parse_args((PrepareDatasetArguments,), argv)
    setup_logging()
    if not args.push_to_hub:
        refuse_flags(args, ["hub_dataset_id", "hub_private"],
                     "they set the Hub dataset repository, and nothing is pushed: add --push_to_hub (or drop them).")
    if args.push_to_hub:
        check_dataset_push(args.hub_dataset_id)  # before hours of copying, not after
    benchmark = read_benchmark_splits(
        args.data_root,
        args.train_file,
        args.validation_file,
        args.test_file,
        label_names_file=args.label_names_file,
        num_classes=args.num_classes,
        validation_as_test=args.validation_as_test,
    )
    sources = {"train": args.train_file, "validation": args.validation_file, "test": args.test_file}
    infos = prepare_dataset(
        benchmark,
        args.data_root,
        args.output_dir,
        sources={split: Path(f).name for split, f in sources.items() if f is not None},
        pretty_name=args.pretty_name or Path(args.output_dir).resolve().name,
        max_shard_size=args.max_shard_size,
        min_shards=args.min_shards,
        seed=args.shuffle_seed,
        num_workers=args.num_workers,
        overwrite=args.overwrite,
    )
    sizes = {split: info.num_examples for split, info in infos.items()}
    logger.info("wrote %s: %s, %d classes", args.output_dir, sizes, len(benchmark.label_names))
    if args.push_to_hub:
        logger.info("pushed to %s", push_dataset_folder(args.output_dir, args.hub_dataset_id, args.hub_private))
    return sizes


if __name__ == "__main__":
    main()
