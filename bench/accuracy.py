#!/usr/bin/env python
"""CIFAR-10-LT (rho = 100) accuracy of every recipe of the package at an equal budget and seed.

A small ViT (128-d, 6 blocks, 4 heads, MLP 512, patch 4, 32 px; 64 patch tokens) is trained from scratch with each
recipe, through the package's own scripts called as subprocesses with CLI flags (what a user runs):

    ce, bce, bal_ce, bal_bce   scripts/run_finetune.py --loss_type ...      (from scratch, layer decay off)
    mgp_bal_bce                scripts/run_mgp.py (MGP, --mgp_epochs), then run_finetune.py --model_name_or_path
                               <mgp> --loss_type bal_bce --layer_decay 0.75 (LiVT)
    mgp_bal_bce_lora           the same MGP checkpoint (shared with mgp_bal_bce), fine-tuned with LoRA instead
                               (--peft lora --lora_r 8 --lora_alpha 16: adapters on qkv, head and fc_norm in full;
                               --merge_adapter: the merged model in <run>/merged)
    deit_lt                    scripts/run_teacher.py (CIFAR ResNet-32, SAM, Bal-CE, --teacher_epochs), then
                               scripts/run_deit_lt.py (CLS + DIST, DRW at --drw_fraction of the epochs, no mixup
                               after DRW: the official CIFAR recipe)
    mgp_deit_lt                LiVT + DeiT-LT: the DeiT-LT student starts from the MGP checkpoint (shared with
                               mgp_bal_bce) with Bal-BCE on the CLS head and layer decay 0.75; the same teacher

Equal budget: every student sees `--epochs` epochs at batch `--batch_size` with the same seed, learning rate,
schedule and augmentation, and model selection on the validation split (CIFAR-10-LT's standard 12,406 training
images, 5000 ... 50; validation: 10% of each class drawn from the images the long-tail draw left unused, so the head
class has none). Augmentation at this budget: crop + flip, no RandAugment, MixUp/CutMix, smoothing or erasing (the
scripts' defaults are the papers', tuned for hundreds of epochs; the flags below restore them), chosen on the
validation split with `bench/tune_short_budget.py`. MGP + Bal-BCE
additionally pretrains for `--mgp_epochs`, DeiT-LT additionally trains its teacher for `--teacher_epochs` (the papers'
protocols: both stages come on top of the classifier's schedule). The test split (10,000 balanced images) is evaluated
once at the end of each run.

Reported per recipe: Many/Medium/Few (LiVT's count split: > 100, 20..100, < 20 training images; CIFAR-10-LT rho=100
has no class under 20 images, so Few is empty), DeiT-LT's head/mid/tail index split (classes sorted by training count,
bounds [3, 7]: the scripts' `--index_bounds cifar10`, read from their eval_results.json),
accuracy, ECE (15 bins), and a per-class accuracy plot with all recipes.

One recipe at a time; each result is appended to `<prefix>.json` as soon as it is done, so an interrupted run resumes
at the next recipe (a recipe is skipped when a result with the same settings is already there). Writes `<prefix>.md`
and `<prefix>_per_class.png`.

    python bench/accuracy.py                                   # all recipes, 12 epochs each (hours on 2 CPU cores)
    python bench/accuracy.py --recipes bal_bce,deit_lt --epochs 30
    python bench/accuracy.py --epochs 1 --max_train_samples 512 --max_eval_samples 512 \
        --results_prefix /tmp/acc_smoke --work_dir /tmp/acc_smoke_runs   # a smoke test of the wiring (minutes)
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10"
RECIPES = ("ce", "bce", "bal_ce", "bal_bce", "mgp_bal_bce", "mgp_bal_bce_lora", "deit_lt", "mgp_deit_lt")
RECIPE_NAMES = {"ce": "CE", "bce": "BCE", "bal_ce": "Bal-CE", "bal_bce": "Bal-BCE", "mgp_bal_bce": "MGP + Bal-BCE",
                "mgp_bal_bce_lora": "MGP + Bal-BCE, LoRA", "deit_lt": "DeiT-LT", "mgp_deit_lt": "MGP + DeiT-LT"}
MGP_RECIPES = ("mgp_bal_bce", "mgp_bal_bce_lora", "mgp_deit_lt")
DEIT_LT_RECIPES = ("deit_lt", "mgp_deit_lt")
# LoRA and the combined recipe: comparisons of their own
DEFAULT_RECIPES = tuple(r for r in RECIPES if r not in ("mgp_bal_bce_lora", "mgp_deit_lt"))
LORA_FLAGS = ["--peft", "lora", "--lora_r", "8", "--lora_alpha", "16", "--merge_adapter", "true"]
ENCODER = "hidden_size=128,num_hidden_layers=6,num_attention_heads=4,intermediate_size=512"
# the same sizes for bench/flops.py (patch 4 on 32 px, the MGP decoder below, 75% masking)
VIT_DIMS = dict(image_size=32, patch_size=4, hidden_size=128, num_hidden_layers=6, intermediate_size=512,
                decoder_hidden_size=128, decoder_num_hidden_layers=2, decoder_intermediate_size=512)
DECODER = ("decoder_hidden_size=128,decoder_num_hidden_layers=2,decoder_num_attention_heads=4,"
           "decoder_intermediate_size=512")
INDEX_BOUNDS = "cifar10"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default=",".join(DEFAULT_RECIPES),
                        help=f"Comma-separated subset of {list(RECIPES)} (default: all but mgp_bal_bce_lora).")
    parser.add_argument("--epochs", type=int, default=12, help="Epochs of every classifier (student) run.")
    parser.add_argument("--mgp_epochs", type=int, default=None, help="MGP pretraining epochs (default: --epochs).")
    parser.add_argument("--teacher_epochs", type=int, default=None, help="Teacher epochs (default: --epochs).")
    parser.add_argument("--drw_fraction", type=float, default=0.9,
                        help="DeiT-LT DRW epoch as a fraction of --epochs (official CIFAR: 1100 / 1200).")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=1e-3, help="AdamW peak lr of every ViT run.")
    parser.add_argument("--warmup", type=float, default=0.1, help="Warmup ratio of every run.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", default=None,
                        help="Comma-separated seeds, e.g. 0,1,2: every recipe once per seed (overrides --seed); the "
                        "report adds mean and standard deviation over the seeds.")
    parser.add_argument("--teacher_name_or_path", default=None,
                        help="deit_lt: distil from this trained teacher folder instead of training one (e.g. "
                        "bench/models/cifar10lt_teacher); --teacher_epochs is then unused.")
    parser.add_argument("--student_augmentation", default="none", choices=["none", "paper"],
                        help="deit_lt student: 'none' = the flags below (crop + flip by default); 'paper' = "
                        "DeiT-LT's RandAugment, MixUp 0.8 / CutMix 1.0, erasing 0.25, smoothing 0.1, mixing off "
                        "after DRW (overrides the mixing flags for the student).")
    parser.add_argument("--dataset", default=str(DEFAULT_DATA), help="CIFAR-10 folder (HF parquet layout).")
    parser.add_argument("--imbalance_factor", type=float, default=100.0)
    parser.add_argument("--max_train_samples", type=int, default=None, help="Smoke tests: subset of the LT split.")
    parser.add_argument("--max_eval_samples", type=int, default=None, help="Smoke tests: subset of val/test.")
    parser.add_argument("--workers", type=int, default=0, help="--dataloader_num_workers of every run.")
    parser.add_argument("--bf16", action="store_true", help="--bf16 (CPU autocast) for every run.")
    # Regularisation of the students at this short budget (the scripts' defaults are the papers', tuned for hundreds
    # of epochs); chosen on the validation split, see bench/results/accuracy_tuning_cifar10lt.md.
    parser.add_argument("--mixup", type=float, default=0.0)
    parser.add_argument("--cutmix", type=float, default=0.0)
    parser.add_argument("--label_smoothing", type=float, default=0.0)
    parser.add_argument("--rand_augment", default="false", choices=["true", "false"])
    parser.add_argument("--random_erasing", type=float, default=0.0)
    parser.add_argument("--repeated_augmentation", type=int, default=1, help="Students' repeated augmentation.")
    parser.add_argument("--drop_path_rate", type=float, default=0.0, help="Stochastic depth of the students.")
    parser.add_argument("--results_prefix", default=str(REPO / "bench" / "results" / "accuracy_cifar10lt"),
                        help="<prefix>.json (appended per recipe), <prefix>.md, <prefix>_per_class.png.")
    parser.add_argument("--work_dir", default=str(REPO / "outputs" / "bench_accuracy"),
                        help="Model folders and logs of the runs.")
    parser.add_argument("--keep_going", action="store_true", help="Go on with the next recipe when one fails.")
    parser.add_argument("--report_only", action="store_true", help="Rewrite the .md / .png from the .json only.")
    args = parser.parse_args(argv)
    args.recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = sorted(set(args.recipes) - set(RECIPES))
    if unknown:
        parser.error(f"unknown recipes {unknown}; choose from {list(RECIPES)}")
    args.mgp_epochs = args.mgp_epochs if args.mgp_epochs is not None else args.epochs
    if args.teacher_name_or_path is not None and args.teacher_epochs is not None:
        parser.error("--teacher_epochs trains a new teacher; --teacher_name_or_path uses a trained one: give one")
    args.teacher_epochs = args.teacher_epochs if args.teacher_epochs is not None else args.epochs
    distils = any(r in DEIT_LT_RECIPES for r in args.recipes)
    if args.teacher_name_or_path is not None:
        if not distils:
            parser.error("--teacher_name_or_path is the teacher of the DeiT-LT recipes; add deit_lt or mgp_deit_lt "
                         "to --recipes")
        if not (Path(args.teacher_name_or_path) / "config.json").is_file():
            parser.error(f"--teacher_name_or_path {args.teacher_name_or_path}: no config.json there (a folder "
                         "saved by scripts/run_teacher.py is expected)")
        args.teacher_epochs = None
    if args.student_augmentation != "none" and not distils:
        parser.error("--student_augmentation applies to the DeiT-LT recipes only; add deit_lt or mgp_deit_lt to "
                     "--recipes")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    except ValueError:
        parser.error(f"--seeds {args.seeds!r}: give comma-separated integers, e.g. 0,1,2")
    return args


def settings_of(args) -> dict:
    """What makes two results comparable (a stored result with other settings is not reused)."""
    keys = ("epochs", "mgp_epochs", "teacher_epochs", "drw_fraction", "batch_size", "learning_rate", "warmup", "seed",
            "dataset", "imbalance_factor", "max_train_samples", "max_eval_samples", "bf16", "mixup", "cutmix",
            "label_smoothing", "rand_augment", "random_erasing", "repeated_augmentation", "drop_path_rate")
    settings = {k: getattr(args, k) for k in keys}
    settings["dataset"] = os.path.basename(os.path.normpath(settings["dataset"]))
    # new keys only when set: the signatures of earlier results stay what they were
    if args.teacher_name_or_path is not None:
        settings["teacher"] = os.path.basename(os.path.normpath(args.teacher_name_or_path))
    if args.student_augmentation != "none":
        settings["student_augmentation"] = args.student_augmentation
    return settings


def signature(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------------------------------
# Command lines
# ---------------------------------------------------------------------------------------------------------------------
def data_flags(args) -> list[str]:
    flags = ["--dataset_name", args.dataset, "--imbalance_factor", f"{args.imbalance_factor:g}",
             "--normalization", "cifar"]
    if args.max_train_samples:
        flags += ["--max_train_samples", str(args.max_train_samples)]
    if args.max_eval_samples:
        flags += ["--max_eval_samples", str(args.max_eval_samples)]
    return flags


def train_flags(args, output_dir: Path, epochs: int, learning_rate: float | None = None) -> list[str]:
    return ["--output_dir", str(output_dir), "--seed", str(args.seed),
            "--per_device_train_batch_size", str(args.batch_size), "--per_device_eval_batch_size", "256",
            "--num_train_epochs", str(epochs), "--learning_rate", f"{learning_rate or args.learning_rate:g}",
            "--warmup_steps", f"{args.warmup:g}", "--dataloader_num_workers", str(args.workers),
            "--logging_steps", "50", "--disable_tqdm", "true", "--report_to", "none"] + (
                ["--bf16", "true", "--use_cpu", "true"] if args.bf16 else [])


PAPER_STUDENT_AUGMENTATION = ["--mixup", "0.8", "--cutmix", "1.0", "--label_smoothing", "0.1", "--rand_augment",
                              "true", "--random_erasing", "0.25"]


def student_flags(args) -> list[str]:
    """Augmentation, mixing and stochastic depth of every student (ViT) run, and DeiT-LT's head/mid/tail split in its
    results."""
    return ["--mixup", f"{args.mixup:g}", "--cutmix", f"{args.cutmix:g}", "--label_smoothing",
            f"{args.label_smoothing:g}", "--rand_augment", args.rand_augment, "--random_erasing",
            f"{args.random_erasing:g}", "--repeated_augmentation", str(args.repeated_augmentation),
            "--drop_path_rate", f"{args.drop_path_rate:g}", "--index_bounds", INDEX_BOUNDS]


def vit_flags(with_decoder: bool = False) -> list[str]:
    overrides = ENCODER + ("," + DECODER if with_decoder else "")
    return ["--config_name", "tiny", "--image_size", "32", "--patch_size", "4", "--config_overrides", overrides]


def recipe_commands(recipe: str, args, run_dir: Path) -> list[tuple[str, list[str], Path]]:
    """[(stage name, argv, output dir)] of one recipe; the last stage's output dir holds eval_results.json."""
    python = sys.executable
    data = data_flags(args)
    if recipe in ("ce", "bce", "bal_ce", "bal_bce"):
        out = run_dir / recipe
        return [("finetune", [python, str(SCRIPTS / "run_finetune.py"), *data, *vit_flags(),
                              *train_flags(args, out, args.epochs), *student_flags(args), "--loss_type", recipe,
                              "--layer_decay", "1.0", "--save_total_limit", "1"], out)]
    mgp_dir = run_dir / "mgp"  # one MGP checkpoint for every recipe that starts from one
    mgp_stage = ("mgp", [python, str(SCRIPTS / "run_mgp.py"), *data, *vit_flags(with_decoder=True),
                         *train_flags(args, mgp_dir, args.mgp_epochs), "--save_strategy", "no"], mgp_dir)
    if recipe in DEIT_LT_RECIPES:
        teacher_dir, out = run_dir / "deit_lt_teacher", run_dir / recipe
        drw_epoch = max(1, round(args.drw_fraction * args.epochs)) if args.epochs > 1 else 1
        augmentation = student_flags(args)
        if args.student_augmentation == "paper":
            augmentation += PAPER_STUDENT_AUGMENTATION  # argparse: the later flag wins
        mixing = args.student_augmentation == "paper" or args.mixup > 0 or args.cutmix > 0
        teacher_stage = []
        if args.teacher_name_or_path is None:
            teacher_stage = [
                ("teacher", [python, str(SCRIPTS / "run_teacher.py"), *data, "--teacher_arch", "resnet_cifar",
                             "--image_size", "32", "--loss_type", "bal_ce", "--sam_rho", "0.05",
                             *train_flags(args, teacher_dir, args.teacher_epochs, learning_rate=0.1),
                             "--save_total_limit", "1"], teacher_dir)]
        else:
            teacher_dir = Path(args.teacher_name_or_path).resolve()
        # the combined recipe: the student from the MGP checkpoint, Bal-BCE on CLS, LiVT's layer decay
        student_model = vit_flags() if recipe == "deit_lt" else [
            "--model_name_or_path", str(mgp_dir), "--cls_loss_type", "bal_bce", "--layer_decay", "0.75"]
        return ([mgp_stage] if recipe == "mgp_deit_lt" else []) + teacher_stage + [
            ("student", [python, str(SCRIPTS / "run_deit_lt.py"), *data, *student_model,
                         "--teacher_name_or_path", str(teacher_dir), "--drw_epoch", str(drw_epoch),
                         # the official CIFAR recipe stops mixing at DRW; without mixing there is nothing to stop
                         *(["--no_mixup_after_drw", "true"] if mixing else []),
                         *train_flags(args, out, args.epochs), *augmentation, "--save_total_limit", "1"],
             out),
        ]
    if recipe in MGP_RECIPES:
        out = run_dir / recipe
        return [
            mgp_stage,
            ("finetune", [python, str(SCRIPTS / "run_finetune.py"), *data, "--model_name_or_path", str(mgp_dir),
                          *train_flags(args, out, args.epochs), *student_flags(args), "--loss_type", "bal_bce",
                          "--layer_decay", "0.75", "--save_total_limit", "1",
                          *(LORA_FLAGS if recipe == "mgp_bal_bce_lora" else [])], out),
        ]
    raise ValueError(recipe)


