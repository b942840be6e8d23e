"""The `livt-*` console commands of the installed package (setup.py entry points).

`livt-finetune ARGS` runs `python scripts/run_finetune.py ARGS`, and so on for each script (installed as the
`modeling_livt_scripts` package). The scripts' `main()` return their metrics to Python callers; a console command's
return value becomes its exit status, so these commands run `main()` and return nothing (exit 0; an exception exits 1
with its traceback, as the script would).
"""

import importlib
from collections.abc import Callable


def _command(script: str, description: str) -> Callable[[], None]:
    """The console command that runs `main()` of `modeling_livt_scripts.<script>` on the command line's arguments."""

    def command() -> None:
        importlib.import_module(f"modeling_livt_scripts.{script}").main()

    command.__doc__ = f"{description} (scripts/{script}.py)."
    return command


mgp = _command("run_mgp", "`livt-mgp`: LiVT stage 1, masked generative pretraining")
finetune = _command("run_finetune", "`livt-finetune`: LiVT stage 2, balanced fine-tuning")
teacher = _command("run_teacher", "`livt-teacher`: the flat CNN teacher of DeiT-LT")
deit_lt = _command("run_deit_lt", "`livt-deit-lt`: the DeiT-LT student")
evaluate = _command("run_eval", "`livt-eval`: long-tail evaluation of a saved model")
convert = _command("convert_checkpoint", "`livt-convert`: port official checkpoints, optionally to the Hub")
demo = _command("demo", "`livt-demo`: the offline demo on digits-LT")
prepare_dataset = _command(
    "prepare_dataset", "`livt-prepare-dataset`: ImageNet-LT / Places-LT / iNat18 split files to a dataset folder"
)
