"""bench/teacher_views.py: the teacher's labels on the student's views, scored by hand and through the model."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import teacher_views  # noqa: E402

COUNTS = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_score_by_hand():
    target = torch.tensor([0, 0, 1, 3, 4, 7, 8, 9, 9, 9])
    predicted = torch.tensor([0, 1, 1, 3, 9, 7, 0, 9, 9, 8])
    got = teacher_views.score(predicted, target, COUNTS)
    assert got["accuracy"] == pytest.approx(0.6)
    assert got["head_accuracy"] == pytest.approx(np.mean([0.5, 1.0]))  # classes 0 and 1 seen (2 absent)
    assert got["mid_accuracy"] == pytest.approx(np.mean([1.0, 0.0]))  # classes 3, 4
    assert got["tail_accuracy"] == pytest.approx(np.mean([1.0, 0.0, 2 / 3]))  # classes 7, 8, 9
    assert (got["head_label_share"], got["mid_label_share"], got["tail_label_share"]) == pytest.approx((0.4, 0.1, 0.5))
    assert (got["head_image_share"], got["mid_image_share"], got["tail_image_share"]) == pytest.approx((0.3, 0.2, 0.5))
    assert teacher_views.index_groups(list(reversed(COUNTS)))["head"] == [7, 8, 9]  # by count, not by label


def test_missing_split_and_teacher_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        teacher_views.parse_args(["--teacher", str(tmp_path)])
    assert "long_tailed_indices.json not found" in capsys.readouterr().err
    (tmp_path / "long_tailed_indices.json").write_text("{}")
    with pytest.raises(SystemExit):
        teacher_views.parse_args(["--teacher", str(tmp_path)])
    assert "no config.json there" in capsys.readouterr().err


@pytest.mark.slow
def test_clean_view_equals_the_teachers_own_processor_and_model(cifar10_dir, tmp_path):
    data = cifar10_dir
    from datasets import load_dataset
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from tests.helpers import save_tiny_teacher

    teacher = save_tiny_teacher(tmp_path / "teacher", normalization="cifar")
    rows = list(range(0, 640, 10))  # 64 training images stand in for a long-tailed split
    run = tmp_path / "run"
    run.mkdir()
    (run / "long_tailed_indices.json").write_text(json.dumps({"indices": rows}))
    result = teacher_views.main(["--teacher", str(teacher), "--split_from", str(run), "--dataset", str(data),
                                 "--batch_size", "16", "--output_prefix", str(tmp_path / "views")])
    assert json.loads((tmp_path / "views.json").read_text()) == json.loads(json.dumps(result))
    report = (tmp_path / "views.md").read_text()
    assert "| clean |" in report and "| paper_mix |" in report and "`python bench/teacher_views.py --teacher" in report
    assert list(result["views"]) == list(teacher_views.VIEWS) and result["images"] == 64

    pool = load_dataset(str(data), split="train").select(rows)
    processor = AutoImageProcessor.from_pretrained(teacher)
    model = AutoModelForImageClassification.from_pretrained(teacher, trust_remote_code=True).eval()
    with torch.no_grad():
        predicted = model(**processor([img.convert("RGB") for img in pool["image"]], return_tensors="pt")).logits
    predicted, labels = predicted.argmax(-1).numpy(), np.asarray(pool["label"])
    clean = result["views"]["clean"]
    assert clean["accuracy"] == pytest.approx(float(np.mean(predicted == labels)))
    # the groups follow the split's counts (here the 64 images'): the three largest classes are the head
    assert result["class_counts"] == np.bincount(labels, minlength=10).tolist()
    by_count = np.argsort(-np.bincount(labels, minlength=10), kind="stable")
    head, tail = by_count[:3], by_count[7:]
    assert clean["tail_label_share"] == pytest.approx(float(np.isin(predicted, tail).mean()))
    assert clean["head_image_share"] == pytest.approx(float(np.isin(labels, head).mean()))
    for view in teacher_views.VIEWS:
        shares = [result["views"][view][f"{g}_label_share"] for g in teacher_views.GROUPS]
        assert sum(shares) == pytest.approx(1.0), view
