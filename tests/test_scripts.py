"""The scripts end to end on digits (real 8x8 images upscaled to 32 px), tiny models, a few steps each."""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import run_eval  # noqa: E402
import run_finetune  # noqa: E402
import run_mgp  # noqa: E402

from trainers.mgp import RECONSTRUCTIONS_FILE, reconstruction_images  # noqa: E402

DATA = ["--dataset_name", "digits", "--imbalance_factor", "10", "--normalization", "digits"]
TINY = [
    "--config_name",
    "tiny",
    "--image_size",
    "32",
    "--patch_size",
    "4",
    "--config_overrides",
    "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64,"
    "decoder_hidden_size=32,decoder_num_hidden_layers=1,decoder_num_attention_heads=2,decoder_intermediate_size=64",
]
FAST = [
    "--per_device_train_batch_size",
    "16",
    "--per_device_eval_batch_size",
    "64",
    "--disable_tqdm",
    "true",
    "--report_to",
    "none",
    "--seed",
    "0",
]


@pytest.fixture(scope="module")
def mgp_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("mgp")
    run_mgp.main(DATA + TINY + FAST + ["--output_dir", str(out), "--max_steps", "2", "--save_strategy", "no"])
    return out


@pytest.fixture(scope="module")
def finetuned(mgp_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("finetune")
    metrics = run_finetune.main(
        DATA
        + FAST
        + [
            "--model_name_or_path",
            str(mgp_dir),
            "--output_dir",
            str(out),
            "--max_steps",
            "4",
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "2",
            "--save_strategy",
            "steps",
            "--save_steps",
            "2",
            "--base_learning_rate",
            "2e-3",  # the MAE rule: learning rate 2e-3 * 16 / 256 = 1.25e-4
        ]
    )
    return out, metrics


def test_mgp_output_carries_prior_and_processor(mgp_dir):
    config = json.loads((mgp_dir / "config.json").read_text())
    counts = json.loads((mgp_dir / "class_counts.json").read_text())
    assert (
        config["class_counts"] == counts and len(counts) == 10 and counts[0] / counts[-1] == pytest.approx(10, rel=0.1)
    )
    assert (mgp_dir / "preprocessor_config.json").exists() and (mgp_dir / "model.safetensors").exists()
    assert json.loads((mgp_dir / "long_tailed_indices.json").read_text())["indices"]


def test_mgp_writes_reconstruction_grid(mgp_dir):
    from PIL import Image

    path = mgp_dir / RECONSTRUCTIONS_FILE
    assert path.stat().st_size > 0
    with Image.open(path) as image:
        image.load()
        width, height = image.size
    assert image.format == "PNG" and width > 0 and height > width  # 8 rows of 6 columns (norm-pix adds 2)


def test_mgp_reconstruction_images_fall_back_to_unaugmented_training_images():
    from types import SimpleNamespace

    from datasets import Dataset

    from modeling_livt.data.digits import load_digits_dataset
    from modeling_livt.data.transforms import build_image_processor

    digits = load_digits_dataset()
    processor = build_image_processor(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    train = digits["train"]
    prepared = SimpleNamespace(
        data=SimpleNamespace(validation=None, train=train, image_column="image"), image_processor=processor
    )
    images, split = reconstruction_images(prepared, 4)
    assert split == "train" and images.shape == (4, 3, 32, 32)
    indices = np.linspace(0, len(train) - 1, 4).round().astype(int)  # spread over the (class-sorted) split
    expected = processor(images=[train[int(i)]["image"].convert("RGB") for i in indices], return_tensors="pt")
    torch.testing.assert_close(images, expected["pixel_values"])
    streamed = Dataset.from_dict({"image": [train[i]["image"] for i in range(5)]}).to_iterable_dataset()
    prepared.data.train = streamed
    images, _ = reconstruction_images(prepared, 3)
    expected = processor(images=[train[i]["image"].convert("RGB") for i in range(3)], return_tensors="pt")
    torch.testing.assert_close(images, expected["pixel_values"])
    prepared.data.validation = digits["validation"]
    assert reconstruction_images(prepared, 2)[1] == "validation"


def test_finetune_writes_loadable_model_card_plots_and_results(finetuned, mgp_dir):
    out, metrics = finetuned
    for name in (
        "model.safetensors",
        "config.json",
        "preprocessor_config.json",
        "README.md",
        "eval_results.json",
        "per_class_accuracy.png",
        "reliability_diagram.png",
        "class_counts.json",
        "long_tailed_indices.json",
        "modeling_livt.py",
    ):
        assert (out / name).exists(), name
    results = json.loads((out / "eval_results.json").read_text())
    assert results["split"] == "test" and results["num_examples"] == 300  # the balanced digits test split
    assert results["accuracy"] == pytest.approx(metrics["accuracy"])
    # full fine-tuning trains every parameter of the saved model
    train_results = json.loads((out / "train_results.json").read_text())
    from modeling_livt import LiVTForImageClassification

    saved_parameters = sum(p.numel() for p in LiVTForImageClassification.from_pretrained(out).parameters())
    assert train_results["trainable_parameters"] == train_results["total_parameters"] == saved_parameters
    card = (out / "README.md").read_text()
    assert "model-index" in card and "many_shot_accuracy" in card and "few_shot_accuracy" in card
    assert "per_class_accuracy.png" in card and "pipeline(" in card and "bal_bce" in card
    # the recipe lines every classification script shares (trainers.script_builder.shared_recipe)
    for key in ("schedule", "batch size", "learning rate", "mixup / cutmix / label smoothing",
                "RandAugment / random erasing", "image size", "normalization", "sampler"):
        assert f"- **{key}**:" in card, key
    assert "- **learning rate**: 0.000125" in card  # the rate trained with, after --base_learning_rate's scaling
    assert re.search(r"- \*\*schedule\*\*: [\d.]+ (epochs|steps), cosine learning-rate schedule\n", card)
    counts = json.loads((out / "class_counts.json").read_text())
    assert json.loads((out / "config.json").read_text())["class_counts"] == counts
    # the fine-tuned model selected by validation accuracy and the split came from the MGP run's pool
    assert json.loads((out / "long_tailed_indices.json").read_text()) == json.loads(
        (mgp_dir / "long_tailed_indices.json").read_text()
    )


def test_pipeline_matches_our_eval_path(finetuned):
    """pipeline(image-classification, trust_remote_code) gives the same probabilities as run_eval's transform."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

    from modeling_livt.data.digits import load_digits_dataset
    from modeling_livt.data.transforms import EvalTransform

    out, _ = finetuned
    test = load_digits_dataset()["test"].select(range(12))
    model = AutoModelForImageClassification.from_pretrained(out, trust_remote_code=True).eval()
    transform = EvalTransform(AutoImageProcessor.from_pretrained(out))
    with torch.no_grad():
        probs = model(torch.stack([transform(img) for img in test["image"]])).logits.softmax(-1)
    classifier = pipeline("image-classification", model=str(out), trust_remote_code=True, top_k=10)
    for i, predictions in enumerate(classifier(list(test["image"]))):
        by_label = {p["label"]: p["score"] for p in predictions}
        expected = {model.config.id2label[c]: probs[i, c].item() for c in range(10)}
        for label, score in expected.items():
            assert by_label[label] == pytest.approx(score, abs=1e-5)


def test_run_eval_reproduces_finetune_test_metrics(finetuned, tmp_path):
    out, metrics = finetuned
    result = run_eval.main(["--model_name_or_path", str(out), "--output_dir", str(tmp_path), "--index_bounds", "3,7"]
                           + DATA[:4])
    assert result["accuracy"] == pytest.approx(metrics["accuracy"])
    assert result["few_shot_accuracy"] == pytest.approx(metrics["few_shot_accuracy"])
    saved = json.loads((tmp_path / "eval_results.json").read_text())
    assert set(saved) >= {
        "accuracy",
        "many_shot_accuracy",
        "medium_shot_accuracy",
        "few_shot_accuracy",
        "ece",
        "mce",
        "per_class_accuracy",
    }
    assert len(saved["per_class_accuracy"]) == 10
    # DeiT-LT's head/mid/tail split, under the same names as run_deit_lt's results and the card's model-index
    assert saved["index_bounds"] == [3, 7]
    assert {"index_head_accuracy", "index_mid_accuracy", "index_tail_accuracy"} <= set(saved)
    assert "type: index_tail_accuracy" in (tmp_path / "README.md").read_text()
    assert (tmp_path / "per_class_accuracy.png").stat().st_size > 1000
    assert (tmp_path / "reliability_diagram.png").stat().st_size > 1000


def test_finetune_from_scratch_with_json_config_and_bce(tmp_path):
    args = {
        "dataset_name": "digits",
        "imbalance_factor": 10,
        "normalization": "digits",
        "config_name": "tiny",
        "image_size": 32,
        "patch_size": 4,
        "config_overrides": "hidden_size=32,num_hidden_layers=1,num_attention_heads=2,intermediate_size=64",
        "loss_type": "bce",
        "output_dir": str(tmp_path / "o"),
        "max_steps": 2,
        "per_device_train_batch_size": 16,
        "report_to": "none",
        "eval_strategy": "no",
        "save_strategy": "no",
        "load_best_model_at_end": False,
        "disable_tqdm": True,
    }
    (tmp_path / "args.json").write_text(json.dumps(args))
    run_finetune.main([str(tmp_path / "args.json")])
    config = json.loads((tmp_path / "o" / "config.json").read_text())
    assert config["loss_type"] == "bce" and config["num_hidden_layers"] == 1 and config["hidden_size"] == 32


# Each script's --help, run as `python scripts/X.py --help` would (runpy, `__main__`), all in one child process: the
# flags every user meets first.
HELP_FLAGS = {
    "run_mgp.py": ["--output_dir", "--config_name", "--num_reconstruction_images"],
    "run_finetune.py": ["--output_dir", "--index_bounds", "--loss_type", "--sampler", "--freeze_encoder"],
    "run_teacher.py": ["--sam_rho", "--loss_type", "--teacher_arch", "--model_name_or_path", "--drw_epoch",
                       "--output_dir"],
    "run_deit_lt.py": ["--teacher_name_or_path", "--teacher_image_size", "--drw_epoch", "--drw_step",
                       "--no_mixup_after_drw", "--cls_loss_type", "--distillation_alpha", "--drw_beta", "--config_name",
                       "--config_overrides", "--output_dir"],
    "run_eval.py": ["--output_dir", "--index_bounds", "--posthoc"],
    "convert_checkpoint.py": ["--source", "--config_overrides", "deit_lt"],
    "prepare_dataset.py": ["--data_root", "--train_file", "--validation_as_test", "--push_to_hub", "--hub_dataset_id"],
    "demo.py": ["--method", "--output_dir"],
}
HELP_RUNNER = """
import contextlib, io, json, runpy, sys
outputs = {}
for path in sys.argv[1:]:
    sys.argv = [path, "--help"]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            runpy.run_path(path, run_name="__main__")
            code = 0
        except SystemExit as exit:
            code = exit.code or 0
    outputs[path] = [code, buffer.getvalue()]
print(json.dumps(outputs))
"""


def test_every_script_prints_its_help():
    paths = [str(ROOT / "scripts" / name) for name in HELP_FLAGS]
    result = subprocess.run([sys.executable, "-c", HELP_RUNNER, *paths], capture_output=True, text=True,
                            timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    outputs = json.loads(result.stdout.splitlines()[-1])
    for name, flags in HELP_FLAGS.items():
        code, text = outputs[str(ROOT / "scripts" / name)]
        assert code == 0, (name, text[-1000:])
        assert "usage:" in text, name
        missing = [flag for flag in flags if flag not in text]
        assert not missing, (name, missing)


def test_scripts_neither_edit_sys_path_nor_import_each_other():
    """A script imports the packages (modeling_livt, trainers), never another script by file name: the same files run
    from a checkout (`python scripts/X.py`) and from the wheel (package modeling_livt_scripts)."""
    paths = sorted((ROOT / "scripts").glob("*.py"))
    script_modules = {path.stem for path in paths} | {"_cli"}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "path":
                assert not (isinstance(node.value, ast.Name) and node.value.id == "sys"), f"{path.name}: sys.path"
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert not (node.module == "sys" and any(a.name == "path" for a in node.names)), path.name
                imported = [node.module or ""] if node.level == 0 else [f"relative import of {node.module}"]
            else:
                continue
            for module in imported:
                assert module.split(".")[0] not in script_modules, f"{path.name} imports the script {module}"
                assert not module.startswith("relative import"), f"{path.name}: {module}"


def test_streaming_without_max_steps_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="--streaming needs --max_steps"):
        run_finetune.main(DATA + TINY + FAST + ["--streaming", "true", "--output_dir", str(tmp_path)])


def test_zero_image_class_under_balanced_loss_names_the_class(tmp_path):
    # 12 training images cannot cover 10 classes with the long tail: some class ends up empty
    with pytest.raises(ValueError, match=r"Class \d has 0 training images.*Add images of that class"):
        run_finetune.main(
            DATA + TINY + FAST + ["--max_train_samples", "12", "--output_dir", str(tmp_path), "--max_steps", "1"]
        )


def test_unknown_config_override_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown config key.*hiden_size.*Did you mean .hidden_size."):
        run_finetune.main(
            DATA
            + FAST
            + [
                "--config_name",
                "tiny",
                "--config_overrides",
                "hiden_size=3",
                "--output_dir",
                str(tmp_path),
                "--max_steps",
                "1",
            ]
        )


def test_streaming_finetune_runs(tmp_path):
    metrics = run_finetune.main(
        DATA
        + TINY
        + FAST
        + [
            "--streaming",
            "true",
            "--max_steps",
            "3",
            "--output_dir",
            str(tmp_path),
            "--eval_strategy",
            "no",
            "--save_strategy",
            "no",
            "--load_best_model_at_end",
            "false",
            "--dataloader_num_workers",
            "2",
        ]
    )
    assert 0.0 <= metrics["accuracy"] <= 1.0
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert state["global_step"] == 3


def test_streaming_two_processes_see_each_example_once_per_epoch(tmp_path):
    out = tmp_path / "seen.json"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(ROOT / "tests" / "ddp_stream_check.py"),
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    seen = json.loads(out.read_text())
    per_process = seen["per_process"]
    assert len(per_process) == 2 and all(per_process)  # both processes received batches
    everything = [i for indices in per_process for i in indices]
    assert len(everything) == len(set(everything)) == seen["num_examples"]


# ----------------------------------------------------------------------------------------- model flags on a checkpoint
@pytest.fixture(scope="module")
def tiny_mgp_checkpoint(tmp_path_factory):
    """A tiny saved MGP model (32 px, patch 4, mask ratio 0.75), as run_mgp.py saves one."""
    import modeling_livt as ml
    from tests.helpers import tiny_livt_config

    out = tmp_path_factory.mktemp("tiny_mgp")
    torch.manual_seed(0)
    ml.LiVTForMaskedImageModeling(tiny_livt_config()).save_pretrained(out)
    return out


def _mgp_from(checkpoint, tmp_path, *flags):
    return run_mgp.build_trainer(DATA + FAST + ["--model_name_or_path", str(checkpoint), "--output_dir",
                                                str(tmp_path), *flags])


def test_mgp_from_a_checkpoint_applies_the_explicit_model_flags(tiny_mgp_checkpoint, tmp_path):
    from safetensors.torch import load_file

    trainer, prepared = _mgp_from(
        tiny_mgp_checkpoint, tmp_path, "--mask_ratio", "0.5", "--image_size", "64", "--drop_path_rate", "0.1",
        "--config_overrides", "norm_pix_loss=false,layer_norm_eps=1e-05,hidden_size=32", "--patch_size", "4",
        "--attn_implementation", "eager",
    )
    model, config = trainer.model, trainer.model.config
    assert (config.mask_ratio, config.image_size, config.drop_path_rate) == (0.5, 64, 0.1)
    assert (config.norm_pix_loss, config.layer_norm_eps, config._attn_implementation) == (False, 1e-5, "eager")
    # --image_size: position embeddings resized to the 16 x 16 grid, the data transformed to 64 px
    assert model.livt.embeddings.position_embeddings.shape[1] == model.decoder.decoder_pos_embed.shape[1] == 257
    assert prepared.image_processor.crop_size["height"] == 64
    # the checkpoint's weights, and the mask ratio in the forward
    saved = load_file(str(tiny_mgp_checkpoint / "model.safetensors"))
    torch.testing.assert_close(model.livt.layers[0].mlp.fc1.weight, saved["livt.layers.0.mlp.fc1.weight"])
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 64, 64)).mask.mean().item() == 0.5


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--patch_size", "8"], r"--patch_size 8 \(the checkpoint has patch_size=4\)"),
        (["--config_overrides", "hidden_size=64"], r"--config_overrides hidden_size=64 \(the checkpoint has "),
        (["--config_overrides", "num_attention_heads=4"], r"num_attention_heads=4 \(the checkpoint has "),
        (["--config_overrides", "decoder_num_hidden_layers=2"], r"decoder_num_hidden_layers=2 \(the checkpoint"),
        (["--config_name", "base"], "--config_name base builds a model from scratch"),
        (["--mask_ratio", "1.0"], r"mask_ratio=1.0 must be in \[0, 1\)"),
        (["--loss_type", "bce"], "--loss_type bce: MGP's loss is the masked-patch reconstruction"),
        (["--mixup", "0.5"], "--mixup 0.5: MGP trains on MAE's transform"),
    ],
)
def test_mgp_from_a_checkpoint_refuses_what_its_weights_cannot_take(tiny_mgp_checkpoint, tmp_path, flags, message):
    with pytest.raises(ValueError, match=message):
        _mgp_from(tiny_mgp_checkpoint, tmp_path, *flags)


def test_finetune_from_a_checkpoint_applies_or_refuses_the_model_flags(tiny_mgp_checkpoint, tmp_path):
    base = DATA + FAST + ["--model_name_or_path", str(tiny_mgp_checkpoint), "--output_dir", str(tmp_path)]
    script = run_finetune.FinetuneScript(base + ["--config_overrides", "pooling=cls,layer_norm_eps=1e-05",
                                                 "--image_size", "16"])
    trainer = script.build_trainer()
    assert (trainer.model.config.pooling, trainer.model.config.layer_norm_eps) == ("cls", 1e-5)
    assert trainer.model.config.image_size == 16 and script.prepared.image_processor.size["height"] == 16
    for flags, message in [(["--config_overrides", "intermediate_size=128"], "intermediate_size=128 .the checkpoint"),
                           (["--patch_size", "2"], "--patch_size 2 .the checkpoint has patch_size=4."),
                           (["--config_name", "small"], "--config_name small builds a model from scratch")]:
        with pytest.raises(ValueError, match=message):
            run_finetune.FinetuneScript(base + flags).build_trainer()


def test_optim_is_refused_before_the_data_is_loaded(tmp_path, monkeypatch):
    import trainers.script_builder as builder

    monkeypatch.setattr(builder, "prepare_data", lambda *a, **k: pytest.fail("data loaded before the refusal"))
    with pytest.raises(ValueError, match="--optim adamw_8bit is not supported.*adamw_torch_fused, adamw_torch, sgd"):
        run_finetune.main(DATA + TINY + FAST + ["--output_dir", str(tmp_path), "--optim", "adamw_8bit"])
    with pytest.raises(ValueError, match="--optim galore_adamw is not supported"):
        run_mgp.main(DATA + TINY + FAST + ["--output_dir", str(tmp_path), "--optim", "galore_adamw"])
    script = run_finetune.FinetuneScript(DATA + TINY + FAST + ["--output_dir", str(tmp_path), "--optim", "adagrad"])
    monkeypatch.undo()
    assert type(script.build_trainer().create_optimizer()) is torch.optim.Adagrad
