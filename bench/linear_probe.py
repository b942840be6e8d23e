#!/usr/bin/env python
"""Linear probe of LiVT encoders on a long-tailed split: how much does an encoder's representation know?

Each encoder (an MGP checkpoint, a fine-tuned classifier, or `random`: a freshly initialised encoder of the same
configuration) encodes the training, validation and test images with the evaluation transform; the feature of an
image is the mean of its patch tokens after the encoder (CLS excluded, MAE's global pool), standardised on the
training split. A multinomial logistic regression with class-balanced weights (scikit-learn) is fitted on the
training features; its inverse regularisation C is chosen on the validation split (balanced accuracy), and the test
split is scored once. Reported: test accuracy, DeiT-LT's head/mid/tail index groups and many/medium/few.

    python bench/linear_probe.py --encoders mgp=outputs/mgp,random --dataset_name ../shared/data/cifar10 \
        --imbalance_factor 100 --normalization cifar --index_bounds cifar10 --output bench/results/probe.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from transformers import AutoConfig, AutoImageProcessor

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from modeling_livt import LiVTModel  # noqa: E402
from modeling_livt.data.loading import DataOptions, load_image_datasets  # noqa: E402
from modeling_livt.data.transforms import EvalTransform  # noqa: E402
from modeling_livt.evaluation.metrics import long_tail_metrics, parse_index_bounds  # noqa: E402

C_GRID = (0.01, 0.1, 1.0, 10.0)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", required=True,
                        help="Comma-separated NAME=FOLDER (an MGP or classifier folder) or 'random' (a fresh encoder "
                             "of the first folder's configuration, seeded with --seed).")
    parser.add_argument("--dataset_name", required=True)
    parser.add_argument("--imbalance_factor", type=float, default=None)
    parser.add_argument("--normalization", default=None, help="Kept for the command line's symmetry with the scripts;"
                        " the encoder folder's image processor defines the transform.")
    parser.add_argument("--index_bounds", default=None)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True, help="JSON results file.")
    return parser.parse_args(argv)


def parse_encoders(spec: str) -> list[tuple[str, str | None]]:
    encoders = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        if item == "random":
            encoders.append(("random", None))
        elif "=" in item:
            name, folder = item.split("=", 1)
            if not os.path.isdir(folder):
                raise SystemExit(f"--encoders: {folder!r} (for {name!r}) is not a folder.")
            encoders.append((name, folder))
        else:
            raise SystemExit(f"--encoders: {item!r} is neither NAME=FOLDER nor 'random'.")
    if not any(folder for _, folder in encoders):
        raise SystemExit("--encoders needs at least one NAME=FOLDER (it gives 'random' its configuration).")
    return encoders


@torch.no_grad()
def encode(encoder: LiVTModel, dataset, transform: EvalTransform, image_column: str, label_column: str,
           batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """`[N, D]` mean-pooled patch features and `[N]` labels of a map-style split."""
    encoder.eval()
    num_prefix = encoder.embeddings.num_prefix_tokens
    features, labels = [], []
    for start in range(0, len(dataset), batch_size):
        batch = dataset[start:start + batch_size]
        pixels = torch.stack([transform(image) for image in batch[image_column]])
        tokens = encoder(pixels).last_hidden_state  # [B, P + L, D]
        features.append(tokens[:, num_prefix:].mean(dim=1).float().numpy())
        labels.append(np.asarray(batch[label_column]))
    return np.concatenate(features), np.concatenate(labels)


def probe(train, validation, test, class_counts, index_bounds, seed: int) -> dict:
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = train, validation, test
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_val, x_test = ((x - mean) / std for x in (x_train, x_val, x_test))
    best = None
    for c in C_GRID:
        classifier = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed)
        classifier.fit(x_train, y_train)
        score = balanced_accuracy_score(y_val, classifier.predict(x_val))
        if best is None or score > best[0]:
            best = (score, c, classifier)
    val_score, c, classifier = best
    logits = classifier.decision_function(x_test)
    report = long_tail_metrics(logits, y_test, class_counts)
    if index_bounds is not None:
        head, mid, tail = (long_tail_metrics(logits, y_test, class_counts, split="index", index_bounds=index_bounds)[
            f"{group}_shot_accuracy"] for group in ("many", "medium", "few"))
        report.update(index_head_accuracy=head, index_mid_accuracy=mid, index_tail_accuracy=tail)
    return {"C": c, "validation_balanced_accuracy": float(val_score),
            **{k: v for k, v in report.items() if not k.endswith("_classes") and k != "split"}}


def main(argv=None):
    args = parse_args(argv)
    encoders = parse_encoders(args.encoders)
    data = load_image_datasets(DataOptions(dataset_name=args.dataset_name, imbalance_factor=args.imbalance_factor))
    first_folder = next(folder for _, folder in encoders if folder)
    transform = EvalTransform(AutoImageProcessor.from_pretrained(first_folder))
    bounds = parse_index_bounds(args.index_bounds)
    results = {"dataset": os.path.basename(os.path.normpath(args.dataset_name)),
               "imbalance_factor": args.imbalance_factor, "class_counts": data.class_counts, "probes": {}}
    for name, folder in encoders:
        start = time.perf_counter()
        if folder is None:
            torch.manual_seed(args.seed)
            encoder = LiVTModel(AutoConfig.from_pretrained(first_folder))
        else:
            encoder = LiVTModel.from_pretrained(folder)
        splits = [encode(encoder, split, transform, data.image_column, data.label_column, args.batch_size)
                  for split in (data.train, data.validation, data.test)]
        results["probes"][name] = {"folder": folder, **probe(*splits, data.class_counts, bounds, args.seed),
                                   "seconds": time.perf_counter() - start}
        summary = results["probes"][name]
        groups = "/".join(f"{100 * summary[f'index_{g}_accuracy']:.1f}" for g in ("head", "mid", "tail")
                          if summary.get(f"index_{g}_accuracy") is not None)
        print(f"{name}: test acc {100 * summary['accuracy']:.1f} (head/mid/tail {groups or '-'}), C={summary['C']}",
              flush=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
