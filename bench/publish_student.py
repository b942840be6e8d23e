#!/usr/bin/env python
"""Publish the 50-epoch DeiT-LT student of the augmentation arm chosen on validation as a committed model folder.

The arm is `bench/compare.py`'s: of the seed-0 runs in `bench/results/deit_lt_cifar10lt.json`, the one with the best
validation accuracy (never the test split's). Its output folder (under `outputs/`, where `bench/accuracy.py` wrote it)
is copied without checkpoints into `bench/models/cifar10lt_deit_lt`, and `scripts/run_eval.py` evaluates the copy on
the test split and writes its card from the training folder's, with the teacher linked from the new place
(`../cifar10lt_teacher`). Run it after each arm: a better arm replaces the folder; when the folder already holds the
chosen run (its test accuracy and ECE), nothing changes, even on a machine without that run's outputs.

    python bench/publish_student.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import compare

REPO = compare.REPO
SKIPPED = ("training_args.bin",)  # the rest of a finished run's top level: model, card, processor, results, plots


def source_folder(run: dict, work_dir: Path) -> Path:
    """Where the run's output folder is on this machine: as recorded, else under `work_dir` by its settings."""
    recorded = Path(run["output_dir"])
    return recorded if recorded.is_dir() else work_dir / run["signature"] / run["recipe"]


def is_published(run: dict, target: Path) -> bool:
    """The folder's test results are the run's own (its accuracy and ECE, which depend on every logit)."""
    path = target / "eval_results.json"
    if not path.is_file():
        return False
    published = json.loads(path.read_text())
    return all(abs(published.get(key, -1.0) - run["metrics"][key]) < 1e-6 for key in ("accuracy", "ece"))


def arm_name(settings: dict) -> str:
    """The augmentation arm of a run's settings (bench/accuracy.py records the key only for the paper arm)."""
    return settings.get(compare.STUDENT.chosen_by_validation) or "none"


def chosen_arm(results_dir: Path) -> str:
    """The chosen augmentation arm once both arms have a seed-0 run (what the later runs of the arm need)."""
    runs = [r for r in compare.matching_runs(compare.STUDENT, results_dir) if r["settings"]["seed"] == 0]
    measured = {arm_name(r["settings"]) for r in runs}
    if measured != {"none", "paper"}:
        raise SystemExit(f"both student arms need a seed-0 run first (measured: {sorted(measured) or 'none yet'})")
    return arm_name(compare.arm_runs(compare.STUDENT, results_dir)[1])


def publish(results_dir: Path, target: Path, work_dir: Path, dataset: Path, python: str = sys.executable) -> str:
    runs, settings = compare.arm_runs(compare.STUDENT, results_dir)
    seed0 = [r for r in runs if r["settings"]["seed"] == 0]
    if not seed0:
        raise compare.NotMeasured(f"no seed-0 {compare.STUDENT.recipe} run with settings {settings}")
    run = seed0[0]
    arm = arm_name(settings)
    if is_published(run, target):
        return f"{target} already holds the chosen arm ({arm}, settings {run['signature']})"
    source = source_folder(run, work_dir)
    if not (source / "config.json").is_file():
        raise SystemExit(f"the chosen arm's run ({arm}, settings {run['signature']}) is not on this machine "
                         f"({source}): restore it (bench/park_runs.py restore) or rerun it with bench/accuracy.py")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file() and path.name not in SKIPPED:
            shutil.copy2(path, target / path.name)
    subsample = run["settings"].get("max_eval_samples")  # a smoke run's: its test split was cut as well
    command = [python, str(REPO / "scripts" / "run_eval.py"), "--model_name_or_path", str(source),
               "--output_dir", os.path.relpath(target, REPO), "--dataset_name", os.path.relpath(dataset, REPO),
               "--imbalance_factor", f"{run['settings']['imbalance_factor']:g}", "--index_bounds", "cifar10",
               "--per_device_eval_batch_size", "256", *(["--max_eval_samples", str(subsample)] if subsample else [])]
    subprocess.run(command, cwd=REPO, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return f"published the {arm} arm (settings {run['signature']}) from {source} into {target}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results_dir", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--target", type=Path, default=REPO / "bench" / "models" / "cifar10lt_deit_lt")
    parser.add_argument("--work_dir", type=Path, default=REPO / "outputs" / "bench_accuracy",
                        help="bench/accuracy.py's --work_dir.")
    parser.add_argument("--dataset", type=Path, default=REPO.parent / "shared" / "data" / "cifar10")
    parser.add_argument("--print_arm", action="store_true",
                        help="Only print the chosen arm (none or paper); an error until both arms are measured.")
    args = parser.parse_args(argv)
    if args.print_arm:
        print(chosen_arm(args.results_dir))
        return
    print(publish(args.results_dir, args.target.resolve(), args.work_dir, args.dataset.resolve()))


if __name__ == "__main__":
    main()
