"""Image transforms (torchvision.transforms.v2), the saved image processor, and data collators.

Recipes follow the official LiVT (MAE-based) and DeiT-LT (DeiT-based) code:

* `build_mgp_transform`: MAE pre-training augmentation.
* `build_finetune_transform`: RandomResizedCrop + flip + RandAugment + RandomErasing; images of 32 px or less use
  RandomCrop(padding=4) instead of the resized crop (DeiT's rule). The RandAugment step is timm's own
  (``rand_augment_transform("rand-m9-mstd0.5-inc1", hparams)`` with the hparams of timm's ``create_transform``, as
  both official repos), so its op set, magnitude scale and magnitude noise are the official ones; everything else
  is torchvision v2. timm is imported here only: the model files never import it.
* `build_image_processor` / `build_eval_transform`: the eval transform *is* the image processor saved
  next to the model (``preprocessor_config.json``), so ``pipeline()`` and our evaluation agree exactly.
* `MixupCutmixCollator` (soft targets with label smoothing folded in) and `DefaultImageCollator`.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch
from datasets import Dataset, IterableDataset
from timm.data.auto_augment import (
    AugmentOp,
    augment_and_mix_transform,
    auto_augment_transform,
    posterize,
    rand_augment_transform,
)
from timm.data.transforms import str_to_pil_interp
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from transformers import BitImageProcessor, DefaultDataCollator

from .images import CorruptImageCounter, decode_image_or_raise, to_rgb
from .official_eval import (
    CIFAR_STATS,
    IMAGENET_STATS,
    LIVT_CROP_PCT,
    LIVT_DATASET_STATS,
    SMALL_IMAGE_SIZE,
    bicubic_eval_processor,
)

# (mean, std) per channel, for pixels scaled to [0, 1].
NORMALIZATION_STATS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": IMAGENET_STATS,
    "cifar": CIFAR_STATS,
    # scikit-learn digits as built by data.load_digits_dataset (all 1,797 images; grey, so equal channels).
    "digits": ((0.3053, 0.3053, 0.3053), (0.3759, 0.3759, 0.3759)),
    # LiVT's dataset statistics (official util/datasets.py get_mean_std and main_pretrain.py), used by both its stages
    "imagenet_lt": LIVT_DATASET_STATS["ImageNet-LT"],
    "inat18": LIVT_DATASET_STATS["iNat18"],
}

# LiVT (MAE code) evaluates with crop_pct 224/256 = 0.875 up to 224 px, and 1.0 (no margin) above.
EVAL_CROP_PCT = LIVT_CROP_PCT
# SMALL_IMAGE_SIZE (32): at or below it, RandomCrop(padding=4) for training and no crop for eval
# timm's auto-augment config string used by both official repos (LiVT's and DeiT's ``--aa`` default)
DEFAULT_AUTO_AUGMENT = "rand-m9-mstd0.5-inc1"


def get_normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of a named preset in `NORMALIZATION_STATS`."""
    if name not in NORMALIZATION_STATS:
        raise ValueError(f"unknown normalization {name!r}; choose one of {sorted(NORMALIZATION_STATS)}")
    return NORMALIZATION_STATS[name]


def dataset_mean_std(
    dataset: Dataset | IterableDataset, image_column: str = "image", max_images: int | None = 1000, seed: int = 0
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (pixels in [0, 1], RGB) over up to ``max_images`` images.

    Map-style datasets use a seeded random subset; iterable ones the first ``max_images`` examples.
    The std is over all pixels of all images together (population std), as the usual CIFAR figures.
    """
    if isinstance(dataset, IterableDataset):
        source = dataset.select_columns([image_column])
        rows = source.take(max_images) if max_images is not None else source
        images = (row[image_column] for row in rows)
    else:
        indices = range(len(dataset))
        if max_images is not None and len(dataset) > max_images:
            indices = sorted(np.random.default_rng(seed).choice(len(dataset), size=max_images, replace=False).tolist())
        column = dataset.select_columns([image_column])
        images = (column[int(i)][image_column] for i in indices)
    total = np.zeros(3)
    total_sq = np.zeros(3)
    n = 0
    for index, value in enumerate(images):
        image = to_rgb(decode_image_or_raise(value, index))
        arr = np.asarray(image, dtype=np.float64).reshape(-1, 3) / 255.0
        total += arr.sum(0)
        total_sq += (arr**2).sum(0)
        n += arr.shape[0]
    if n == 0:
        raise ValueError("dataset_mean_std: no images")
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean**2, 0.0))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _normalize_tail(mean: Sequence[float], std: Sequence[float]) -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]


def build_mgp_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """MAE / MGP pre-training: RandomResizedCrop(scale 0.2-1, bicubic) + flip + normalise (PIL in, tensor out)."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(image_size, scale=(0.2, 1.0), interpolation=InterpolationMode.BICUBIC),
            v2.RandomHorizontalFlip(),
            *_normalize_tail(mean, std),
        ]
    )


