"""bench/publish_student.py: the seed-0 student of the arm with the best validation accuracy is copied (without its
training arguments or checkpoints) and evaluated by run_eval.py into the model folder; an already published run is
left alone; a chosen run that is not on this machine is a clear error."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import publish_student  # noqa: E402


def _run(tmp_path, arm, validation, accuracy, ece, seed=0):
    settings = {"epochs": 50, "seed": seed, "imbalance_factor": 100.0, "max_eval_samples": None}
    if arm != "none":
        settings["student_augmentation"] = arm
    signature = f"{arm}{seed}"
    folder = tmp_path / "outputs" / signature / "deit_lt"
    return {"recipe": "deit_lt", "seed": seed, "signature": signature, "settings": settings,
            "output_dir": str(folder), "validation": {"best": validation},
            "metrics": {"accuracy": accuracy, "ece": ece}}


def _results(tmp_path, runs, with_folders=True):
    results_dir = tmp_path / "results"
    results_dir.mkdir(exist_ok=True)
    (results_dir / "deit_lt_cifar10lt.json").write_text(json.dumps({"results": runs}))
    for run in runs if with_folders else []:
        folder = Path(run["output_dir"])
        (folder / "checkpoint-10").mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "model.safetensors", "README.md", "training_args.bin"):
            (folder / name).write_text(f"{run['signature']} {name}")
    return results_dir


def test_the_arm_with_the_best_seed0_validation_is_copied_and_evaluated(tmp_path, monkeypatch):
    runs = [_run(tmp_path, "none", 0.70, 0.72, 0.10), _run(tmp_path, "paper", 0.74, 0.71, 0.12),
            _run(tmp_path, "none", 0.90, 0.90, 0.10, seed=1)]  # a better seed 1 does not choose the arm
    results_dir = _results(tmp_path, runs)
    commands = []
    monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: commands.append((command, kwargs)))
    target = tmp_path / "models" / "cifar10lt_deit_lt"
    message = publish_student.publish(results_dir, target, tmp_path / "outputs", tmp_path / "data", "python")
    assert "paper arm" in message
    assert sorted(p.name for p in target.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert (target / "model.safetensors").read_text() == "paper0 model.safetensors"
    (command, kwargs), = commands
    source = runs[1]["output_dir"]
    assert command[command.index("--model_name_or_path") + 1] == source
    assert Path(publish_student.REPO, command[command.index("--output_dir") + 1]).resolve() == target.resolve()
    assert command[command.index("--index_bounds") + 1] == "cifar10" and "--max_eval_samples" not in command
    assert kwargs["check"] and kwargs["cwd"] == publish_student.REPO


def test_a_published_run_is_left_alone_and_a_missing_one_is_a_clear_error(tmp_path, monkeypatch):
    runs = [_run(tmp_path, "none", 0.74, 0.72, 0.10), _run(tmp_path, "paper", 0.70, 0.71, 0.12)]
    results_dir = _results(tmp_path, runs, with_folders=False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("nothing to evaluate"))
    target = tmp_path / "models" / "cifar10lt_deit_lt"
    target.mkdir(parents=True)
    with pytest.raises(SystemExit, match=r"chosen arm's run \(none, settings none0\) is not on this machine.*"
                                         r"bench/park_runs.py restore"):
        publish_student.publish(results_dir, target, tmp_path / "outputs", tmp_path / "data", "python")
    (target / "eval_results.json").write_text(json.dumps({"accuracy": 0.72, "ece": 0.10}))
    assert "already holds the chosen arm (none" in publish_student.publish(
        results_dir, target, tmp_path / "outputs", tmp_path / "data", "python")
    # the other arm's results in the folder are not the chosen run's
    (target / "eval_results.json").write_text(json.dumps({"accuracy": 0.71, "ece": 0.12}))
    with pytest.raises(SystemExit, match="not on this machine"):
        publish_student.publish(results_dir, target, tmp_path / "outputs", tmp_path / "data", "python")


def test_the_chosen_arm_is_printed_only_once_both_arms_are_measured(tmp_path):
    one = _results(tmp_path, [_run(tmp_path, "none", 0.74, 0.72, 0.10)], with_folders=False)
    with pytest.raises(SystemExit, match=r"both student arms need a seed-0 run first \(measured: \['none'\]\)"):
        publish_student.chosen_arm(one)
    both = _results(tmp_path, [_run(tmp_path, "none", 0.70, 0.72, 0.10), _run(tmp_path, "paper", 0.74, 0.71, 0.12)],
                    with_folders=False)
    assert publish_student.chosen_arm(both) == "paper"
