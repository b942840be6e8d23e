"""Robust image decoding: any PIL mode to 8-bit RGB, corrupt bytes reported with their path (or skipped and
counted when asked)."""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import PIL.Image
from datasets import Dataset
from datasets import Image as ImageFeature

from .long_tail import require_column

logger = logging.getLogger(__name__)


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
    require_column(dataset, image_column, "image_column")
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