def auto_augment_hparams(image_size: int, mean: Sequence[float], interpolation: str = "bicubic") -> dict[str, Any]:
    """The hparams timm's ``transforms_imagenet_train`` (``create_transform``) passes to its auto-augment transforms.

    ``translate_const`` is 45% of the image size, the fill colour is the mean colour in 0-255, and the
    interpolation is the training one (both official repos train with ``interpolation="bicubic"``); with
    ``"random"`` timm leaves it unset, so each geometric op picks bilinear or bicubic at random.
    """
    hparams: dict[str, Any] = {
        "translate_const": int(image_size * 0.45),
        "img_mean": tuple(min(255, round(255 * m)) for m in mean),
    }
    if interpolation and interpolation != "random":
        hparams["interpolation"] = str_to_pil_interp(interpolation)
    return hparams


def _posterize_keeping_zero_bits(img: PIL.Image.Image, bits_to_keep: int, **kwargs: Any) -> PIL.Image.Image:
    """timm's posterize, with 0 bits kept giving a black image as under the Pillow the official code ran with.

    ``rand-m9-mstd0.5-inc1`` keeps ``4 - int(0.4 * m)`` bits, so a noisy magnitude of 10 keeps none; recent Pillow
    (13 here) rejects ``ImageOps.posterize(img, 0)`` with a ValueError, which would kill a DataLoader worker.
    """
    if bits_to_keep <= 0:
        return img.point(lambda _: 0)
    return posterize(img, bits_to_keep, **kwargs)


def _patch_posterize(transform: Any) -> None:
    # RandAugment and AugMix keep a list of ops, AutoAugment a list of sub-policies (lists of ops)
    ops = getattr(transform, "ops", None) or getattr(transform, "policy", None) or []
    for op in (o for entry in ops for o in (entry if isinstance(entry, list) else [entry])):
        if isinstance(op, AugmentOp) and op.aug_fn is posterize:
            op.aug_fn = _posterize_keeping_zero_bits


def build_auto_augment(
    policy: str, image_size: int, mean: Sequence[float], interpolation: str = "bicubic"
) -> Callable[[PIL.Image.Image], PIL.Image.Image]:
    """timm's auto-augment transform for a config string, as ``transforms_imagenet_train`` builds it (PIL in, PIL out).

    ``rand-...`` is RandAugment (e.g. ``rand-m9-mstd0.5-inc1``: 2 ops per image, magnitude 9 of 10 with N(0, 0.5) noise,
    the "increasing" op set), ``augmix-...`` AugMix, anything else (``v0``, ``original``, ...) AutoAugment. The ops draw
    from Python's ``random`` and numpy's global RNG (see `_example_rng`).
    """
    hparams = auto_augment_hparams(image_size, mean, interpolation)  # a fresh dict: timm setdefault()s into it
    try:  # timm rejects a bad config string with a bare assert
        if policy.startswith("rand"):
            transform = rand_augment_transform(policy, hparams)
        elif policy.startswith("augmix"):
            hparams["translate_pct"] = 0.3
            transform = augment_and_mix_transform(policy, hparams)
        else:
            transform = auto_augment_transform(policy, hparams)
    except (AssertionError, KeyError, ValueError) as err:
        raise ValueError(
            f"invalid auto-augment policy {policy!r} (timm config string, e.g. {DEFAULT_AUTO_AUGMENT!r}): {err}"
        ) from err
    _patch_posterize(transform)
    return transform


