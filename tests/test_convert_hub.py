"""Hub-ready ports: the official evaluation transform as the saved processor, the model card of a ported checkpoint
(with the paper's numbers in model-index), and `--push_to_hub` failing before any conversion when the Hub is out of
reach. The reference transforms are the official repos' own, written out here with torchvision on PIL images."""

import logging

import numpy as np
import PIL.Image
import pytest
import torch
from huggingface_hub import ModelCard, constants
from sklearn.datasets import load_sample_image
from torchvision import transforms as T
from transformers import AutoImageProcessor

from modeling_livt.data.official_eval import LIVT_DATASET_STATS, official_eval_image_processor
from modeling_livt.data.transforms import NORMALIZATION_STATS
from modeling_livt.hub.converted_card import parse_reported_results, write_converted_model_card
from modeling_livt.hub.repos import HubUnavailableError
from tests.test_convert import HEADS, TINY_TIMM, convert_script, randomize_, save_official, timm_livt_classifier

timm = pytest.importorskip("timm")
from timm.models.deit import VisionTransformerDistilled  # noqa: E402

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
IMAGENET_LT = ((0.479672, 0.457713, 0.407721), (0.278976, 0.271203, 0.286062))  # LiVT's util/datasets.py


def photo() -> PIL.Image.Image:
    """A real photograph, not square (scikit-learn's china.jpg, 640 x 427)."""
    return PIL.Image.fromarray(load_sample_image("china.jpg"))


def official_resize(family: str, size: int) -> int | None:
    """The shorter side the official eval transforms resize to (None: no resize)."""
    if family == "livt":  # XuZhengzhuo/LiVT util/datasets.py build_transform(is_train=False)
        crop_pct = 224 / 256 if size <= 224 else 1.0
        return int(size / crop_pct)
    return int((256 / 224) * size) if size > 32 else None  # val-iisc/DeiT-LT datasets.py build_transform_deit


def official_eval(family: str, size: int, mean, std) -> T.Compose:
    """The official eval transform: torchvision on PIL images, bicubic (interpolation=3), as both repos write it."""
    resize = official_resize(family, size)
    steps = [T.Resize(resize, interpolation=PIL.Image.BICUBIC), T.CenterCrop(size)] if resize else []
    return T.Compose(steps + [T.ToTensor(), T.Normalize(mean, std)])


