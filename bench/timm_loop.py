#!/usr/bin/env python
"""An independent loop of `bench/accuracy.py`'s Bal-BCE / Bal-CE runs: the same ViT, data and budget, none of our code.

timm's `VisionTransformer` (128-d, 6 blocks, 4 heads, MLP 512, patch 4, 32 px, mean-pooled patch tokens + fc_norm,
as our LiVT head), a plain PyTorch loop, torchvision v2 and `datasets`; the losses are written out below from the
papers' formulas. Nothing of `modeling_livt` or `trainers` is imported, so a gap between this loop's numbers and the
package's is the package's (or the init: timm's own, not ours).

What it shares with the package's runs (`bench/accuracy.py` defaults):
- CIFAR-10-LT rho = 100 from `../shared/data/cifar10`: class i keeps int(5000 * 0.01 ** (i / 9)) images, drawn with
  one `numpy.random.default_rng(0)` class after class (12,406 images); validation: round(10% of the class's 5000)
  images per class from those the draw left unused (a fresh `default_rng(0)`; the head class has none); the balanced
  10,000-image test split, evaluated once with the model of the best validation epoch;
- RandomCrop(32, padding=4) + horizontal flip, CIFAR mean/std; batch 128; AdamW (0.9, 0.999), lr 1e-3, weight decay
  0.05 off biases, norms and tokens; linear warmup over ceil(10% of the steps), then cosine to 0, per step; no
  gradient clipping; 12 epochs.

Bal-BCE (LiVT eq. 6): BCE on z + log(pi) - log(1 - pi), summed over classes, averaged over the batch.
Bal-CE (logit adjustment): CE on z + log(pi).

    python bench/timm_loop.py --losses bal_bce --seeds 0,1,2      # ~10 min a run on 2 CPU cores
    python bench/timm_loop.py --epochs 1 --max_train_samples 256 --max_eval_samples 256 \
        --results_prefix /tmp/loop_smoke                           # the wiring, in seconds

Each run is appended to `<prefix>.json` as it ends (a finished loss/seed is skipped on a rerun); `<prefix>.md` has
mean ± std over the seeds and every run.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from accuracy import (  # bench's own report and results-file helpers
    DEFAULT_DATA,
    load_results,
    mean_std_cell,
    run_environment,
    save_results,
    seed_summary,
)
from datasets import load_dataset
from timm.optim import param_groups_weight_decay
from torch.utils.data import DataLoader
from torchvision.transforms import v2

REPO = Path(__file__).resolve().parent.parent
LOSSES = ("bal_bce", "bal_ce")
LOSS_NAMES = {"bal_bce": "Bal-BCE", "bal_ce": "Bal-CE"}
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
HEAD_MID_BOUNDS = (3, 7)  # DeiT-LT's CIFAR-10 index split of the classes sorted by count (accuracy.py's cifar10)
MANY_ABOVE, FEW_BELOW = 100, 20  # LiVT's count split
ECE_BINS = 15


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--losses", default="bal_bce", help=f"Comma-separated subset of {list(LOSSES)}.")
    parser.add_argument("--seeds", default="0", help="Comma-separated seeds (init, shuffling, augmentation).")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--weight_decay", type=float, default=0.05)
    parser.add_argument("--warmup", type=float, default=0.1, help="Warmup as a fraction of the steps.")
    parser.add_argument("--dataset", default=str(DEFAULT_DATA), help="CIFAR-10 folder (HF parquet layout).")
    parser.add_argument("--imbalance_factor", type=float, default=100.0)
    parser.add_argument("--max_train_samples", type=int, default=None, help="Smoke tests: the first N LT images.")
    parser.add_argument("--max_eval_samples", type=int, default=None, help="Smoke tests: the first N val/test images.")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default).")
    parser.add_argument("--results_prefix", default=str(REPO / "bench" / "results" / "timm_loop_cifar10lt"))
    args = parser.parse_args(argv)
    args.losses = [name.strip() for name in args.losses.split(",") if name.strip()]
    unknown = sorted(set(args.losses) - set(LOSSES))
    if unknown or not args.losses:
        parser.error(f"--losses: {f'unknown {unknown}' if unknown else 'none given'}; choose from {list(LOSSES)}")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds {args.seeds!r}: give comma-separated integers, e.g. 0,1,2")
    if not Path(args.dataset).is_dir():
        parser.error(f"--dataset {args.dataset}: not a folder (CIFAR-10 in the HF parquet layout is expected)")
    return args


# ---------------------------------------------------------------------------------------------------------------------
# Data: CIFAR-10-LT and its validation split, from the benchmark's rules
# ---------------------------------------------------------------------------------------------------------------------
def long_tail_split(labels: np.ndarray, imbalance_factor: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """(training rows, validation rows) of the pool: the exponential profile and the leftovers' 10% per class."""
    num_classes = int(labels.max()) + 1
    per_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
    largest = max(len(rows) for rows in per_class)
    rng = np.random.default_rng(seed)
    train = []
    for c, rows in enumerate(per_class):
        keep = int(largest * (1.0 / imbalance_factor) ** (c / (num_classes - 1.0)))
        train.extend(rows if len(rows) <= keep else rng.choice(rows, size=keep, replace=False))
    unused = np.ones(len(labels), dtype=bool)
    unused[train] = False
    rng = np.random.default_rng(seed)
    validation = []
    for c, rows in enumerate(per_class):
        share, leftovers = round(len(rows) * 0.10), np.flatnonzero((labels == c) & unused)
        if min(share, len(leftovers)) > 0:
            validation.extend(rng.choice(leftovers, size=min(share, len(leftovers)), replace=False))
    return sorted(int(i) for i in train), sorted(int(i) for i in validation)


