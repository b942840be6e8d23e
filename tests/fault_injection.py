"""Run a training script with a fault injected, for the reliability tests (production code carries no fault hooks).

    python tests/fault_injection.py --kill_at_step 3 scripts/run_mgp.py ARGS...          # SIGKILL after step 3
    python tests/fault_injection.py --die_in_save_at_step 4 scripts/run_mgp.py ARGS...   # die inside step 4's save

`--kill_at_step N` kills the process with SIGKILL at the end of optimizer step N (a callback added to every
`transformers.Trainer`). `--die_in_save_at_step N` exits with status 137, as a SIGKILL would, inside the checkpoint save
of step N, after the weights are written and before the optimizer, scheduler, RNG and trainer state are.
"""

import argparse
import os
import runpy
import signal
import sys

import transformers
from transformers import TrainerCallback


class _KillAtStep(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def install(kill_at_step: int | None = None, die_in_save_at_step: int | None = None) -> None:
    """Patch `transformers.Trainer` in this process."""
    trainer_cls = transformers.Trainer
    if kill_at_step is not None:
        original_init = trainer_cls.__init__

        def init_with_kill(self, *args, **kwargs):
            original_init(self, *args, **kwargs)
            self.add_callback(_KillAtStep(kill_at_step))

        trainer_cls.__init__ = init_with_kill
    if die_in_save_at_step is not None:
        original_save = trainer_cls._save_optimizer_and_scheduler

        def save_or_die(self, output_dir):
            if self.state.global_step == die_in_save_at_step:
                os._exit(137)
            original_save(self, output_dir)

        trainer_cls._save_optimizer_and_scheduler = save_or_die


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kill_at_step", type=int, default=None)
    parser.add_argument("--die_in_save_at_step", type=int, default=None)
    parser.add_argument("script")
    parser.add_argument("script_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    install(args.kill_at_step, args.die_in_save_at_step)
    sys.argv = [args.script, *args.script_args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(args.script)))  # as `python SCRIPT` would
    runpy.run_path(args.script, run_name="__main__")


if __name__ == "__main__":
    main()
