"""scripts/prepare_dataset.py on tiny trees written in the exact syntax of each benchmark's official split files."""

import io
import json
import sys
import zlib
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import pytest
from datasets import IterableDataset, load_dataset
from huggingface_hub import DatasetCard
from huggingface_hub import constants as hub_constants

from modeling_livt.data.loading import DataOptions, load_image_datasets
from modeling_livt.data.long_tail import CLASS_COUNTS_FILE
from modeling_livt.data.split_files import SplitFileError, read_json_split
from modeling_livt.hub import repos

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import prepare_dataset  # noqa: E402

SYNSETS = ["n01440764", "n01443537", "n01484850"]
SCENES = ["airfield", "airplane_cabin", "airport_terminal"]


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path, monkeypatch):
    """load_dataset of a local folder caches Arrow files: keep them in the test's folder."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def _save_image(path: Path, seed: int) -> None:
    """A real 6x5 RGB image; PNG bytes whatever the extension (PIL reads by content), JPEG for .jpg files."""
    pixels = np.random.default_rng(seed).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(pixels).save(path, format="JPEG" if path.suffix == ".jpg" else "PNG")


def _write_list(tmp_path: Path, name: str, entries: list[tuple[str, int]], make_files: bool = True) -> Path:
    for i, (relative, _) in enumerate(entries):
        if make_files:
            _save_image(tmp_path / "root" / relative, seed=zlib.crc32(relative.encode()) + i)
    path = tmp_path / name
    path.write_text("".join(f"{relative} {label}\n" for relative, label in entries), encoding="utf-8")
    return path


def _imagenet_lt_tree(tmp_path: Path, train_counts=(5, 3, 1)) -> dict[str, list[tuple[str, int]]]:
    """ImageNet_LT_{train,val,test}.txt: val images come from ImageNet's train folders, test from its val folders."""
    lists = {
        "train": [(f"train/{s}/{s}_{i}.JPEG", c) for c, s in enumerate(SYNSETS) for i in range(train_counts[c])],
        "val": [(f"train/{s}/{s}_{100 + c}.JPEG", c) for c, s in enumerate(SYNSETS)],
        "test": [(f"val/{s}/ILSVRC2012_val_{c * 10 + i:08d}.JPEG", c) for c, s in enumerate(SYNSETS) for i in range(2)],
    }
    for split, entries in lists.items():
        _write_list(tmp_path, f"ImageNet_LT_{split}.txt", entries)
    return lists


def _run(tmp_path: Path, *extra: str, files=("train", "val", "test"), prefix="ImageNet_LT") -> Path:
    out = tmp_path / "out"
    argv = ["--data_root", str(tmp_path / "root"), "--output_dir", str(out), "--min_shards", "2"]
    for split, flag in zip(files, ("--train_file", "--validation_file", "--test_file")):
        argv += [flag, str(tmp_path / f"{prefix}_{split}.txt")]
    prepare_dataset.main(argv + list(extra))
    return out


def _pixels(image: PIL.Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def _check_split(split_ds, entries, root: Path) -> None:
    """Same images (pixel for pixel, decoded from the original files) with the same labels, in any order."""
    assert len(split_ds) == len(entries)
    expected = dict(entries)
    seen = []
    for row in split_ds.cast_column("image", datasets.Image(decode=False)):
        relative = row["image"]["path"]
        assert row["label"] == expected[relative]
        stored = PIL.Image.open(io.BytesIO(row["image"]["bytes"]))
        np.testing.assert_array_equal(_pixels(stored), _pixels(PIL.Image.open(root / relative)))
        assert row["image"]["bytes"] == (root / relative).read_bytes()  # original bytes, not re-encoded
        seen.append(relative)
    assert sorted(seen) == sorted(expected)


def test_imagenet_lt_round_trip(tmp_path):
    lists = _imagenet_lt_tree(tmp_path)
    out = _run(tmp_path)
    ds = load_dataset(str(out))
    assert {k: len(v) for k, v in ds.items()} == {"train": 9, "validation": 3, "test": 6}
    assert ds["train"].features["label"].names == SYNSETS  # the synset folders name the classes
    for split, key in (("train", "train"), ("validation", "val"), ("test", "test")):
        _check_split(ds[split], lists[key], tmp_path / "root")
    assert json.loads((out / CLASS_COUNTS_FILE).read_text()) == [5, 3, 1]
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        f"{s}-{i:05d}-of-00002.parquet" for s in ("test", "train", "validation") for i in range(2)
    ]
    card = DatasetCard.load(out / "README.md").data.to_dict()
    sizes = {s["name"]: s["num_examples"] for s in card["dataset_info"]["splits"]}
    assert sizes == {"train": 9, "validation": 3, "test": 6}
    # rows are shuffled across shards: the class-sorted list does not survive as the row order
    assert ds["train"]["label"] != sorted(ds["train"]["label"])


