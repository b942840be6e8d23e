#!/usr/bin/env python
"""End-to-end training throughput of `scripts/run_finetune.py` against the bare model step, in one process.

What a user waits on is the whole loop: decoding, augmentation, collation, Trainer's per-step work and the model
step. This benchmark runs `run_finetune.main` (the CLI's own code path, default dataloader settings unless given)
on CIFAR-10-LT with the small CIFAR ViT of `bench/accuracy.py` (128-d, 6 blocks, patch 4, 32 px), batch 128, for
`--steps` optimizer steps with no evaluation and no checkpoint, and records the wall time of every training step
from Trainer's `training_step` calls (so the time between two calls includes fetching the next batch). The
steady-state rate skips the first `--warmup_steps` steps (DataLoader start-up, first-call compilation).

In the same process, alternating with the end-to-end runs (`--rounds`), it times the bare model step on one
pre-built batch of the same shape: forward, loss (the model's Bal-BCE), backward, fused AdamW step, zero_grad, under
the same autocast as `--bf16`. The result is `e2e_over_model` = end-to-end images/s / bare-step images/s (goal
>= 0.8 on 2 cores).

    python bench/e2e.py                                   # fp32, default settings (0 workers)
    python bench/e2e.py --bf16                            # CPU autocast bf16 end to end and in the bare step
    python bench/e2e.py --extra "--dataloader_num_workers 1"   # any run_finetune flag
    python bench/e2e.py --json > bench/results/e2e_cpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import run_finetune  # noqa: E402
from transformers import Trainer  # noqa: E402

import modeling_livt as ml  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10"
ENCODER = dict(hidden_size=128, num_hidden_layers=6, num_attention_heads=4, intermediate_size=512)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="Optimizer steps per end-to-end run.")
    parser.add_argument("--warmup_steps", type=int, default=5, help="Steps left out of the steady-state rate.")
    parser.add_argument("--model_steps", type=int, default=15, help="Bare model steps per round.")
    parser.add_argument("--rounds", type=int, default=2, help="Alternations of end-to-end run and bare model step.")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--bf16", action="store_true", help="--bf16 for the script, bf16 autocast for the bare step.")
    parser.add_argument("--dataset", default=str(DEFAULT_DATA))
    parser.add_argument("--extra", default="", help="More run_finetune flags, e.g. '--dataloader_num_workers 1'.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")
    return parser.parse_args(argv)


def finetune_argv(args, output_dir: str) -> list[str]:
    overrides = ",".join(f"{k}={v}" for k, v in ENCODER.items())
    argv = ["--dataset_name", args.dataset, "--imbalance_factor", "100", "--normalization", "cifar",
            "--config_name", "tiny", "--image_size", "32", "--patch_size", "4", "--config_overrides", overrides,
            "--output_dir", output_dir, "--max_steps", str(args.steps), "--per_device_train_batch_size",
            str(args.batch_size), "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end",
            "false", "--report_to", "none", "--disable_tqdm", "true", "--logging_steps", "1000", "--layer_decay",
            "1.0", "--drop_path_rate", "0.1"]
    if args.bf16:
        argv += ["--bf16", "true", "--use_cpu", "true"]  # transformers: bf16 on a CPU-only machine needs use_cpu
    return argv + shlex.split(args.extra)


def steady_training_rate(script_main, argv: list[str], batch_size: int, warmup_steps: int) -> dict:
    """Runs `script_main(argv)` and times Trainer's `training_step` calls: steady-state images/s over the calls after
    the first `warmup_steps` (the time between two calls includes fetching the next batch)."""
    stamps = []
    original = Trainer.training_step

    def timed(self, *a, **k):
        stamps.append(time.perf_counter())
        return original(self, *a, **k)

    Trainer.training_step = timed
    try:
        start = time.perf_counter()
        script_main(argv)
        total = time.perf_counter() - start
    finally:
        Trainer.training_step = original
    steady = stamps[warmup_steps:]
    per_step = (steady[-1] - steady[0]) / (len(steady) - 1)
    return {"images_per_s": batch_size / per_step, "step_s": per_step, "script_wall_s": total,
            "first_step_at_s": stamps[0] - start}


def time_steps(step, n: int, warmup: int = 2) -> dict:
    """The median wall time of `n` calls of `step()` after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"step_s": statistics.median(times)}


def end_to_end(args) -> dict:
    """Steady-state training images/s of run_finetune (time between consecutive training_step calls)."""
    with tempfile.TemporaryDirectory() as out:
        return steady_training_rate(run_finetune.main, finetune_argv(args, out), args.batch_size, args.warmup_steps)


def bare_model(args) -> dict:
    config = ml.LiVTConfig(image_size=32, patch_size=4, num_labels=10, drop_path_rate=0.1,
                           class_counts=ml.long_tailed_counts(5000, 10, 100), **ENCODER)
    model = ml.LiVTForImageClassification(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05, fused=True)
    pixels = torch.randn(args.batch_size, 3, 32, 32)
    labels = torch.randint(0, 10, (args.batch_size,))
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()

    def step():
        with amp:
            loss = model(pixel_values=pixels, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    per_step = time_steps(step, args.model_steps, warmup=3)["step_s"]
    return {"images_per_s": args.batch_size / per_step, "step_s": per_step}


def main(argv=None):
    args = parse_args(argv)
    if not Path(args.dataset).is_dir():
        raise SystemExit(f"{args.dataset} is not a folder: this benchmark needs CIFAR-10 (HF parquet layout).")
    rounds = []
    for r in range(args.rounds):
        e2e = end_to_end(args)
        model = bare_model(args)
        ratio = e2e["images_per_s"] / model["images_per_s"]
        rounds.append({"end_to_end": e2e, "model_step": model, "e2e_over_model": ratio})
        print(f"round {r}: end to end {e2e['images_per_s']:.1f} img/s, bare model step {model['images_per_s']:.1f} "
              f"img/s, ratio {ratio:.3f}", flush=True)
    result = {
        "benchmark": "run_finetune end to end vs bare model step (CIFAR-10-LT, ViT 128-d x 6, patch 4, 32 px)",
        "command": "python bench/e2e.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "python": platform.python_version()},
        "settings": vars(args),
        "rounds": rounds,
        "e2e_over_model": statistics.median(r["e2e_over_model"] for r in rounds),
        "end_to_end_images_per_s": statistics.median(r["end_to_end"]["images_per_s"] for r in rounds),
        "model_step_images_per_s": statistics.median(r["model_step"]["images_per_s"] for r in rounds),
    }
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
