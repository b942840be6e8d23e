"""bench/accuracy.py: seeds and their spread, DeiT-LT from a trained teacher, the LoRA recipe (no training here)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import accuracy  # noqa: E402


def fake_result(recipe: str, seed: int, acc: float, tail: float, epochs: int = 12) -> dict:
    settings = accuracy.settings_of(accuracy.parse_args(["--seed", str(seed), "--epochs", str(epochs)]))
    return {"recipe": recipe, "seed": seed, "signature": accuracy.signature(settings), "settings": settings,
            "metrics": {"accuracy": acc, "index_tail_accuracy": tail, "ece": None}}


def test_seed_summary_mean_and_sample_std():
    accs, tails = [0.40, 0.43, 0.37], [0.10, 0.20, 0.12]
    results = [fake_result("bal_bce", s, a, t) for s, a, t in zip((0, 1, 2), accs, tails)]
    results.append(fake_result("bce", 0, 0.30, 0.0))
    results.append(fake_result("bal_bce", 0, 0.55, 0.5, epochs=50))  # other settings: its own group
    summary = accuracy.seed_summary(results)
    assert [(row["recipe"], row["seeds"]) for row in summary] == [("bal_bce", [0, 1, 2]), ("bce", [0]),
                                                                   ("bal_bce", [0])]
    bal = summary[0]["metrics"]
    assert bal["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert bal["accuracy"]["std"] == pytest.approx(np.std(accs, ddof=1))
    assert bal["index_tail_accuracy"]["std"] == pytest.approx(np.std(tails, ddof=1))
    assert "ece" not in bal  # no values: no entry
    assert summary[1]["metrics"]["accuracy"]["std"] is None  # one seed has no spread

    lines = accuracy.summary_lines(results)
    row = next(line for line in lines if line.startswith("| Bal-BCE | 0,1,2 |"))
    assert f"{100 * np.mean(accs):.1f} ± {100 * np.std(accs, ddof=1):.1f}" in row
    assert not any(line.startswith("| BCE |") for line in lines)  # single-seed groups stay in the per-run table


def test_seeds_and_teacher_flags(tmp_path):
    assert accuracy.parse_args(["--seeds", "0,1,2"]).seeds == [0, 1, 2]
    assert accuracy.parse_args(["--seed", "3"]).seeds == [3]
    with pytest.raises(SystemExit):
        accuracy.parse_args(["--seeds", "0,x"])
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    with pytest.raises(SystemExit):  # not a saved model folder
        accuracy.parse_args(["--recipes", "deit_lt", "--teacher_name_or_path", str(teacher)])
    (teacher / "config.json").write_text("{}")
    with pytest.raises(SystemExit):  # --teacher_epochs would be ignored
        accuracy.parse_args(["--recipes", "deit_lt", "--teacher_name_or_path", str(teacher), "--teacher_epochs", "5"])
    with pytest.raises(SystemExit):  # the teacher of a recipe that is not run
        accuracy.parse_args(["--recipes", "bal_bce", "--teacher_name_or_path", str(teacher)])
    with pytest.raises(SystemExit):
        accuracy.parse_args(["--recipes", "bal_bce", "--student_augmentation", "paper"])

    args = accuracy.parse_args(["--recipes", "deit_lt", "--teacher_name_or_path", str(teacher), "--epochs", "50",
                                "--student_augmentation", "paper", "--drw_fraction", "0.9167"])
    stages = accuracy.recipe_commands("deit_lt", args, tmp_path / "runs")
    assert [name for name, _, _ in stages] == ["student"]  # no teacher training
    argv = stages[0][1]
    assert argv[argv.index("--teacher_name_or_path") + 1] == str(teacher.resolve())
    assert argv[argv.index("--drw_epoch") + 1] == "46"  # DRW at 1100/1200 of 50 epochs
    last = {flag: argv[len(argv) - 1 - argv[::-1].index(flag) + 1] for flag in ("--mixup", "--rand_augment")}
    assert last == {"--mixup": "0.8", "--rand_augment": "true"}  # the paper's flags come last and win
    assert "--no_mixup_after_drw" in argv
    settings = accuracy.settings_of(args)
    assert settings["teacher"] == "teacher" and settings["student_augmentation"] == "paper"
    # a run without the new flags keeps the settings (and so the signature) of the committed results
    assert "teacher" not in accuracy.settings_of(accuracy.parse_args([]))


def test_lora_recipe_fine_tunes_the_shared_mgp_checkpoint_with_lora(tmp_path):
    assert "mgp_bal_bce_lora" not in accuracy.parse_args([]).recipes  # its own comparison, not in the main table
    args = accuracy.parse_args(["--recipes", "mgp_bal_bce,mgp_bal_bce_lora"])
    full = accuracy.recipe_commands("mgp_bal_bce", args, tmp_path)
    lora = accuracy.recipe_commands("mgp_bal_bce_lora", args, tmp_path)
    assert full[0] == lora[0] and full[0][2] == tmp_path / "mgp"  # one MGP stage, reused by the second recipe
    full_argv, lora_argv = full[1][1], lora[1][1]
    assert lora[1][2] == tmp_path / "mgp_bal_bce_lora" != full[1][2]
    assert lora_argv[lora_argv.index("--peft") + 1] == "lora" and "--peft" not in full_argv
    assert lora_argv[lora_argv.index("--lora_r") + 1] == "8"
    # otherwise the same fine-tuning: equal epochs, loss, layer decay, augmentation
    strip = {"--output_dir", "--peft", "--lora_r", "--lora_alpha", "--merge_adapter"}
    same = [[a for i, a in enumerate(v) if a not in strip and v[i - 1] not in strip] for v in (full_argv, lora_argv)]
    assert same[0] == same[1]


def test_lora_training_flops_skip_the_frozen_weight_gradients():
    from flops import ViTDims, classifier_forward_flops, mgp_forward_flops

    counts = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    settings = accuracy.settings_of(accuracy.parse_args(["--epochs", "2", "--mgp_epochs", "3"]))
    dims = ViTDims(**accuracy.VIT_DIMS, num_labels=10)
    classifier, mgp = classifier_forward_flops(dims)["total"], mgp_forward_flops(dims)["total"]
    images = sum(counts)
    full = accuracy.training_tflops({"recipe": "mgp_bal_bce", "settings": settings, "class_counts": counts})
    lora = accuracy.training_tflops({"recipe": "mgp_bal_bce_lora", "settings": settings, "class_counts": counts})
    assert full == pytest.approx((2 * images * 3 * classifier + 3 * images * 3 * mgp) / 1e12)
    assert lora == pytest.approx((2 * images * 2 * classifier + 3 * images * 3 * mgp) / 1e12)


def test_report_shows_what_was_trained_only_when_the_results_carry_it(tmp_path):
    old = fake_result("bal_bce", 0, 0.5, 0.2)
    old.update(name="Bal-BCE", date="d", commands=["python x"], wall_time_s=60.0, class_counts=[3, 1],
               label_names=None)
    old["metrics"]["per_class_accuracy"] = [0.5, 0.5]
    accuracy.write_report([old], tmp_path / "r")
    assert "params trained" not in (tmp_path / "r.md").read_text()
    new = {**old, "recipe": "mgp_bal_bce_lora", "name": "MGP + Bal-BCE, LoRA",
           "train": {"trainable_parameters": 12345, "total_parameters": 1234567, "train_samples_per_second": 321.4}}
    new["settings"] = {**old["settings"], "mgp_epochs": 12}
    accuracy.write_report([old, new], tmp_path / "r")
    rows = [line for line in (tmp_path / "r.md").read_text().splitlines() if line.startswith("| ")]
    assert "params trained | train img/s" in rows[0]
    assert "| 12,345 of 1,234,567 | 321 |" in rows[-1] and "| - | - |" in rows[-2]
    assert all(row.count("|") == rows[0].count("|") for row in rows)


def test_validation_and_the_two_experts_in_the_report(tmp_path):
    run = tmp_path / "deit_lt"
    run.mkdir()
    assert accuracy.read_validation(run) is None  # no trainer_state.json
    log = [{"epoch": 1.0, "loss": 2.0}, {"epoch": 1.0, "eval_accuracy": 0.31, "step": 10},
           {"epoch": 2.0, "eval_accuracy": 0.52, "step": 20}, {"epoch": 3.0, "eval_accuracy": 0.47, "step": 30}]
    (run / "trainer_state.json").write_text(json.dumps({"best_metric": 0.52, "best_global_step": 20,
                                                        "log_history": log}))
    assert accuracy.read_validation(run) == {"best": 0.52, "best_step": 20, "last": 0.47}

    old = fake_result("bal_bce", 0, 0.5, 0.2)
    old.update(name="Bal-BCE", date="d", commands=["python x"], wall_time_s=60.0, class_counts=[3, 1],
               label_names=None)
    old["metrics"]["per_class_accuracy"] = [0.5, 0.5]
    student = {**old, "recipe": "deit_lt", "name": "DeiT-LT", "validation": accuracy.read_validation(run),
               "settings": {**old["settings"], "teacher": "cifar10lt_teacher", "teacher_epochs": None}}
    heads = {"": (0.6, 0.3), "cls_": (0.9, 0.1), "distillation_": (0.4, 0.8)}  # (head, tail) accuracy
    student["metrics"] = {**old["metrics"], **{f"{p}index_head_accuracy": h for p, (h, _) in heads.items()},
                          **{f"{p}index_tail_accuracy": t for p, (_, t) in heads.items()}}
    accuracy.write_report([old], tmp_path / "r")
    text = (tmp_path / "r.md").read_text()
    assert "| Val |" not in text and "two experts" not in text  # results without them: the table as before
    accuracy.write_report([old, student], tmp_path / "r")
    lines = (tmp_path / "r.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| recipe | seed | Many"))
    table = lines[start:start + 4]
    assert "| ECE | Val | epochs |" in table[0]
    assert "| 52.0 | cifar10lt_teacher teacher + 12 |" in table[-1] and "| - | 12 |" in table[-2]
    assert all(row.count("|") == table[0].count("|") for row in table)
    start = lines.index("| recipe | seed | logits | Many | Medium | Head | Mid | Tail | Acc |")
    experts = lines[start + 2:start + 5]
    assert [row.split(" | ")[2] for row in experts] == ["average", "CLS head", "DIST head"]
    # Head and Tail columns: the 3rd and 5th accuracy columns after Many, Medium
    assert [row.split(" | ")[5] for row in experts] == ["60.0", "90.0", "40.0"]
    assert [row.split(" | ")[7] for row in experts] == ["30.0", "10.0", "80.0"]


def test_combined_recipe_distils_a_student_started_from_the_shared_mgp_checkpoint(tmp_path):
    assert "mgp_deit_lt" not in accuracy.parse_args([]).recipes  # its own comparison
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "config.json").write_text("{}")
    args = accuracy.parse_args(["--recipes", "mgp_bal_bce,deit_lt,mgp_deit_lt", "--teacher_name_or_path",
                                str(teacher), "--epochs", "50", "--student_augmentation", "paper"])
    combined = accuracy.recipe_commands("mgp_deit_lt", args, tmp_path)
    assert [name for name, _, _ in combined] == ["mgp", "student"]
    assert combined[0] == accuracy.recipe_commands("mgp_bal_bce", args, tmp_path)[0]  # one MGP stage for both
    argv, plain = combined[1][1], accuracy.recipe_commands("deit_lt", args, tmp_path)[0][1]
    assert argv[argv.index("--model_name_or_path") + 1] == str(tmp_path / "mgp")
    assert argv[argv.index("--cls_loss_type") + 1] == "bal_bce" and argv[argv.index("--layer_decay") + 1] == "0.75"
    assert "--config_name" not in argv and combined[1][2] == tmp_path / "mgp_deit_lt"
    # otherwise DeiT-LT's student: the same teacher, DRW, augmentation and schedule
    model_flags = {"--model_name_or_path", "--cls_loss_type", "--layer_decay", "--config_name", "--image_size",
                   "--patch_size", "--config_overrides", "--output_dir"}
    same = [[a for i, a in enumerate(v) if a not in model_flags and v[i - 1] not in model_flags]
            for v in (argv, plain)]
    assert same[0] == same[1]
    result = {"recipe": "mgp_deit_lt", "settings": accuracy.settings_of(args), "class_counts": [5, 1]}
    assert accuracy.epochs_cell(result) == "50 MGP + teacher teacher + 50"
    assert accuracy.training_tflops(result) is None  # the teacher's FLOPs are not counted


def test_results_record_the_machine_and_the_commit_they_measured(tmp_path):
    import os
    import subprocess

    environment = accuracy.run_environment()
    assert environment["machine"].startswith(f"{os.cpu_count()} CPU cores (")
    head = subprocess.run(["git", "-C", str(accuracy.REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True)
    if head.returncode != 0:
        assert environment["commit"] is None  # not a git checkout (a release archive)
    else:
        assert environment["commit"].split("+")[0] == head.stdout.strip()
    old = fake_result("bal_bce", 0, 0.5, 0.2)
    old.update(name="Bal-BCE", date="d", commands=["python x"], wall_time_s=60.0, class_counts=[3, 1],
               label_names=None)
    old["metrics"]["per_class_accuracy"] = [0.5, 0.5]
    new = {**old, "recipe": "bce", "machine": "2 CPU cores (X)", "commit": "abc1234"}
    accuracy.write_report([old, new], tmp_path / "r")
    text = (tmp_path / "r.md").read_text()
    assert "- Bal-BCE (d):" in text  # an earlier result without them
    assert "- BCE (d, 2 CPU cores (X), commit abc1234):" in text


def test_a_stage_clocks_every_attempt_and_its_log_keeps_the_earlier_ones(tmp_path):
    out, log = tmp_path / "run", tmp_path / "logs" / "stage.log"
    out.mkdir()
    # an earlier attempt of 100 s (closed by bench/park_runs.py park) and one killed unparked (no end: not counted)
    (out / accuracy.STAGE_CLOCK).write_text(json.dumps([[1000.0, 1100.0], [2000.0, None]]))
    log.parent.mkdir()
    log.write_text("earlier attempt\n")
    total = accuracy.run_stage("student", [sys.executable, "-c", "import time; time.sleep(0.2)"], log, {}, out)
    segments = json.loads((out / accuracy.STAGE_CLOCK).read_text())
    assert len(segments) == 3 and segments[:2] == [[1000.0, 1100.0], [2000.0, None]]
    assert 0.2 <= segments[2][1] - segments[2][0] < 5
    assert total == pytest.approx(100.0 + segments[2][1] - segments[2][0])
    assert log.read_text().startswith("earlier attempt\n$ ")
    with pytest.raises(RuntimeError, match="stage 'student' failed"):
        accuracy.run_stage("student", [sys.executable, "-c", "raise SystemExit(3)"], log, {}, out)
    assert json.loads((out / accuracy.STAGE_CLOCK).read_text())[3][1] is not None