def build_finetune_transform(
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    rand_augment: bool = True,
    random_erasing: float = 0.25,
    auto_augment: str = DEFAULT_AUTO_AUGMENT,
) -> v2.Compose:
    """Fine-tuning augmentation of LiVT / DeiT (timm's ``create_transform`` recipe; timm's RandAugment, v2 otherwise).

    Above 32 px: RandomResizedCrop(scale 0.08-1, bicubic) + flip + RandAugment + normalise +
    RandomErasing. At 32 px or less (CIFAR): resize to ``image_size`` (a no-op for images already that
    size) + RandomCrop(padding=4) + flip + the same RandAugment/normalise/erasing, as DeiT's rule.

    The RandAugment step is timm's own transform for the config string ``auto_augment`` (default
    ``rand-m9-mstd0.5-inc1``, the official recipes; see `build_auto_augment`), applied to the PIL image; it is left
    out when ``rand_augment`` is False or ``auto_augment`` is empty.
    """
    if image_size > SMALL_IMAGE_SIZE:
        steps: list = [v2.RandomResizedCrop(image_size, scale=(0.08, 1.0), interpolation=InterpolationMode.BICUBIC)]
    else:
        steps = [
            v2.Resize((image_size, image_size), interpolation=InterpolationMode.BICUBIC),
            v2.RandomCrop(image_size, padding=4),
        ]
    steps.append(v2.RandomHorizontalFlip())
    if rand_augment and auto_augment:
        # v2 passes the PIL image through the crop and flip, so timm's PIL ops see what they see in timm
        steps.append(build_auto_augment(auto_augment, image_size, mean))
    steps += _normalize_tail(mean, std)
    if random_erasing > 0:
        # value="random" erases with N(0, 1) noise after normalisation: timm's mode="pixel".
        steps.append(v2.RandomErasing(p=random_erasing, value="random"))
    return v2.Compose(steps)


def build_image_processor(image_size: int, mean: Sequence[float], std: Sequence[float]) -> BitImageProcessor:
    """The image processor saved with a model (``preprocessor_config.json``); it defines evaluation.

    ``BitImageProcessor`` (torchvision backend, what ``AutoImageProcessor`` loads back) resizes the shorter
    side with bicubic interpolation, center-crops, converts to RGB, rescales and normalises:

    * ``image_size <= 32``: resize to ``image_size x image_size``, no crop (a no-op for CIFAR images).
    * ``32 < image_size <= 224``: shorter side to ``int(image_size / 0.875)``, center crop ``image_size``.
    * ``image_size > 224``: shorter side to ``image_size``, center crop ``image_size`` (no crop margin),
      as the official MAE/LiVT code (``crop_pct = 1.0``); square images are simply resized.
    """
    if image_size <= SMALL_IMAGE_SIZE:
        size, do_center_crop = {"height": image_size, "width": image_size}, False
    elif image_size <= 224:
        size, do_center_crop = {"shortest_edge": int(image_size / EVAL_CROP_PCT)}, True
    else:
        size, do_center_crop = {"shortest_edge": image_size}, True
    return bicubic_eval_processor(size, do_center_crop, image_size, mean, std)


class EvalTransform:
    """Eval transform that runs an image processor on one image: ``PIL image -> [3, H, W] float tensor``.

    Images go through `data.to_rgb` first (16-bit images scaled, not clipped); for 8-bit images this is
    the processor's own RGB conversion, so ``processor(raw_image)`` gives the very same tensor.
    """

    def __init__(self, processor: BitImageProcessor):
        self.processor = processor

    def __call__(self, image: PIL.Image.Image) -> torch.Tensor:
        return self.processor(images=to_rgb(image), return_tensors="pt")["pixel_values"][0]

    def __repr__(self) -> str:
        return f"EvalTransform({self.processor.__class__.__name__}, size={self.processor.size})"



def image_processor_input_size(processor) -> int | None:
    """The square input size an image processor produces (its crop when it center-crops, else its resize)."""
    size = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    size = size or getattr(processor, "size", None)
    if size is None:
        return None
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    return get("height") or get("shortest_edge")

def build_eval_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> EvalTransform:
    """Evaluation transform: the `build_image_processor` processor applied to one image (see there)."""
    return EvalTransform(build_image_processor(image_size, mean, std))


