"""bench/accuracy.py: seeds, the spread over seeds, and DeiT-LT from a trained teacher (no training here)."""

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
