"""Any timm model as the DeiT-LT teacher (`run_teacher.py --teacher_arch timm:NAME`): trained by TeacherTrainer (SAM,
the balanced losses), saved so that timm (`local-dir:`) and transformers (`AutoModelForImageClassification`) load it
with equal logits, and fed by DeiT-LT with the student's batch renormalised and resized per its `pretrained_cfg`."""

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

import modeling_livt as ml
from modeling_livt.data.transforms import build_image_processor, get_normalization
from trainers.deit_lt import DistillationTeacher
from trainers.teacher import TrainerSAM
from trainers.timm_teacher import build_timm_teacher, timm_native_state_dict

timm = pytest.importorskip("timm")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import run_teacher  # noqa: E402

ARCH = "test_resnet"  # timm's tiny test ResNet (random weights: nothing is downloaded)
DATA = ["--dataset_name", "digits", "--imbalance_factor", "10", "--normalization", "digits"]
FAST = ["--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "64", "--disable_tqdm", "true",
        "--report_to", "none", "--seed", "0"]
LABELS = {i: f"class_{i}" for i in range(3)}


def _timm_logits(directory, pixel_values):
    model = timm.create_model(f"local-dir:{directory}", pretrained=True).eval()
    with torch.no_grad():
        return model(pixel_values)


def _hf_logits(directory, pixel_values):
    model = AutoModelForImageClassification.from_pretrained(directory).eval()
    with torch.no_grad():
        return model(pixel_values=pixel_values).logits


