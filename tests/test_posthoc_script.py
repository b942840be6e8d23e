"""`run_eval.py --posthoc` end to end on digits with a tiny model trained for a few steps: fitting on validation,
before/after report, `--save` in place, `--posthoc_output_dir`, refitting, fine-tuning drops stale values, errors."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoImageProcessor, AutoModelForImageClassification, Trainer, TrainingArguments

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import run_eval  # noqa: E402
import run_finetune  # noqa: E402

from modeling_livt.data.digits import load_digits_dataset  # noqa: E402
from modeling_livt.data.transforms import EvalTransform  # noqa: E402
from modeling_livt.models.configuration_vit import POSTHOC_FIELDS  # noqa: E402
from trainers.posthoc import POSTHOC_RESULTS_FILE, check_posthoc_model, fit_and_report_posthoc  # noqa: E402

DATA = ["--dataset_name", "digits", "--imbalance_factor", "10", "--normalization", "digits"]
TINY = ["--config_name", "tiny", "--image_size", "32", "--patch_size", "4", "--config_overrides",
        "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64"]
FAST = ["--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "128", "--disable_tqdm", "true",
        "--report_to", "none", "--seed", "0", "--eval_strategy", "no", "--save_strategy", "no",
        "--load_best_model_at_end", "false"]


@pytest.fixture(scope="module")
def ce_model(tmp_path_factory):
    """A plain-CE LiVT trained from scratch for a few steps (its logits are far from calibrated)."""
    out = tmp_path_factory.mktemp("ce")
    run_finetune.main(DATA + TINY + FAST + ["--output_dir", str(out), "--loss_type", "ce", "--max_steps", "12",
                                            "--learning_rate", "2e-3"])
    return out


def _posthoc(model_dir, output_dir, methods, *extra):
    return run_eval.main(["--model_name_or_path", str(model_dir), "--output_dir", str(output_dir), "--posthoc",
                          methods, "--index_bounds", "3,7", "--per_device_eval_batch_size", "128"] + DATA[:4]
                         + list(extra))


def _digits_batch(model_dir, count=16):
    transform = EvalTransform(AutoImageProcessor.from_pretrained(model_dir))
    images = load_digits_dataset()["test"].select(range(count))["image"]
    return torch.stack([transform(image) for image in images])


def _expected_logits(model, pixels, tau_norm, la_tau, temperature):
    """Independent reference: the raw head with rows W_j / ||W_j||^tau_norm, minus la_tau * log pi, over T."""
    with torch.no_grad():
        features = model.pooled_features(model.livt(pixels).last_hidden_state)
        weight = model.classifier.weight / model.classifier.weight.norm(dim=1, keepdim=True) ** tau_norm
        counts = torch.tensor(model.config.class_counts, dtype=torch.float64)
        prior = (counts / counts.sum()).log().float()
        return (features @ weight.T + model.classifier.bias - la_tau * prior) / temperature


def test_temperature_only_keeps_every_prediction_and_lowers_validation_nll(ce_model, tmp_path):
    metrics = _posthoc(ce_model, tmp_path, "temperature")
    report = json.loads((tmp_path / POSTHOC_RESULTS_FILE).read_text())
    assert report["methods"] == ["temperature"]
    assert report["fitted"]["posthoc_temperature"] > 0 and report["fitted"]["posthoc_tau_norm"] is None
    before, after = report["test"]["before"], report["test"]["after"]
    for key in ("accuracy", "many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy", "index_tail_accuracy"):
        assert after[key] == before[key], key  # a temperature never changes a prediction
    assert report["validation"]["after"]["nll"] <= report["validation"]["before"]["nll"]
    assert report["validation"]["num_examples"] == 200  # digits' fixed balanced validation split: 20 per class
    assert metrics["ece"] == after["ece"] and report["test"]["num_examples"] == 300
    # the before/after evaluations are plain evaluations of the raw and of the adjusted model
    assert json.loads((tmp_path / "before_posthoc" / "eval_results.json").read_text())["ece"] == before["ece"]
    assert json.loads((tmp_path / "eval_results.json").read_text())["ece"] == after["ece"]
    assert not json.loads((ce_model / "config.json").read_text()).get("posthoc_temperature")  # no --save: untouched


def test_save_in_place_and_copy_apply_the_fitted_values(ce_model, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(ce_model, model_dir)
    weights = (model_dir / "model.safetensors").read_bytes()
    (model_dir / "posthoc_adjustment.py").unlink()  # as in a folder saved before post-hoc support
    _posthoc(model_dir, tmp_path / "eval", "temperature,logit_adjustment,tau_norm", "--save", "--posthoc_output_dir",
             str(tmp_path / "copy"), "--logit_adjustment_grid", "0:1.5:0.5", "--tau_norm_grid", "0,0.5,1")
    report = json.loads((tmp_path / "eval" / POSTHOC_RESULTS_FILE).read_text())
    fitted = report["fitted"]
    assert set(report["searches"]) == {"tau_norm", "logit_adjustment", "temperature"}
    assert report["searches"]["logit_adjustment"]["grid"] == [0.0, 0.5, 1.0, 1.5]
    assert fitted["posthoc_tau_norm"] in (0.0, 0.5, 1.0) and fitted["posthoc_logit_adjustment_tau"] in (0, 0.5, 1, 1.5)
    config = json.loads((model_dir / "config.json").read_text())
    assert {k: config[k] for k in POSTHOC_FIELDS} == fitted
    assert (model_dir / "model.safetensors").read_bytes() == weights  # --save never rewrites the weights
    assert (model_dir / "posthoc_adjustment.py").exists()  # the remote code that applies the values is refreshed
    assert not any(p.name.startswith(".posthoc-") for p in model_dir.iterdir())  # no staging folder left over
    pixels = _digits_batch(model_dir)
    for folder in (model_dir, tmp_path / "copy"):
        model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
        assert {k: getattr(model.config, k) for k in POSTHOC_FIELDS} == fitted
        with torch.no_grad():
            adjusted = model(pixels).logits
        expected = _expected_logits(model, pixels, *(fitted[k] for k in POSTHOC_FIELDS))
        torch.testing.assert_close(adjusted, expected, rtol=1e-5, atol=1e-5)
    # refitting a saved model starts from its raw logits and finds the same values
    _posthoc(model_dir, tmp_path / "again", "temperature,logit_adjustment,tau_norm", "--logit_adjustment_grid",
             "0:1.5:0.5", "--tau_norm_grid", "0,0.5,1")
    again = json.loads((tmp_path / "again" / POSTHOC_RESULTS_FILE).read_text())["fitted"]
    assert again["posthoc_tau_norm"] == fitted["posthoc_tau_norm"]
    assert again["posthoc_logit_adjustment_tau"] == fitted["posthoc_logit_adjustment_tau"]
    assert again["posthoc_temperature"] == pytest.approx(fitted["posthoc_temperature"], rel=1e-6)
    # fine-tuning an adjusted model starts over: the values fitted for the old weights are dropped
    run_finetune.main(DATA + FAST + ["--model_name_or_path", str(model_dir), "--output_dir", str(tmp_path / "ft"),
                                     "--max_steps", "1"])
    assert all(json.loads((tmp_path / "ft" / "config.json").read_text())[k] is None for k in POSTHOC_FIELDS)


def test_logit_adjustment_moves_predictions_towards_the_tail(ce_model, tmp_path):
    _posthoc(ce_model, tmp_path, "logit_adjustment", "--logit_adjustment_grid", "2")
    report = json.loads((tmp_path / POSTHOC_RESULTS_FILE).read_text())
    assert report["fitted"]["posthoc_logit_adjustment_tau"] == 2.0
    counts = json.loads((ce_model / "class_counts.json").read_text())
    tail = int(np.argmin(counts))
    before = json.loads((tmp_path / "before_posthoc" / "eval_results.json").read_text())["per_class_accuracy"]
    after = json.loads((tmp_path / "eval_results.json").read_text())["per_class_accuracy"]
    assert after[tail] >= before[tail]  # subtracting 2 log pi favours the rarest class


def test_posthoc_errors(ce_model, tmp_path):
    with pytest.raises(ValueError, match="unknown post-hoc method 'histogram'"):
        _posthoc(ce_model, tmp_path, "temperature,histogram")
    with pytest.raises(ValueError, match="give --posthoc too"):
        run_eval.main(["--model_name_or_path", str(ce_model), "--output_dir", str(tmp_path), "--save"])
    with pytest.raises(ValueError, match="not a local model folder"):
        _posthoc("someone/livt-on-the-hub", tmp_path, "temperature", "--save")
    with pytest.raises(ValueError, match="tau grid '' is empty"):
        _posthoc(ce_model, tmp_path, "logit_adjustment", "--logit_adjustment_grid", "")
    model = AutoModelForImageClassification.from_pretrained(ce_model).eval()
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to="none"))
    with pytest.raises(ValueError, match="fits on the validation split, and this dataset has none"):
        fit_and_report_posthoc(trainer, ["temperature"], None, None, [10] * 10, str(tmp_path))
    from transformers import ViTConfig, ViTForImageClassification

    vit = ViTForImageClassification(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                              intermediate_size=64, image_size=32, patch_size=8, num_labels=10))
    with pytest.raises(ValueError, match="needs a LiVT or DeiT-LT classifier"):
        check_posthoc_model(vit)


def test_split_evaluates_the_split_it_names(ce_model, tmp_path):
    """`--split train / validation / test`: that split (train: the long-tailed training split of the data flags)."""
    counts = json.loads((ce_model / "class_counts.json").read_text())
    for split, size in (("train", sum(counts)), ("validation", 200), ("test", 300)):
        metrics = run_eval.main(["--model_name_or_path", str(ce_model), "--output_dir", str(tmp_path / split),
                                 "--split", split, "--write_card", "false", "--per_device_eval_batch_size", "128"]
                                + DATA[:4])
        assert metrics["split"] == split and metrics["num_examples"] == size, split
    with pytest.raises(ValueError, match="unknown --split 'val'; choose one of train, validation, test"):
        run_eval.main(["--model_name_or_path", str(ce_model), "--output_dir", str(tmp_path), "--split", "val"])
    with pytest.raises(ValueError, match="--logit_adjustment_grid 0,1: it sets the taus tried by the post-hoc "
                                         "logit_adjustment, which is not fitted here: add --posthoc logit_adjustment"):
        _posthoc(ce_model, tmp_path, "temperature,tau_norm", "--logit_adjustment_grid", "0,1")
