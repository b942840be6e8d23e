#!/usr/bin/env python
"""Long streaming run: resident memory while ~20k examples stream through the training pipeline (decode, fine-tune
augmentation, collate) and a small model's training step. The goal is a flat RSS (no per-example growth).

    python bench/stream_memory.py --examples 20000 --out bench/results/stream_memory.json
"""

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import psutil
import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import modeling_livt as ml  # noqa: E402
from modeling_livt.data.loading import DataOptions, load_image_datasets  # noqa: E402
from modeling_livt.data.transforms import (  # noqa: E402
    MixupCutmixCollator,
    apply_transform,
    build_finetune_transform,
    get_normalization,
    make_transform_fn,
)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_name", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "stream_memory.json"))
    args = parser.parse_args()
    dataset_name = args.dataset_name if os.path.isdir(args.dataset_name) else "digits"
    data = load_image_datasets(DataOptions(dataset_name=dataset_name, streaming=True, shuffle_buffer_size=1000))
    mean, std = get_normalization("cifar")
    train = apply_transform(data.train, make_transform_fn(build_finetune_transform(32, mean, std), seed=0))
    loader = DataLoader(
        train,
        batch_size=args.batch_size,
        num_workers=args.workers,
        collate_fn=MixupCutmixCollator(data.num_classes, seed=0),
        persistent_workers=False,
    )
    config = ml.LiVTConfig(
        image_size=32,
        patch_size=4,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        class_counts=data.class_counts,
    )
    model = ml.LiVTForImageClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    process = psutil.Process()

    def rss_mb():  # the main process and its DataLoader workers together
        return (process.memory_info().rss + sum(c.memory_info().rss for c in process.children(recursive=True))) / 2**20

    samples, seen, epoch, start = [], 0, 0, time.time()
    while seen < args.examples:
        if hasattr(train, "set_epoch"):
            train.set_epoch(epoch)
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            seen += len(batch["pixel_values"])
            if not samples or seen - samples[-1]["examples"] >= 1000:
                samples.append(
                    {"examples": seen, "rss_mb": round(rss_mb(), 1), "seconds": round(time.time() - start, 1)}
                )
                print(samples[-1], flush=True)
            if seen >= args.examples:
                break
        epoch += 1
    steady = [s["rss_mb"] for s in samples if s["examples"] >= 3000]
    result = {
        "command": "python bench/stream_memory.py " + " ".join(sys.argv[1:]),
        "dataset": dataset_name,
        "examples": seen,
        "epochs_started": epoch,
        "workers": args.workers,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "rss_first_mb": samples[0]["rss_mb"],
        "rss_last_mb": samples[-1]["rss_mb"],
        "rss_steady_min_mb": min(steady) if steady else None,
        "rss_steady_max_mb": max(steady) if steady else None,
        "peak_rss_main_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "samples": samples,
    }
    if steady:
        result["steady_growth_mb"] = round(steady[-1] - steady[0], 1)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}))


if __name__ == "__main__":
    main()
