"""`run_finetune.py --peft lora`: a LoRA adapter (peft) on a tiny transformers ViT and on a tiny LiVT MGP checkpoint,
trained a few steps on digits; the adapter reloads with `PeftModel.from_pretrained` to identical logits, the merged
export loads in `pipeline()` with the same logits, the card says what was trained, and the flags are refused alone."""

import json
import sys
from pathlib import Path

import pytest
import torch

peft = pytest.importorskip("peft")

import modeling_livt as ml  # noqa: E402
from tests.helpers import TINY  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import run_finetune  # noqa: E402

DATA = ["--dataset_name", "digits", "--imbalance_factor", "10", "--normalization", "digits"]
FAST = ["--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "64", "--disable_tqdm", "true",
        "--report_to", "none", "--seed", "0", "--use_cpu", "true"]
SHORT = ["--max_steps", "3", "--eval_strategy", "steps", "--eval_steps", "3", "--save_strategy", "steps",
         "--save_steps", "3", "--learning_rate", "1e-2"]


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    """A tiny transformers ViT classifier (3 labels: its head is replaced for digits' 10 classes)."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    out = tmp_path_factory.mktemp("vit")
    torch.manual_seed(0)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=8, num_labels=3)
    ViTForImageClassification(config).save_pretrained(out)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def mgp_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("mgp")
    torch.manual_seed(0)
    ml.LiVTForMaskedImageModeling(ml.LiVTConfig(**TINY)).save_pretrained(out)
    return out


def _train(checkpoint, out, *extra):
    script = run_finetune.FinetuneScript(
        DATA + FAST + SHORT + ["--model_name_or_path", str(checkpoint), "--output_dir", str(out), "--peft", "lora",
                               "--lora_r", "4", "--lora_alpha", "8", *extra]
    )
    metrics = script.run()
    return script, metrics


def _pixels(script, n=6):
    batch = [script.prepared.test[i] for i in range(n)]
    return torch.stack([torch.as_tensor(example["pixel_values"]) for example in batch])


@torch.no_grad()
def _logits(model, pixel_values):
    model.eval()
    return model(pixel_values=pixel_values).logits


@pytest.fixture(scope="module")
def vit_run(vit_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("vit_lora")
    script, metrics = _train(vit_dir, out, "--merge_adapter", "true", "--lora_dropout", "0.05")
    return script, metrics, out


def test_vit_adapter_trains_lora_and_head_only(vit_run, vit_dir):
    from transformers import ViTForImageClassification

    script, metrics, out = vit_run
    model = script.model
    assert isinstance(model, peft.PeftModel)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name or ".modules_to_save." in name for name in trainable)
    assert {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in trainable if "lora_" in name} == {"q_proj",
                                                                                                     "v_proj"}
    assert any("classifier.modules_to_save" in name for name in trainable)
    # trained: LoRA's B starts at zero; the balanced loss is the trainer's (a ViT carries none of its own)
    assert any(p.abs().sum() > 0 for name, p in model.named_parameters() if "lora_B" in name)
    assert not hasattr(model, "labels_loss") and script.trainer_kwargs()["loss_type"] == "bal_bce"
    assert script.trainer_kwargs()["class_counts"] == script.prepared.data.class_counts
    # the frozen base weights are the checkpoint's, untouched by training
    original = ViTForImageClassification.from_pretrained(vit_dir)
    base = model.get_base_model()
    assert torch.equal(base.vit.layers[0].mlp.fc1.weight, original.vit.layers[0].mlp.fc1.weight)
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert (out / "preprocessor_config.json").is_file()


def test_vit_adapter_reloads_to_identical_logits(vit_run, vit_dir):
    from transformers import AutoModelForImageClassification

    script, _, out = vit_run
    pixels = _pixels(script)
    expected = _logits(script.model, pixels)
    data = script.prepared.data
    base = AutoModelForImageClassification.from_pretrained(
        vit_dir, num_labels=data.num_classes, id2label=data.id2label, label2id=data.label2id,
        ignore_mismatched_sizes=True,
    )
    loaded = peft.PeftModel.from_pretrained(base, out)
    assert torch.equal(_logits(loaded, pixels), expected)


def test_vit_merged_export_loads_in_a_pipeline_with_the_adapter_logits(vit_run):
    from PIL import Image
    from transformers import AutoModelForImageClassification, pipeline

    script, _, out = vit_run
    merged_dir = out / "merged"
    assert (merged_dir / "config.json").is_file() and (merged_dir / "preprocessor_config.json").is_file()
    assert not (merged_dir / "adapter_config.json").exists()
    pixels = _pixels(script)
    merged = AutoModelForImageClassification.from_pretrained(merged_dir)
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    torch.testing.assert_close(_logits(merged, pixels), _logits(script.model, pixels), rtol=1e-5, atol=1e-5)
    assert merged.config.class_counts == script.prepared.data.class_counts
    classifier = pipeline("image-classification", model=str(merged_dir), device="cpu")
    predictions = classifier(Image.new("RGB", (8, 8), (128, 128, 128)), top_k=3)
    assert len(predictions) == 3 and {p["label"] for p in predictions} <= set(merged.config.id2label.values())


def test_vit_card_says_what_was_trained(vit_run):
    script, _, out = vit_run
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "LoRA (peft) r=4, alpha=8, dropout=0.05 on q_proj, v_proj" in card
    assert "trained in full: classifier" in card
    trainable, total = (sum(p.numel() for p in script.model.parameters() if p.requires_grad),
                        sum(p.numel() for n, p in script.model.named_parameters() if ".original_module." not in n))
    assert f"**trainable parameters**: {trainable:,} of {total:,}" in card
    assert "merged/" in card
    # and in the training metrics: LoRA r=4 on q_proj, v_proj of 2 layers (32 -> 32: 4 x 32 + 32 x 4 each) and the
    # new 10-class head (32 x 10 + 10), counted by hand
    train_results = json.loads((out / "train_results.json").read_text())
    assert train_results["trainable_parameters"] == 2 * 2 * (4 * 32 + 32 * 4) + 32 * 10 + 10 == trainable
    assert train_results["total_parameters"] == total


def test_livt_mgp_checkpoint_adapter_on_qkv_reloads_to_identical_logits(mgp_dir, tmp_path):
    script, _ = _train(mgp_dir, tmp_path / "out", "--layer_decay", "0.75", "--merge_adapter", "true")
    model = script.model
    lora_modules = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name, p in model.named_parameters()
                    if p.requires_grad and "lora_" in name}
    assert lora_modules == {"qkv"}
    saved_in_full = set(model.peft_config["default"].modules_to_save)
    assert saved_in_full == {"classifier", "fc_norm"}
    # layer-wise decay reaches the adapters of the blocks: more than one learning rate
    assert len({group["lr"] for group in script_optimizer_groups(script)}) > 1
    data = script.prepared.data
    base = ml.LiVTForImageClassification.from_pretrained(
        mgp_dir, num_labels=data.num_classes, id2label=data.id2label, label2id=data.label2id,
        class_counts=data.class_counts,
    )
    loaded = peft.PeftModel.from_pretrained(base, tmp_path / "out")
    pixels = _pixels(script)
    assert torch.equal(_logits(loaded, pixels), _logits(model, pixels))
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "on qkv; trained in full: classifier, fc_norm" in card
    assert "PeftModel.from_pretrained(base," in card and "{{" not in card
    # the merged LiVT is a LiVT folder (with its remote code), with the adapter model's logits
    merged = ml.LiVTForImageClassification.from_pretrained(tmp_path / "out" / "merged")
    torch.testing.assert_close(_logits(merged, pixels), _logits(model, pixels), rtol=1e-5, atol=1e-5)
    assert (tmp_path / "out" / "merged" / "modeling_livt.py").is_file()


def script_optimizer_groups(script):
    from trainers.optim import build_optimizer

    return build_optimizer(script.model, script.training_args).param_groups


def test_resume_from_an_adapter_checkpoint(vit_dir, tmp_path):
    out = tmp_path / "out"
    argv = DATA + FAST + ["--model_name_or_path", str(vit_dir), "--output_dir", str(out), "--peft", "lora",
                          "--eval_strategy", "steps", "--eval_steps", "2", "--save_strategy", "steps",
                          "--save_steps", "2"]
    run_finetune.FinetuneScript(argv + ["--max_steps", "2"]).run()
    assert (out / "checkpoint-2" / "adapter_model.safetensors").is_file()
    run_finetune.FinetuneScript(argv + ["--max_steps", "4", "--resume_from_checkpoint", "latest"]).run()
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and (out / "checkpoint-4" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize(("extra", "message"), [
    (["--lora_r", "4"], r"--lora_r 4: they set the LoRA adapter, which is off: add --peft lora"),
    (["--lora_target_modules", "qkv"], r"--lora_target_modules qkv: they set the LoRA adapter, which is off"),
    (["--merge_adapter", "true"], r"--merge_adapter true: they set the LoRA adapter, which is off"),
    (["--peft", "lora", "--freeze_encoder", "true"], r"--freeze_encoder true with --peft lora"),
    (["--peft", "lora", "--model_ema", "true"], r"--model_ema true with --peft lora"),
])
def test_flags_without_their_method_are_refused(extra, message, mgp_dir, tmp_path):
    with pytest.raises(ValueError, match=message):
        run_finetune.FinetuneScript(DATA + FAST + ["--model_name_or_path", str(mgp_dir), "--output_dir",
                                                   str(tmp_path)] + extra)


def test_unknown_target_modules_are_refused_by_name(vit_dir, tmp_path):
    script = run_finetune.FinetuneScript(
        DATA + FAST + ["--model_name_or_path", str(vit_dir), "--output_dir", str(tmp_path), "--peft", "lora",
                       "--lora_target_modules", "q_proj,qkv"]
    )
    with pytest.raises(ValueError, match=r"--lora_target_modules q_proj,qkv: ViTForImageClassification has no Linear "
                                         r"layer named qkv"):
        script.build_trainer()


def test_livt_config_flags_are_refused_on_another_classifier(vit_dir, tmp_path):
    with pytest.raises(ValueError, match=r"--patch_size 4: they build or reshape a LiVT config"):
        run_finetune.FinetuneScript(DATA + FAST + ["--model_name_or_path", str(vit_dir), "--output_dir",
                                                   str(tmp_path), "--peft", "lora", "--patch_size", "4"])
