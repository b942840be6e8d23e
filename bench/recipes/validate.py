#!/usr/bin/env python
"""Parse every recipe of this folder with the argument dataclasses of the script it is for (no training, no data).

    python bench/recipes/validate.py          # exit 1 when a key is unknown to the script or a value is refused

A recipe's script is named by its file name: `livt_*_mgp.json` -> scripts/run_mgp.py, `livt_*_finetune_*.json` ->
scripts/run_finetune.py, `deit_lt_*.json` -> scripts/run_deit_lt.py, `teacher_*.json` -> scripts/run_teacher.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from transformers import HfArgumentParser

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))


def script_of(name: str) -> str:
    if name.startswith("teacher_"):
        return "run_teacher.py"
    if name.startswith("deit_lt_"):
        return "run_deit_lt.py"
    if name.endswith("_mgp.json"):
        return "run_mgp.py"
    if "_finetune_" in name:
        return "run_finetune.py"
    raise ValueError(f"{name}: cannot tell its script from the name")


def dataclasses_of(script: str) -> tuple:
    from trainers.arguments import (
        AugmentationArguments,
        DataArguments,
        DeiTLTModelArguments,
        DeiTLTTrainingArguments,
        DistillationArguments,
        FinetuneTrainingArguments,
        MGPTrainingArguments,
        ModelArguments,
        TeacherAugmentationArguments,
        TeacherModelArguments,
        TeacherTrainingArguments,
    )

    if script == "run_mgp.py":
        return ModelArguments, DataArguments, AugmentationArguments, MGPTrainingArguments
    if script == "run_finetune.py":
        return ModelArguments, DataArguments, AugmentationArguments, FinetuneTrainingArguments
    if script == "run_deit_lt.py":
        return (DeiTLTModelArguments, DistillationArguments, DataArguments, AugmentationArguments,
                DeiTLTTrainingArguments)
    return TeacherModelArguments, DataArguments, TeacherAugmentationArguments, TeacherTrainingArguments


def main(folder: Path = HERE) -> int:
    """Parse every recipe in `folder`; 0 when all parse, 1 otherwise (each printed)."""
    import torch

    from modeling_livt.data.transforms import get_normalization

    failures = 0
    for path in sorted(Path(folder).glob("*.json")):
        script = script_of(path.name)
        recipe = json.loads(path.read_text())
        note = ""
        if recipe.get("bf16") and not torch.cuda.is_available():
            # TrainingArguments refuses bf16 without a GPU: check everything else
            recipe["bf16"], note = False, " (bf16 not checked: no GPU here)"
        try:
            # what trainers/cli.py does with a single .json argument (unknown keys raise)
            parsed = HfArgumentParser(dataclasses_of(script)).parse_dict(recipe)
            training = parsed[-1]
            for args in parsed:  # a named mean/std preset must exist (the scripts would refuse it only at start-up)
                if getattr(args, "normalization", "dataset") != "dataset":
                    get_normalization(args.normalization)
            batch = training.per_device_train_batch_size * training.gradient_accumulation_steps
            print(f"ok    {path.name:40s} -> scripts/{script:16s} {training.num_train_epochs:g} epochs, "
                  f"{batch} images per step and GPU{note}")
        except Exception as err:  # noqa: BLE001 (report every recipe)
            failures += 1
            print(f"FAIL  {path.name:45s} -> scripts/{script}: {type(err).__name__}: {err}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
