#!/usr/bin/env python
"""The results' headline comparisons with their spread over seeds, from the committed results files.

Each comparison is arm A - arm B on one metric, each arm a set of runs of one recipe (and settings) in a
`bench/results/*.json` file written by `bench/accuracy.py` or `bench/timm_loop.py`. The verdict:

- sigma: the per-run standard deviation over seeds (sample std, n - 1), pooled over the two arms
  (sqrt((s_A^2 + s_B^2) / 2)) when both have two or more seeds, else that of the arm that has them. When an arm has
  fewer than three seeds and the comparison names a noise estimate (the same metric's std of Bal-BCE in the 12-epoch
  seeds table, three seeds), sigma is the larger of the two, and the row says which it is: two seeds do not measure a
  spread well enough to make a tie a win;
- |A - B| <= 2 sigma is a tie; beyond it, the larger arm is better.

    python bench/compare.py                        # bench/results/comparisons_cifar10lt.{md,json}
    python bench/compare.py --results_dir DIR --output_prefix /tmp/comparisons

A comparison whose runs are not in the files yet is listed under "Not measured". Below the comparisons, DeiT-LT side
by side: the teacher (its model folder's eval_results.json), the student's averaged logits and each head alone (the
arm chosen on validation), and Bal-BCE from scratch at the same budget, per head/mid/tail and many/medium.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

from accuracy import EXPERT_COLUMNS, load_results  # bench's own results-file reader and columns

REPO = Path(__file__).resolve().parent.parent
SEEDS_TABLE = "accuracy_cifar10lt_seeds"  # 12 epochs, four losses, seeds 0-2: the noise estimate
DEIT_LT_TABLE = "deit_lt_cifar10lt"  # 50 epochs: the DeiT-LT students and Bal-BCE from scratch
TEACHER = REPO / "bench" / "models" / "cifar10lt_teacher"  # the students' committed teacher


@dataclass(frozen=True)
class Arm:
    """The runs of `recipe` in `<results_dir>/<table>.json` whose settings contain `settings`; `metric` overrides the
    comparison's (the two heads of one DeiT-LT run). `chosen_by_validation`: a settings key whose value is picked as
    that of the seed-0 run with the best validation accuracy (the student's augmentation arm), never by test."""

    table: str
    recipe: str
    settings: dict = field(default_factory=dict)
    metric: str | None = None
    chosen_by_validation: str | None = None
    label: str = ""


@dataclass(frozen=True)
class Comparison:
    name: str
    metric: str
    a: Arm
    b: Arm
    noise: Arm | None = None  # the floor of sigma when an arm has fewer than three seeds


STUDENT = Arm(DEIT_LT_TABLE, "deit_lt", {"epochs": 50}, chosen_by_validation="student_augmentation",
              label="DeiT-LT student")
NOISE = Arm(SEEDS_TABLE, "bal_bce", label="Bal-BCE, 12 epochs")  # the same metric's spread over three seeds
SCRATCH_50 = Arm(DEIT_LT_TABLE, "bal_bce", {"epochs": 50}, label="Bal-BCE from scratch")
COMPARISONS = (
    Comparison("Bal-BCE - BCE on the tail (12 epochs)", "index_tail_accuracy",
               Arm(SEEDS_TABLE, "bal_bce", label="Bal-BCE"), Arm(SEEDS_TABLE, "bce", label="BCE")),
    Comparison("Bal-CE - CE on the tail (12 epochs)", "index_tail_accuracy",
               Arm(SEEDS_TABLE, "bal_ce", label="Bal-CE"), Arm(SEEDS_TABLE, "ce", label="CE")),
    Comparison("MGP + Bal-BCE - Bal-BCE from scratch at equal training FLOPs (30 + 34 MGP vs 50 epochs)", "accuracy",
               Arm("mgp_equal_flops_cifar10lt", "mgp_bal_bce", label="MGP + Bal-BCE"),
               Arm("mgp_equal_flops_cifar10lt", "bal_bce", label="Bal-BCE"),
               noise=NOISE),
    Comparison("DeiT-LT - Bal-BCE from scratch (50 epochs)", "accuracy", STUDENT, SCRATCH_50, noise=NOISE),
    Comparison("DeiT-LT - Bal-BCE from scratch on the tail (50 epochs)", "index_tail_accuracy", STUDENT, SCRATCH_50,
               noise=NOISE),
    Comparison("DeiT-LT's DIST head - its CLS head on the tail", "index_tail_accuracy",
               replace(STUDENT, metric="distillation_index_tail_accuracy", label="DIST head"),
               replace(STUDENT, metric="cls_index_tail_accuracy", label="CLS head"), noise=NOISE),
    Comparison("DeiT-LT's CLS head - its DIST head on the head classes", "index_head_accuracy",
               replace(STUDENT, metric="cls_index_head_accuracy", label="CLS head"),
               replace(STUDENT, metric="distillation_index_head_accuracy", label="DIST head"), noise=NOISE),
    Comparison("the package - an independent timm loop, Bal-BCE (12 epochs)", "accuracy",
               Arm(SEEDS_TABLE, "bal_bce", label="the package"),
               Arm("timm_loop_cifar10lt", "bal_bce", label="timm loop")),
    Comparison("the package - an independent timm loop, Bal-BCE on the tail (12 epochs)", "index_tail_accuracy",
               Arm(SEEDS_TABLE, "bal_bce", label="the package"),
               Arm("timm_loop_cifar10lt", "bal_bce", label="timm loop")),
)


class NotMeasured(LookupError):
    pass


def load_table(results_dir: Path, table: str) -> list[dict]:
    path = results_dir / f"{table}.json"
    if not path.exists():
        raise NotMeasured(f"{path.name} does not exist")
    return load_results(path)


def matching_runs(arm: Arm, results_dir: Path) -> list[dict]:
    """Every run of the arm's recipe with the arm's settings (all values of `chosen_by_validation`)."""
    return [r for r in load_table(results_dir, arm.table) if r["recipe"] == arm.recipe and
            all(r["settings"].get(k) == v for k, v in arm.settings.items())]


def arm_runs(arm: Arm, results_dir: Path) -> tuple[list[dict], dict]:
    """The arm's runs and the settings they were drawn with (with `chosen_by_validation`'s value: that of the seed-0
    run with the best validation accuracy)."""
    runs = matching_runs(arm, results_dir)
    settings = dict(arm.settings)
    if arm.chosen_by_validation and runs:
        seed0 = [r for r in runs if r["settings"]["seed"] == 0 and (r.get("validation") or {}).get("best") is not None]
        if not seed0:
            raise NotMeasured(f"{arm.table}.json: no seed-0 {arm.recipe} run with a validation accuracy to choose "
                              f"{arm.chosen_by_validation} by")
        best = max(seed0, key=lambda r: r["validation"]["best"])
        settings[arm.chosen_by_validation] = best["settings"].get(arm.chosen_by_validation)
        runs = [r for r in runs if r["settings"].get(arm.chosen_by_validation) == settings[arm.chosen_by_validation]]
    return runs, settings


def arm_values(arm: Arm, metric: str, results_dir: Path) -> tuple[list[float], dict]:
    """The arm's metric per seed (sorted by seed) and the settings it was drawn with."""
    runs, settings = arm_runs(arm, results_dir)
    key = arm.metric or metric
    values = {r["settings"]["seed"]: r["metrics"][key] for r in runs if r["metrics"].get(key) is not None}
    if not values:
        raise NotMeasured(f"{arm.table}.json has no {arm.recipe} run with {key}"
                          + (f" and settings {arm.settings}" if arm.settings else ""))
    return [values[s] for s in sorted(values)], settings


def spread(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def verdict(a: list[float], b: list[float], noise: float | None = None) -> dict:
    """A - B, sigma by the rule in the module docstring (`noise`: the noise estimate, when it applies), and
    'A better' / 'B better' / 'tie' (|A - B| <= 2 sigma)."""
    s_a, s_b = spread(a), spread(b)
    sigma, source = None, None
    if s_a is not None and s_b is not None:
        sigma, source = math.sqrt((s_a ** 2 + s_b ** 2) / 2), "pooled"
    elif s_a is not None or s_b is not None:
        sigma, source = (s_a if s_a is not None else s_b), ("A" if s_a is not None else "B")
    if noise is not None and (sigma is None or noise > sigma):
        sigma, source = noise, "noise estimate"
    if sigma is None:
        raise NotMeasured("neither arm has two seeds and there is no noise estimate")
    difference = statistics.fmean(a) - statistics.fmean(b)
    call = "tie" if abs(difference) <= 2 * sigma else ("A better" if difference > 0 else "B better")
    return {"difference": difference, "sigma": sigma, "sigma_source": source, "verdict": call}


def evaluate(comparison: Comparison, results_dir: Path) -> dict:
    a, a_settings = arm_values(comparison.a, comparison.metric, results_dir)
    b, b_settings = arm_values(comparison.b, comparison.metric, results_dir)
    noise = None
    if comparison.noise is not None and min(len(a), len(b)) < 3:
        noise = spread(arm_values(comparison.noise, comparison.metric, results_dir)[0])
    row = verdict(a, b, noise)
    return {"name": comparison.name, "metric": comparison.metric,
            "a": {"label": comparison.a.label, "values": a, "settings": a_settings},
            "b": {"label": comparison.b.label, "values": b, "settings": b_settings},
            **row, "noise_from": f"{comparison.noise.table}: {comparison.noise.label}"
            if row["sigma_source"] == "noise estimate" else None}


def arm_cell(arm: dict) -> str:
    values = arm["values"]
    std = spread(values)
    return (f"{arm['label']}: {100 * statistics.fmean(values):.1f}"
            + ("" if std is None else f" ± {100 * std:.1f}") + f" (n = {len(values)})")


def side_by_side(results_dir: Path, teacher: Path) -> list[dict]:
    """DeiT-LT's table: per row a label, the number of runs and, per EXPERT_COLUMNS metric, the mean and std over
    seeds (None where not measured)."""
    rows = []
    teacher_results = teacher / "eval_results.json"
    if teacher_results.exists():
        scores = json.loads(teacher_results.read_text())
        rows.append({"label": f"teacher ({teacher.name})", "n": 1,
                     "metrics": {key: (scores.get(key), None) for _, key in EXPERT_COLUMNS}})
    arms = [(f"{STUDENT.label}: {name}", STUDENT, prefix)
            for name, prefix in (("averaged logits", ""), ("CLS head", "cls_"), ("DIST head", "distillation_"))]
    for label, arm, prefix in [*arms, (f"{SCRATCH_50.label} (50 epochs)", SCRATCH_50, "")]:
        metrics, n = {}, 0
        for _, key in EXPERT_COLUMNS:
            try:
                values = arm_values(arm, prefix + key, results_dir)[0]
            except NotMeasured:
                metrics[key] = (None, None)
                continue
            metrics[key], n = (statistics.fmean(values), spread(values)), max(n, len(values))
        if n:
            rows.append({"label": label, "n": n, "metrics": metrics})
    return rows


def side_by_side_lines(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = ["", "## DeiT-LT side by side", "",
             "Test split, in %: mean ± std over seeds (n runs); the student's augmentation as chosen on seed-0 "
             "validation. Many/Medium: the count split; Head/Mid/Tail: the index split.", "",
             "| | n | " + " | ".join(name for name, _ in EXPERT_COLUMNS) + " |",
             "|---|---|" + "---|" * len(EXPERT_COLUMNS)]
    for row in rows:
        cells = []
        for _, key in EXPERT_COLUMNS:
            mean, std = row["metrics"][key]
            cells.append("-" if mean is None else f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}"))
        lines.append(f"| {row['label']} | {row['n']} | " + " | ".join(cells) + " |")
    return lines


def report_lines(rows: list[dict], missing: list[tuple[str, str]]) -> list[str]:
    lines = ["# Headline comparisons with their spread over seeds", "",
             "`python bench/compare.py`, from the results files beside this one. A - B in points; sigma: the per-run "
             "standard deviation over seeds (n - 1), pooled over both arms when both have two or more seeds, else "
             "that of the arm that has them; with fewer than three seeds in an arm, at least the noise estimate "
             "named (the 12-epoch seeds table's); |A - B| <= 2 sigma is a tie.", "",
             "| comparison | A (mean ± std) | B (mean ± std) | A - B | sigma | verdict |", "|---|---|---|---|---|---|"]
    for row in rows:
        source = row["noise_from"] or {"pooled": "pooled", "A": "A's", "B": "B's"}[row["sigma_source"]]
        lines.append(f"| {row['name']} | {arm_cell(row['a'])} | {arm_cell(row['b'])} | "
                     f"{100 * row['difference']:+.1f} | {100 * row['sigma']:.1f} ({source}) | {row['verdict']} |")
    if missing:
        lines += ["", "Not measured:", ""] + [f"- {name}: {why}" for name, why in missing]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results_dir", default=str(REPO / "bench" / "results"))
    parser.add_argument("--output_prefix", default=None, help="Default: <results_dir>/comparisons_cifar10lt.")
    parser.add_argument("--teacher", default=str(TEACHER), help="The DeiT-LT students' teacher: a model folder with "
                        "eval_results.json (run_eval.py --index_bounds cifar10).")
    args = parser.parse_args(argv)
    results_dir = Path(args.results_dir)
    if not results_dir.is_dir():
        parser.error(f"--results_dir {results_dir}: not a folder")
    prefix = Path(args.output_prefix or results_dir / "comparisons_cifar10lt")
    rows, missing = [], []
    for comparison in COMPARISONS:
        try:
            rows.append(evaluate(comparison, results_dir))
        except NotMeasured as why:
            missing.append((comparison.name, str(why)))
    table = side_by_side(results_dir, Path(args.teacher))
    report = "\n".join(report_lines(rows, missing) + side_by_side_lines(table)) + "\n"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_suffix(".json").write_text(json.dumps({"comparisons": rows, "not_measured": missing,
                                                       "deit_lt_side_by_side": table}, indent=2))
    prefix.with_suffix(".md").write_text(report)
    print(report, end="")
    return rows, missing


if __name__ == "__main__":
    main()