def floor_centred_eval(family: str, size: int, mean, std, image: PIL.Image.Image) -> torch.Tensor:
    """The official transform with the crop anchored at floor(margin / 2), as transformers' center crop does (by
    design, transformers PR #40856); torchvision's CenterCrop rounds half to even instead."""
    resized = T.Resize(official_resize(family, size), interpolation=PIL.Image.BICUBIC)(image)
    width, height = resized.size
    cropped = T.functional.crop(resized, (height - size) // 2, (width - size) // 2, size, size)
    return T.Normalize(mean, std)(T.ToTensor()(cropped))


@pytest.mark.parametrize(
    "family, size, expected_resize",
    [("livt", 224, 256), ("livt", 384, 384), ("livt", 32, 36), ("deit_lt", 224, 256), ("deit_lt", 384, 438)],
)
@pytest.mark.parametrize("box", [None, (0, 0, 512, 384)], ids=["640x427", "512x384"])
def test_saved_processor_reproduces_the_official_eval_transform(tmp_path, family, size, expected_resize, box):
    assert official_resize(family, size) == expected_resize  # the rules, stated once more by hand
    mean, std = IMAGENET_LT if family == "livt" else IMAGENET
    official_eval_image_processor(family, size, mean, std).save_pretrained(tmp_path)
    image = photo() if box is None else photo().crop(box)
    official = official_eval(family, size, mean, std)(image)
    floor_centred = floor_centred_eval(family, size, mean, std, image)
    assert official.shape == floor_centred.shape == (3, size, size)

    # PIL backend: resize, crop size, statistics and arithmetic of the official pipeline, bit for bit ...
    pil = AutoImageProcessor.from_pretrained(tmp_path, backend="pil")
    torch.testing.assert_close(pil(images=image, return_tensors="pt")["pixel_values"][0], floor_centred, atol=0, rtol=0)
    # ... and the crop lands where torchvision's does, except on an axis whose margin is 3 (mod 4): there round-half-
    # to-even goes one pixel further than floor (640x427 at 256 px: 383 - 224 = 159)
    width, height = T.Resize(expected_resize)(image).size
    shifted = [(height - size) % 4 == 3, (width - size) % 4 == 3]
    if box is None and expected_resize == 256:
        assert shifted == [False, True]  # the case this checks: 383 - 224 = 159
    official_part = tuple(slice(None, -1) if s else slice(None) for s in shifted)
    floor_part = tuple(slice(1, None) if s else slice(None) for s in shifted)
    torch.testing.assert_close(official[(...,) + official_part], floor_centred[(...,) + floor_part], atol=0, rtol=0)
    # what pipeline() loads (torchvision backend): bicubic on uint8 tensors (antialiased when shrinking) rounds
    # differently from PIL on a few values: at most 2 grey levels (2 / 255 / std after normalisation), < 1 % of values
    fast = AutoImageProcessor.from_pretrained(tmp_path)
    difference = (fast(images=image, return_tensors="pt")["pixel_values"][0] - floor_centred).abs()
    grey_levels = difference * torch.tensor(std)[:, None, None] * 255
    assert grey_levels.max() < 2 + 1e-3
    assert (grey_levels > 0.5).float().mean() < 0.01


def test_deit_lt_small_images_are_only_normalised(tmp_path):
    official_eval_image_processor("deit_lt", 32, *IMAGENET).save_pretrained(tmp_path)
    image = PIL.Image.fromarray(np.asarray(photo())[100:132, 200:232])
    expected = official_eval("deit_lt", 32, *IMAGENET)(image)
    for backend in ("pil", "torchvision"):
        got = AutoImageProcessor.from_pretrained(tmp_path, backend=backend)(images=image, return_tensors="pt")
        torch.testing.assert_close(got["pixel_values"][0], expected, atol=1e-6, rtol=0)


def test_livt_statistics_match_the_training_presets():
    assert LIVT_DATASET_STATS["ImageNet-LT"] == NORMALIZATION_STATS["imagenet_lt"]
    assert LIVT_DATASET_STATS["iNat18"] == NORMALIZATION_STATS["inat18"]


# ---------------------------------------------------------------------------------------------------------------------
# The processor convert_checkpoint saves
# ---------------------------------------------------------------------------------------------------------------------
def _processor_json(folder):
    processor = AutoImageProcessor.from_pretrained(folder)
    return processor.size, processor.do_center_crop, tuple(processor.image_mean), tuple(processor.image_std)


def test_livt_port_uses_the_checkpoint_dataset_statistics(tmp_path, caplog):
    checkpoint = save_official(tmp_path / "inat.pth", timm_livt_classifier().state_dict(), dataset="iNat18")
    convert_script.main(["--source", "livt", "--checkpoint", str(checkpoint), "--output_dir", str(tmp_path / "a"),
                         "--config_overrides", HEADS])
    size, crop, mean, std = _processor_json(tmp_path / "a")
    assert (size, crop) == ({"shortest_edge": 36}, True)  # LiVT at 32 px: int(32 / 0.875), then crop 32
    assert (mean, std) == ((0.466, 0.471, 0.380), (0.195, 0.194, 0.192))

    # no dataset in the args: ImageNet's statistics and a warning that says what to pass
    bare = save_official(tmp_path / "bare.pth", timm_livt_classifier().state_dict(), model="vit_custom")
    with caplog.at_level(logging.WARNING, logger="modeling_livt.data.official_eval"):
        convert_script.main(["--source", "livt", "--checkpoint", str(bare), "--output_dir", str(tmp_path / "b"),
                             "--config_overrides", HEADS, "--model_card", "false"])
    assert "--normalization imagenet_lt" in caplog.text
    assert _processor_json(tmp_path / "b")[2:] == IMAGENET
    # an explicit preset wins
    convert_script.main(["--source", "livt", "--checkpoint", str(checkpoint), "--output_dir", str(tmp_path / "c"),
                         "--config_overrides", HEADS, "--normalization", "cifar"])
    assert _processor_json(tmp_path / "c")[2:] == NORMALIZATION_STATS["cifar"]


def test_deit_lt_port_saves_deits_transform(tmp_path):
    reference = randomize_(VisionTransformerDistilled(**TINY_TIMM, num_classes=5))
    checkpoint = save_official(tmp_path / "deit_lt.pth", reference.state_dict(), dataset="ImageNet-LT")
    convert_script.main(["--source", "deit_lt", "--checkpoint", str(checkpoint), "--output_dir", str(tmp_path / "o"),
                         "--config_overrides", HEADS])
    size, crop, mean, std = _processor_json(tmp_path / "o")
    # DeiT-LT: no crop at 32 px and ImageNet's statistics whatever the dataset
    assert (size, crop, (mean, std)) == ({"height": 32, "width": 32}, False, IMAGENET)


# ---------------------------------------------------------------------------------------------------------------------
# Model card
# ---------------------------------------------------------------------------------------------------------------------
def test_card_carries_the_papers_numbers_and_the_transform(tmp_path):
    checkpoint = save_official(tmp_path / "livt_inat18.pth", timm_livt_classifier().state_dict(),
                               dataset="ImageNet-LT", cls_num=[50, 20, 10, 5, 2])
    out = tmp_path / "livt-tiny"
    convert_script.main([
        "--source", "livt", "--checkpoint", str(checkpoint), "--output_dir", str(out), "--config_overrides", HEADS,
        "--reported_dataset", "ImageNet-LT", "--reported_results", "few=41.0,accuracy=60.9,many=73.6,medium=56.4",
        "--source_url", "https://example.org/livt_inat18.pth",
    ])
    card = ModelCard.load(out / "README.md")
    results = {r.metric_type: r for r in card.data.eval_results}
    assert {k: r.metric_value for k, r in results.items()} == {
        "accuracy": 0.609, "many_shot_accuracy": 0.736, "medium_shot_accuracy": 0.564, "few_shot_accuracy": 0.41}
    first = results["accuracy"]
    assert (first.dataset_name, first.dataset_split, first.verified) == ("ImageNet-LT", "test", False)
    assert first.source_url == "https://arxiv.org/abs/2212.02015" and "Learning Imbalanced Data" in first.source_name
    assert card.data.pipeline_tag == "image-classification" and card.data.library_name == "transformers"
    text = card.text
    assert "`livt_inat18.pth`" in text and "(https://example.org/livt_inat18.pth)" in text
    assert "https://github.com/XuZhengzhuo/LiVT" in text and "--source livt" in text
    # the table in the paper's order, whatever order the flags came in
    rows = [line for line in text.splitlines() if line.endswith(" % |")]
    assert rows == ["| Top-1 accuracy | 60.9 % |", "| Many-shot accuracy | 73.6 % |",
                    "| Medium-shot accuracy | 56.4 % |", "| Few-shot accuracy | 41.0 % |"]
    assert "resize the shorter side to 36 px (bicubic); center crop 32 x 32" in text
    assert "mean (0.479672, 0.457713, 0.407721)" in text
    assert "| classes | 5 |" in text and "training images (from the checkpoint's args) | 87, imbalance 25 |" in text
    assert 'from_pretrained("livt-tiny", trust_remote_code=True)' in text


def test_card_without_reported_numbers_has_no_results_section(tmp_path):
    reference = randomize_(VisionTransformerDistilled(**TINY_TIMM, num_classes=5))
    checkpoint = save_official(tmp_path / "d.pth", reference.state_dict())
    out = tmp_path / "o"
    convert_script.main(["--source", "deit_lt", "--checkpoint", str(checkpoint), "--output_dir", str(out),
                         "--config_overrides", HEADS, "--hub_model_id", "me/deit-lt-tiny"])
    card = ModelCard.load(out / "README.md")
    assert card.data.eval_results is None and "reported by the paper" not in card.text
    assert "arxiv.org/abs/2404.02900" in card.text and "val-iisc/DeiT-LT" in card.text
    assert 'pipeline("image-classification", model="me/deit-lt-tiny", trust_remote_code=True)' in card.text


@pytest.mark.parametrize(
    "text, message",
    [
        ("accuracy=60.9,top5=80", r"unknown reported metric 'top5'; use one of \["),
        ("accuracy=high", r"reported accuracy='high' is not a number"),
        ("accuracy=0.609,few=141", r"reported few=141.0 is not a percentage between 0 and 100"),
        ("accuracy", r"'accuracy' is not key=value"),
        ("overall=60.9,accuracy=61", r"'accuracy' is given twice"),
    ],
)
def test_bad_reported_results_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        parse_reported_results(text)


def test_reported_results_need_their_dataset(tmp_path):
    with pytest.raises(ValueError, match="--reported_results needs --reported_dataset"):
        convert_script.main(["--source", "livt", "--checkpoint", str(tmp_path / "x.pth"), "--output_dir",
                             str(tmp_path / "o"), "--reported_results", "accuracy=60.9"])
    with pytest.raises(ValueError, match="unknown reported metrics"):
        write_converted_model_card(tmp_path, None, "livt", "x.pth", None, reported_results={"top5": 0.8})


# ---------------------------------------------------------------------------------------------------------------------
# --push_to_hub
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture
def livt_checkpoint(tmp_path):
    return save_official(tmp_path / "livt.pth", timm_livt_classifier().state_dict(), dataset="ImageNet-LT")


@pytest.fixture
def conversions(monkeypatch):
    """Records calls to the conversion, so tests can assert it never started."""
    calls = []
    real = convert_script.convert_checkpoint
    monkeypatch.setattr(convert_script, "convert_checkpoint", lambda *a, **k: calls.append(a) or real(*a, **k))
    return calls


def push_argv(checkpoint, out):
    return ["--source", "livt", "--checkpoint", str(checkpoint), "--output_dir", str(out), "--config_overrides", HEADS,
            "--push_to_hub", "--hub_model_id", "me/livt-tiny", "--hub_token", "hf_not_a_real_token"]


def test_push_offline_fails_before_converting(tmp_path, livt_checkpoint, conversions, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "out"
    with pytest.raises(HubUnavailableError, match=r"--push_to_hub needs the Hugging Face Hub, but HF_HUB_OFFLINE=1 "
                       r".*Convert without --push_to_hub and upload the output folder later with `hf upload "
                       r"me/livt-tiny .*out`"):
        convert_script.main(push_argv(livt_checkpoint, out))
    assert conversions == [] and not out.exists()


def test_push_without_network_fails_before_converting(tmp_path, livt_checkpoint, conversions, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: connection refused
    out = tmp_path / "out"
    with pytest.raises(HubUnavailableError, match=r"could not create or reach the Hub repository 'me/livt-tiny' at "
                       r"http://127.0.0.1:9 \(ConnectError.*Check the network and the token"):
        convert_script.main(push_argv(livt_checkpoint, out))
    assert conversions == [] and not out.exists()


def test_push_creates_the_repo_first_and_uploads_the_folder(tmp_path, livt_checkpoint, monkeypatch):
    from huggingface_hub import HfApi, RepoUrl
    from huggingface_hub.hf_api import CommitInfo

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    out = tmp_path / "out"
    events = []

    def create_repo(self, repo_id, **kwargs):
        events.append(("create", repo_id, kwargs.get("exist_ok"), out.exists()))
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, repo_id, folder_path, **kwargs):
        events.append(("upload", repo_id, sorted(p.name for p in out.iterdir())))
        return CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/1", commit_message="",
                          commit_description="", oid="1")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    convert_script.main(push_argv(livt_checkpoint, out))
    assert events[0] == ("create", "me/livt-tiny", True, False)  # before anything was written
    assert events[1][:2] == ("upload", "me/livt-tiny")
    assert {"README.md", "config.json", "model.safetensors", "preprocessor_config.json"} <= set(events[1][2])
    assert 'model="me/livt-tiny"' in (out / "README.md").read_text()


def test_push_needs_a_repo_id(tmp_path, livt_checkpoint, conversions):
    with pytest.raises(ValueError, match="--push_to_hub needs --hub_model_id"):
        convert_script.main(["--source", "livt", "--checkpoint", str(livt_checkpoint), "--output_dir",
                             str(tmp_path / "o"), "--push_to_hub"])
    assert conversions == []
