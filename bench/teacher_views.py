#!/usr/bin/env python
"""What DeiT-LT's DIST head learns from: the teacher's hard labels on the student's own training inputs.

DeiT-LT distils with CE(DIST logits, argmax teacher(x)), x the student's augmented (and mixed) batch. So the DIST
head's targets are only as good, and as tail-ward, as the teacher's argmax on those images. This benchmark runs a
teacher folder over the CIFAR-10-LT training images of a run (its `long_tailed_indices.json`) under each view the
student arms use, through the package's own transforms and `DistillationTeacher` (the trainer's code path):

    clean       the eval transform (no augmentation)
    crop_flip   RandomCrop(32, padding=4) + flip: the student arm `--student_augmentation none`
    paper       + RandAugment (rand-m9-mstd0.5-inc1) + random erasing 0.25: the paper's per-image augmentation
    paper_mix   + MixUp 0.8 / CutMix 1.0 per batch (DeiT-LT before DRW): scored against the larger mixed class

and reports, per view: the teacher's accuracy against the true (or larger mixed) label, as the mean per-class
accuracy of DeiT-LT's head / mid / tail classes (index split) and over the images; and where its argmax labels go:
the share of the labels that name a head / mid / tail class, beside the share of the images that are. A teacher
that sends augmented images towards the tail gives the DIST head a more balanced label distribution than the data.

    python bench/teacher_views.py --teacher bench/models/cifar10lt_teacher
    python bench/teacher_views.py --teacher DIR --split_from DIR --max_images 512 --json
    python bench/teacher_views.py --teacher bench/models/cifar10lt_teacher \
        --output_prefix bench/results/teacher_views_cifar10lt
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from datasets import load_dataset

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from accuracy import run_environment  # noqa: E402  (bench's own)

from modeling_livt.data.transforms import (  # noqa: E402
    MixupCutmixCollator,
    build_eval_transform,
    build_finetune_transform,
    get_normalization,
)
from modeling_livt.evaluation.metrics import long_tail_metrics, shot_groups  # noqa: E402
from trainers.deit_lt import DistillationTeacher  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10"
VIEWS = ("clean", "crop_flip", "paper", "paper_mix")
GROUPS = ("head", "mid", "tail")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="A teacher folder (scripts/run_teacher.py).")
    parser.add_argument("--split_from", default=None,
                        help="A run folder whose long_tailed_indices.json gives the training images (default: the "
                        "teacher's own).")
    parser.add_argument("--dataset", default=str(DEFAULT_DATA), help="CIFAR-10 folder (HF parquet layout).")
    parser.add_argument("--normalization", default="cifar", help="The student's normalisation (its --normalization).")
    parser.add_argument("--max_images", type=int, default=None, help="A seeded subset of the training images.")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_prefix", default=None,
                        help="Also write <prefix>.json and <prefix>.md (with the command, machine and commit).")
    parser.add_argument("--json", action="store_true", help="Print the result as one JSON line.")
    args = parser.parse_args(argv)
    split_file = Path(args.split_from or args.teacher) / "long_tailed_indices.json"
    if not split_file.is_file():
        parser.error(f"{split_file} not found: give --split_from a run folder that holds long_tailed_indices.json")
    if not (Path(args.teacher) / "config.json").is_file():
        parser.error(f"--teacher {args.teacher}: no config.json there (a folder saved by scripts/run_teacher.py)")
    args.split_file = split_file
    return args


def index_groups(class_counts: list[int]) -> dict[str, list[int]]:
    """DeiT-LT's CIFAR-10 index split (classes sorted by training count; bounds [3, 7]) as the package's metrics draw
    it: {"head": [...], "mid": [...], "tail": [...]}, each list of class ids ascending."""
    return dict(zip(GROUPS, shot_groups(class_counts, split="index", index_bounds="cifar10")))


def teacher_labels(teacher, images, labels, transform, mix, batch_size: int, seed: int):
    """The teacher's argmax over every batch of `images` under `transform` (and `mix`), with the label it is scored
    against: the true label, or the class with the larger weight in a mixed image."""
    torch.manual_seed(seed)
    random.seed(seed)  # timm's RandAugment draws from Python's RNG, v2 and the mixing from torch's
    predicted, targets = [], []
    for start in range(0, len(images), batch_size):
        batch = [{"pixel_values": transform(img.convert("RGB")), "labels": int(y)}
                 for img, y in zip(images[start:start + batch_size], labels[start:start + batch_size])]
        if mix is None:
            pixels, target = torch.stack([b["pixel_values"] for b in batch]), torch.tensor([b["labels"] for b in batch])
        else:
            mixed = mix(batch)
            pixels, target = mixed["pixel_values"], mixed["labels"].argmax(-1)
        with torch.no_grad():
            predicted.append(teacher(pixels).argmax(-1))
        targets.append(target)
    return torch.cat(predicted), torch.cat(targets)


def score(predicted: torch.Tensor, target: torch.Tensor, class_counts: list[int]) -> dict:
    num_classes = len(class_counts)
    logits = torch.nn.functional.one_hot(predicted, num_classes).double()  # the argmax as logits: scores the labels
    metrics = long_tail_metrics(logits, target, class_counts, split="index", index_bounds="cifar10")
    groups = index_groups(class_counts)
    label_share = np.bincount(predicted.numpy(), minlength=num_classes) / len(predicted)
    image_share = np.bincount(target.numpy(), minlength=num_classes) / len(target)
    return {
        "accuracy": metrics["accuracy"],
        **{f"{g}_accuracy": metrics[key] for g, key in zip(GROUPS, ("many_shot_accuracy", "medium_shot_accuracy",
                                                                     "few_shot_accuracy"))},
        **{f"{g}_label_share": float(label_share[groups[g]].sum()) for g in GROUPS},
        **{f"{g}_image_share": float(image_share[groups[g]].sum()) for g in GROUPS},
        "per_class_accuracy": metrics["per_class_accuracy"],
    }


def main(argv=None):
    args = parse_args(argv)
    split = json.loads(args.split_file.read_text())
    pool = load_dataset(args.dataset, split="train")
    image_column = "img" if "img" in pool.column_names else "image"
    rows = split["indices"]
    if args.max_images and args.max_images < len(rows):
        rows = sorted(np.random.default_rng(args.seed).choice(rows, size=args.max_images, replace=False).tolist())
    train = pool.select(rows)
    images, labels = train[image_column], train["label"]
    mean, std = get_normalization(args.normalization)
    teacher = DistillationTeacher.from_pretrained(args.teacher, student_mean=mean, student_std=std)
    # the student's class counts (the whole split, not the --max_images subset)
    full_counts = np.bincount(np.asarray(pool["label"])[split["indices"]],
                              minlength=len(teacher.id2label)).tolist()
    transforms = {
        "clean": build_eval_transform(32, mean, std),
        "crop_flip": build_finetune_transform(32, mean, std, rand_augment=False, random_erasing=0.0),
        "paper": build_finetune_transform(32, mean, std, rand_augment=True, random_erasing=0.25),
    }
    transforms["paper_mix"] = transforms["paper"]
    mix = MixupCutmixCollator(num_classes=len(full_counts), mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.0)
    result = {"teacher": args.teacher, "images": len(rows), "class_counts": full_counts, "views": {},
              "command": shlex.join(["python", "bench/teacher_views.py", *(sys.argv[1:] if argv is None else argv)]),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **run_environment()}
    for view in VIEWS:
        predicted, target = teacher_labels(teacher, images, labels, transforms[view],
                                           mix if view == "paper_mix" else None, args.batch_size, args.seed)
        result["views"][view] = score(predicted, target, full_counts)
    lines = [f"teacher {args.teacher} on {len(rows)} training images (Acc: over the images; Head/Mid/Tail: mean "
             "per-class accuracy; then the shares of the teacher's labels and of the images):",
             "| view | Acc | Head | Mid | Tail | labels head/mid/tail | images head/mid/tail |",
             "|---|---|---|---|---|---|---|"]
    for view, m in result["views"].items():
        labels_share = "/".join(f"{100 * m[f'{g}_label_share']:.1f}" for g in GROUPS)
        images_share = "/".join(f"{100 * m[f'{g}_image_share']:.1f}" for g in GROUPS)
        lines.append(f"| {view} | {100 * m['accuracy']:.1f} | {100 * m['head_accuracy']:.1f} | "
                     f"{100 * m['mid_accuracy']:.1f} | {100 * m['tail_accuracy']:.1f} | {labels_share} | "
                     f"{images_share} |")
    print("\n".join(lines))
    if args.output_prefix:
        prefix = Path(args.output_prefix)
        prefix.with_suffix(".json").write_text(json.dumps(result, indent=2))
        prefix.with_suffix(".md").write_text("\n".join([
            "# The teacher's hard labels on the student's training views", "", *lines, "",
            f"`{result['command']}` ({result['date']}, {result['machine']}, commit {result['commit']})", ""]))
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