def display_path(arg: str) -> str:
    """Paths inside the workspace (the repository and ../shared) relative to the repository root, as a user types."""
    if os.path.isabs(arg) and arg.startswith(str(REPO.parent)):
        return os.path.relpath(arg, REPO)
    return arg


STAGE_CLOCK = "stage_clock.json"  # [[start, end], ...] in Unix seconds, one pair per attempt at the stage


def stage_clock(out_dir: Path) -> list[list[float | None]]:
    path = out_dir / STAGE_CLOCK
    return json.loads(path.read_text()) if path.exists() else []


def clocked_seconds(segments: list[list[float | None]]) -> float:
    """The stage's wall time over its attempts; an attempt that was killed without being parked counts nothing."""
    return sum(end - start for start, end in segments if end is not None)


def run_stage(name: str, argv: list[str], log_path: Path, env: dict, out_dir: Path) -> float:
    """Run one stage; its wall time summed over every attempt (a resumed or parked run's earlier ones included:
    `bench/park_runs.py` closes the running attempt when it parks it)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    segments = [*stage_clock(out_dir), [time.time(), None]]
    (out_dir / STAGE_CLOCK).write_text(json.dumps(segments))
    with open(log_path, "a", encoding="utf-8") as log:  # a resumed attempt's log follows the earlier one's
        log.write("$ " + shlex.join(argv) + "\n\n")
        log.flush()
        proc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
    segments[-1][1] = time.time()
    (out_dir / STAGE_CLOCK).write_text(json.dumps(segments))
    if proc.returncode != 0:
        tail = "".join(open(log_path, encoding="utf-8", errors="replace").readlines()[-30:])
        raise RuntimeError(f"stage {name!r} failed (exit {proc.returncode}); log {log_path}:\n{tail}")
    return clocked_seconds(segments)


# ---------------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------------
def read_test_metrics(output_dir: Path) -> dict:
    path = output_dir / "eval_results.json"
    metrics = json.loads(path.read_text())
    if metrics.get("split") != "test":
        raise RuntimeError(f"{path} does not hold the test evaluation (split={metrics.get('split')!r}).")
    return metrics


def read_validation(output_dir: Path) -> dict | None:
    """The run's validation accuracy from its trainer_state.json: `best` (that of the kept model: the scripts keep the
    best validation checkpoint), `best_step` and `last` (after the final epoch). None without per-epoch validation."""
    path = output_dir / "trainer_state.json"
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    evaluations = [h["eval_accuracy"] for h in state.get("log_history", []) if "eval_accuracy" in h]
    if not evaluations:
        return None
    return {"best": state.get("best_metric"), "best_step": state.get("best_global_step"), "last": evaluations[-1]}


def run_environment() -> dict:
    """Where a result was measured: the machine (CPU model and cores, torch) and the commit of this checkout (with
    "+changes" when the tracked files differ from it)."""
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():  # Linux: the CPU model, not just the architecture
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        commit += "+changes" if changed else ""
    except (OSError, subprocess.CalledProcessError):
        commit = None  # not a git checkout
    return {"machine": f"{os.cpu_count()} CPU cores ({cpu}), torch {importlib.metadata.version('torch')}, "
                       f"Python {platform.python_version()}", "commit": commit}


def load_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return data.get("results", []) if isinstance(data, dict) else data


def save_results(path: Path, results: list[dict]):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"benchmark": "CIFAR-10-LT rho=100, small ViT 128-d/6 blocks/patch 4, 32 px",
                               "summary_over_seeds": seed_summary(results), "results": results}, indent=2))
    os.replace(tmp, path)


def training_tflops(result: dict) -> float | None:
    """Training FLOPs of a result's ViT stages (`bench/flops.py`'s matmul count: 3x forward), in TFLOPs: epochs x
    training images x per-image FLOPs, MGP's stage included. LoRA: forward + input gradients (2x forward): frozen
    weights get no weight gradients (the adapters' own matmuls, about 2% here, are not counted). None for DeiT-LT (its
    ResNet teacher is not counted)."""
    sys.path.insert(0, str(REPO / "bench"))
    from flops import ViTDims, classifier_forward_flops, mgp_forward_flops, training_flops

    if result["recipe"] in DEIT_LT_RECIPES:
        return None
    settings, images = result["settings"], sum(result["class_counts"])
    dims = ViTDims(**VIT_DIMS, num_labels=len(result["class_counts"]))
    forward = classifier_forward_flops(dims)
    per_image = 2 * forward["total"] if result["recipe"] == "mgp_bal_bce_lora" else training_flops(forward)
    total = settings["epochs"] * images * per_image
    if result["recipe"] in MGP_RECIPES:
        total += settings["mgp_epochs"] * images * training_flops(mgp_forward_flops(dims))
    return total / 1e12


def pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def epochs_cell(result: dict) -> str:
    """Classifier epochs; MGP's and the teacher's epochs come first ("12 MGP + 12")."""
    settings, epochs = result["settings"], str(result["settings"]["epochs"])
    mgp = f"{settings['mgp_epochs']} MGP + " if result["recipe"] in MGP_RECIPES else ""
    if result["recipe"] in DEIT_LT_RECIPES:
        teacher = settings["teacher_epochs"] if settings.get("teacher_epochs") is not None else settings["teacher"]
        return f"{mgp}{teacher} teacher + {epochs}"
    return mgp + epochs


def validation_cell(result: dict) -> str:
    """Validation accuracy of the kept model (the cell of results without it: "-")."""
    return pct((result.get("validation") or {}).get("best")) + " | "


def training_cells(result: dict) -> str:
    """"trained of total parameters | images/s" of the last stage ("-" for results without them)."""
    train = result.get("train") or {}
    if train.get("trainable_parameters") is None:
        return "- | - | "
    return (f"{train['trainable_parameters']:,} of {train['total_parameters']:,} | "
            f"{train['train_samples_per_second']:.0f} | ")


def flops_cell(result: dict) -> str:
    value = training_tflops(result)
    return "-" if value is None else f"{value:.0f}"


SUMMARY_METRICS = (("Acc", "accuracy"), ("Head", "index_head_accuracy"), ("Mid", "index_mid_accuracy"),
                   ("Tail", "index_tail_accuracy"), ("Many", "many_shot_accuracy"),
                   ("Medium", "medium_shot_accuracy"), ("ECE", "ece"))


def seed_summary(results: list[dict]) -> list[dict]:
    """Results grouped by recipe and settings other than the seed: per metric, the mean and the sample standard
    deviation (n - 1; None for one seed) over the seeds, in the order the groups first appear."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        rest = {k: v for k, v in r["settings"].items() if k != "seed"}
        groups.setdefault((r["recipe"], signature(rest)), []).append(r)
    summary = []
    for (recipe, settings_sig), runs in groups.items():
        row = {"recipe": recipe, "settings": settings_sig, "seeds": [r["settings"]["seed"] for r in runs],
               "metrics": {}}
        for _, key in SUMMARY_METRICS:
            values = [r["metrics"][key] for r in runs if r["metrics"].get(key) is not None]
            if values:
                row["metrics"][key] = {"mean": statistics.fmean(values),
                                       "std": statistics.stdev(values) if len(values) > 1 else None}
        summary.append(row)
    return summary


