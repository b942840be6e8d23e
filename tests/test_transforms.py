"""Tests of modeling_livt.data.transforms: augmentation recipes, the eval image processor, collators.

References are written out independently here (plain torchvision functional ops, numpy formulas).
"""

import copy
import random

import numpy as np
import PIL.Image
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, IterableDataset, concatenate_datasets
from datasets import Image as ImageFeature
from sklearn.datasets import load_digits
from timm.data.auto_augment import _RAND_INCREASING_TRANSFORMS, AugmentOp, rand_augment_transform
from timm.data.auto_augment import RandAugment as TimmRandAugment
from timm.data.transforms_factory import transforms_imagenet_train
from torch.utils.data import DataLoader
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as tvF
from transformers import AutoImageProcessor

from modeling_livt.data.digits import load_digits_dataset
from modeling_livt.data.images import CorruptImageCounter, to_rgb
from modeling_livt.data.loading import DataOptions, load_image_datasets
from modeling_livt.data.transforms import (
    DEFAULT_AUTO_AUGMENT,
    INDEX_COLUMN,
    NORMALIZATION_STATS,
    DefaultImageCollator,
    MixupCutmixCollator,
    apply_transform,
    build_auto_augment,
    build_eval_transform,
    build_finetune_transform,
    build_image_processor,
    build_mgp_transform,
    dataset_mean_std,
    get_normalization,
    make_transform_fn,
)

MEAN, STD = NORMALIZATION_STATS["cifar"]



def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """Reference: one-hot targets with label smoothing, off = s / C, on = 1 - s + s / C (timm's `smooth_one_hot`)."""
    on, off = 1.0 - smoothing + smoothing / num_classes, smoothing / num_classes
    return torch.full((len(labels), num_classes), off).scatter_(1, labels.long().view(-1, 1), on)

def random_image(h, w, mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    if mode == "RGB":
        return PIL.Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    if mode == "RGBA":
        return PIL.Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), mode="RGBA")
    if mode == "L":
        return PIL.Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), mode="L")
    if mode == "I;16":
        return PIL.Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    if mode == "P":
        return random_image(h, w, "RGB", seed).convert("P")
    raise ValueError(mode)


