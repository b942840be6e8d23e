#!/usr/bin/env python
"""`make demo`: the main job on the embedded offline default (scikit-learn digits made long-tailed, rho = 10).

METHOD=livt (default): MGP pretraining of a tiny LiVT -> Bal-BCE fine-tuning -> test evaluation, plus the same
fine-tuning budget with plain BCE for comparison. METHOD=deit_lt: a flat ResNet-32 teacher (SAM), then a DeiT-LT
student distilled from it. Each step runs one of the scripts next to this file, as its own process, and prints its
command line first; the table (Many/Medium/Few/Acc/ECE) reads each run's eval_results.json. Every run leaves a
loadable folder under outputs/demo/.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

from trainers.workflow import EVAL_RESULTS_FILE, format_results_table

SCRIPTS_DIR = os.path.dirname(os.path.abspath(__file__))

DATA = ["--dataset_name", "digits", "--imbalance_factor", "10", "--normalization", "digits"]

# LiVT: a small ViT for 32-px digits, 64 patch tokens of 4x4 pixels (with its MGP decoder)
LIVT_MODEL = ["--config_name", "tiny", "--image_size", "32", "--patch_size", "4", "--config_overrides",
              "hidden_size=96,num_hidden_layers=4,num_attention_heads=3,intermediate_size=384,"
              "decoder_hidden_size=64,decoder_num_hidden_layers=2,decoder_num_attention_heads=2,"
              "decoder_intermediate_size=256"]
LIVT_COMMON = ["--seed", "0", "--per_device_train_batch_size", "64", "--per_device_eval_batch_size", "128",
               "--dataloader_num_workers", "0", "--logging_steps", "50", "--disable_tqdm", "true"]

# DeiT-LT: the same small ViT as the student, 64 patch tokens plus CLS and DIST
DEIT_LT_STUDENT = ["--config_name", "tiny", "--image_size", "32", "--patch_size", "4", "--config_overrides",
                   "hidden_size=96,num_hidden_layers=4,num_attention_heads=3,intermediate_size=384"]
DEIT_LT_COMMON = ["--seed", "0", "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "128",
                  "--dataloader_num_workers", "0", "--logging_steps", "50", "--disable_tqdm", "true",
                  "--save_total_limit", "1"]


def run_script(script: str, args: list[str]) -> None:
    """Run `scripts/<script>` with `args` in its own process, as a user would; print the command line first."""
    path = os.path.join(SCRIPTS_DIR, script)
    print(f"\n$ {shlex.join(['python', os.path.relpath(path), *args])}\n", flush=True)
    subprocess.run([sys.executable, path, *args], check=True)


def read_test_metrics(output_dir: str) -> dict:
    """The test metrics a classification script wrote to `output_dir`."""
    with open(os.path.join(output_dir, EVAL_RESULTS_FILE), encoding="utf-8") as f:
        return json.load(f)


def run_livt(out: str, mgp_epochs: int, finetune_epochs: int) -> dict:
    """MGP pretraining, then Bal-BCE and plain-BCE fine-tuning from it; returns {row name: test metrics}."""
    mgp_dir = os.path.join(out, "livt_mgp")
    run_script("run_mgp.py", DATA + LIVT_MODEL + LIVT_COMMON + [
        "--output_dir", mgp_dir, "--num_train_epochs", str(mgp_epochs), "--learning_rate", "1e-3",
        "--warmup_steps", "0.05", "--save_strategy", "no",
    ])
    results = {}
    for loss in ("bal_bce", "bce"):
        finetune_dir = os.path.join(out, f"livt_{loss}")
        run_script("run_finetune.py", DATA + LIVT_COMMON + [
            "--model_name_or_path", mgp_dir, "--output_dir", finetune_dir, "--loss_type", loss,
            "--num_train_epochs", str(finetune_epochs), "--learning_rate", "1e-3", "--layer_decay", "0.75",
            "--drop_path_rate", "0.1", "--warmup_steps", "0.1", "--save_total_limit", "1",
        ])
        results[f"LiVT MGP + {loss.upper().replace('_', '-')}"] = read_test_metrics(finetune_dir)
    return results


def run_deit_lt(out: str, teacher_epochs: int, student_epochs: int) -> dict:
    """Teacher (CIFAR ResNet-32, SAM, Bal-CE), then the DeiT-LT student distilled from it, DRW from 80 % of its
    epochs; returns {row name: test metrics}."""
    teacher_dir, student_dir = os.path.join(out, "deit_lt_teacher"), os.path.join(out, "deit_lt_student")
    run_script("run_teacher.py", DATA + DEIT_LT_COMMON + [
        "--output_dir", teacher_dir, "--num_train_epochs", str(teacher_epochs), "--loss_type", "bal_ce",
        "--sam_rho", "0.05", "--sam_base_optimizer", "adamw", "--learning_rate", "2e-3", "--weight_decay", "0.05",
        "--warmup_steps", "0.05", "--rand_augment", "false",
    ])
    run_script("run_deit_lt.py", DATA + DEIT_LT_COMMON + DEIT_LT_STUDENT + [
        "--output_dir", student_dir, "--teacher_name_or_path", teacher_dir,
        "--num_train_epochs", str(student_epochs), "--learning_rate", "1e-3", "--warmup_steps", "0.05",
        "--rand_augment", "false", "--random_erasing", "0", "--drw_epoch", str(int(0.8 * student_epochs)),
    ])
    return {"ResNet-32 teacher (SAM, Bal-CE)": read_test_metrics(teacher_dir),
            "DeiT-LT student": read_test_metrics(student_dir)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="livt", choices=["livt", "deit_lt"])
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--mgp_epochs", type=int, default=100, help="LiVT: MGP pretraining epochs.")
    parser.add_argument("--finetune_epochs", type=int, default=60, help="LiVT: epochs of each fine-tuning.")
    parser.add_argument("--teacher_epochs", type=int, default=20, help="DeiT-LT: epochs of the teacher.")
    parser.add_argument("--student_epochs", type=int, default=100, help="DeiT-LT: epochs of the student.")
    args = parser.parse_args(argv)
    start = time.time()
    if args.method == "livt":
        results = run_livt(args.output_dir, args.mgp_epochs, args.finetune_epochs)
    else:
        results = run_deit_lt(args.output_dir, args.teacher_epochs, args.student_epochs)
    table = format_results_table(results)
    minutes = (time.time() - start) / 60
    report = f"{table}\n\nDigits-LT (rho = 10), balanced test split; wall time {minutes:.1f} min.\n"
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, f"results_{args.method}.md"), "w", encoding="utf-8") as f:
        f.write(report)
    with open(os.path.join(args.output_dir, f"results_{args.method}.json"), "w", encoding="utf-8") as f:
        json.dump({name: {k: v for k, v in m.items() if not isinstance(v, list)} for name, m in results.items()}, f,
                  indent=2)
    print("\n" + report)


if __name__ == "__main__":
    main()