def test_package_loader_reads_the_folder_map_style_and_streaming(tmp_path):
    _imagenet_lt_tree(tmp_path)
    out = _run(tmp_path)
    data = load_image_datasets(DataOptions(dataset_name=str(out)))
    assert data.class_counts == [5, 3, 1] and data.label_names == SYNSETS
    assert (len(data.train), len(data.validation), len(data.test)) == (9, 3, 6)

    args = DataOptions(dataset_name=str(out), streaming=True, class_counts_file=str(out / CLASS_COUNTS_FILE))
    streamed = load_image_datasets(args)
    assert isinstance(streamed.train, IterableDataset)
    assert streamed.class_counts == [5, 3, 1] and streamed.label_names == SYNSETS
    assert Counter(row["label"] for row in streamed.train) == Counter({0: 5, 1: 3, 2: 1})
    assert streamed.train.num_shards == 2


def test_streamed_folder_reads_its_class_counts_file_without_a_counting_pass(tmp_path, monkeypatch):
    import modeling_livt.data.loading as data_module

    _imagenet_lt_tree(tmp_path)
    out = _run(tmp_path)
    real_count = data_module.class_counts_from_dataset

    def no_counting_pass(*args, **kwargs):
        raise AssertionError("counted the stream although class_counts.json lies beside the shards")

    monkeypatch.setattr(data_module, "class_counts_from_dataset", no_counting_pass)
    assert load_image_datasets(DataOptions(dataset_name=str(out), streaming=True)).class_counts == [5, 3, 1]
    # without the file the loader counts (one pass over the labels)
    (out / CLASS_COUNTS_FILE).unlink()
    monkeypatch.setattr(data_module, "class_counts_from_dataset", real_count)
    assert load_image_datasets(DataOptions(dataset_name=str(out), streaming=True)).class_counts == [5, 3, 1]


def test_places_lt_lists_and_label_names_file(tmp_path):
    lists = {
        "train": [(f"train/{s}/{i:08d}.jpg", c) for c, s in enumerate(SCENES) for i in range((4, 2, 1)[c])],
        "val": [(f"train/{s}/{50 + i:08d}.jpg", c) for c, s in enumerate(SCENES) for i in range(1)],
        "test": [(f"val/{s}/Places365_val_{c * 7 + i:08d}.jpg", c) for c, s in enumerate(SCENES) for i in range(2)],
    }
    for split, entries in lists.items():
        _write_list(tmp_path, f"Places_LT_{split}.txt", entries)
    out = _run(tmp_path, prefix="Places_LT")
    ds = load_dataset(str(out))
    assert ds["test"].features["label"].names == SCENES
    for split, key in (("train", "train"), ("validation", "val"), ("test", "test")):
        _check_split(ds[split], lists[key], tmp_path / "root")  # JPEG files: exact bytes, so exact pixels
    assert json.loads((out / CLASS_COUNTS_FILE).read_text()) == [4, 2, 1]

    names = tmp_path / "names.txt"
    names.write_text("airfield strip\nairplane cabin\nairport terminal\n")
    out = _run(tmp_path, "--label_names_file", str(names), "--overwrite", prefix="Places_LT")
    assert load_dataset(str(out))["train"].features["label"].names == [
        "airfield strip",
        "airplane cabin",
        "airport terminal",
    ]


