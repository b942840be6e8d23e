"""Run under `accelerate launch --num_processes 2`: one epoch of a streamed training split through Trainer's
dataloader; rank 0 writes which example indices each process saw (used by test_scripts.py)."""

import json
import sys

import torch
import torch.distributed as dist
from transformers import Trainer, TrainingArguments

import modeling_livt as ml
from modeling_livt.data.loading import DataOptions, load_image_datasets
from modeling_livt.data.transforms import INDEX_COLUMN, apply_transform, build_eval_transform, make_transform_fn


def collate(features):
    return {
        "pixel_values": torch.stack([f["pixel_values"] for f in features]),
        "labels": torch.tensor([f["labels"] for f in features]),
        "example_index": torch.tensor([f[INDEX_COLUMN] for f in features]),
    }


def main(out_file):
    data = load_image_datasets(
        DataOptions(dataset_name="digits", imbalance_factor=10, streaming=True, streaming_num_shards=4)
    )
    fn = make_transform_fn(build_eval_transform(32, (0.5,) * 3, (0.5,) * 3), seed=0)
    train = apply_transform(data.train, fn)
    args = TrainingArguments(
        output_dir="/tmp/unused",
        per_device_train_batch_size=16,
        max_steps=1000,
        report_to="none",
        use_cpu=True,
        remove_unused_columns=False,
    )
    model = ml.LiVTForImageClassification(
        ml.LiVTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            num_labels=10,
        )
    )
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collate)
    seen = []
    for batch in trainer.get_train_dataloader():
        seen.extend(batch["example_index"].tolist())
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, seen)
    if dist.get_rank() == 0:
        with open(out_file, "w") as f:
            json.dump({"per_process": gathered, "num_examples": sum(data.class_counts)}, f)
    # leave the process group in order: exiting with it alive can abort a rank ("terminate called ...")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
