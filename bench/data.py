#!/usr/bin/env python
"""Streamed decode + augmentation throughput of the real training pipeline vs the model's training throughput.

Pipeline: `trainers.workflow.prepare_data` (what `run_finetune.py` runs): `load_image_datasets(streaming=True)` on
`../shared/data/cifar10` (JPEG in parquet; CIFAR-10-LT rho=100 drawn map-style, then streamed with 8 shards and a
shuffle buffer) or scikit-learn's digits when that folder is absent, the fine-tune transform (RandomCrop(pad 4) or
RandomResizedCrop, flip, RandAugment m9, normalise, RandomErasing) at 32 px (CIFAR) and at 224 px, and the
MixUp/CutMix collator, in a `torch.utils.data.DataLoader` with 0, 1 and 2 workers (batch 128, as Trainer builds it).

Model: the small CIFAR ViT (`LiVTForImageClassification`, 128-d, 6 blocks, 4 heads, MLP 512, patch 4, 32 px,
Bal-BCE) trained on batches of 128 (forward, backward, AdamW), timed in the same process, alternating with the
pipeline measurements (round-robin). Goal: pipeline images/s at 2 workers >= 1.5 x the model's images/s (32 px).

Images/s of a pipeline = images / time from `iter(loader)` to the batch that reaches `--images` (worker start-up and
the shuffle buffer's fill included: the streamed transform runs on chunks of 1000 examples, so a window that skipped the
first batch would time already-transformed images); the first batch's latency is reported as `first_batch_s`.

    python bench/data.py --json
    python bench/data.py --image_sizes 32 --workers 0,2 --images 2048     # faster
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

torch.set_flush_denormal(True)  # before the OpenMP pool exists: every thread inherits it (see speed.py)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

DEFAULT_CIFAR = REPO.parent / "shared" / "data" / "cifar10"


def build_pipeline(args, image_size: int):
    """The transformed, streamed training split and its collator, via the scripts' own `prepare_data`."""
    from transformers import TrainingArguments

    from modeling_livt.data.loading import DataOptions
    from trainers.arguments import AugmentationArguments
    from trainers.workflow import prepare_data

    data_args = DataOptions(dataset_name=args.dataset, imbalance_factor=args.imbalance_factor, streaming=True,
                              shuffle_buffer_size=args.shuffle_buffer_size)
    aug_args = AugmentationArguments(normalization=args.normalization)
    training_args = TrainingArguments(output_dir=tempfile.mkdtemp(prefix="bench_data_"), max_steps=1000, seed=0,
                                      report_to="none")
    return prepare_data(data_args, aug_args, training_args, image_size, stage="finetune")


def make_loader(prepared, batch_size: int, workers: int):
    return torch.utils.data.DataLoader(
        prepared.train, batch_size=batch_size, collate_fn=prepared.train_collator, num_workers=workers,
        prefetch_factor=2 if workers else None, persistent_workers=False, pin_memory=False,
    )


def time_pipeline(loader, images: int, epoch: int) -> dict:
    """A fresh iterator (a new epoch of the stream): time batches until `images` images have arrived.

    The clock starts before `iter(loader)`: worker start-up and the shuffle buffer's fill are included (the streamed
    `map(batched=True)` transform works on chunks of 1000 examples, so a short window after the first batch would only
    see already-transformed images)."""
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
    start = time.perf_counter()
    iterator = iter(loader)
    seen, first_time, shape = 0, None, None
    while seen < images:
        try:
            batch = next(iterator)
        except StopIteration:
            break
        if first_time is None:
            first_time, shape = time.perf_counter() - start, list(batch["pixel_values"].shape)
        seen += batch["pixel_values"].shape[0]
    elapsed = time.perf_counter() - start
    del iterator
    return {"images_per_s": seen / elapsed, "first_batch_s": first_time, "images": seen, "shape": shape}