def _inat_tree(tmp_path: Path) -> tuple[Path, Path, dict[str, list[tuple[str, int]]]]:
    """train2018.json / val2018.json: COCO-style, file_name relative to the root, one annotation per image."""
    categories = [
        {"id": 2, "name": "Aves/Corvus corax", "supercategory": "Aves"},
        {"id": 0, "name": "Plantae/Acer rubrum", "supercategory": "Plantae"},
        {"id": 1, "name": "Insecta/Apis mellifera", "supercategory": "Insecta"},
    ]
    expected: dict[str, list[tuple[str, int]]] = {"train": [], "val": []}

    def split_json(name: str, counts: tuple, first_id: int) -> Path:
        images, annotations = [], []
        for cid, k in enumerate(counts):
            for _ in range(k):
                image_id = first_id + len(images)
                file_name = f"train_val2018/Cat{cid}/{cid}/{name}_{image_id:032x}.jpg"
                _save_image(tmp_path / "root" / file_name, seed=image_id)
                images.append({"id": image_id, "file_name": file_name, "width": 6, "height": 5})
                annotations.append({"id": image_id, "image_id": image_id, "category_id": cid})
                expected[name].append((file_name, cid))
        path = tmp_path / f"{name}2018.json"
        path.write_text(
            json.dumps(
                {"info": {}, "images": images, "annotations": annotations, "categories": categories, "licenses": []}
            )
        )
        return path

    return split_json("train", (6, 3, 1), 0), split_json("val", (1, 1, 1), 1000), expected


def test_inat18_json_with_validation_as_test(tmp_path):
    train, val, expected = _inat_tree(tmp_path)
    out = tmp_path / "inat"
    sizes = prepare_dataset.main(
        [
            "--data_root",
            str(tmp_path / "root"),
            "--train_file",
            str(train),
            "--validation_file",
            str(val),
            "--validation_as_test",
            "--output_dir",
            str(out),
            "--min_shards",
            "1",
        ]
    )
    assert sizes == {"train": 10, "validation": 3}
    ds = load_dataset(str(out))
    assert {k: len(v) for k, v in ds.items()} == {"train": 10, "validation": 3, "test": 3}
    # categories sorted by id: label == category id, names from the categories
    assert ds["train"].features["label"].names == ["Plantae/Acer rubrum", "Insecta/Apis mellifera", "Aves/Corvus corax"]
    for split, key in (("train", "train"), ("validation", "val"), ("test", "val")):
        _check_split(ds[split], expected[key], tmp_path / "root")
    assert ds["test"]["label"] == ds["validation"]["label"]  # the same files, not a copy
    assert not any("test" in p.name for p in (out / "data").iterdir())
    assert json.loads((out / CLASS_COUNTS_FILE).read_text()) == [6, 3, 1]
    data = load_image_datasets(DataOptions(dataset_name=str(out)))
    assert data.class_counts == [6, 3, 1] and len(data.test) == 3


def test_json_category_ids_map_to_labels_in_id_order(tmp_path):
    _save_image(tmp_path / "root" / "a.jpg", 0)
    _save_image(tmp_path / "root" / "b.jpg", 1)
    path = tmp_path / "train.json"
    path.write_text(
        json.dumps(
            {
                "images": [{"id": "x", "file_name": "a.jpg"}, {"id": "y", "file_name": "b.jpg"}],
                "annotations": [{"image_id": "x", "category_id": 12}, {"image_id": "y", "category_id": 3}],
                "categories": [{"id": 12, "name": "twelve"}, {"id": 3, "name": "three"}, {"id": 7, "name": "seven"}],
            }
        )
    )
    listing = read_json_split(path, tmp_path / "root")
    assert listing.category_names == ["three", "seven", "twelve"]
    assert {r.path: r.label for r in listing.records} == {"a.jpg": 2, "b.jpg": 0}


