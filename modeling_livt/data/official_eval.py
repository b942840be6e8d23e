"""The official repositories' evaluation transforms, as the image processor saved with a ported checkpoint.

Both official repos evaluate with torchvision on PIL images: ``Resize(shorter side, bicubic)``, ``CenterCrop``,
``ToTensor``, ``Normalize``. They differ in the resize rule and in the statistics:

* LiVT (``XuZhengzhuo/LiVT``, ``util/datasets.py: build_transform``): ``crop_pct = 224 / 256`` up to 224 px and
  ``1.0`` above, shorter side to ``int(size / crop_pct)``, at every size (32-px CIFAR: 36, then crop 32); mean/std
  of the training dataset (``get_mean_std(args.dataset)``: ImageNet-LT and iNat18 have their own, unknown names
  fall through to CIFAR's).
* DeiT-LT (``val-iisc/DeiT-LT``, ``datasets.py: build_transform_deit``): above 32 px the shorter side goes to
  ``int(256 / 224 * size)`` (438 at 384, not 384 as in LiVT), then crop; at 32 px or less no resize and no crop;
  always ImageNet's mean/std.

`BitImageProcessor` reproduces this (shorter-side resize, center crop, bicubic); `ViTImageProcessor` cannot crop,
and `DeiTImageProcessor` / `ConvNextImageProcessor` resize non-square images to a square. Two differences remain,
both from transformers itself (tests/test_convert_hub.py measures them on a photograph):

* transformers centres the crop at ``floor(margin / 2)`` (deliberately, transformers PR #40856), torchvision's
  ``CenterCrop`` at ``round(margin / 2)`` (half to even): on an axis whose margin is 3 (mod 4) the crop starts one
  pixel earlier (e.g. a 640 x 427 photo at 224 px: 383 - 224 = 159).
* ``pipeline()`` and ``AutoImageProcessor.from_pretrained(dir)`` load the torchvision backend, whose bicubic
  resampling of uint8 tensors rounds differently from PIL's on under 1 % of values, by 1-2 grey levels;
  ``AutoImageProcessor.from_pretrained(dir, backend="pil")`` resamples exactly as the official PIL pipeline.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence

from transformers import BitImageProcessor
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

logger = logging.getLogger(__name__)

FAMILIES = ("livt", "deit_lt")

IMAGENET_STATS = (tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD))
CIFAR_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
# LiVT's `get_mean_std`, keyed by its `--dataset` names; any other name gets CIFAR's statistics (its else branch).
LIVT_DATASET_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "ImageNet-LT": ((0.479672, 0.457713, 0.407721), (0.278976, 0.271203, 0.286062)),
    "iNat18": ((0.466, 0.471, 0.380), (0.195, 0.194, 0.192)),
    "ImageNet-BAL": ((0.480767, 0.457071, 0.407718), (0.279940, 0.272481, 0.286038)),
    "ImageNet": IMAGENET_STATS,
    "Place": IMAGENET_STATS,
}
LIVT_CROP_PCT = 224 / 256  # up to 224 px; 1.0 above
DEIT_RESIZE_RATIO = 256 / 224  # above 32 px
SMALL_IMAGE_SIZE = 32


def official_eval_resize(family: str, image_size: int) -> tuple[dict[str, int], bool]:
    """`(size, do_center_crop)` of `BitImageProcessor` for the official eval transform of `family` at `image_size`.

    >>> official_eval_resize("livt", 224), official_eval_resize("livt", 32), official_eval_resize("deit_lt", 384)
    (({'shortest_edge': 256}, True), ({'shortest_edge': 36}, True), ({'shortest_edge': 438}, True))
    """
    if family == "livt":
        crop_pct = LIVT_CROP_PCT if image_size <= 224 else 1.0
        return {"shortest_edge": int(image_size / crop_pct)}, True
    if family == "deit_lt":
        if image_size <= SMALL_IMAGE_SIZE:
            # no resize in the official code: a square resize is the identity on the images it accepts
            return {"height": image_size, "width": image_size}, False
        return {"shortest_edge": int(DEIT_RESIZE_RATIO * image_size)}, True
    raise ValueError(f"unknown model family {family!r}; choose one of {list(FAMILIES)}.")


def bicubic_eval_processor(
    size: dict[str, int], do_center_crop: bool, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> BitImageProcessor:
    """A `BitImageProcessor`: RGB, bicubic resize to `size`, optional center crop `image_size`, rescale to [0, 1],
    normalise with `mean`/`std`. Every eval transform of the package (ours: `transforms.build_image_processor`; the
    official repositories': `official_eval_image_processor`) is one of these, differing only in the resize."""
    return BitImageProcessor(
        do_resize=True,
        size=size,
        resample=PILImageResampling.BICUBIC,
        do_center_crop=do_center_crop,
        crop_size={"height": image_size, "width": image_size},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(mean),
        image_std=list(std),
        do_convert_rgb=True,
    )


def official_eval_image_processor(
    family: str, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> BitImageProcessor:
    """The official eval transform of `family` (`"livt"` or `"deit_lt"`) at `image_size` as a `BitImageProcessor`:
    bicubic shorter-side resize, center crop `image_size`, rescale to [0, 1], normalise with `mean`/`std`."""
    size, do_center_crop = official_eval_resize(family, image_size)
    return bicubic_eval_processor(size, do_center_crop, image_size, mean, std)


def livt_dataset_mean_std(dataset: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """LiVT's `get_mean_std` for one of its `--dataset` names (CIFAR's statistics for any other name, as there)."""
    return LIVT_DATASET_STATS.get(dataset, CIFAR_STATS)


def official_mean_std(family: str, checkpoint_args: Mapping | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The normalisation the official code evaluated a checkpoint of `family` with, from its pickled `args`.

    DeiT-LT always uses ImageNet's statistics. LiVT uses its training dataset's (`args.dataset`); a checkpoint
    whose `args` do not name the dataset gets ImageNet's, with a warning saying how to choose (`--normalization`).
    """
    if family == "deit_lt":
        return IMAGENET_STATS
    dataset = (checkpoint_args or {}).get("dataset")
    if isinstance(dataset, str) and dataset:
        return livt_dataset_mean_std(dataset)
    logger.warning(
        "The checkpoint's args do not name its dataset (`args.dataset`), so the official evaluation statistics are "
        "unknown; saving ImageNet's mean/std. LiVT evaluated ImageNet-LT and iNat18 with their own statistics: pass "
        "--normalization imagenet_lt (or inat18, cifar) when converting such a checkpoint."
    )
    return IMAGENET_STATS


def folder_mean_std(folder: str | os.PathLike) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """mean/std of a transformers folder's own image processor, ImageNet's when it has none."""
    path = os.path.join(os.fspath(folder), "preprocessor_config.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            processor = json.load(f)
        if processor.get("image_mean") and processor.get("image_std"):
            return tuple(processor["image_mean"]), tuple(processor["image_std"])
    return IMAGENET_STATS


def describe_eval_transform(processor: BitImageProcessor) -> str:
    """One line saying what `processor` does to an image (for model cards)."""
    size, crop = processor.size, processor.crop_size
    if "shortest_edge" in size:
        steps = [f"resize the shorter side to {size['shortest_edge']} px (bicubic)"]
    else:
        steps = [f"resize to {size['height']} x {size['width']} px (bicubic)"]
    if processor.do_center_crop:
        steps.append(f"center crop {crop['height']} x {crop['width']}")
    mean = ", ".join(f"{v:g}" for v in processor.image_mean)
    std = ", ".join(f"{v:g}" for v in processor.image_std)
    steps.append(f"scale to [0, 1], normalise with mean ({mean}) and std ({std})")
    return "; ".join(steps)


__all__ = [
    "FAMILIES",
    "LIVT_DATASET_STATS",
    "describe_eval_transform",
    "folder_mean_std",
    "livt_dataset_mean_std",
    "official_eval_image_processor",
    "official_eval_resize",
    "official_mean_std",
]
