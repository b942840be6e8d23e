#!/usr/bin/env python
"""Choose the short-budget student settings of `bench/accuracy.py` on the VALIDATION split only.

Runs the Bal-BCE recipe of `bench/accuracy.py` (same model, budget, seed and command line) once per candidate
setting and reports the best validation accuracy over the epochs (what model selection sees; read from
`trainer_state.json`), never the test split. Appends to `<prefix>.json` and writes `<prefix>.md`.

    python bench/tune_short_budget.py                 # the candidates below, 12 epochs each
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy  # noqa: E402

NONE = ["--mixup", "0", "--cutmix", "0", "--label_smoothing", "0", "--rand_augment", "false", "--random_erasing", "0"]
PAPER = ["--mixup", "0.8", "--cutmix", "1.0", "--label_smoothing", "0.1", "--rand_augment", "true",
         "--random_erasing", "0.25"]
CANDIDATES = {
    "none_bf16": NONE + ["--bf16"],
    "paper_bf16": PAPER + ["--bf16"],
    "none_fp32": NONE,
    "none_dp0_bf16": NONE + ["--drop_path_rate", "0", "--bf16"],
}


def best_validation(output_dir: Path) -> dict:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    evals = [h for h in state["log_history"] if "eval_accuracy" in h]
    best = max(evals, key=lambda h: h["eval_accuracy"])
    return {"best_validation_accuracy": best["eval_accuracy"], "best_epoch": best["epoch"],
            "last_validation_accuracy": evals[-1]["eval_accuracy"],
            "validation_curve": [round(h["eval_accuracy"], 4) for h in evals]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--epochs", default="12")
    parser.add_argument("--prefix", default=str(accuracy.REPO / "bench" / "results" / "accuracy_tuning_cifar10lt"))
    parser.add_argument("--work_dir", default=str(accuracy.REPO / "outputs" / "bench_tuning"))
    args = parser.parse_args(argv)
    prefix = Path(args.prefix)
    json_path = prefix.with_suffix(".json")
    results = json.loads(json_path.read_text()) if json_path.exists() else []
    for name in args.candidates.split(","):
        acc_args = accuracy.parse_args(["--recipes", "bal_bce", "--epochs", args.epochs, "--work_dir", args.work_dir,
                                        *CANDIDATES[name]])
        (stage, argv, out), = accuracy.recipe_commands("bal_bce", acc_args, Path(args.work_dir) / name)
        seconds = accuracy.run_stage(stage, argv, Path(args.work_dir) / "logs" / f"{name}.log",
                                     {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}, out)
        entry = {"candidate": name, "flags": CANDIDATES[name], "wall_time_s": seconds,
                 "command": shlex.join(["python", *(accuracy.display_path(a) for a in argv[1:])]),
                 **best_validation(out)}
        results = [r for r in results if r["candidate"] != name] + [entry]
        json_path.write_text(json.dumps(results, indent=2))
        print(f"[{name}] best validation accuracy {100 * entry['best_validation_accuracy']:.1f} "
              f"(epoch {entry['best_epoch']:.0f}), {entry['wall_time_s'] / 60:.1f} min", flush=True)
        lines = ["# Short-budget settings, chosen on the validation split (Bal-BCE, 12 epochs, CIFAR-10-LT)", "",
                 "Validation: the balanced split drawn from the images the long-tail draw left unused (the head "
                 "class has none left). The test split is not read.", "",
                 "| candidate | best val acc | epoch | last val acc | min |", "|---|---|---|---|---|"]
        for r in results:
            lines.append(f"| {r['candidate']} | {100 * r['best_validation_accuracy']:.1f} | {r['best_epoch']:.0f} | "
                         f"{100 * r['last_validation_accuracy']:.1f} | {r['wall_time_s'] / 60:.1f} |")
        lines += ["", "Commands:", ""] + [f"- {r['candidate']}: `{r['command']}`" for r in results]
        prefix.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