@pytest.mark.parametrize(
    "line, message",
    [
        (
            "train/n01440764/missing.JPEG 0",
            "ImageNet_LT_train.txt:10: image file 'train/n01440764/missing.JPEG' not found",
        ),
        (
            "train/n01440764/n01440764_0.JPEG 0",
            "ImageNet_LT_train.txt:10: duplicate path 'train/n01440764/n01440764_0.JPEG' (first listed on line 1)",
        ),
        ("train/n01440764/n01440764_0.JPEG -1", "ImageNet_LT_train.txt:10: label -1 of "),
        ("train/n01440764/n01440764_0.JPEG zero", "ImageNet_LT_train.txt:10: label 'zero' of "),
        (
            "train/n01440764/n01440764_0.JPEG 3",
            "ImageNet_LT_train.txt:10: label 3 of 'train/n01440764/n01440764_0.JPEG' is out of range [0, 3)",
        ),
        ("justonefield", "ImageNet_LT_train.txt:10: malformed line 'justonefield'"),
    ],
)
def test_bad_training_line_names_file_and_line(tmp_path, line, message):
    _imagenet_lt_tree(tmp_path)
    with open(tmp_path / "ImageNet_LT_train.txt", "a") as f:
        f.write(line + "\n")
    with pytest.raises(SplitFileError) as err:
        _run(tmp_path, "--num_classes", "3")
    assert message in str(err.value)
    assert not (tmp_path / "out").exists()  # nothing is written before every line is checked


def test_validation_label_out_of_inferred_range_and_cross_split_leak(tmp_path):
    _imagenet_lt_tree(tmp_path)
    with open(tmp_path / "ImageNet_LT_val.txt", "a") as f:
        f.write("train/n01440764/n01440764_100.JPEG 3\n")  # 3 classes inferred from the training list
    with pytest.raises(SplitFileError, match=r"ImageNet_LT_val.txt:4: .*out of range \[0, 3\)"):
        _run(tmp_path)
    _imagenet_lt_tree(tmp_path)
    with open(tmp_path / "ImageNet_LT_test.txt", "a") as f:
        f.write("train/n01440764/n01440764_0.JPEG 0\n")  # a training image listed for testing
    with pytest.raises(
        SplitFileError,
        match=r"ImageNet_LT_test.txt:7: 'train/n01440764/n01440764_0.JPEG' is also "
        r"listed at ImageNet_LT_train.txt:1",
    ):
        _run(tmp_path)


def test_unreadable_image_leaves_nothing_behind(tmp_path):
    _imagenet_lt_tree(tmp_path)
    (tmp_path / "root" / "train" / SYNSETS[1] / f"{SYNSETS[1]}_0.JPEG").write_bytes(b"not an image")
    with pytest.raises(SplitFileError, match=r"ImageNet_LT_train.txt:6: .* is not a readable image"):
        _run(tmp_path)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []


def _json_problem(tmp_path, mutate) -> str:
    train, _, _ = _inat_tree(tmp_path)
    payload = json.loads(train.read_text())
    mutate(payload)
    train.write_text(json.dumps(payload))
    with pytest.raises(SplitFileError) as err:
        prepare_dataset.main(
            ["--data_root", str(tmp_path / "root"), "--train_file", str(train), "--output_dir", str(tmp_path / "out")]
        )
    return str(err.value)


def test_json_errors_name_the_entry(tmp_path):
    def unknown_image(p):
        p["annotations"][4]["image_id"] = 999

    def unknown_category(p):
        p["annotations"][2]["category_id"] = 42

    def no_annotation(p):
        del p["annotations"][7]

    def missing_file(p):
        p["images"][3]["file_name"] = "train_val2018/nowhere.jpg"

    def second_annotation(p):
        p["annotations"].append({"id": 99, "image_id": 0, "category_id": 1})

    assert "train2018.json:annotations[4]: image_id 999 is not in 'images'" in _json_problem(tmp_path, unknown_image)
    # annotation 4 gone: image 4 then has none
    assert "train2018.json:images[4]: image 4" in _json_problem(tmp_path, unknown_image)
    assert "train2018.json:annotations[2]: category_id 42 is not in 'categories'" in _json_problem(
        tmp_path, unknown_category
    )
    assert "train2018.json:images[7]: image 7 ('train_val2018/Cat1/1/train_" in _json_problem(tmp_path, no_annotation)
    assert "has no annotation" in _json_problem(tmp_path, no_annotation)
    assert "train2018.json:images[3]: image file 'train_val2018/nowhere.jpg' not found" in _json_problem(
        tmp_path, missing_file
    )
    assert "train2018.json:annotations[10]: image 0 has a second annotation (first at annotations[0])" in _json_problem(
        tmp_path, second_annotation
    )
    assert "missing or non-list key 'annotations'" in _json_problem(tmp_path, lambda p: p.pop("annotations"))


