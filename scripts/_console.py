"""The `livt-*` console commands of the installed package (setup.py entry points).

`livt-finetune ARGS` runs `python scripts/run_finetune.py ARGS`, and so on for each script. The scripts' `main()`
return their metrics to Python callers; a console command's return value becomes its exit status, so these wrappers
run `main()` and return nothing (exit 0; an exception exits 1 with its traceback, as the script would).
"""

import importlib
import os
import sys


def _run_script(name: str) -> None:
    # the scripts import each other and `_cli` by file name, as when run from a checkout
    folder = os.path.dirname(os.path.abspath(__file__))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    importlib.import_module(name).main()


def mgp() -> None:
    """`livt-mgp`: LiVT stage 1, masked generative pretraining (scripts/run_mgp.py)."""
    _run_script("run_mgp")


def finetune() -> None:
    """`livt-finetune`: LiVT stage 2, balanced fine-tuning (scripts/run_finetune.py)."""
    _run_script("run_finetune")


def teacher() -> None:
    """`livt-teacher`: the flat CNN teacher of DeiT-LT (scripts/run_teacher.py)."""
    _run_script("run_teacher")


def deit_lt() -> None:
    """`livt-deit-lt`: the DeiT-LT student (scripts/run_deit_lt.py)."""
    _run_script("run_deit_lt")


def evaluate() -> None:
    """`livt-eval`: long-tail evaluation of a saved model (scripts/run_eval.py)."""
    _run_script("run_eval")


def convert() -> None:
    """`livt-convert`: port official checkpoints, optionally to the Hub (scripts/convert_checkpoint.py)."""
    _run_script("convert_checkpoint")


def demo() -> None:
    """`livt-demo`: the offline demo on digits-LT (scripts/demo.py)."""
    _run_script("demo")


def prepare_dataset() -> None:
    """`livt-prepare-dataset`: ImageNet-LT / Places-LT / iNat18 split files to a dataset folder
    (scripts/prepare_dataset.py)."""
    _run_script("prepare_dataset")