def build_model_step(args, num_classes: int, class_counts):
    from modeling_livt import LiVTConfig, LiVTForImageClassification

    config = LiVTConfig(image_size=32, patch_size=4, hidden_size=128, num_hidden_layers=6, num_attention_heads=4,
                        intermediate_size=512, num_labels=num_classes, class_counts=class_counts,
                        loss_type="bal_bce", drop_path_rate=0.1)
    model = LiVTForImageClassification(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(args.batch_size, 3, 32, 32, generator=generator)
    targets = torch.softmax(torch.randn(args.batch_size, num_classes, generator=generator), dim=-1)  # mixed labels

    def step():
        loss = model(pixels, labels=targets).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=None,
                        help="Default: ../shared/data/cifar10 when present, else 'digits'.")
    parser.add_argument("--imbalance_factor", type=float, default=100.0)
    parser.add_argument("--normalization", default=None, help="Default: cifar for CIFAR, digits for digits.")
    parser.add_argument("--image_sizes", default="32,224")
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--images", type=int, default=4096,
                        help="Images per measurement at 32 px (whole batches; start-up included).")
    parser.add_argument("--images_large", type=int, default=1024, help="Images per measurement above 32 px.")
    parser.add_argument("--repeats", type=int, default=3, help="Round-robin rounds (medians are reported).")
    parser.add_argument("--model_steps", type=int, default=3, help="Timed model steps per round.")
    parser.add_argument("--shuffle_buffer_size", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the main process (model).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object as the last stdout line.")
    parser.add_argument("--output_dir", default=None, help="Write data_<tag>.json / .md here.")
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args(argv)
    if args.dataset is None:
        args.dataset = str(DEFAULT_CIFAR) if DEFAULT_CIFAR.is_dir() else "digits"
    if args.normalization is None:
        args.normalization = "digits" if args.dataset == "digits" else "cifar"
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.image_sizes.split(",") if s]
    workers = [int(w) for w in args.workers.split(",") if w]
    log_stream = sys.stderr if args.json else sys.stdout

    def log(message):
        print(message, file=log_stream, flush=True)

    import datasets

    datasets.disable_progress_bars()
    wall = time.perf_counter()
    pipelines = {size: build_pipeline(args, size) for size in sizes}
    data = next(iter(pipelines.values())).data
    log(f"dataset {args.dataset}: {sum(data.class_counts)} training images, counts {data.class_counts}")
    loaders = {(size, w): make_loader(pipelines[size], args.batch_size, w) for size in sizes for w in workers}
    model_step = build_model_step(args, data.num_classes, data.class_counts)
    model_step()  # warm-up (optimizer state)
    model_step()

    pipe_times = {key: [] for key in loaders}
    first_batch = {key: [] for key in loaders}
    model_rates = []
    for round_index in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.model_steps):
            model_step()
        model_rates.append(args.model_steps * args.batch_size / (time.perf_counter() - start))
        for key, loader in loaders.items():
            size = key[0]
            result = time_pipeline(loader, args.images if size <= 32 else args.images_large, epoch=round_index)
            pipe_times[key].append(result["images_per_s"])
            first_batch[key].append(result["first_batch_s"])
        log(f"round {round_index + 1}/{args.repeats}: model {model_rates[-1]:.0f} img/s; " + ", ".join(
            f"{s}px/{w}w {pipe_times[(s, w)][-1]:.0f}" for s, w in loaders))

    model_ips = statistics.median(model_rates)
    rows = []
    for (size, w), rates in pipe_times.items():
        rows.append({"image_size": size, "workers": w, "images_per_s": statistics.median(rates),
                     "first_batch_s": statistics.median(first_batch[(size, w)]),
                     "vs_model": statistics.median(rates) / model_ips, "rounds": rates})
    key_row = next((r for r in rows if r["image_size"] == 32 and r["workers"] == 2), None)
    from speed import machine_info

    result = {
        "command": "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(torch.device("cpu")),
        "settings": vars(args),
        "dataset": {"name": args.dataset, "train_images": sum(data.class_counts), "class_counts": data.class_counts},
        "model": {"description": "LiVTForImageClassification 128-d, 6 blocks, 4 heads, MLP 512, patch 4, 32 px, "
                                 f"Bal-BCE, AdamW, batch {args.batch_size}",
                  "images_per_s": model_ips, "rounds": model_rates},
        "pipeline": rows,
        "pipeline_32px_2_workers_vs_model": key_row["vs_model"] if key_row else None,
        "goal": {"target": ">= 1.5", "met": bool(key_row and key_row["vs_model"] >= 1.5)} if key_row else None,
        "wall_time_s": time.perf_counter() - wall,
    }
    lines = [f"command: `{result['command']}`  ", f"date: {result['date']}  ",
             f"machine: {result['machine'].get('Model name', '?')}, {result['machine'].get('CPU(s)', '?')} CPUs, "
             f"torch {torch.__version__}, main-process threads {torch.get_num_threads()}  ",
             f"data: {args.dataset} (CIFAR-10-LT rho={args.imbalance_factor:g}, {sum(data.class_counts)} images), "
             f"streamed; batch {args.batch_size}; {args.repeats} rounds; {args.images} images per measurement at "
             f"32 px, {args.images_large} above (clock includes worker start-up and the shuffle-buffer fill)", "",
             f"model (small CIFAR ViT, training): {model_ips:.0f} images/s", "",
             "| image size | workers | pipeline images/s | first batch (s) | pipeline / model |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['image_size']} | {r['workers']} | {r['images_per_s']:.0f} | {r['first_batch_s']:.2f} | "
                     f"{r['vs_model']:.2f}x |")
    if key_row:
        lines += ["", f"goal (32 px, 2 workers >= 1.5x the model): {key_row['vs_model']:.2f}x -> "
                      f"{'met' if result['goal']['met'] else 'MISSED'}"]
    text = "\n".join(lines) + "\n"
    log(text)
    if args.output_dir:
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"data_{args.tag}.json").write_text(json.dumps(result, indent=2))
        (out / f"data_{args.tag}.md").write_text("# Data pipeline throughput\n\n" + text)
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