def mean_std_cell(stats: dict | None) -> str:
    if stats is None:
        return "-"
    std = "" if stats["std"] is None else f" ± {100 * stats['std']:.1f}"
    return f"{100 * stats['mean']:.1f}{std}"


def summary_lines(results: list[dict]) -> list[str]:
    summary = [row for row in seed_summary(results) if len(row["seeds"]) > 1]
    if not summary:
        return []
    lines = ["Mean ± standard deviation over seeds (sample std, n - 1); a difference within two standard deviations "
             "is a tie.", "", "| recipe | seeds | " + " | ".join(name for name, _ in SUMMARY_METRICS) + " |",
             "|---|---|" + "---|" * len(SUMMARY_METRICS)]
    for row in summary:
        cells = [mean_std_cell(row["metrics"].get(key)) for _, key in SUMMARY_METRICS]
        lines.append(f"| {RECIPE_NAMES.get(row['recipe'], row['recipe'])} | {','.join(map(str, row['seeds']))} | "
                     + " | ".join(cells) + " |")
    return lines + ["", "Every run:", ""]


EXPERT_COLUMNS = (("Many", "many_shot_accuracy"), ("Medium", "medium_shot_accuracy"), ("Head", "index_head_accuracy"),
                  ("Mid", "index_mid_accuracy"), ("Tail", "index_tail_accuracy"), ("Acc", "accuracy"))


