#!/usr/bin/env python
"""DeiT-LT's flat teacher: `scripts/run_teacher.py` end to end against its bare SAM step and a plain PyTorch loop.

The teacher (CIFAR ResNet-32, SAM around SGD, Bal-CE) takes two forward/backward passes per optimizer step. In one
process, alternating (`--rounds`), this benchmark times:

- end to end: `run_teacher.main` (the CLI's own code path: decoding, crop + flip + RandAugment, collation, Trainer's
  per-step work, both SAM passes) on CIFAR-10-LT, batch 128, `--steps` optimizer steps, no evaluation and no
  checkpoint; the time between consecutive `training_step` calls, the first `--warmup_steps` left out;
- the bare step: `TeacherTrainer`'s step on one pre-built batch: Bal-CE forward/backward at w, `TrainerSAM.first_step`,
  forward/backward at w + e with BatchNorm statistics frozen, `second_step` (SGD, momentum 0.9, weight decay 5e-4);
- the plain loop: the same network and batch in a hand-written PyTorch SAM loop (no trainer, no package code but the
  model): logit-adjusted cross-entropy, e = rho * g / ||g||, torch.optim.SGD.

`e2e_over_bare` = end-to-end images/s / bare-step images/s (goal >= 0.85); `bare_over_plain` (goal >= 1.0).

    python bench/teacher_e2e.py --json                          # channels-last fp32 (the teacher's default)
    python bench/teacher_e2e.py --channels_last false --json    # PyTorch's default NCHW layout
    python bench/teacher_e2e.py --bf16 --json                   # CPU bf16 autocast (fast only with native bf16)
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
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "bench"))

import run_teacher  # noqa: E402
from e2e import steady_training_rate, time_steps  # noqa: E402

from modeling_livt.data.long_tail import long_tailed_counts  # noqa: E402
from modeling_livt.models.losses import build_loss  # noqa: E402
from modeling_livt.models.resnet_cifar import ResNetCifarConfig, ResNetCifarForImageClassification  # noqa: E402
from trainers.teacher import TrainerSAM, frozen_batch_norm_stats  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10"
RHO, LR, MOMENTUM, WEIGHT_DECAY = 0.05, 0.1, 0.9, 5e-4


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=24, help="Optimizer steps per end-to-end run.")
    parser.add_argument("--warmup_steps", type=int, default=4, help="Steps left out of the steady-state rate.")
    parser.add_argument("--model_steps", type=int, default=8, help="Bare / plain steps per round.")
    parser.add_argument("--rounds", type=int, default=2, help="Alternations of the three measurements.")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--channels_last", default="true", choices=["true", "false"],
                        help="--channels_last of the script, and the layout of the bare and plain steps.")
    parser.add_argument("--bf16", action="store_true", help="--bf16 for the script, bf16 autocast for the steps.")
    parser.add_argument("--dataset", default=str(DEFAULT_DATA))
    parser.add_argument("--extra", default="", help="More run_teacher flags, e.g. '--dataloader_num_workers 1'.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")
    return parser.parse_args(argv)


def teacher_argv(args, output_dir: str) -> list[str]:
    argv = ["--dataset_name", args.dataset, "--imbalance_factor", "100", "--normalization", "cifar",
            "--output_dir", output_dir, "--max_steps", str(args.steps), "--per_device_train_batch_size",
            str(args.batch_size), "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end",
            "false", "--report_to", "none", "--disable_tqdm", "true", "--logging_steps", "1000",
            "--channels_last", args.channels_last]
    if args.bf16:
        argv += ["--bf16", "true", "--use_cpu", "true"]
    return argv + shlex.split(args.extra)


def end_to_end(args) -> dict:
    """Steady-state training images/s of run_teacher (TeacherTrainer.training_step calls Trainer's once per step)."""
    with tempfile.TemporaryDirectory() as out:
        return steady_training_rate(run_teacher.main, teacher_argv(args, out), args.batch_size, args.warmup_steps)


def make_batch(args):
    torch.manual_seed(0)
    model = ResNetCifarForImageClassification(ResNetCifarConfig(num_labels=10)).train()
    if args.channels_last == "true":
        model.to(memory_format=torch.channels_last)
    pixels = torch.randn(args.batch_size, 3, 32, 32)
    labels = torch.randint(0, 10, (args.batch_size,))
    return model, pixels, labels


def bare_step(args) -> dict:
    """TeacherTrainer's step without Trainer: TrainerSAM + frozen BatchNorm statistics + Bal-CE."""
    model, pixels, labels = make_batch(args)
    loss_fn = build_loss("bal_ce", long_tailed_counts(5000, 10, 100))
    sam = TrainerSAM(model.parameters(), torch.optim.SGD, rho=RHO, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()

    def step():
        with amp:
            loss = loss_fn(model(pixel_values=pixels).logits, labels)
        loss.backward()
        sam.first_step(zero_grad=True)
        with frozen_batch_norm_stats(model), amp:
            loss = loss_fn(model(pixel_values=pixels).logits, labels)
        loss.backward()
        sam.step()  # second_step
        sam.zero_grad(set_to_none=True)

    return time_steps(step, args.model_steps)


def plain_loop(args) -> dict:
    """The same SAM step written out in plain PyTorch (the peer)."""
    model, pixels, labels = make_batch(args)
    log_prior = torch.tensor(long_tailed_counts(5000, 10, 100), dtype=torch.float32)
    log_prior = (log_prior / log_prior.sum()).log()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()

    def loss_at_current_weights():
        with amp:
            logits = model(pixel_values=pixels).logits
        return F.cross_entropy(logits.float() + log_prior, labels)

    def step():
        loss_at_current_weights().backward()
        with torch.no_grad():
            grad_norm = torch.stack([p.grad.norm() for p in params]).norm()
            perturbations = [p.grad * (RHO / grad_norm.clamp_min(1e-12)) for p in params]
            for p, e in zip(params, perturbations):
                p.add_(e)
        optimizer.zero_grad(set_to_none=True)
        loss_at_current_weights().backward()
        with torch.no_grad():
            for p, e in zip(params, perturbations):
                p.sub_(e)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return time_steps(step, args.model_steps)


def main(argv=None):
    args = parse_args(argv)
    if not Path(args.dataset).is_dir():
        raise SystemExit(f"{args.dataset} is not a folder: this benchmark needs CIFAR-10 (HF parquet layout).")
    rounds = []
    for r in range(args.rounds):
        e2e = end_to_end(args)
        bare, plain = bare_step(args), plain_loop(args)
        for timing in (bare, plain):
            timing["images_per_s"] = args.batch_size / timing["step_s"]
        row = {"end_to_end": e2e, "bare_step": bare, "plain_loop": plain,
               "e2e_over_bare": e2e["images_per_s"] / bare["images_per_s"],
               "bare_over_plain": bare["images_per_s"] / plain["images_per_s"]}
        rounds.append(row)
        print(f"round {r}: end to end {e2e['images_per_s']:.1f} img/s, bare SAM step {bare['images_per_s']:.1f}, "
              f"plain loop {plain['images_per_s']:.1f}; e2e/bare {row['e2e_over_bare']:.3f}, "
              f"bare/plain {row['bare_over_plain']:.3f}", flush=True)
    result = {
        "benchmark": "run_teacher end to end vs bare SAM step vs plain PyTorch SAM loop (CIFAR-10-LT, ResNet-32)",
        "command": "python bench/teacher_e2e.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "torch": torch.__version__, "python": platform.python_version()},
        "settings": vars(args),
        "rounds": rounds,
        **{key: statistics.median(r[key] for r in rounds) for key in ("e2e_over_bare", "bare_over_plain")},
        **{f"{name}_images_per_s": statistics.median(r[name]["images_per_s"] for r in rounds)
           for name in ("end_to_end", "bare_step", "plain_loop")},
    }
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