def normalized(arr_uint8_hwc, mean=MEAN, std=STD):
    x = torch.from_numpy(np.asarray(arr_uint8_hwc, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def find(compose, cls):
    return [t for t in compose.transforms if isinstance(t, cls)]


# ---------------------------------------------------------------- normalisation statistics


def test_normalization_presets():
    assert get_normalization("imagenet") == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert get_normalization("cifar") == ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    with pytest.raises(ValueError, match="cifar"):
        get_normalization("mnist")


def test_dataset_mean_std_known_values():
    # half black, half white images: mean 0.5, std 0.5 per channel; a red image shifts channel 0 only
    images = [PIL.Image.new("RGB", (4, 4), (0, 0, 0)), PIL.Image.new("RGB", (4, 4), (255, 255, 255))]
    ds = Dataset.from_dict({"image": images}, features=Features({"image": ImageFeature()}))
    mean, std = dataset_mean_std(ds, "image")
    np.testing.assert_allclose(mean, [0.5] * 3, atol=1e-9)
    np.testing.assert_allclose(std, [0.5] * 3, atol=1e-9)
    mean_it, _ = dataset_mean_std(ds.to_iterable_dataset(), "image", max_images=1)
    np.testing.assert_allclose(mean_it, [0.0] * 3)


def test_digits_preset_matches_the_data():
    digits = load_digits_dataset()
    everything = concatenate_datasets([digits[s] for s in ("train", "validation", "test")])
    mean, std = dataset_mean_std(everything, "image", max_images=None)
    np.testing.assert_allclose(mean, NORMALIZATION_STATS["digits"][0], atol=1e-4)
    np.testing.assert_allclose(std, NORMALIZATION_STATS["digits"][1], atol=1e-4)


# ---------------------------------------------------------------- training transforms


@pytest.mark.parametrize("size", [32, 48, 224])
def test_mgp_transform_shapes_and_normalisation(size):
    t = build_mgp_transform(size, MEAN, STD)
    (rrc,) = find(t, v2.RandomResizedCrop)
    assert rrc.scale == (0.2, 1.0) and rrc.interpolation == InterpolationMode.BICUBIC
    out = t(PIL.Image.new("RGB", (40, 30), (51, 102, 204)))  # constant image: any crop is the same colour
    assert out.shape == (3, size, size) and out.dtype == torch.float32
    expected = (torch.tensor([51, 102, 204]) / 255.0 - torch.tensor(MEAN)) / torch.tensor(STD)
    torch.testing.assert_close(out[:, size // 2, size // 2], expected, atol=1e-5, rtol=0)


def test_finetune_transform_large_images():
    t = build_finetune_transform(64, MEAN, STD)
    (rrc,) = find(t, v2.RandomResizedCrop)
    assert rrc.scale == (0.08, 1.0) and rrc.interpolation == InterpolationMode.BICUBIC
    (ra,) = find(t, TimmRandAugment)  # timm's own RandAugment, between the flip and the tensor conversion
    assert t.transforms.index(ra) == t.transforms.index(find(t, v2.RandomHorizontalFlip)[0]) + 1
    assert isinstance(t.transforms[t.transforms.index(ra) + 1], v2.ToImage)
    assert ra.num_layers == 2 and [op.name for op in ra.ops] == list(_RAND_INCREASING_TRANSFORMS)
    assert {(op.prob, op.magnitude, op.magnitude_std) for op in ra.ops} == {(0.5, 9, 0.5)}
    # timm's create_transform hparams at 64 px: translate 45% of the size, mean-colour fill, bicubic
    assert ra.ops[0].hparams["translate_const"] == 28
    assert ra.ops[0].kwargs == {"fillcolor": (125, 123, 114), "resample": PIL.Image.Resampling.BICUBIC}
    (erase,) = find(t, v2.RandomErasing)
    assert erase.p == 0.25 and erase.value is None  # None is how v2 stores value="random"
    assert isinstance(t.transforms[-1], v2.RandomErasing)  # erasing comes after Normalize
    assert not find(t, v2.RandomCrop)
    torch.manual_seed(0)
    out = t(random_image(50, 70))
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32


def test_finetune_transform_small_images_follow_the_cifar_rule():
    t = build_finetune_transform(32, MEAN, STD, rand_augment=False, random_erasing=0.0)
    assert not find(t, v2.RandomResizedCrop) and not find(t, TimmRandAugment) and not find(t, v2.RandomErasing)
    (crop,) = find(t, v2.RandomCrop)
    assert crop.padding == [4, 4, 4, 4]
    img = random_image(32, 32, seed=3)
    ref = normalized(np.asarray(img))
    torch.manual_seed(0)
    outs = [t(img) for _ in range(20)]
    for out in outs:  # every output is the image shifted by <= 4 px (zero padded), maybe flipped
        assert out.shape == (3, 32, 32)
        found = False
        for flip in (False, True):
            r = ref.flip(-1) if flip else ref
            for dy in range(-4, 5):
                for dx in range(-4, 5):
                    a = out[:, max(dy, 0) : 32 + min(dy, 0), max(dx, 0) : 32 + min(dx, 0)]
                    b = r[:, max(-dy, 0) : 32 + min(-dy, 0), max(-dx, 0) : 32 + min(-dx, 0)]
                    found |= bool(torch.allclose(a, b, atol=1e-5))
        assert found
    assert any(not torch.allclose(o, ref, atol=1e-5) for o in outs)
    full = build_finetune_transform(32, MEAN, STD)
    assert find(full, TimmRandAugment)[0].ops[0].hparams["translate_const"] == 14  # int(32 * 0.45)
    assert full(img).shape == (3, 32, 32)
    # the policy is a parameter; rand_augment=False or an empty policy means none
    assert not find(
        build_finetune_transform(32, MEAN, STD, rand_augment=False, auto_augment="rand-m5"), TimmRandAugment
    )
    assert not find(build_finetune_transform(32, MEAN, STD, auto_augment=""), TimmRandAugment)
    (m5,) = find(build_finetune_transform(32, MEAN, STD, auto_augment="rand-m5-n3"), TimmRandAugment)
    assert m5.num_layers == 3 and {(op.magnitude, op.magnitude_std) for op in m5.ops} == {(5, 0)}
    with pytest.raises(ValueError, match="rand-m9-bogus1"):
        build_finetune_transform(32, MEAN, STD, auto_augment="rand-m9-bogus1")


# ---------------------------------------------------------------- RandAugment: timm's own


def digit_image(size, index=0):
    """A real image: a scikit-learn digit upscaled (bicubic) to ``size``, tinted so the colour ops have colour."""
    grey = PIL.Image.fromarray((load_digits().images[index] * (255 / 16)).astype(np.uint8)).resize(
        (size, size), PIL.Image.Resampling.BICUBIC
    )
    g = np.asarray(grey, dtype=np.float64)
    ramp = np.linspace(0, 255, size)[None, :].repeat(size, 0)
    rgb = np.stack([g, 0.5 * g + 0.5 * ramp, 255 - 0.7 * g], -1)
    return PIL.Image.fromarray(rgb.round().clip(0, 255).astype(np.uint8))


def legacy_posterize(image, bits):
    """Pillow's posterize before it rejected ``bits=0`` (written out): keep the ``bits`` high bits, 0 -> black."""
    mask = ~(2 ** (8 - bits) - 1)
    return image.point([i & mask for i in range(256)] * len(image.getbands()))


def seed_python_and_numpy(seed):
    random.seed(seed)
    np.random.seed(seed)


def apply_seeded(transform, image, seed):
    seed_python_and_numpy(seed)
    return np.asarray(transform(image))


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("source", ["digits", "random"])
def test_rand_augment_is_timms_create_transform_step(size, source, monkeypatch):
    monkeypatch.setattr(PIL.ImageOps, "posterize", legacy_posterize)  # timm's reference as the official code ran it
    image = digit_image(size, index=size) if source == "digits" else random_image(size, size, seed=size)
    (ours,) = find(build_finetune_transform(size, MEAN, STD), TimmRandAugment)
    # timm's own recipe, as both official repos call it (create_transform -> transforms_imagenet_train)
    _, secondary, _ = transforms_imagenet_train(
        size, auto_augment="rand-m9-mstd0.5-inc1", interpolation="bicubic", mean=MEAN, std=STD, separate=True
    )
    (timm_ra,) = secondary.transforms
    # and rand_augment_transform with the hparams written out
    written = rand_augment_transform(
        "rand-m9-mstd0.5-inc1",
        {
            "translate_const": int(size * 0.45),
            "img_mean": tuple(round(255 * m) for m in MEAN),
            "interpolation": PIL.Image.Resampling.BICUBIC,
        },
    )
    # timm's defaults (grey fill, random bilinear/bicubic, translate 250): must differ somewhere (a sensitive test)
    defaults = rand_augment_transform("rand-m9-mstd0.5-inc1", None)
    changed, differs_from_defaults, outputs = 0, 0, set()
    for seed in range(20):
        out = apply_seeded(ours, image, seed)
        assert out.shape == (size, size, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, apply_seeded(timm_ra, image, seed), err_msg=f"seed {seed}")
        np.testing.assert_array_equal(out, apply_seeded(written, image, seed), err_msg=f"seed {seed}")
        differs_from_defaults += not np.array_equal(out, apply_seeded(defaults, image, seed))
        changed += not np.array_equal(out, np.asarray(image))
        outputs.add(out.tobytes())
    assert changed >= 10 and len(outputs) >= 10  # RandAugment does act, differently per seed
    assert differs_from_defaults >= 1


def test_posterize_keeping_no_bits_gives_a_black_image(monkeypatch):
    # rand-m9-mstd0.5-inc1 keeps 4 - int(0.4 * m) bits: a noisy magnitude of 10 keeps none (Pillow 13 raises there)
    (ra,) = find(build_finetune_transform(32, MEAN, STD), TimmRandAugment)
    (op,) = [op for op in ra.ops if op.name == "PosterizeIncreasing"]
    image = digit_image(32, index=5)
    outputs = {}
    for magnitude in (10, 9.6, 5, 0):
        forced = copy.copy(op)
        forced.prob, forced.magnitude, forced.magnitude_std = 1.0, magnitude, 0
        outputs[magnitude] = np.asarray(forced(image))
        bits = 4 - int(magnitude * 0.4)
        np.testing.assert_array_equal(outputs[magnitude], np.asarray(legacy_posterize(image, bits)))
    assert outputs[10].shape == (32, 32, 3) and not outputs[10].any()
    assert outputs[5].any() and not np.array_equal(outputs[5], np.asarray(image))
    # timm's own op agrees once Pillow behaves as it did for the official code
    monkeypatch.setattr(PIL.ImageOps, "posterize", legacy_posterize)
    raw = AugmentOp("PosterizeIncreasing", prob=1.0, magnitude=10, hparams=dict(op.hparams, magnitude_std=0))
    np.testing.assert_array_equal(np.asarray(raw(image)), outputs[10])


def test_rand_augment_magnitude_noise():
    (ra,) = find(build_finetune_transform(64, MEAN, STD), TimmRandAugment)
    assert DEFAULT_AUTO_AUGMENT == "rand-m9-mstd0.5-inc1"
    assert all(op.magnitude_std == 0.5 for op in ra.ops)
    # observable: Rotate at m9 without noise has two angles (+-27 degrees); with mstd0.5 the angle varies
    (rotate,) = [op for op in ra.ops if op.name == "Rotate"]
    always = copy.copy(rotate)
    always.prob = 1.0
    image = digit_image(64, index=3)
    angles = {apply_seeded(always, image, seed).tobytes() for seed in range(30)}
    assert len(angles) > 10
    fixed = AugmentOp("Rotate", prob=1.0, magnitude=9, hparams=dict(rotate.hparams, magnitude_std=0))
    assert len({apply_seeded(fixed, image, seed).tobytes() for seed in range(30)}) == 2  # the control
    # other policies build too, as timm's transforms_imagenet_train builds them
    assert type(build_auto_augment("v0", 64, MEAN)).__name__ == "AutoAugment"
    assert type(build_auto_augment("augmix-m5-w4-d2", 64, MEAN)).__name__ == "AugMixAugment"


def global_rng_states():
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def assert_same_rng_states(a, b):
    assert a[0] == b[0]  # Python's random
    assert a[1][0] == b[1][0] and np.array_equal(a[1][1], b[1][1]) and a[1][2:] == b[1][2:]  # numpy's global RNG
    assert torch.equal(a[2], b[2])  # torch's CPU RNG


def test_seeded_augmentation_is_a_function_of_seed_epoch_index():
    # RandAugment only (timm: Python's random + numpy), then the same with the whole v2 pipeline (torch as well)
    ds = Dataset.from_dict(
        {"image": [digit_image(32, index=i) for i in range(6)], "label": list(range(6))},
        features=Features({"image": ImageFeature(), "label": ClassLabel(num_classes=10)}),
    )
    ra_only = v2.Compose([*find(build_finetune_transform(32, MEAN, STD), TimmRandAugment), v2.PILToTensor()])
    for transform in (ra_only, build_finetune_transform(32, MEAN, STD)):
        fn = make_transform_fn(transform, seed=7)
        train = apply_transform(ds, fn)
        random.seed(1), np.random.seed(1), torch.manual_seed(1)
        before = global_rng_states()
        first = train[0:6]["pixel_values"]
        assert_same_rng_states(before, global_rng_states())  # nothing global consumed
        random.seed(2), np.random.seed(2), torch.manual_seed(2)  # another global state: the same augmentation
        second = train[0:6]["pixel_values"]
        assert all(torch.equal(a, b) for a, b in zip(first, second))
        assert torch.equal(train[4]["pixel_values"], first[4])  # the example alone, not its batch, decides
        fn.set_epoch(1)
        other_epoch = train[0:6]["pixel_values"]
        assert sum(not torch.equal(a, b) for a, b in zip(first, other_epoch)) >= 4
        fn.set_epoch(0)
        assert all(torch.equal(a, b) for a, b in zip(first, train[0:6]["pixel_values"]))
    # the states are restored when the transform raises, too
    before = global_rng_states()
    broken = make_transform_fn(lambda image: 1 / 0, seed=7)
    with pytest.raises(ZeroDivisionError):
        apply_transform(ds, broken)[0]
    assert_same_rng_states(before, global_rng_states())


# ---------------------------------------------------------------- eval transform == image processor


def test_eval_transform_matches_written_out_reference():
    img = random_image(50, 70)  # PIL size (w=70, h=50)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)
    # 64 px: shorter side -> int(64 / 0.875) = 73, bicubic (antialiased), center crop 64
    ref = tvF.center_crop(tvF.resize(x, 73, interpolation=InterpolationMode.BICUBIC, antialias=True), [64, 64])
    out = build_eval_transform(64, MEAN, STD)(img)
    torch.testing.assert_close(out, normalized(ref.permute(1, 2, 0).numpy()), atol=1e-5, rtol=0)
    # above 224: shorter side -> the size itself, center crop, no margin
    ref = tvF.center_crop(tvF.resize(x, 256, interpolation=InterpolationMode.BICUBIC, antialias=True), [256, 256])
    out = build_eval_transform(256, MEAN, STD)(img)
    torch.testing.assert_close(out, normalized(ref.permute(1, 2, 0).numpy()), atol=1e-5, rtol=0)
    # 32 px and a 32-px image: no resize, no crop, just normalisation
    small = random_image(32, 32, seed=1)
    torch.testing.assert_close(
        build_eval_transform(32, MEAN, STD)(small), normalized(np.asarray(small)), atol=1e-5, rtol=0
    )
    assert build_eval_transform(32, MEAN, STD)(img).shape == (3, 32, 32)
    assert build_image_processor(224, MEAN, STD).size == {"shortest_edge": 256}


@pytest.mark.parametrize("size", [32, 64, 224, 256])
def test_saved_processor_reproduces_eval_transform_exactly(tmp_path, size):
    processor = build_image_processor(size, MEAN, STD)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "preprocessor_config.json").is_file()
    reloaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(reloaded) is type(processor)
    transform = build_eval_transform(size, MEAN, STD)
    for i, (h, w, mode) in enumerate(
        [(50, 70, "RGB"), (40, 40, "L"), (64, 48, "RGBA"), (33, 90, "P"), (300, 260, "RGB")]
    ):
        img = random_image(h, w, mode, seed=i)
        expected = transform(img)
        assert expected.shape == (3, size, size)
        # what pipeline() does: the reloaded processor on the raw image
        got = reloaded(images=img, return_tensors="pt")["pixel_values"][0]
        assert torch.equal(got, expected), (mode, h, w)
    # 16-bit images: our to_rgb scales them; the processor then sees the same RGB image
    deep = random_image(45, 30, "I;16")
    got = reloaded(images=to_rgb(deep), return_tensors="pt")["pixel_values"][0]
    assert torch.equal(got, transform(deep))


# ---------------------------------------------------------------- dataset transform functions


def tiny_digits(n=8):
    return load_digits_dataset()["validation"].select(range(n))


def test_transform_fns_on_map_style_dataset():
    ds = tiny_digits()
    grey = ds.cast_column("image", ImageFeature(mode="L"))  # decoded as 1-channel images
    fn = make_transform_fn(build_finetune_transform(32, MEAN, STD), "image", "label")
    out = grey.with_transform(fn)[0:4]
    assert len(out["pixel_values"]) == 4 and out["pixel_values"][0].shape == (3, 32, 32)
    assert out["labels"] == ds["label"][:4] and all(isinstance(v, int) for v in out["labels"])
    eval_fn = make_transform_fn(build_eval_transform(32, *NORMALIZATION_STATS["digits"]))
    item = apply_transform(ds, eval_fn)[3]
    ref = normalized(np.asarray(ds[3]["image"]), *NORMALIZATION_STATS["digits"])
    torch.testing.assert_close(item["pixel_values"], ref, atol=1e-5, rtol=0)


def test_transform_fn_corrupt_bytes_raise_or_skip():
    good = load_digits_dataset()["test"].select(range(3)).cast_column("image", ImageFeature(decode=False))
    rows = list(good)
    rows[1]["image"] = {"bytes": b"garbage", "path": "x/broken.png"}
    features = Features({"image": ImageFeature(decode=False), "label": ClassLabel(num_classes=10)})
    ds = Dataset.from_list(rows, features=features).to_iterable_dataset()
    eval_t = build_eval_transform(32, MEAN, STD)
    with pytest.raises(ValueError, match=r"corrupt image at example 1 \(x/broken\.png\).*--skip_corrupt_images"):
        list(apply_transform(ds, make_transform_fn(eval_t)))
    counter = CorruptImageCounter()
    kept = list(apply_transform(ds, make_transform_fn(eval_t, skip_corrupt=True, counter=counter)))
    assert len(kept) == 2 and counter.count == 1 and counter.examples == [(1, "x/broken.png")]
    assert [k["labels"] for k in kept] == [rows[0]["label"], rows[2]["label"]]


def test_streaming_pipeline_with_dataloader_workers():
    data = load_image_datasets(DataOptions(streaming=True, max_train_samples=48, streaming_num_shards=4))
    assert isinstance(data.train, IterableDataset) and data.train.num_shards == 4
    fn = make_transform_fn(build_finetune_transform(32, MEAN, STD), data.image_column, data.label_column)
    stream = apply_transform(data.train, fn)
    loader = DataLoader(stream, batch_size=8, num_workers=2, collate_fn=DefaultImageCollator())
    labels = []
    for batch in loader:
        assert batch["pixel_values"].shape[1:] == (3, 32, 32) and batch["labels"].dtype == torch.long
        labels += batch["labels"].tolist()
    assert np.bincount(labels, minlength=10).tolist() == data.class_counts  # each example exactly once


# ---------------------------------------------------------------- collators


def features_batch(n=6, num_classes=5, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"pixel_values": torch.rand(3, size, size, generator=g), "labels": i % num_classes} for i in range(n)]


def test_default_collator():
    feats = features_batch()
    batch = DefaultImageCollator()(feats)
    assert batch["pixel_values"].shape == (6, 3, 8, 8) and batch["labels"].dtype == torch.long
    assert batch["labels"].tolist() == [0, 1, 2, 3, 4, 0]
    assert torch.equal(batch["pixel_values"], torch.stack([f["pixel_values"] for f in feats]))  # independent stack


def test_default_collator_drops_other_keys_unlike_transformers_default():
    """What ours adds to `DefaultDataCollator`: only pixel_values/labels go on (the index column of seeded
    training features would reach the model's forward there), and numpy int32 labels become int64."""
    from transformers import DefaultDataCollator

    feats = [{**f, INDEX_COLUMN: i, "labels": np.int32(f["labels"])} for i, f in enumerate(features_batch())]
    ours = DefaultImageCollator()(feats)
    assert set(ours) == {"pixel_values", "labels"} and ours["labels"].dtype == torch.long
    theirs = DefaultDataCollator()(feats)
    assert INDEX_COLUMN in theirs and theirs["labels"].dtype == torch.int32
    assert torch.equal(ours["pixel_values"], theirs["pixel_values"])
    unlabelled = DefaultImageCollator()([{"pixel_values": f["pixel_values"]} for f in feats])
    assert set(unlabelled) == {"pixel_values"}


def test_label_smoothing_without_mixing():
    s, c = 0.1, 5
    coll = MixupCutmixCollator(c, mixup_alpha=0.0, cutmix_alpha=0.0, label_smoothing=s)
    feats = features_batch(num_classes=c)
    batch = coll(feats)
    y = batch["labels"]
    assert y.shape == (6, c) and y.dtype == torch.float32
    on, off = 1 - s + s / c, s / c
    for row, f in zip(y, feats):
        for k in range(c):
            assert row[k].item() == pytest.approx(on if k == f["labels"] else off, abs=1e-7)
    torch.testing.assert_close(y.sum(-1), torch.ones(6))
    assert torch.equal(batch["pixel_values"], torch.stack([f["pixel_values"] for f in feats]))
    torch.testing.assert_close(y, smooth_one_hot(torch.tensor([f["labels"] for f in feats]), c, s))
    plain = MixupCutmixCollator(c, mixup_alpha=0, cutmix_alpha=0, label_smoothing=0.0, soft_targets=False)
    assert plain(feats)["labels"].tolist() == [0, 1, 2, 3, 4, 0]
    assert MixupCutmixCollator(c, mixup_alpha=0, cutmix_alpha=0, label_smoothing=0.0)(feats)["labels"].shape == (6, c)


def test_mixup_known_lambda_reference(monkeypatch):
    s, c, lam = 0.1, 5, 0.3
    coll = MixupCutmixCollator(c, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=s)
    assert coll.mix is coll.mixup
    monkeypatch.setattr(coll.mixup, "make_params", lambda flat_inputs: {"lam": lam})
    feats = features_batch(num_classes=c)
    x = torch.stack([f["pixel_values"] for f in feats])
    labels = torch.tensor([f["labels"] for f in feats])
    batch = coll(feats)
    # reference: pair i with i-1 (torchvision rolls the batch by one), mix, then smooth
    onehot = torch.eye(c)[labels]
    expected = (lam * onehot + (1 - lam) * onehot.roll(1, 0)) * (1 - s) + s / c
    torch.testing.assert_close(batch["labels"], expected)
    torch.testing.assert_close(batch["pixel_values"], lam * x + (1 - lam) * x.roll(1, 0))
    torch.testing.assert_close(batch["labels"].sum(-1), torch.ones(6))


def test_cutmix_targets_follow_pasted_area():
    c = 4
    coll = MixupCutmixCollator(c, mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=1.0, label_smoothing=0.0)
    assert coll.mix.p == [0.0, 1.0]
    torch.manual_seed(0)
    for seed in range(5):
        feats = features_batch(n=4, num_classes=c, size=16, seed=seed)
        x = torch.stack([f["pixel_values"] for f in feats])
        batch = coll(feats)
        pasted = (batch["pixel_values"] != x).any(1)[0].float().mean().item()  # fraction from the partner
        lam = 1 - pasted
        onehot = torch.eye(c)[torch.tensor([f["labels"] for f in feats])]
        torch.testing.assert_close(batch["labels"], lam * onehot + (1 - lam) * onehot.roll(1, 0))


def test_prob_and_switch_off():
    feats = features_batch()
    x = torch.stack([f["pixel_values"] for f in feats])
    never = MixupCutmixCollator(5, prob=0.0, label_smoothing=0.2)
    out = never(feats)
    assert torch.equal(out["pixel_values"], x)
    torch.testing.assert_close(out["labels"], smooth_one_hot(torch.tensor([f["labels"] for f in feats]), 5, 0.2))
    coll = MixupCutmixCollator(5)
    torch.manual_seed(0)
    mixed = coll(feats)
    assert mixed["labels"].shape == (6, 5) and not torch.equal(mixed["pixel_values"], x)
    torch.testing.assert_close(mixed["labels"].sum(-1), torch.ones(6))
    coll.mixup_enabled = False  # DeiT-LT after the DRW epoch: plain int labels, no mixing
    off = coll(feats)
    assert off["labels"].dtype == torch.long and off["labels"].tolist() == [0, 1, 2, 3, 4, 0]
    assert torch.equal(off["pixel_values"], x)
