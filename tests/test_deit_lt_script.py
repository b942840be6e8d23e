"""scripts/run_deit_lt.py end to end: from scratch with .json arguments, the combined LiVT MGP -> DeiT-LT recipe with
Bal-BCE, DeiT-LT's head/mid/tail index split in the results and the card, and the errors raised before any training."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification

import modeling_livt as ml
from tests.helpers import save_tiny_teacher
from trainers.script_builder import teacher_reference

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import run_deit_lt  # noqa: E402
import run_eval  # noqa: E402
import run_mgp  # noqa: E402

# ---------------------------------------------------------------------------------------------------------------------
# scripts/run_deit_lt.py
# ---------------------------------------------------------------------------------------------------------------------
DATA = ["--dataset_name", "digits", "--imbalance_factor", "10", "--normalization", "digits"]
FAST = ["--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "64", "--disable_tqdm", "true",
        "--report_to", "none", "--seed", "0", "--eval_strategy", "steps", "--eval_steps", "2", "--save_strategy",
        "steps", "--save_steps", "2"]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """The tiny teacher saved with ImageNet statistics, so the student's digits-normalised batch is renormalised."""
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher"), normalization="imagenet")


@pytest.fixture(scope="module")
def mgp_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("mgp")
    run_mgp.main(DATA + ["--config_name", "tiny", "--image_size", "32", "--patch_size", "4", "--config_overrides",
                         "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64,"
                         "decoder_hidden_size=32,decoder_num_hidden_layers=1,decoder_num_attention_heads=2,"
                         "decoder_intermediate_size=64", "--per_device_train_batch_size", "16", "--disable_tqdm",
                         "true", "--report_to", "none", "--output_dir", str(out), "--max_steps", "1",
                         "--save_strategy", "no"])
    return out


def _logits(model, pixels):
    with torch.no_grad():
        return model.eval()(pixels)


