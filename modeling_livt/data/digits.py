"""The embedded offline default data: scikit-learn's 8x8 handwritten digits as a `DatasetDict`."""

from __future__ import annotations

import numpy as np
import PIL.Image
from datasets import ClassLabel, Dataset, DatasetDict, Features
from datasets import Image as ImageFeature

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
