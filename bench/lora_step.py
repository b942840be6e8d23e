#!/usr/bin/env python
"""The bare training step of LoRA against full fine-tuning on one MGP checkpoint: images/s of forward, backward and
AdamW on one fixed batch (no data loading, no evaluation), rounds interleaved so that both see the same machine.

LoRA as `run_finetune.py --peft lora --lora_r 8 --lora_alpha 16` sets it up (`trainers.lora.apply_lora`: adapters on
qkv, head and fc_norm trained in full); full fine-tuning trains every parameter.

    python bench/lora_step.py --model_name_or_path outputs/bench_accuracy/<signature>/mgp --num_labels 10 \
        [--lora_dropout 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import modeling_livt as ml
from trainers.arguments import PeftArguments
from trainers.lora import apply_lora

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import time_steps  # noqa: E402


def build(checkpoint: str, num_labels: int, lora: bool, lora_dropout: float = 0.1):
    model = ml.LiVTForImageClassification.from_pretrained(checkpoint, num_labels=num_labels)
    if lora:
        model = apply_lora(model, PeftArguments(peft="lora", lora_dropout=lora_dropout))  # r 8, alpha 16
    return model.train()


def images_per_second(model, pixel_values, labels, steps: int) -> float:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def step():
        loss = torch.nn.functional.cross_entropy(model(pixel_values=pixel_values).logits, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return len(labels) / time_steps(step, steps, warmup=3)["step_s"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_name_or_path", required=True, help="An MGP (or LiVT classifier) checkpoint folder.")
    parser.add_argument("--num_labels", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--lora_dropout", type=float, default=0.1, help="As run_finetune.py's (default 0.1).")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    image_size = ml.LiVTConfig.from_pretrained(args.model_name_or_path).image_size
    pixel_values = torch.randn(args.batch_size, 3, image_size, image_size)
    labels = torch.randint(0, args.num_labels, (args.batch_size,))
    for round_index in range(args.rounds):
        rates = {}
        for name, lora in (("full", False), ("lora", True)):
            model = build(args.model_name_or_path, args.num_labels, lora, args.lora_dropout)
            rates[name] = images_per_second(model, pixel_values, labels, args.steps)
        print(f"round {round_index + 1}: full fine-tuning {rates['full']:.0f} img/s, LoRA {rates['lora']:.0f} img/s, "
              f"LoRA / full {rates['lora'] / rates['full']:.2f}", flush=True)


if __name__ == "__main__":
    main()