def loaders(args, seed: int):
    data = load_dataset(args.dataset)
    pool, test = data["train"], data["test"]
    image_column = "img" if "img" in pool.column_names else "image"
    label_column = "label" if "label" in pool.column_names else "labels"
    labels = np.asarray(pool[label_column], dtype=np.int64)
    train_rows, validation_rows = long_tail_split(labels, args.imbalance_factor)
    class_counts = np.bincount(labels[train_rows], minlength=int(labels.max()) + 1).tolist()
    train, validation = pool.select(train_rows), pool.select(validation_rows)
    if args.max_train_samples:
        train = train.select(range(min(args.max_train_samples, len(train))))
    if args.max_eval_samples:
        validation = validation.select(range(min(args.max_eval_samples, len(validation))))
        test = test.select(range(min(args.max_eval_samples, len(test))))
    normalise = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(CIFAR_MEAN, CIFAR_STD)]
    train_tf = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), *normalise])
    eval_tf = v2.Compose(normalise)

    def with_transform(split, tf):
        def apply(batch):
            return {"pixel_values": [tf(img.convert("RGB")) for img in batch[image_column]],
                    "labels": batch[label_column]}
        return split.with_transform(apply)

    def collate(rows):
        return torch.stack([r["pixel_values"] for r in rows]), torch.tensor([r["labels"] for r in rows])

    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(with_transform(train, train_tf), batch_size=args.batch_size, shuffle=True,
                              generator=generator, collate_fn=collate)
    validation_loader = DataLoader(with_transform(validation, eval_tf), batch_size=256, collate_fn=collate)
    test_loader = DataLoader(with_transform(test, eval_tf), batch_size=256, collate_fn=collate)
    return train_loader, validation_loader, test_loader, class_counts


# ---------------------------------------------------------------------------------------------------------------------
# Losses and metrics, from the papers' formulas
# ---------------------------------------------------------------------------------------------------------------------
def balanced_loss(name: str, class_counts: list[int]):
    prior = torch.tensor(class_counts, dtype=torch.float64) / sum(class_counts)
    if name == "bal_bce":
        bias = (prior.log() - (1 - prior).log()).float()
        return lambda z, y: F.binary_cross_entropy_with_logits(
            z + bias, F.one_hot(y, z.shape[1]).float(), reduction="sum") / z.shape[0]
    bias = prior.log().float()
    return lambda z, y: F.cross_entropy(z + bias, y)


@torch.no_grad()
def predict(model, loader) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    logits, labels = zip(*[(model(x).float(), y) for x, y in loader])
    return torch.cat(logits), torch.cat(labels)


def score_predictions(logits: torch.Tensor, labels: torch.Tensor, class_counts: list[int]) -> dict:
    """Accuracy, ECE (15 bins), Many/Medium/Few by training count and Head/Mid/Tail by count rank, in [0, 1]."""
    confidence, predicted = logits.softmax(-1).max(-1)
    correct = (predicted == labels).float()
    # a class absent from the split (smoke-test subsets) is NaN and left out of its group's mean
    per_class = np.array([correct[labels == c].mean().item() if (labels == c).any() else np.nan
                          for c in range(len(class_counts))])
    counts = np.asarray(class_counts)
    rank = np.argsort(-counts, kind="stable")
    head, mid = HEAD_MID_BOUNDS
    groups = {"many_shot_accuracy": counts > MANY_ABOVE, "medium_shot_accuracy": (counts >= FEW_BELOW) &
              (counts <= MANY_ABOVE), "few_shot_accuracy": counts < FEW_BELOW}
    metrics = {key: float(np.nanmean(per_class[mask])) if mask.any() else None for key, mask in groups.items()}
    for key, classes in (("index_head_accuracy", rank[:head]), ("index_mid_accuracy", rank[head:mid]),
                         ("index_tail_accuracy", rank[mid:])):
        metrics[key] = float(np.nanmean(per_class[classes]))
    ece = 0.0
    for low in range(ECE_BINS):
        in_bin = (confidence > low / ECE_BINS) & (confidence <= (low + 1) / ECE_BINS)
        if in_bin.any():
            ece += in_bin.float().mean().item() * abs(correct[in_bin].mean().item() - confidence[in_bin].mean().item())
    return {"accuracy": correct.mean().item(), "ece": ece, **metrics, "per_class_accuracy": per_class.tolist()}