def test_run_teacher_trains_a_timm_teacher_that_timm_and_transformers_both_load(tmp_path):
    out = tmp_path / "teacher"
    metrics = run_teacher.main(DATA + FAST + [
        "--output_dir", str(out), "--teacher_arch", f"timm:{ARCH}", "--max_steps", "2", "--learning_rate", "0.01",
        "--save_strategy", "steps", "--save_steps", "1",
    ])
    assert 0.0 <= metrics["accuracy"] <= 1.0
    config = json.loads((out / "config.json").read_text())
    # the trap: timm's save_for_hf writes num_classes into model_args, and transformers then passes it twice
    assert "num_classes" not in (config["model_args"] or {}) and config["num_classes"] == 10
    assert config["model_type"] == "timm_wrapper" and config["architecture"] == ARCH
    assert config["label_names"] == [str(i) for i in range(10)]
    assert config["class_counts"] == json.loads((out / "class_counts.json").read_text())
    mean, std = get_normalization("digits")
    pretrained_cfg = config["pretrained_cfg"]
    assert pretrained_cfg["mean"] == pytest.approx(mean) and pretrained_cfg["std"] == pytest.approx(std)
    assert pretrained_cfg["input_size"] == [3, 32, 32] and pretrained_cfg["num_classes"] == 10
    assert "hf_hub_id" not in pretrained_cfg and "url" not in pretrained_cfg  # random weights, trained here
    with safe_open(out / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert keys and not any(key.startswith("timm_model.") for key in keys)  # timm's native key names
    assert "TimmWrapperForImageClassification (timm test_resnet)" in (out / "README.md").read_text()

    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    hf = AutoModelForImageClassification.from_pretrained(out).eval()
    assert hf.config.id2label == {i: str(i) for i in range(10)}
    torch.testing.assert_close(_timm_logits(out, x), _hf_logits(out, x), rtol=0, atol=0)
    timm_model = timm.create_model(f"local-dir:{out}", pretrained=True)
    data_config = timm.data.resolve_data_config(model=timm_model)
    assert tuple(data_config["mean"]) == pytest.approx(mean) and tuple(data_config["input_size"]) == (3, 32, 32)
    # the eval image processor is saved as for our other teachers; transformers loads timm's processor from the
    # pretrained_cfg, which reproduces our eval transform; pipeline() names the classes
    assert json.loads((out / "preprocessor_config.json").read_text())["image_mean"] == pytest.approx(list(mean))
    processor = AutoImageProcessor.from_pretrained(out)
    from modeling_livt.data.digits import load_digits_dataset

    images = list(load_digits_dataset()["test"].select(range(2))["image"])
    ours = build_image_processor(32, mean, std)(images, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(processor(images)["pixel_values"], ours, rtol=0, atol=1e-5)
    (top,), _ = pipeline("image-classification", model=str(out), top_k=1)(images)
    assert top["label"] in hf.config.id2label.values()
    # a checkpoint (timm key names) passes the resume check: every weight is there
    checkpoint = out / "checkpoint-2"
    with safe_open(checkpoint / "model.safetensors", "pt") as f:
        assert set(f.keys()) == keys
    teacher = DistillationTeacher.from_pretrained(str(out))
    assert teacher.image_size == 32 and teacher.mean == pytest.approx(mean) and teacher.std == pytest.approx(std)


def test_a_timm_teacher_trains_with_sam_and_the_balanced_loss(tmp_path):
    script = run_teacher.TeacherScript(DATA + FAST + [
        "--output_dir", str(tmp_path), "--teacher_arch", f"timm:{ARCH}", "--max_steps", "1",
        "--loss_type", "bal_bce",
    ])
    trainer = script.build_trainer()
    assert type(trainer.model).__name__ == "TimmWrapperForImageClassification"
    assert isinstance(trainer.loss_fn, ml.BalancedBCELoss)
    assert isinstance(trainer.create_optimizer(), TrainerSAM)
    assert trainer.model.config.id2label[0] == "0" and trainer.model.config.num_labels == 10


def test_resume_from_a_timm_teacher_checkpoint(tmp_path):
    out = tmp_path / "teacher"
    argv = DATA + FAST + ["--output_dir", str(out), "--teacher_arch", f"timm:{ARCH}", "--learning_rate", "0.01",
                          "--save_strategy", "steps", "--save_steps", "1", "--eval_strategy", "no"]
    run_teacher.main(argv + ["--max_steps", "1"])
    run_teacher.main(argv + ["--max_steps", "2", "--resume_from_checkpoint", str(out / "checkpoint-1")])
    assert (out / "checkpoint-2" / "model.safetensors").exists()


@pytest.mark.parametrize("flags, message", [
    (["--teacher_arch", "timm:resnet_18"], r"--teacher_arch timm:resnet_18: timm .* has no model 'resnet_18'\. Did "
                                           r"you mean timm:resnet18.*timm\.list_models\(\)"),
    (["--teacher_arch", "timm:"], r"--teacher_arch timm:: .*timm\.list_models"),
])
def test_an_unknown_timm_name_is_refused_before_the_data_is_loaded(tmp_path, monkeypatch, flags, message):
    monkeypatch.setattr(run_teacher.ClassificationScript, "build_trainer",
                        lambda self: pytest.fail("the data was loaded"))
    with pytest.raises(ValueError, match=message):
        run_teacher.main(DATA + FAST + ["--output_dir", str(tmp_path), *flags])


def test_config_overrides_are_refused_for_a_timm_teacher(tmp_path):
    with pytest.raises(ValueError, match=r"--config_overrides depth=8: .*--teacher_arch is timm:test_resnet"):
        run_teacher.main(DATA + FAST + ["--output_dir", str(tmp_path), "--teacher_arch", f"timm:{ARCH}",
                                        "--config_overrides", "depth=8", "--max_steps", "1"])


def _saved_timm_teacher(directory, image_size, mean, std):
    torch.manual_seed(0)
    model = build_timm_teacher(ARCH, 3, LABELS, {v: k for k, v in LABELS.items()}, image_size, mean, std).eval()
    model.save_pretrained(directory, state_dict=timm_native_state_dict(model.state_dict()))
    return model


def test_distillation_renormalises_and_resizes_the_students_batch_for_a_timm_teacher(tmp_path):
    s_mean, s_std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    t_mean, t_std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    model = _saved_timm_teacher(tmp_path, 48, t_mean, t_std)
    teacher = DistillationTeacher.from_pretrained(str(tmp_path), student_mean=s_mean, student_std=s_std)
    assert teacher.image_size == 48 and teacher.mean == pytest.approx(t_mean) and teacher.std == pytest.approx(t_std)
    assert teacher.renormalizes
    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))  # [0, 1] images
    shape = (1, 3, 1, 1)
    student_batch = (pixels - torch.tensor(s_mean).view(shape)) / torch.tensor(s_std).view(shape)
    # independent formula: resize the raw pixels first, then normalise with the teacher's pretrained_cfg
    resized = F.interpolate(pixels.double(), size=(48, 48), mode="bicubic", align_corners=False)
    expected = (resized - torch.tensor(t_mean).double().view(shape)) / torch.tensor(t_std).double().view(shape)
    prepared = teacher.prepare(student_batch)
    assert prepared.shape == (2, 3, 48, 48)
    torch.testing.assert_close(prepared.double(), expected, rtol=0, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(teacher(student_batch), model(pixel_values=expected.float()).logits,
                                   rtol=1e-4, atol=1e-4)


def test_a_folder_saved_by_timm_save_for_hf_loads_as_a_distillation_teacher(tmp_path):
    """timm's own export puts num_classes in model_args (transformers alone fails: "got multiple values for keyword
    argument 'num_classes'"); the teacher loader moves it to num_labels and reads the export's pretrained_cfg."""
    torch.manual_seed(0)
    model = timm.create_model(ARCH, pretrained=False, num_classes=3).eval()
    mean, std = (0.1, 0.2, 0.3), (0.3, 0.2, 0.1)
    timm.models.save_for_hf(model, tmp_path, safe_serialization=True,
                            data_config={"mean": mean, "std": std, "input_size": (3, 40, 40)})
    assert json.loads((tmp_path / "config.json").read_text())["model_args"]["num_classes"] == 3
    teacher = DistillationTeacher.from_pretrained(str(tmp_path))
    assert teacher.image_size == 40 and teacher.mean == pytest.approx(mean) and teacher.std == pytest.approx(std)
    x = torch.randn(2, 3, 40, 40, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # the teacher runs channels-last: the same layout here, so the same logits bit for bit
        expected = model.to(memory_format=torch.channels_last)(x)
        torch.testing.assert_close(teacher.model(pixel_values=x).logits, expected, rtol=0, atol=0)


def test_run_teacher_fine_tunes_a_timm_folder_with_a_new_head_and_the_datas_pretrained_cfg(tmp_path):
    """--model_name_or_path with a folder in timm's own export format (num_classes in model_args): its weights, a head
    for the data's 10 classes, and a pretrained_cfg that follows the data (digits mean/std, 32 px)."""
    torch.manual_seed(0)
    source = timm.create_model(ARCH, pretrained=False, num_classes=3)
    timm.models.save_for_hf(source, tmp_path / "source", safe_serialization=True,
                            data_config={"mean": (0.1, 0.2, 0.3), "std": (0.3, 0.2, 0.1), "input_size": (3, 32, 32)})
    out = tmp_path / "teacher"
    run_teacher.main(DATA + FAST + ["--output_dir", str(out), "--model_name_or_path", str(tmp_path / "source"),
                                    "--max_steps", "1", "--learning_rate", "0.0"])
    config = json.loads((out / "config.json").read_text())
    assert config["num_classes"] == 10 and "num_classes" not in (config["model_args"] or {})
    mean, _ = get_normalization("digits")
    assert config["pretrained_cfg"]["mean"] == pytest.approx(list(mean))
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(_timm_logits(out, x), _hf_logits(out, x), rtol=0, atol=0)
    trained = timm.create_model(f"local-dir:{out}", pretrained=True).state_dict()
    # the body is the source's (lr 0: SGD leaves it; BatchNorm running statistics move in train mode)
    torch.testing.assert_close(trained["conv1.0.weight"], source.state_dict()["conv1.0.weight"])
    assert trained["fc.weight"].shape[0] == 10