def experts_lines(results: list[dict]) -> list[str]:
    """DeiT-LT's experts: per DeiT-LT result, the averaged logits and each head alone (results that carry the heads'
    own metrics)."""
    runs = [r for r in results if r["metrics"].get("cls_index_tail_accuracy") is not None]
    if not runs:
        return []
    lines = ["DeiT-LT's two experts: each head's logits scored alone on the test split (the averaged logits are the "
             "model's prediction).", "",
             "| recipe | seed | logits | " + " | ".join(name for name, _ in EXPERT_COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(EXPERT_COLUMNS)]
    for r in runs:
        for prefix, name in (("", "average"), ("cls_", "CLS head"), ("distillation_", "DIST head")):
            cells = [pct(r["metrics"].get(prefix + key)) for _, key in EXPERT_COLUMNS]
            lines.append(f"| {RECIPE_NAMES.get(r['recipe'], r['recipe'])} | {r['settings']['seed']} | {name} | "
                         + " | ".join(cells) + " |")
    return lines + [""]


def write_report(results: list[dict], prefix: Path):
    if not results:
        return
    lines = ["# CIFAR-10-LT (rho = 100): recipes at an equal budget", "",
             "Small ViT (128-d, 6 blocks, 4 heads, MLP 512, patch 4, 32 px) trained from scratch on CIFAR-10-LT "
             "(`../shared/data/cifar10`; the benchmark's 12,406 training images, validation drawn from the unused "
             "images), test split "
             "balanced (10,000 images). Many/Medium/Few: LiVT's count split (> 100 / 20-100 / < 20 training images; "
             "rho = 100 leaves Few empty). Head/Mid/Tail: DeiT-LT's index split (classes sorted by count, bounds "
             "[3, 7]). ECE: 15 bins. Accuracies in %. Train TFLOPs: matmul FLOPs of the ViT stages (`bench/flops.py`, "
             "3x forward; an MGP step sees 25% of the patches: 0.59x a supervised step here; DeiT-LT's teacher not "
             "counted).", "",
             *summary_lines(results)]
    # the validation accuracy, what the last stage trained and its throughput, when the results carry them (earlier
    # ones do not)
    with_validation = any(r.get("validation") for r in results)
    with_training = any(r.get("train", {}).get("trainable_parameters") is not None for r in results)
    lines += ["| recipe | seed | Many | Medium | Few | Head | Mid | Tail | Acc | ECE | "
              + ("Val | " if with_validation else "") + "epochs | train TFLOPs | "
              + ("params trained | train img/s | " if with_training else "") + "train min | settings |",
              "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if with_validation else "") + "---|---|"
              + ("---|---|" if with_training else "") + "---|---|"]
    for r in results:
        m = r["metrics"]
        extra = ""
        if m.get("cls_accuracy") is not None:
            extra = f" (CLS {pct(m['cls_accuracy'])} / DIST {pct(m.get('distillation_accuracy'))})"
        lines.append(
            f"| {RECIPE_NAMES.get(r['recipe'], r['recipe'])}{extra} | {r['settings']['seed']} | "
            f"{pct(m.get('many_shot_accuracy'))} | "
            f"{pct(m.get('medium_shot_accuracy'))} | {pct(m.get('few_shot_accuracy'))} | "
            f"{pct(m.get('index_head_accuracy'))} | {pct(m.get('index_mid_accuracy'))} | "
            f"{pct(m.get('index_tail_accuracy'))} | {pct(m.get('accuracy'))} | {pct(m.get('ece'))} | "
            + (validation_cell(r) if with_validation else "") + f"{epochs_cell(r)} | {flops_cell(r)} | "
            + (training_cells(r) if with_training else "") + f"{r['wall_time_s'] / 60:.1f} | `{r['signature']}` |")
    if with_validation:
        lines += ["", "Val: validation accuracy of the kept model (the best validation checkpoint of the run)."]
    lines += ["", *experts_lines(results)]
    lines += ["Commands (per recipe, in order):", ""]
    for r in results:
        # earlier results lack the machine and commit
        where = (f", {r['machine']}" if r.get("machine") else "") + \
            (f", commit {r['commit']}" if r.get("commit") else "")
        lines.append(f"- {RECIPE_NAMES.get(r['recipe'], r['recipe'])} ({r['date']}{where}):")
        lines += [f"  - `{c}`" for c in r["commands"]]
    settings = {r["signature"]: r["settings"] for r in results}
    lines += ["", "Settings by signature:", ""] + [f"- `{k}`: `{json.dumps(v)}`" for k, v in settings.items()]
    prefix.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot_per_class(results, prefix.parent / (prefix.name + "_per_class.png"))


def plot_per_class(results: list[dict], path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = results[0]["class_counts"]
    names = results[0].get("label_names") or [str(i) for i in range(len(counts))]
    order = sorted(range(len(counts)), key=lambda c: (-counts[c], c))
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for r in results:
        per_class = r["metrics"]["per_class_accuracy"]
        ys = [100 * per_class[c] if per_class[c] is not None else float("nan") for c in order]
        ax.plot(range(len(order)), ys, marker="o", label=f"{RECIPE_NAMES.get(r['recipe'], r['recipe'])} "
                f"({pct(r['metrics']['accuracy'])})")
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([f"{names[c]}\n{counts[c]}" for c in order], fontsize=8)
    ax.set_xlabel("class (training images), sorted by training count")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title("CIFAR-10-LT (rho = 100): per-class test accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    prefix = Path(args.results_prefix)
    json_path = prefix.with_suffix(".json")
    results = load_results(json_path)
    if args.report_only:
        write_report(results, prefix)
        return results
    if not Path(args.dataset).is_dir():
        raise SystemExit(f"{args.dataset} is not a folder: this benchmark needs CIFAR-10 (HF parquet layout).")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    done = {(r["recipe"], r["signature"]) for r in results}
    for seed, recipe in [(seed, recipe) for seed in args.seeds for recipe in args.recipes]:
        args.seed = seed  # what settings_of and the command lines read
        settings = settings_of(args)
        sig = signature(settings)
        run_root = Path(args.work_dir) / sig
        if (recipe, sig) in done:
            print(f"[{recipe}] seed {args.seed} already in {json_path} (settings {sig}): skipped", flush=True)
            continue
        stages = recipe_commands(recipe, args, run_root)
        stage_times = {}
        print(f"[{recipe}] {len(stages)} stage(s) -> {run_root}", flush=True)
        try:
            for name, argv, out_dir in stages:
                # a finished teacher / MGP stage of an interrupted recipe is reused, not retrained
                reusable = name in ("teacher", "mgp") and (out_dir / "config.json").exists() and \
                    (out_dir / "model.safetensors").exists()
                if reusable:
                    print(f"[{recipe}] {name}: reusing {out_dir}", flush=True)
                    stage_times[name] = 0.0
                    continue
                if any(out_dir.glob("checkpoint-*")):  # an interrupted stage resumes exactly where it stopped
                    argv = [*argv, "--resume_from_checkpoint", "latest"]
                print(f"[{recipe}] {name}: {shlex.join(argv[1:])[:200]}...", flush=True)
                stage_times[name] = run_stage(name, argv, run_root / "logs" / f"{recipe}_{name}.log", env, out_dir)
            metrics = read_test_metrics(stages[-1][2])
        except RuntimeError as err:
            print(f"[{recipe}] FAILED: {err}", flush=True)
            if args.keep_going:
                continue
            raise SystemExit(1) from err
        class_counts = json.loads((stages[-1][2] / "class_counts.json").read_text())
        # a LoRA run's folder holds the adapter; the model's config is in its merged export
        config_dir = stages[-1][2] if (stages[-1][2] / "config.json").exists() else stages[-1][2] / "merged"
        config = json.loads((config_dir / "config.json").read_text())
        id2label = config.get("id2label") or {}
        train_metrics = json.loads((stages[-1][2] / "train_results.json").read_text())
        entry = {
            "recipe": recipe, "name": RECIPE_NAMES[recipe], "seed": args.seed, "signature": sig, "settings": settings,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **run_environment(),
            # every attempt of every stage, a parked run's earlier machines included
            "wall_time_s": sum(stage_times.values()), "stage_times_s": stage_times,
            "commands": [shlex.join(["python", *(display_path(a) for a in argv[1:])]) for _, argv, _ in stages],
            "output_dir": str(stages[-1][2]), "class_counts": class_counts,
            "label_names": [id2label[str(i)] for i in range(len(class_counts))] if id2label else None,
            "metrics": {k: v for k, v in metrics.items() if not k.endswith("_classes")},
            # the last stage's training: what it trained and Trainer's throughput (its runtime includes the
            # per-epoch validation)
            "train": {k: train_metrics.get(k) for k in ("trainable_parameters", "total_parameters",
                                                          "train_samples_per_second")},
            "validation": read_validation(stages[-1][2]),
        }
        results = [r for r in load_results(json_path) if (r["recipe"], r["signature"]) != (recipe, sig)] + [entry]
        save_results(json_path, results)
        write_report(results, prefix)
        print(f"[{recipe}] acc {pct(metrics['accuracy'])}, head/mid/tail {pct(metrics['index_head_accuracy'])}/"
              f"{pct(metrics['index_mid_accuracy'])}/{pct(metrics['index_tail_accuracy'])}, ECE {pct(metrics['ece'])}"
              f" ({entry['wall_time_s'] / 60:.1f} min) -> {json_path}", flush=True)
    write_report(load_results(json_path), prefix)
    return load_results(json_path)


if __name__ == "__main__":
    main()