def test_mixed_formats_and_existing_output_are_refused(tmp_path):
    train, _, _ = _inat_tree(tmp_path)
    _imagenet_lt_tree(tmp_path)
    with pytest.raises(ValueError, match="mix COCO-style .json and text lists"):
        prepare_dataset.main(
            [
                "--data_root",
                str(tmp_path / "root"),
                "--train_file",
                str(train),
                "--validation_file",
                str(tmp_path / "ImageNet_LT_val.txt"),
                "--output_dir",
                str(tmp_path / "o"),
            ]
        )
    _run(tmp_path)
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        _run(tmp_path)


def test_push_to_hub_fails_offline_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    argv = [
        "--data_root",
        str(tmp_path / "root"),
        "--train_file",
        str(tmp_path / "absent.txt"),
        "--output_dir",
        str(tmp_path / "out"),
        "--push_to_hub",
        "--hub_dataset_id",
        "me/imagenet-lt",
    ]
    with pytest.raises(
        RuntimeError,
        match=r"HF_HUB_OFFLINE=1 is set .* `hf upload me/imagenet-lt <output_dir> "
        r"--repo-type dataset`",
    ):
        prepare_dataset.main(argv)
    assert not (tmp_path / "out").exists()

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(ValueError, match="--push_to_hub needs --hub_dataset_id"):
        prepare_dataset.main(argv[:-2])
    monkeypatch.setattr(repos, "get_token", lambda: None)
    with pytest.raises(RuntimeError, match="needs a Hugging Face token"):
        prepare_dataset.main(argv)


def test_push_uploads_only_the_dataset_files(tmp_path, monkeypatch):
    """The Hub calls, checked against HfApi's real signatures (no network): repo created, then one folder upload."""
    import inspect

    from huggingface_hub import HfApi

    calls = []

    class RecordingApi:
        def create_repo(self, *args, **kwargs):
            calls.append(("create_repo", inspect.signature(HfApi.create_repo).bind(self, *args, **kwargs).arguments))
            return "https://huggingface.co/datasets/me/imagenet-lt"

        def upload_folder(self, *args, **kwargs):
            calls.append(
                ("upload_folder", inspect.signature(HfApi.upload_folder).bind(self, *args, **kwargs).arguments)
            )

    monkeypatch.setattr(repos, "HfApi", RecordingApi)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(repos, "get_token", lambda: "hf_test")
    _imagenet_lt_tree(tmp_path)
    out = _run(tmp_path, "--push_to_hub", "--hub_dataset_id", "me/imagenet-lt", "--hub_private")
    (create, created), (upload, uploaded) = calls
    assert create == "create_repo" and created["repo_id"] == "me/imagenet-lt"
    assert created["repo_type"] == "dataset" and created["private"] is True and created["exist_ok"] is True
    assert upload == "upload_folder" and uploaded["folder_path"] == str(out) and uploaded["repo_type"] == "dataset"
    assert uploaded["allow_patterns"] == ["data/*.parquet", "README.md", CLASS_COUNTS_FILE]


def test_finetune_script_streams_the_prepared_folder(tmp_path):
    """What the recipes do with the folder, streamed: one step of a tiny LiVT, class names and counts carried over."""
    import run_finetune

    from modeling_livt import LiVTForImageClassification

    _imagenet_lt_tree(tmp_path)
    data = _run(tmp_path)
    out = tmp_path / "finetune"
    run_finetune.main(
        ["--dataset_name", str(data), "--streaming", "--class_counts_file", str(data / CLASS_COUNTS_FILE),
         "--config_name", "tiny", "--image_size", "32", "--patch_size", "4", "--config_overrides",
         "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64",
         "--per_device_train_batch_size", "4", "--max_steps", "1", "--save_strategy", "no", "--eval_strategy", "no",
         "--output_dir", str(out), "--report_to", "none", "--disable_tqdm", "true"]
    )  # fmt: skip
    model = LiVTForImageClassification.from_pretrained(out)
    assert list(model.config.id2label.values()) == SYNSETS
    assert list(model.config.class_counts) == [5, 3, 1]
    assert json.loads((out / "eval_results.json").read_text())["accuracy"] is not None  # the test split, once
