"""bench/compare.py: the headline comparisons' sigma and verdict rule, the arm chosen on validation, the report."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import compare  # noqa: E402


def test_verdict_pools_two_spreads_and_calls_a_tie_within_two_sigma():
    a, b = [0.40, 0.43, 0.37], [0.31, 0.37]
    sigma = math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)  # 0.0367
    row = compare.verdict(a, b)
    assert row["sigma"] == pytest.approx(sigma) and row["sigma_source"] == "pooled"
    assert row["difference"] == pytest.approx(np.mean(a) - np.mean(b))  # 0.06 <= 2 sigma = 0.073
    assert row["verdict"] == "tie"
    assert compare.verdict([0.50, 0.52], [0.30, 0.31])["verdict"] == "A better"
    assert compare.verdict([0.30, 0.31], [0.50, 0.52])["verdict"] == "B better"


def test_verdict_uses_the_arm_with_seeds_then_the_noise_estimate():
    one = compare.verdict([0.60], [0.55, 0.57])
    assert one["sigma"] == pytest.approx(np.std([0.55, 0.57], ddof=1)) and one["sigma_source"] == "B"
    assert one["verdict"] == "A better"  # 0.04 > 2 * 0.0141
    # fewer than three seeds: at least the noise estimate
    floor = compare.verdict([0.60], [0.55, 0.57], noise=0.03)
    assert floor["sigma"] == 0.03 and floor["sigma_source"] == "noise estimate" and floor["verdict"] == "tie"
    below = compare.verdict([0.60], [0.55, 0.57], noise=0.001)
    assert below["sigma_source"] == "B" and below["verdict"] == "A better"
    noisy = compare.verdict([0.606], [0.593], noise=0.01)
    assert noisy["sigma_source"] == "noise estimate" and noisy["verdict"] == "tie"  # 0.013 <= 0.02
    with pytest.raises(compare.NotMeasured, match="no noise estimate"):
        compare.verdict([0.606], [0.593])


def run(recipe, seed, metrics, **settings):
    return {"recipe": recipe, "settings": {"seed": seed, "epochs": 50, **settings}, "metrics": metrics}


def student(seed, augmentation, val, acc, cls_tail, dist_tail):
    r = run("deit_lt", seed, {"accuracy": acc, "cls_index_tail_accuracy": cls_tail,
                              "distillation_index_tail_accuracy": dist_tail}, student_augmentation=augmentation)
    r["validation"] = {"best": val}
    return r


def test_the_student_arm_is_chosen_on_seed_0_validation_never_on_test(tmp_path):
    results = [student(0, "none", 0.70, 0.75, 0.30, 0.60), student(0, "paper", 0.72, 0.71, 0.35, 0.55),
               student(1, "paper", 0.70, 0.69, 0.33, 0.57), student(1, "none", 0.69, 0.74, 0.31, 0.58)]
    (tmp_path / "deit_lt_cifar10lt.json").write_text(json.dumps({"results": results}))
    values, settings = compare.arm_values(compare.STUDENT, "accuracy", tmp_path)
    assert settings["student_augmentation"] == "paper" and values == [0.71, 0.69]  # not "none"'s better test
    dist = compare.arm_values(compare.COMPARISONS[5].a, "index_tail_accuracy", tmp_path)[0]
    assert dist == [0.55, 0.57]


def test_report_rows_and_what_is_not_measured(tmp_path, capsys):
    seeds = [run(recipe, s, {"accuracy": acc, "index_tail_accuracy": tail}, epochs=12)
             for recipe, accs, tails in (("bal_bce", (0.38, 0.40, 0.39), (0.16, 0.20, 0.18)),
                                         ("bce", (0.28, 0.29, 0.27), (0.0, 0.01, 0.0)))
             for s, acc, tail in zip((0, 1, 2), accs, tails)]
    (tmp_path / "accuracy_cifar10lt_seeds.json").write_text(json.dumps({"results": seeds}))
    flops = [run("mgp_bal_bce", 0, {"accuracy": 0.606}), run("bal_bce", 0, {"accuracy": 0.593})]
    (tmp_path / "mgp_equal_flops_cifar10lt.json").write_text(json.dumps({"results": flops}))
    fifty = [student(0, "none", 0.70, 0.72, 0.30, 0.60), student(1, "none", 0.70, 0.74, 0.31, 0.58),
             run("bal_bce", 0, {"accuracy": 0.59}), run("bal_bce", 1, {"accuracy": 0.60})]
    (tmp_path / "deit_lt_cifar10lt.json").write_text(json.dumps({"results": fifty}))
    rows, missing = compare.main(["--results_dir", str(tmp_path), "--teacher", str(tmp_path / "no_teacher")])
    by_name = {row["name"]: row for row in rows}
    tail = by_name["Bal-BCE - BCE on the tail (12 epochs)"]
    assert tail["difference"] == pytest.approx(np.mean([0.16, 0.20, 0.18]) - np.mean([0.0, 0.01, 0.0]))
    assert tail["verdict"] == "A better"
    mgp = by_name["MGP + Bal-BCE - Bal-BCE from scratch at equal training FLOPs (30 + 34 MGP vs 50 epochs)"]
    assert mgp["sigma"] == pytest.approx(np.std([0.38, 0.40, 0.39], ddof=1))  # the 12-epoch Bal-BCE accuracy std
    assert mgp["noise_from"].startswith("accuracy_cifar10lt_seeds") and mgp["verdict"] == "tie"
    deit = by_name["DeiT-LT - Bal-BCE from scratch (50 epochs)"]
    measured = np.sqrt((np.var([0.72, 0.74], ddof=1) + np.var([0.59, 0.60], ddof=1)) / 2)  # 0.0112
    assert np.std([0.38, 0.40, 0.39], ddof=1) == pytest.approx(0.01)  # the noise estimate is below it
    assert deit["sigma"] == pytest.approx(measured) and deit["sigma_source"] == "pooled"
    assert deit["difference"] == pytest.approx(0.135) and deit["verdict"] == "A better"
    names = [name for name, _ in missing]
    assert "DeiT-LT - Bal-BCE from scratch on the tail (50 epochs)" in names  # no tail in the fake scratch runs
    assert "Bal-CE - CE on the tail (12 epochs)" in names  # no bal_ce runs in the fake table
    report = (tmp_path / "comparisons_cifar10lt.md").read_text()
    assert "| Bal-BCE - BCE on the tail (12 epochs) | Bal-BCE: 18.0 ± 2.0 (n = 3) | BCE: 0.3 ± 0.6 (n = 3) | +17.7 |" \
        in report
    assert "timm_loop_cifar10lt.json does not exist" in report
    with pytest.raises(SystemExit):
        compare.main(["--results_dir", str(tmp_path / "missing")])
    assert "not a folder" in capsys.readouterr().err


def test_deit_lt_side_by_side_teacher_student_heads_and_scratch(tmp_path):
    teacher = tmp_path / "cifar10lt_teacher"
    teacher.mkdir()
    (teacher / "eval_results.json").write_text(json.dumps(
        {"accuracy": 0.80, "many_shot_accuracy": 0.85, "medium_shot_accuracy": 0.60, "index_head_accuracy": 0.90,
         "index_mid_accuracy": 0.78, "index_tail_accuracy": 0.70}))
    heads = {"accuracy": (0.74, 0.76), "index_tail_accuracy": (0.50, 0.54), "cls_index_tail_accuracy": (0.30, 0.34),
             "distillation_index_tail_accuracy": (0.60, 0.62), "cls_index_head_accuracy": (0.95, 0.97)}
    students = []
    for seed in (0, 1):
        r = run("deit_lt", seed, {key: pair[seed] for key, pair in heads.items()}, student_augmentation="none")
        r["validation"] = {"best": 0.7}
        students.append(r)
    paper = run("deit_lt", 0, {"accuracy": 0.99, "distillation_index_tail_accuracy": 0.99},
                student_augmentation="paper")
    paper["validation"] = {"best": 0.6}  # worse on validation: not the chosen arm, whatever its test numbers
    scratch = [run("bal_bce", 0, {"accuracy": 0.59, "index_tail_accuracy": 0.20})]
    (tmp_path / "deit_lt_cifar10lt.json").write_text(json.dumps({"results": students + [paper] + scratch}))
    compare.main(["--results_dir", str(tmp_path), "--teacher", str(teacher)])
    saved = json.loads((tmp_path / "comparisons_cifar10lt.json").read_text())["deit_lt_side_by_side"]
    by_label = {row["label"]: row for row in saved}
    assert list(by_label) == ["teacher (cifar10lt_teacher)", "DeiT-LT student: averaged logits",
                              "DeiT-LT student: CLS head", "DeiT-LT student: DIST head",
                              "Bal-BCE from scratch (50 epochs)"]
    assert by_label["teacher (cifar10lt_teacher)"]["metrics"]["index_tail_accuracy"] == [0.70, None]
    dist = by_label["DeiT-LT student: DIST head"]
    assert dist["n"] == 2 and dist["metrics"]["index_tail_accuracy"] == pytest.approx([0.61, np.std([0.60, 0.62],
                                                                                                          ddof=1)])
    assert dist["metrics"]["accuracy"] == [None, None]  # not measured for that head
    assert by_label["DeiT-LT student: CLS head"]["metrics"]["index_head_accuracy"][0] == pytest.approx(0.96)
    assert by_label["Bal-BCE from scratch (50 epochs)"]["n"] == 1
    report = (tmp_path / "comparisons_cifar10lt.md").read_text()
    assert "| DeiT-LT student: averaged logits | 2 | - | - | - | - | 52.0 ± 2.8 | 75.0 ± 1.4 |" in report
    assert "| teacher (cifar10lt_teacher) | 1 | 85.0 | 60.0 | 90.0 | 78.0 | 70.0 | 80.0 |" in report
    # no teacher folder, no student runs: no table rather than a table of dashes
    empty = tmp_path / "empty"
    empty.mkdir()
    assert compare.side_by_side(empty, tmp_path / "no_teacher") == []
