"""Tests of modeling_livt.data: digits, decoding, the CLI loader and streaming (long-tailed splits: test_long_tail.py).

Expected values come from the papers / published dataset sizes or from formulas written out here.
"""

import dataclasses
import io
import json
import logging

import numpy as np
import PIL.Image
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, IterableDataset, Value
from datasets import Image as ImageFeature
from transformers import HfArgumentParser

from modeling_livt.data.digits import load_digits_dataset
from modeling_livt.data.images import CorruptImageCounter, decode_image_or_raise, filter_corrupt_images, to_rgb
from modeling_livt.data.loading import DataOptions, class_counts_from_dataset, load_image_datasets
from modeling_livt.data.long_tail import (
    carve_validation_split,
    load_split_indices,
    long_tailed_counts,
    make_long_tailed,
    save_split_indices,
)
from trainers.arguments import DataArguments

CIFAR10_LT_100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
CORRUPT = {"bytes": b"\x89PNG\r\n\x1a\n this is not an image", "path": None}


def png_bytes(value=0, size=(4, 4), mode="RGB"):
    buf = io.BytesIO()
    PIL.Image.new(mode, size, (value,) * len(mode)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def digits():
    return load_digits_dataset()


# ---------------------------------------------------------------- digits


def test_digits_splits(digits):
    assert {k: len(v) for k, v in digits.items()} == {"train": 1297, "validation": 200, "test": 300}
    assert class_counts_from_dataset(digits["validation"], "label", 10) == [20] * 10
    assert class_counts_from_dataset(digits["test"], "label", 10) == [30] * 10
    assert sum(class_counts_from_dataset(digits["train"], "label", 10)) == 1297
    feats = digits["train"].features
    assert isinstance(feats["image"], ImageFeature) and feats["label"].names == [str(i) for i in range(10)]
    image = digits["train"][0]["image"]
    assert image.mode == "RGB" and image.size == (32, 32)
    arr = np.asarray(image)
    assert arr.dtype == np.uint8
    # nearest 8 -> 32 upscaling: every 4x4 block is one digit pixel, values are round(v * 255 / 16)
    blocks = arr[:, :, 0].reshape(8, 4, 8, 4)
    assert (blocks == blocks[:, :1, :, :1]).all()
    assert set(np.unique(arr)) <= {round(v * 255 / 16) for v in range(17)}
    assert (arr[..., 0] == arr[..., 1]).all()


def test_digits_splits_are_disjoint_and_deterministic():
    from sklearn.datasets import load_digits

    a = load_digits_dataset(image_size=8)
    b = load_digits_dataset(image_size=8)
    sk = np.rint(load_digits().images * 255 / 16).astype(np.uint8)
    position = {}
    for i, img in enumerate(sk):  # map pixel content -> set of sklearn rows (digits has a few duplicates)
        position.setdefault(img.tobytes(), []).append(i)
    used = []
    for split in ("train", "validation", "test"):
        rows = [np.asarray(im)[:, :, 0].tobytes() for im in a[split]["image"]]
        assert rows == [np.asarray(im)[:, :, 0].tobytes() for im in b[split]["image"]]
        used += rows
    assert all(r in position for r in used)  # real digits, unchanged (8 px: no resize)
    # 1797 images in total, each sklearn row used exactly as often as its content appears
    assert len(used) == 1797
    assert sorted(used) == sorted(img.tobytes() for img in sk)


# ---------------------------------------------------------------- decoding robustness


def test_to_rgb_modes():
    grey = to_rgb(PIL.Image.new("L", (3, 2), 77))
    assert grey.mode == "RGB" and np.asarray(grey).tolist() == [[[77] * 3] * 3] * 2

    rgba = PIL.Image.new("RGBA", (2, 1))
    rgba.putpixel((0, 0), (255, 0, 0, 0))  # fully transparent red -> white background
    rgba.putpixel((1, 0), (0, 0, 0, 255))  # opaque black stays black
    assert np.asarray(to_rgb(rgba)).tolist() == [[[255, 255, 255], [0, 0, 0]]]
    half = PIL.Image.new("RGBA", (1, 1), (0, 0, 0, 128))
    assert abs(int(np.asarray(to_rgb(half))[0, 0, 0]) - round(255 * 127 / 255)) <= 1

    # 16-bit: the 0..65535 range maps onto 0..255 (v / 257), where Pillow's convert would clip at 255.
    sixteen = PIL.Image.fromarray(np.array([[0, 1000, 25700, 65535]], dtype=np.uint16))
    assert sixteen.mode.startswith("I;16")
    assert np.asarray(to_rgb(sixteen))[0, :, 0].tolist() == [0, 4, 100, 255]
    as_int = PIL.Image.fromarray(np.array([[1000, 65535]], dtype=np.int32))  # how 16-bit PNGs open
    assert as_int.mode == "I"
    assert np.asarray(to_rgb(as_int))[0, :, 1].tolist() == [4, 255]
    floats = PIL.Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert np.asarray(to_rgb(floats))[0, :, 2].tolist() == [0, 128, 255]

    pal = PIL.Image.new("P", (1, 1), 1)
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    assert np.asarray(to_rgb(pal)).tolist() == [[[10, 20, 30]]]
    rgb = PIL.Image.new("RGB", (1, 1), (1, 2, 3))
    assert to_rgb(rgb) is rgb


def test_decode_image_or_raise_and_skip():
    good = decode_image_or_raise({"bytes": png_bytes(9), "path": None}, 0)
    assert good.size == (4, 4) and np.asarray(good).max() == 9
    assert decode_image_or_raise(png_bytes(3), 1).getpixel((0, 0)) == (3, 3, 3)
    with pytest.raises(ValueError, match=r"corrupt image at example 7 \(bad\.png\).*--skip_corrupt_images"):
        decode_image_or_raise({"bytes": CORRUPT["bytes"], "path": "bad.png"}, 7)
    counter = CorruptImageCounter()
    assert decode_image_or_raise(CORRUPT, 3, skip_corrupt=True, counter=counter) is None
    assert decode_image_or_raise(CORRUPT, 4, skip_corrupt=True, counter=counter) is None
    assert counter.count == 2 and counter.examples == [(3, None), (4, None)]


def test_filter_corrupt_images_map_style():
    features = Features({"image": ImageFeature(), "label": ClassLabel(num_classes=2)})
    rows = [{"bytes": png_bytes(1), "path": None}, CORRUPT, {"bytes": png_bytes(2), "path": None}]
    ds = Dataset.from_dict({"image": rows, "label": [0, 1, 1]}, features=features)
    counter = CorruptImageCounter()
    clean = filter_corrupt_images(ds, "image", counter)
    assert counter.count == 1 and counter.examples[0][0] == 1
    assert clean["label"][:] == [0, 1]
    assert clean[1]["image"].getpixel((0, 0)) == (2, 2, 2)  # decodes again as PIL


# ---------------------------------------------------------------- DataArguments / load_image_datasets


def test_data_arguments_parse_and_help():
    parser = HfArgumentParser(DataArguments)
    (args,) = parser.parse_args_into_dataclasses(
        ["--imbalance_factor", "100", "--streaming", "--max_train_samples", "5", "--imbalance_profile", "step"]
    )
    assert args.imbalance_factor == 100.0 and args.streaming and args.max_train_samples == 5
    assert args.dataset_name == "digits" and args.split_indices_file is None
    for f in DataArguments.__dataclass_fields__.values():
        assert f.metadata.get("help"), f.name
    with pytest.raises(ValueError, match="imbalance_factor"):
        DataArguments(imbalance_factor=0.5)
    for name in ("max_train_samples", "max_eval_samples"):
        with pytest.raises(ValueError, match=f"{name} must be a positive number of examples, got 0; leave it unset"):
            parser.parse_args_into_dataclasses([f"--{name}", "0"])


def test_data_arguments_are_the_library_options_with_help():
    """The flags (trainers) and the library's `DataOptions` have the same fields and defaults."""
    cli, plain = DataArguments(), DataOptions()
    assert isinstance(cli, DataOptions) and dataclasses.asdict(cli) == dataclasses.asdict(plain)


def test_load_digits_long_tailed_writes_and_resumes(tmp_path, digits):
    out = tmp_path / "run"
    data = load_image_datasets(DataOptions(imbalance_factor=10), seed=0, output_dir=out)
    pool = class_counts_from_dataset(digits["train"], "label", 10)
    targets = long_tailed_counts(max(pool), 10, 10)
    assert data.class_counts == [min(t, n) for t, n in zip(targets, pool)]
    assert class_counts_from_dataset(data.train, "label", 10) == data.class_counts
    assert data.label_names == [str(i) for i in range(10)] and data.num_classes == 10
    assert len(data.validation) == 200 and len(data.test) == 300
    assert json.loads((out / "class_counts.json").read_text()) == data.class_counts
    saved = load_split_indices(out / "long_tailed_indices.json")
    assert saved == data.split_indices

    # a new lt_seed draws another split ...
    other = load_image_datasets(DataOptions(imbalance_factor=10, lt_seed=5))
    assert other.split_indices != saved
    # ... but a resume with the saved indices never re-draws
    resumed = load_image_datasets(
        DataOptions(imbalance_factor=10, lt_seed=5, split_indices_file=str(out / "long_tailed_indices.json")),
        output_dir=tmp_path / "resumed",
    )
    assert resumed.split_indices == saved
    assert resumed.train["label"][:] == data.train["label"][:]
    copy = json.loads((tmp_path / "resumed" / "long_tailed_indices.json").read_text())
    assert copy["indices"] == saved and copy["lt_seed"] == 0  # the copy says how the split was drawn


def test_split_indices_from_another_pool_is_rejected(tmp_path):
    save_split_indices([0, 1], tmp_path / "idx.json", metadata={"pool_size": 99})
    with pytest.raises(ValueError, match="pool of 99"):
        load_image_datasets(DataOptions(split_indices_file=str(tmp_path / "idx.json")))
    # same pool size, other images: a carve drawn with another lt_seed
    root = make_folder_dataset(tmp_path, {"train": [0, 1, 2] * 10})
    args = {"dataset_name": str(root), "image_column_name": "img", "label_column_name": "target", "imbalance_factor": 2,
            "validation_source": "pool"}  # the pool depends on the carve's seed
    load_image_datasets(DataOptions(**args, lt_seed=0), output_dir=tmp_path / "run")
    saved = str(tmp_path / "run" / "long_tailed_indices.json")
    assert load_image_datasets(DataOptions(**args, lt_seed=0, split_indices_file=saved)).train is not None
    with pytest.raises(ValueError, match="different training pool"):
        load_image_datasets(DataOptions(**args, lt_seed=1, split_indices_file=saved))


def test_class_counts_file_agreement(tmp_path):
    data = load_image_datasets(DataOptions(imbalance_factor=10))
    (tmp_path / "ok.json").write_text(json.dumps({str(i): c for i, c in enumerate(data.class_counts)}))
    assert load_image_datasets(DataOptions(imbalance_factor=10, class_counts_file=str(tmp_path / "ok.json")))
    wrong = list(data.class_counts)
    wrong[0] += 1
    (tmp_path / "bad.json").write_text(json.dumps(wrong))
    with pytest.raises(ValueError, match=r"disagrees.*file \[.*data \["):
        load_image_datasets(DataOptions(imbalance_factor=10, class_counts_file=str(tmp_path / "bad.json")))


def test_max_samples_seeded():
    a = load_image_datasets(DataOptions(max_train_samples=50, max_eval_samples=20))
    b = load_image_datasets(DataOptions(max_train_samples=50, max_eval_samples=20))
    assert len(a.train) == 50 and len(a.validation) == 20 and len(a.test) == 20
    assert sum(a.class_counts) == 50
    assert a.train["label"][:] == b.train["label"][:]


def make_folder_dataset(tmp_path, splits, as_parquet=True, label_feature=None):
    """A local dataset folder (HF parquet layout, or save_to_disk) with tiny PNG images."""
    label_feature = label_feature or ClassLabel(names=["cat", "dog", "emu"])
    features = Features({"img": ImageFeature(), "target": label_feature})
    root = tmp_path / "ds"
    built = {}
    for name, labels in splits.items():
        images = [{"bytes": png_bytes(i % 250), "path": None} for i in range(len(labels))]
        built[name] = Dataset.from_dict({"img": images, "target": labels}, features=features)
    if as_parquet:
        for name, ds in built.items():
            (root / "data").mkdir(parents=True, exist_ok=True)
            ds.to_parquet(root / "data" / f"{name}-00000-of-00001.parquet")
    else:
        DatasetDict(built).save_to_disk(root)
    return root


def test_local_folder_carves_stratified_validation_and_keeps_test(tmp_path, caplog):
    labels = [0] * 40 + [1] * 30 + [2] * 20
    root = make_folder_dataset(tmp_path, {"train": labels, "test": [0, 1, 2] * 5})
    args = DataOptions(dataset_name=str(root), image_column_name="img", label_column_name="target")
    with caplog.at_level(logging.WARNING, logger="modeling_livt.data"):
        data = load_image_datasets(args)
    assert "no validation split" in caplog.text
    assert data.label_names == ["cat", "dog", "emu"]
    assert class_counts_from_dataset(data.validation, "target", 3) == [4, 3, 2]  # 10% of each class
    assert data.class_counts == [36, 27, 18]
    assert len(data.test) == 15 and class_counts_from_dataset(data.test, "target", 3) == [5, 5, 5]
    # the carved validation images are not in train (image bytes are unique per row here)
    train_px = {im.getpixel((0, 0)) for im in data.train["img"]}
    val_px = {im.getpixel((0, 0)) for im in data.validation["img"]}
    assert not train_px & val_px

    pct = load_image_datasets(
        DataOptions(
            dataset_name=str(root), image_column_name="img", label_column_name="target", validation_split_percentage=50
        )
    )
    assert class_counts_from_dataset(pct.validation, "target", 3) == [20, 15, 10]


def test_long_tailed_pool_keeps_benchmark_counts_and_validates_on_unused_images(tmp_path, caplog):
    # balanced pool of 3 classes x 20; rho 4 -> counts [20, 10, 5] (the benchmark's), validation from the leftovers
    root = make_folder_dataset(tmp_path, {"train": [0] * 20 + [1] * 20 + [2] * 20, "test": [0, 1, 2]})
    args = DataOptions(dataset_name=str(root), image_column_name="img", label_column_name="target",
                         imbalance_factor=4, validation_split_percentage=25)
    with caplog.at_level(logging.WARNING, logger="modeling_livt.data"):
        data = load_image_datasets(args, output_dir=tmp_path / "out")
    assert data.class_counts == long_tailed_counts(20, 3, 4) == [20, 10, 5]
    # 25% of each class's 20 pool images = 5, capped by what the draw left: class 0 has none left
    assert class_counts_from_dataset(data.validation, "target", 3) == [0, 5, 5]
    assert "classes [0] have fewer unused images" in caplog.text
    train_px = {im.getpixel((0, 0)) for im in data.train["img"]}
    val_px = {im.getpixel((0, 0)) for im in data.validation["img"]}
    assert len(val_px) == 10 and not train_px & val_px  # disjoint from training
    # a resume from the saved split draws the same validation rows
    again = load_image_datasets(DataOptions(
        dataset_name=str(root), image_column_name="img", label_column_name="target", validation_split_percentage=25,
        split_indices_file=str(tmp_path / "out" / "long_tailed_indices.json")))
    assert {im.getpixel((0, 0)) for im in again.validation["img"]} == val_px
    assert again.class_counts == [20, 10, 5]
    # the old protocol stays available: carve from the pool first, then long-tail what is left
    old = load_image_datasets(DataOptions(
        dataset_name=str(root), image_column_name="img", label_column_name="target", imbalance_factor=4,
        validation_split_percentage=25, validation_source="pool"))
    assert class_counts_from_dataset(old.validation, "target", 3) == [5, 5, 5]
    assert old.class_counts == long_tailed_counts(15, 3, 4)
    with pytest.raises(ValueError, match="needs --imbalance_factor"):
        load_image_datasets(DataOptions(dataset_name=str(root), image_column_name="img", label_column_name="target",
                                          validation_source="unused"))


def test_carve_validation_split_seeded():
    ds = Dataset.from_dict({"label": [0] * 10 + [1] * 10})
    t1, v1 = carve_validation_split(ds, "label", 20, seed=0)
    _, v2 = carve_validation_split(ds, "label", 20, seed=0)
    _, v3 = carve_validation_split(ds, "label", 20, seed=1)
    assert v1["label"][:] == [0, 0, 1, 1] and len(t1) == 16
    assert v1._indices.column(0).to_pylist() == v2._indices.column(0).to_pylist()
    assert v1._indices.column(0).to_pylist() != v3._indices.column(0).to_pylist()


def test_carve_validation_split_does_more_than_datasets_train_test_split():
    """Why we keep our carving over `Dataset.train_test_split(stratify_by_column=...)`: every class with two or more
    images gives at least one (a 3-image tail class gets none there), a 1-image class stays in training (it raises
    there), and integer labels need no ClassLabel cast (it raises there). Independent check: per-class counts."""
    labels = [0] * 200 + [1] * 40 + [2] * 7 + [3] * 3 + [4]
    ds = Dataset.from_dict({"label": labels})
    train, val = carve_validation_split(ds, "label", 10, seed=0)
    counts = lambda split: [list(split["label"]).count(c) for c in range(5)]  # noqa: E731
    assert counts(val) == [20, 4, 1, 1, 0] and counts(train) == [180, 36, 6, 2, 1]
    with pytest.raises(ValueError, match="ClassLabel"):
        ds.train_test_split(test_size=0.1, stratify_by_column="label", seed=0)
    as_class_label = ds.cast_column("label", ClassLabel(num_classes=5))
    with pytest.raises(ValueError, match="least populated class"):
        as_class_label.train_test_split(test_size=0.1, stratify_by_column="label", seed=0)
    theirs = as_class_label.select(range(len(labels) - 1)).train_test_split(
        test_size=0.1, stratify_by_column="label", seed=0)["test"]
    assert counts(theirs)[3] == 0  # the 3-image class gives nothing to validation there


def test_missing_columns_listed(tmp_path):
    root = make_folder_dataset(tmp_path, {"train": [0, 1, 2], "validation": [0, 1, 2]}, as_parquet=False)
    with pytest.raises(ValueError, match=r"image_column_name='image'.*\['img', 'target'\]"):
        load_image_datasets(DataOptions(dataset_name=str(root), label_column_name="target"))
    with pytest.raises(ValueError, match=r"label_column_name='label'.*\['img', 'target'\]"):
        load_image_datasets(DataOptions(dataset_name=str(root), image_column_name="img"))


def test_int_labels_out_of_range_name_value_and_row(tmp_path):
    # plain int labels {0, 1, 5}: three classes, so 5 is outside [0, 3)
    root = make_folder_dataset(
        tmp_path, {"train": [0, 1, 5, 1], "validation": [0, 1]}, as_parquet=False, label_feature=Value("int64")
    )
    with pytest.raises(ValueError, match=r"label 5 at row 2"):
        load_image_datasets(DataOptions(dataset_name=str(root), image_column_name="img", label_column_name="target"))


def test_hub_name_offline_is_a_clear_error():
    with pytest.raises(ValueError, match="not a local folder"):
        load_image_datasets(DataOptions(dataset_name="nobody/no-such-dataset-xyz"))


def test_imagefolder(tmp_path):
    for split, n in (("train", 6), ("val", 2)):
        for cls in ("ant", "bee"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                PIL.Image.new("L", (5, 5), i).save(d / f"{i}.png")
    data = load_image_datasets(DataOptions(train_dir=str(tmp_path / "train"), validation_dir=str(tmp_path / "val")))
    assert data.label_names == ["ant", "bee"] and data.class_counts == [6, 6]
    assert len(data.validation) == 4 and data.test is None


def test_skip_corrupt_images_map_style(tmp_path):
    features = Features({"image": ImageFeature(), "label": ClassLabel(num_classes=2)})
    rows = [{"bytes": png_bytes(i), "path": None} for i in range(6)]
    rows[4] = CORRUPT
    ds = Dataset.from_dict({"image": rows, "label": [0, 0, 0, 1, 1, 1]}, features=features)
    root = tmp_path / "corrupt"
    DatasetDict({"train": ds, "validation": ds.select([0, 3])}).save_to_disk(root)
    data = load_image_datasets(DataOptions(dataset_name=str(root), skip_corrupt_images=True))
    assert data.corrupt_images.count == 1 and data.class_counts == [3, 2]
    assert len(data.train) == 5


# ---------------------------------------------------------------- streaming


def _pixel_keys(stream):
    return [(ex["label"], np.asarray(ex["image"]).tobytes()) for ex in stream]


def test_streaming_digits_each_example_once_and_set_epoch_reshuffles(digits):
    data = load_image_datasets(DataOptions(streaming=True, shuffle_buffer_size=64), seed=0)
    assert isinstance(data.train, IterableDataset) and data.train.num_shards == 8
    reference = sorted(_pixel_keys(digits["train"]))
    epoch0 = _pixel_keys(data.train)
    assert sorted(epoch0) == reference  # every example exactly once (multiset equality)
    assert _pixel_keys(data.train) == epoch0  # same epoch, same order
    data.train.set_epoch(1)
    epoch1 = _pixel_keys(data.train)
    assert sorted(epoch1) == reference and epoch1 != epoch0
    assert data.class_counts == class_counts_from_dataset(digits["train"], "label", 10)


def test_streaming_long_tailed_digits_matches_map_style():
    map_style = load_image_datasets(DataOptions(imbalance_factor=10))
    stream = load_image_datasets(DataOptions(imbalance_factor=10, streaming=True))
    assert isinstance(stream.train, IterableDataset)
    assert stream.class_counts == map_style.class_counts
    assert class_counts_from_dataset(stream.train, "label", 10) == map_style.class_counts


def test_true_streaming_local_parquet(tmp_path):
    root = make_folder_dataset(tmp_path, {"train": [0, 0, 0, 1, 2, 2], "validation": [0, 1, 2]})
    args = {"dataset_name": str(root), "image_column_name": "img", "label_column_name": "target", "streaming": True}
    data = load_image_datasets(DataOptions(**args), output_dir=tmp_path / "out")
    assert isinstance(data.train, IterableDataset) and data.label_names == ["cat", "dog", "emu"]
    assert data.class_counts == [3, 1, 2]  # one pass over the labels
    assert json.loads((tmp_path / "out" / "class_counts.json").read_text()) == [3, 1, 2]
    assert sorted(ex["target"] for ex in data.train) == [0, 0, 0, 1, 2, 2]
    # a class_counts_file spares the pass (taken as given when streaming)
    (tmp_path / "cc.json").write_text('{"cat": 30, "dog": 10, "emu": 20}')
    given = load_image_datasets(DataOptions(**args, class_counts_file=str(tmp_path / "cc.json")))
    assert given.class_counts == [30, 10, 20]
    assert load_image_datasets(DataOptions(**args, max_train_samples=2)).class_counts == [2, 0, 0]


# ---------------------------------------------------------------- CIFAR-10-LT from ../shared (optional)


def test_cifar10_lt_from_shared_data(cifar10_dir):
    path = cifar10_dir
    from datasets import load_dataset

    train = load_dataset(str(path), split="train")
    lt = make_long_tailed(train, 100, label_column="label", seed=0)
    assert len(lt) == 12406
    assert class_counts_from_dataset(lt, "label", 10) == CIFAR10_LT_100