# ---------------------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------------------
def build_model() -> torch.nn.Module:
    return timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=4, num_classes=10, embed_dim=128, depth=6, num_heads=4, mlp_ratio=4.0,
        qkv_bias=True, global_pool="avg")


def train_one(loss_name: str, seed: int, args) -> dict:
    torch.manual_seed(seed)
    np.random.seed(seed)
    train_loader, validation_loader, test_loader, class_counts = loaders(args, seed)
    model = build_model()
    optimizer = torch.optim.AdamW(param_groups_weight_decay(model, args.weight_decay, model.no_weight_decay()),
                                  lr=args.learning_rate, betas=(0.9, 0.999))
    total = args.epochs * len(train_loader)
    warmup = math.ceil(total * args.warmup)

    def lr_factor(step: int) -> float:  # linear warmup from 0, then cosine to 0
        if step < warmup:
            return step / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    criterion = balanced_loss(loss_name, class_counts)
    best, history, start = None, [], time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        for images, labels in train_loader:
            loss = criterion(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        logits, labels = predict(model, validation_loader)
        accuracy = (logits.argmax(-1) == labels).float().mean().item()
        history.append(accuracy)
        if best is None or accuracy > best[0]:
            best = (accuracy, epoch, copy.deepcopy(model.state_dict()))
        print(f"[{loss_name} seed {seed}] epoch {epoch}: loss {loss.item():.4f}, validation {100 * accuracy:.1f}",
              flush=True)
    model.load_state_dict(best[2])
    metrics = score_predictions(*predict(model, test_loader), class_counts)
    return {"metrics": metrics, "validation": {"best": best[0], "best_epoch": best[1], "last": history[-1]},
            "class_counts": class_counts, "wall_time_s": time.perf_counter() - start}


def write_report(results: list[dict], prefix: Path):
    keys = (("Many", "many_shot_accuracy"), ("Medium", "medium_shot_accuracy"), ("Head", "index_head_accuracy"),
            ("Mid", "index_mid_accuracy"), ("Tail", "index_tail_accuracy"), ("Acc", "accuracy"), ("ECE", "ece"))
    header = "| " + " | ".join(name for name, _ in keys) + " |"
    lines = ["# An independent loop (timm ViT, plain PyTorch) at the benchmark's budget", "",
             "`bench/timm_loop.py`: the ViT of `bench/accuracy.py` as timm's VisionTransformer, trained by a plain "
             "PyTorch loop with the same data, split, augmentation, optimizer, schedule and model selection; none of "
             "the package's code. Accuracies in %.", "",
             "Mean ± sample standard deviation over the seeds:", "",
             "| loss | seeds " + header, "|---|---|" + "---|" * len(keys)]
    for row in seed_summary(results):
        lines.append(f"| {LOSS_NAMES[row['recipe']]} | {','.join(map(str, row['seeds']))} | "
                     + " | ".join(mean_std_cell(row["metrics"].get(key)) for _, key in keys) + " |")
    lines += ["", "Every run:", "", "| loss | seed " + header + " Val | best epoch | train min |",
              "|---|---|" + "---|" * (len(keys) + 3)]
    for r in results:
        cells = ["-" if r["metrics"].get(key) is None else f"{100 * r['metrics'][key]:.1f}" for _, key in keys]
        lines.append(f"| {LOSS_NAMES[r['recipe']]} | {r['seed']} | " + " | ".join(cells) +
                     f" | {100 * r['validation']['best']:.1f} | {r['validation']['best_epoch']} | "
                     f"{r['wall_time_s'] / 60:.1f} |")
    lines += ["", "Commands:", ""] + sorted({f"- `{r['command']}` ({r['machine']}, commit {r['commit']})"
                                             for r in results})
    prefix.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    prefix = Path(args.results_prefix)
    json_path = prefix.with_suffix(".json")
    results = load_results(json_path)
    settings = {k: getattr(args, k) for k in ("epochs", "batch_size", "learning_rate", "weight_decay", "warmup",
                                              "imbalance_factor", "max_train_samples", "max_eval_samples")}
    environment = run_environment()
    for seed in args.seeds:
        for loss_name in args.losses:
            if any(r["recipe"] == loss_name and r["settings"] == {**settings, "seed": seed} for r in results):
                print(f"[{loss_name} seed {seed}] already in {json_path}: skipped", flush=True)
                continue
            run = train_one(loss_name, seed, args)
            results.append({
                "recipe": loss_name, "seed": seed, "settings": {**settings, "seed": seed}, **run,
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "command": shlex.join(["python", "bench/timm_loop.py", *(sys.argv[1:] if argv is None else argv)]),
                "machine": f"{environment['machine']}, timm {timm.__version__}, {torch.get_num_threads()} threads, "
                           "fp32", "commit": environment["commit"]})
            save_results(json_path, results)
            write_report(results, prefix)
            m = run["metrics"]
            print(f"[{loss_name} seed {seed}] test acc {100 * m['accuracy']:.1f}, tail "
                  f"{100 * m['index_tail_accuracy']:.1f} ({run['wall_time_s'] / 60:.1f} min) -> {json_path}",
                  flush=True)
    return results


if __name__ == "__main__":
    main()