# Column added by `apply_transform` when augmentation is seeded per example (see `make_transform_fn`).
INDEX_COLUMN = "__example_index__"


def example_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one example in one epoch (numpy's SeedSequence mixes the three integers)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0] >> 1)


@contextlib.contextmanager
def _example_rng(seed: int) -> Iterator[None]:
    """Run a block under its own RNG streams, all seeded from ``seed``: torch's CPU RNG, Python's ``random`` (timm's
    RandAugment: op probability, magnitude noise, sign) and numpy's global RNG (timm's op choice). The previous
    global states are restored on exit, so the block consumes none of them."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # the CPU generator only: 50x cheaper than torch.manual_seed
            random.seed(seed)
            np.random.seed([seed & 0xFFFFFFFF, seed >> 32])  # the legacy RNG takes 32-bit words: all 63 bits
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def make_transform_fn(
    transform: Callable,
    image_column: str = "image",
    label_column: str = "label",
    to_rgb: Callable = to_rgb,
    skip_corrupt: bool = False,
    counter: CorruptImageCounter | None = None,
    seed: int | None = None,
) -> Callable:
    """Batched function ``fn(batch, indices=None) -> {"pixel_values": [tensors], "labels": [ints]}`` applying
    ``transform`` (the training augmentation or the eval transform) to every image, after ``to_rgb``.

    Training: pass ``seed``, and each example is augmented under its own RNG seeded by (seed, epoch, example index),
    so augmentations do not depend on DataLoader workers, processes or a resume from a checkpoint, and do not
    consume the global RNGs (torch, Python's ``random``, numpy's). `apply_transform` adds the index column for
    map-style datasets. ``fn.set_epoch(e)`` sets the epoch (shared memory, so DataLoader workers see it); the
    package's trainers call it at every epoch start. Eval: no ``seed``.

    For ``Dataset.set_transform`` / ``with_transform`` and ``IterableDataset.map(batched=True,
    with_indices=True)`` (see `apply_transform`). Values of an ``Image(decode=False)`` column are decoded here: a
    corrupt one raises a ValueError naming the example, or with ``skip_corrupt`` its row is dropped and counted
    (dropping rows works with ``IterableDataset.map``; map-style datasets are cleaned up front by
    `images.filter_corrupt_images`).
    """

    def fn(batch: dict[str, list], indices: list[int] | None = None) -> dict[str, list]:
        images = batch[image_column]
        labels = batch.get(label_column)
        example_indices = batch.get(INDEX_COLUMN, indices)
        pixel_values, out_labels, out_indices = [], [], []
        for j, value in enumerate(images):
            index = example_indices[j] if example_indices is not None else j
            image = decode_image_or_raise(value, index, skip_corrupt=skip_corrupt, counter=counter)
            if image is None:  # skipped corrupt image: the row is dropped
                continue
            if fn.seed is not None and example_indices is not None:
                # the example's own RNG stream: the same augmentation whatever the worker count, the process count
                # or a resume, and the global RNGs (torch: model dropout/masking; random, numpy) are left untouched
                with _example_rng(example_seed(fn.seed, int(fn.epoch_tensor), int(index))):
                    pixel_values.append(transform(to_rgb(image)))
            else:
                pixel_values.append(transform(to_rgb(image)))
            if labels is not None:
                out_labels.append(int(labels[j]))
            out_indices.append(int(index))
        out = {"pixel_values": pixel_values}
        if labels is not None:
            out["labels"] = out_labels
        if fn.seed is not None and example_indices is not None:
            out[INDEX_COLUMN] = out_indices  # lets a seeded collator mix the batch reproducibly
        return out

    fn.image_column, fn.label_column = image_column, label_column
    fn.seed = seed
    if seed is not None:
        # The epoch lives in shared memory: DataLoader workers (persistent ones too) read what the trainer sets at
        # each epoch start in the main process, instead of the value their copy of the dataset had when they started.
        fn.epoch_tensor = torch.zeros((), dtype=torch.int64).share_memory_()
        fn.set_epoch = lambda epoch: fn.epoch_tensor.fill_(int(epoch))
    return fn




def apply_transform(dataset: Dataset | IterableDataset, transform_fn: Callable) -> Dataset | IterableDataset:
    """Attach a batched transform fn: lazy ``with_transform`` (map-style) or lazy ``map`` (iterable)."""
    if isinstance(dataset, IterableDataset):
        columns = dataset.column_names or [transform_fn.image_column, transform_fn.label_column]
        return dataset.map(transform_fn, batched=True, with_indices=True, remove_columns=columns)
    if getattr(transform_fn, "seed", None) is not None and INDEX_COLUMN not in dataset.column_names:
        dataset = dataset.add_column(INDEX_COLUMN, list(range(len(dataset))))
    return dataset.with_transform(transform_fn)


class DefaultImageCollator:
    """Stacks ``pixel_values`` into ``[B, 3, H, W]`` and ``labels`` into int64 ``[B]`` (if present), with
    transformers' `DefaultDataCollator`. Ours does more: it passes on only those two keys (seeded training features
    also carry ``__example_index__``, which a model's forward refuses) and makes the labels int64 whatever their type.
    """

    def __init__(self):
        self.collator = DefaultDataCollator(return_tensors="pt")

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        kept = [
            {"pixel_values": f["pixel_values"], **({"labels": int(f["labels"])} if "labels" in f else {})}
            for f in features
        ]
        return self.collator(kept)


class MixupCutmixCollator:
    """Data collator with batch-level MixUp / CutMix and label smoothing (timm's ``Mixup``, with v2 ops).

    Returns ``{"pixel_values": [B, 3, H, W], "labels": [B, C] float}`` soft targets summing to 1. With
    probability ``prob`` a batch is mixed, by CutMix with probability ``switch_prob`` else MixUp (an
    alpha of 0 disables that op). Label smoothing is folded in after mixing,
    ``y = mixed_one_hot * (1 - s) + s / C``, which equals mixing the smoothed one-hots.

    * ``mixup_enabled = False`` (DeiT-LT turns mixing off after its DRW epoch): int64 labels ``[B]`` and
      no mixing, no smoothing.
    * no mixing op (both alphas 0): smoothed one-hot targets; with ``label_smoothing == 0`` and
      ``soft_targets=False``, int labels instead.
    * ``seed``: when the features carry example indices (seeded transforms), a batch is mixed under its own RNG
      seeded by (seed, indices), so mixing is reproducible across workers and resumes and leaves the global RNG
      alone; otherwise torch's global RNG drives it.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
        prob: float = 1.0,
        soft_targets: bool = True,
        seed: int | None = None,
    ):
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if not 0.0 <= switch_prob <= 1.0 or not 0.0 <= prob <= 1.0:
            raise ValueError(f"switch_prob and prob must be in [0, 1], got {switch_prob}, {prob}")
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.prob = prob
        self.soft_targets = soft_targets
        self.mixup = v2.MixUp(alpha=mixup_alpha, num_classes=num_classes) if mixup_alpha > 0 else None
        self.cutmix = v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes) if cutmix_alpha > 0 else None
        if self.mixup is not None and self.cutmix is not None:
            self.mix = v2.RandomChoice([self.mixup, self.cutmix], p=[1.0 - switch_prob, switch_prob])
        else:
            self.mix = self.mixup or self.cutmix
        self.mixup_enabled = True
        self.seed = seed

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        indices = [f.get(INDEX_COLUMN) for f in features]
        if self.seed is None or None in indices:
            return self._collate(features)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(np.random.SeedSequence([self.seed, *map(int, indices)]).generate_state(1)[0]))
            return self._collate(features)

    def _collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pixel_values = torch.stack([torch.as_tensor(f["pixel_values"]) for f in features])
        labels = torch.tensor([int(f["labels"]) for f in features], dtype=torch.long)
        if not self.mixup_enabled:
            return {"pixel_values": pixel_values, "labels": labels}
        if self.mix is None and self.label_smoothing == 0 and not self.soft_targets:
            return {"pixel_values": pixel_values, "labels": labels}
        targets = torch.nn.functional.one_hot(labels, self.num_classes).float()
        if self.mix is not None and len(features) > 1 and float(torch.rand(())) < self.prob:
            pixel_values, targets = self.mix(pixel_values, labels)
        targets = targets * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes
        return {"pixel_values": pixel_values, "labels": targets}