def test_combined_recipe_from_mgp_with_bal_bce_trains_saves_and_loads(mgp_dir, teacher_dir, tmp_path):
    out = tmp_path / "deit_lt"
    metrics = run_deit_lt.main(DATA + FAST + [
        "--model_name_or_path", str(mgp_dir), "--cls_loss_type", "bal_bce", "--teacher_name_or_path", str(teacher_dir),
        "--output_dir", str(out), "--max_steps", "3", "--drw_step", "2", "--no_mixup_after_drw", "true",
    ])
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "deit_lt" and config["cls_loss_type"] == "bal_bce"
    assert config["hidden_size"] == 32 and config["class_counts"] == json.loads((mgp_dir / "class_counts.json")
                                                                               .read_text())
    for name in ("model.safetensors", "preprocessor_config.json", "README.md", "eval_results.json",
                 "per_class_accuracy.png", "modeling_deit_lt.py"):
        assert (out / name).exists(), name
    results = json.loads((out / "eval_results.json").read_text())
    assert {"accuracy", "cls_accuracy", "distillation_accuracy", "few_shot_accuracy"} <= set(results)
    assert results["accuracy"] == pytest.approx(metrics["accuracy"])
    card = (out / "README.md").read_text()
    assert "DIST-head accuracy" in card and "CLS-head accuracy" in card and "Few-shot" in card
    assert "bal_bce" in card and f"[`{teacher_reference(str(teacher_dir), str(out))}`]" in card
    assert "renormalised" in card  # digits student stats vs the teacher's ImageNet stats
    # the encoder really came from the MGP checkpoint: its first block moved only 3 small steps away
    mgp = load_file(str(mgp_dir / "model.safetensors"))
    student = ml.DeiTLTForImageClassification.from_pretrained(out)
    delta = (student.deit_lt.layers[0].mlp.fc1.weight - mgp["livt.layers.0.mlp.fc1.weight"]).abs().max()
    assert 0 < delta < 0.05
    # saved -> loaded through the Auto class with remote code: identical logits
    auto = AutoModelForImageClassification.from_pretrained(out, trust_remote_code=True)
    pixels = torch.randn(2, 3, 32, 32)
    a, b = _logits(student, pixels), _logits(auto, pixels)
    for field in ("logits", "cls_logits", "distillation_logits"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


def test_from_scratch_with_json_arguments(teacher_dir, tmp_path):
    args = {"dataset_name": "digits", "imbalance_factor": 10, "normalization": "digits", "config_name": "tiny",
            "image_size": 32, "patch_size": 4, "config_overrides": "hidden_size=32,num_hidden_layers=1,"
            "num_attention_heads=2,intermediate_size=64", "teacher_name_or_path": str(teacher_dir),
            "teacher_image_size": 48, "distillation_alpha": 0.3, "drw_beta": 0.999, "drw_epoch": 1,
            "output_dir": str(tmp_path / "o"), "max_steps": 2,
            "per_device_train_batch_size": 16, "report_to": "none", "eval_strategy": "no", "save_strategy": "no",
            "load_best_model_at_end": False, "disable_tqdm": True}
    (tmp_path / "args.json").write_text(json.dumps(args))
    run_deit_lt.main([str(tmp_path / "args.json")])
    config = json.loads((tmp_path / "o" / "config.json").read_text())
    assert config["num_hidden_layers"] == 1 and config["cls_loss_type"] == "ce"
    card = (tmp_path / "o" / "README.md").read_text()
    assert "input 48 px" in card
    # alpha and beta are the trainer's arguments: the card's recipe shows them
    assert "- **distillation alpha**: 0.3" in card
    assert "- **DRW (class-balanced DIST weights)**: from epoch 1, beta 0.999" in card


SMALL_STUDENT = ["--config_name", "tiny", "--image_size", "32", "--patch_size", "4", "--config_overrides",
                 "hidden_size=32,num_hidden_layers=1,num_attention_heads=2,intermediate_size=64"]


def test_index_bounds_report_head_mid_tail_in_results_and_card(teacher_dir, tmp_path):
    """--index_bounds 2,6 on digits (10 classes): eval_results.json's head/mid/tail are the means of the saved
    per-class accuracies over the classes sorted by their saved training counts, cut at 2 and 6; the card shows them."""
    out = tmp_path / "o"
    metrics = run_deit_lt.main(DATA + FAST + SMALL_STUDENT + [
        "--teacher_name_or_path", str(teacher_dir), "--output_dir", str(out), "--max_steps", "2",
        "--index_bounds", "2,6",
    ])
    results = json.loads((out / "eval_results.json").read_text())
    counts = json.loads((out / "class_counts.json").read_text())
    per_class = results["per_class_accuracy"]
    order = sorted(range(len(counts)), key=lambda c: (-counts[c], c))  # descending count, ties by class id
    assert results["index_bounds"] == [2, 6]
    card = (out / "README.md").read_text()
    model_index = {r.metric_type: r.metric_value for r in ModelCard.load(out / "README.md").data.eval_results}
    for name, (start, stop) in {"head": (0, 2), "mid": (2, 6), "tail": (6, 10)}.items():
        expected = float(np.mean([per_class[c] for c in order[start:stop]]))
        assert results[f"index_{name}_accuracy"] == pytest.approx(expected, abs=1e-12), name
        assert metrics[f"index_{name}_accuracy"] == pytest.approx(expected, abs=1e-12), name
        # the table row and the model-index entry
        assert f"| {100 * expected:.2f} % |" in card, name
        assert model_index[f"index_{name}_accuracy"] == pytest.approx(expected, abs=1e-4), name
    assert "Head (DeiT-LT split: the 2 most frequent classes)" in card
    assert "Tail (the 4 least frequent classes)" in card and "cut at sorted positions 2 and 6" in card
    # each expert alone: its groups are the means of its own saved per-class accuracies; the card's experts table
    # has one row per head
    for head, row_name in (("cls", "CLS head"), ("distillation", "DIST head")):
        per_class = results[f"{head}_per_class_accuracy"]
        assert results[f"{head}_accuracy"] == metrics[f"{head}_accuracy"]
        row = [results[f"{head}_{key}"] for key in ("accuracy", "many_shot_accuracy", "medium_shot_accuracy")]
        row.append(results[f"{head}_few_shot_accuracy"])
        for name, (start, stop) in {"head": (0, 2), "mid": (2, 6), "tail": (6, 10)}.items():
            expected = float(np.mean([per_class[c] for c in order[start:stop]]))
            assert results[f"{head}_index_{name}_accuracy"] == pytest.approx(expected, abs=1e-12), (head, name)
            row.append(expected)
        cells = " | ".join("-" if v is None else f"{100 * v:.2f}" for v in row)
        assert f"| {row_name} | {cells} |" in card, (head, cells)
    assert "### The two experts" in card and "| average of both heads |" in card
    # re-evaluated elsewhere with run_eval.py: the same DeiT-LT card, its teacher link rebased to the new folder
    evaluation = tmp_path / "elsewhere" / "evaluation"
    again = run_eval.main(["--model_name_or_path", str(out), "--output_dir", str(evaluation), *DATA[:4],
                           "--index_bounds", "2,6"])
    assert again["distillation_index_tail_accuracy"] == pytest.approx(results["distillation_index_tail_accuracy"])
    refreshed = (evaluation / "README.md").read_text()
    assert f"[`{teacher_reference(str(teacher_dir), str(evaluation))}`]" in refreshed
    # the recipe's teacher line follows the link; the training folder's relative path is gone
    assert f"- **teacher**: `{teacher_reference(str(teacher_dir), str(evaluation))}` (" in refreshed
    assert f"`{teacher_reference(str(teacher_dir), str(out))}`" not in refreshed
    assert "### The two experts" in refreshed and "- **distillation alpha**" in refreshed
    assert f'from_pretrained("{out}"' in refreshed  # a report on the evaluated folder
    # published: the folder copied elsewhere, its card written from the training folder into the copy (named after
    # the copy, the teacher link from there); re-evaluating the copy in place keeps that link
    published = tmp_path / "models" / "student"
    shutil.copytree(out, published)
    run_eval.main(["--model_name_or_path", str(out), "--output_dir", str(published), *DATA[:4]])
    link = f"[`{teacher_reference(str(teacher_dir), str(published))}`]"
    card = (published / "README.md").read_text()
    assert link in card and f'from_pretrained("{published}"' in card and "# student" in card
    assert f"- **teacher**: `{teacher_reference(str(teacher_dir), str(published))}` (" in card
    run_eval.main(["--model_name_or_path", str(published), "--output_dir", str(published), *DATA[:4]])
    assert link in (published / "README.md").read_text()


def test_bad_index_bounds_name_is_a_clear_error_before_anything_runs(teacher_dir, tmp_path):
    args = DATA + FAST + SMALL_STUDENT + ["--teacher_name_or_path", str(teacher_dir), "--output_dir",
                                          str(tmp_path / "o"), "--max_steps", "1"]
    with pytest.raises(ValueError, match=r"unknown --index_bounds 'cifar_10_lt_x'.*cifar10, cifar100, imagenet_lt, "
                       r"inat18.*'auto'.*HEAD_END,TAIL_START"):
        run_deit_lt.main(args + ["--index_bounds", "cifar_10_lt_x"])
    assert not (tmp_path / "o").exists()
    # 'auto' infers nothing from a dataset that is not a DeiT-LT benchmark: an error before training
    with pytest.raises(ValueError, match=r"--index_bounds auto: cannot tell which DeiT-LT benchmark \['digits'\]"):
        run_deit_lt.main(args + ["--index_bounds", "auto"])
    # bounds past the number of classes
    with pytest.raises(ValueError, match=r"num_classes=10"):
        run_deit_lt.main(args + ["--index_bounds", "3,11"])
    assert not (tmp_path / "o" / "checkpoint-1").exists()


def test_teacher_with_other_classes_fails_before_training(tmp_path):
    names = {i: str(i) for i in range(5)}
    ml.ResNetCifarForImageClassification(ml.ResNetCifarConfig(depth=8, base_width=4, id2label=names)).save_pretrained(
        tmp_path / "t5")
    with pytest.raises(ValueError, match=r"teacher's label space \(5 classes"):
        run_deit_lt.main(DATA + FAST + ["--config_name", "tiny", "--image_size", "32", "--patch_size", "4",
                                        "--teacher_name_or_path", str(tmp_path / "t5"), "--output_dir",
                                        str(tmp_path / "o"), "--max_steps", "1"])
    assert not (tmp_path / "o" / "checkpoint-1").exists()
