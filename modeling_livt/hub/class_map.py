"""Label ids of ported classifiers: the official DeiT-LT ImageNet-LT / iNat18 code renumbers classes by frequency.

val-iisc/DeiT-LT `datasets.py` (`KD_IMAGENETLT`, `KD_INAT2018`) builds, from the training split's counts in label
order::

    sorted_classes = np.argsort(-np.array(cls_num_list_old))      # most frequent first
    class_map[sorted_classes[i]] = i                               # dataset label -> training target
    self.targets = np.array(self.class_map)[self.targets]          # train and eval targets both renumbered

and saves `args.class_map` in every checkpoint. So output index `class_map[c]` of an official student is the dataset's
class c (`--map-targets` also maps the teacher's argmax into that numbering). The port here makes output c the
dataset's class c again: every head's rows (weight and bias; DeiT-LT's `classifier` and `distillation_classifier`)
become ``W[class_map]``, and `config.class_counts` (the official `cls_num_list`, counted in the renumbered order)
become ``counts[class_map]``.

Note on ties: numpy's default argsort is not stable, and ImageNet-LT has many classes of equal size; the tie order of
`class_map_from_counts` is numpy's, as in the official code, but may differ between numpy builds. The class map pickled
in the checkpoint (`args.class_map`, `--class_map checkpoint`) or a saved file is exact.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .checkpoint_io import checkpoint_args, load_official_checkpoint

logger = logging.getLogger(__name__)

__all__ = [
    "CLASS_MAP_DATASETS",
    "check_class_map",
    "checkpoint_class_map",
    "class_map_from_counts",
    "permute_classifier_labels",
    "read_class_counts",
    "read_class_map",
    "resolve_class_map",
]

#: `args.data_set` values of the official DeiT-LT code whose targets are renumbered by `class_map`.
CLASS_MAP_DATASETS = ("IMAGENETLT", "INAT18")


def class_map_from_counts(counts: Sequence[int]) -> list[int]:
    """The official `class_map` of training counts in label order: ``class_map[c]`` = c's rank by count (descending),
    computed as val-iisc/DeiT-LT does (`np.argsort(-counts)`, numpy's default sort)."""
    counts = np.asarray([int(c) for c in counts])
    sorted_classes = np.argsort(-counts)
    class_map = [0] * len(counts)
    for rank, label in enumerate(sorted_classes):
        class_map[int(label)] = rank
    return class_map


def check_class_map(class_map: Sequence[int], num_classes: int | None = None) -> list[int]:
    """The map as a list of ints; `ValueError` unless it is a permutation of range(C) (C = `num_classes` if given)."""
    values = [int(v) for v in class_map]
    size = len(values) if num_classes is None else int(num_classes)
    if len(values) != size:
        raise ValueError(f"class map has {len(values)} entries but the model has {size} classes.")
    if sorted(values) != list(range(size)):
        raise ValueError("class map must be a permutation of 0..C-1 (class_map[dataset label] = output index).")
    return values


def read_class_map(path: str | os.PathLike) -> list[int]:
    """A class map file: a json list (``class_map[label] = output index``, the official `args.class_map`), a json
    object with a ``class_map`` list, or text with one integer per line."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError:
        loaded = [int(line) for line in text.split() if line.strip()]
    if isinstance(loaded, Mapping):
        loaded = loaded.get("class_map")
    if not isinstance(loaded, list):
        raise ValueError(f"{path}: expected a json list of output indices (or {{\"class_map\": [...]}}).")
    return check_class_map(loaded)


def read_class_counts(path: str | os.PathLike, num_classes: int | None = None) -> list[int]:
    """Training counts in label order: a json list (`class_counts.json`), a json object with ``class_counts``, or an
    official split file (``ImageNet_LT_train.txt`` / ``iNaturalist18_train.txt``: ``path label`` lines), counted."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError:
        labels = [int(line.split()[1]) for line in text.splitlines() if line.strip()]
        size = num_classes or (max(labels) + 1 if labels else 0)
        return np.bincount(labels, minlength=size).astype(int).tolist()
    if isinstance(loaded, Mapping):
        loaded = loaded.get("class_counts")
    if not isinstance(loaded, list):
        raise ValueError(f"{path}: expected a json list of training counts in label order.")
    return [int(c) for c in loaded]


def checkpoint_class_map(checkpoint: Mapping) -> list[int] | None:
    """`args.class_map` of a loaded official checkpoint, or None when it pickles none."""
    value = checkpoint_args(checkpoint).get("class_map")
    return None if value is None else check_class_map(list(value))


def resolve_class_map(
    checkpoint_path: str | os.PathLike | None,
    class_map: str | None = None,
    class_map_from_counts_file: str | None = None,
    allowed_classes=(),
) -> tuple[list[int] | None, str]:
    """The class map a DeiT-LT port applies, and where it came from.

    `class_map`: a file, ``"checkpoint"`` (the checkpoint's `args.class_map`) or ``"none"`` (keep the official output
    order); `class_map_from_counts_file`: training counts (`read_class_counts`). With neither, the checkpoint's
    `args.class_map` is used when it pickles one; a checkpoint trained on ImageNet-LT / iNat18 (`args.data_set`) without
    one is refused (its outputs are not the dataset's label ids)."""
    if class_map is not None and class_map_from_counts_file is not None:
        raise ValueError("--class_map and --class_map_from_counts both give the class map: give one.")
    if class_map_from_counts_file is not None:
        return class_map_from_counts(read_class_counts(class_map_from_counts_file)), class_map_from_counts_file
    if class_map is not None and class_map.lower() == "none":
        return None, "none"
    if class_map is not None and class_map.lower() != "checkpoint":
        return read_class_map(class_map), class_map
    loaded = load_official_checkpoint(checkpoint_path, allowed_classes) if checkpoint_path else {}
    found = checkpoint_class_map(loaded) if isinstance(loaded, Mapping) else None
    if found is not None:
        return found, "the checkpoint's args.class_map"
    data_set = str(checkpoint_args(loaded).get("data_set", "")) if isinstance(loaded, Mapping) else ""
    if class_map is not None:  # "checkpoint" asked for explicitly
        raise ValueError(f"--class_map checkpoint: {checkpoint_path} pickles no args.class_map; give the class map "
                         "file (--class_map FILE) or the training counts (--class_map_from_counts FILE).")
    if data_set.upper() in CLASS_MAP_DATASETS:
        raise ValueError(
            f"{checkpoint_path} was trained on {data_set}, whose official code renumbers the classes by training "
            "frequency, and it pickles no args.class_map: give --class_map FILE or --class_map_from_counts "
            "class_counts.json (or ImageNet_LT_train.txt), or --class_map none to keep the official output order."
        )
    return None, "none"


def _classifier_heads(model: nn.Module) -> list[nn.Linear]:
    heads = [getattr(model, name, None) for name in ("classifier", "distillation_classifier")]
    heads = [head for head in heads if isinstance(head, nn.Linear)]
    if not heads:
        raise ValueError(f"{type(model).__name__} has no linear classifier head to renumber.")
    return heads


@torch.no_grad()
def permute_classifier_labels(model: nn.Module, class_map: Sequence[int]) -> nn.Module:
    """Renumber a ported classifier's outputs to the dataset's label ids: output c of the result is output
    ``class_map[c]`` of the model (rows of every head's weight and bias, and `config.class_counts`). In place;
    returns the model."""
    heads = _classifier_heads(model)
    index = torch.as_tensor(check_class_map(class_map, heads[0].out_features), dtype=torch.long)
    for head in heads:
        head.weight.copy_(head.weight[index.to(head.weight.device)].clone())
        if head.bias is not None:
            head.bias.copy_(head.bias[index.to(head.bias.device)].clone())
    counts = getattr(model.config, "class_counts", None)
    if counts is not None:
        model.config.class_counts = [counts[int(i)] for i in index]
    logger.info("renumbered %d head(s) of %s to the dataset's label ids", len(heads), type(model).__name__)
    return model
