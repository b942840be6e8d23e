#!/usr/bin/env python
"""Carry unfinished `bench/accuracy.py` runs from one machine to the next through the repository.

A 50-epoch CIFAR-10-LT run takes longer on 2 CPU cores than a working session lasts, and `outputs/` (git-ignored)
does not outlive the machine. `park` copies each unfinished run's latest checkpoint (everything Trainer needs to
resume exactly), the weights of its best-validation checkpoint (what `load_best_model_at_end` loads) and its wall
time so far into `bench/parked/<settings>/<recipe>/`, to be committed; `restore` copies them back under `outputs/`
and points the recorded best checkpoint at its new place, so that `bench/accuracy.py` resumes the run where it
stopped. A parked run whose result has landed in `outputs/` (its `eval_results.json`) is dropped on the next `park`.

    python bench/park_runs.py park       # before the machine goes: then commit bench/parked
    python bench/park_runs.py restore    # on the next machine, before rerunning bench/accuracy.py
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from pathlib import Path

from accuracy import REPO, STAGE_CLOCK  # the clock: bench/accuracy.py's wall time per attempt, [[start, end], ...]

WORK = REPO / "outputs" / "bench_accuracy"  # bench/accuracy.py's default --work_dir
PARKED = REPO / "bench" / "parked"
CHECKPOINT = re.compile(r"checkpoint-(\d+)$")
BEST_FILES = ("model.safetensors", "config.json", "trainer_state.json")  # enough for load_best_model_at_end


def checkpoints(run_dir: Path) -> dict[int, Path]:
    found = (CHECKPOINT.match(p.name) for p in run_dir.glob("checkpoint-*") if p.is_dir())
    return {int(m.group(1)): run_dir / m.group(0) for m in found if m}


def run_dirs(root: Path):
    """<root>/<settings>/<recipe> folders holding at least one checkpoint."""
    return sorted(d for d in root.glob("*/*") if d.is_dir() and checkpoints(d))


def park(work: Path = WORK, parked: Path = PARKED) -> list[Path]:
    for done in run_dirs(parked):  # its result has landed: nothing left to resume
        if (work / done.relative_to(parked) / "eval_results.json").exists():
            shutil.rmtree(done)
    kept = []
    for run_dir in run_dirs(work):
        if (run_dir / "eval_results.json").exists():
            continue
        target = parked / run_dir.relative_to(work)
        steps = checkpoints(run_dir)
        latest = steps[max(steps)]
        best_step = json.loads((latest / "trainer_state.json").read_text()).get("best_global_step")
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        # not the remote-code copies of the package's modules: resuming loads weights into the script's own model
        shutil.copytree(latest, target / latest.name, ignore=shutil.ignore_patterns("*.py"))
        if best_step and best_step != max(steps) and best_step in steps:
            (target / steps[best_step].name).mkdir()
            for name in BEST_FILES:
                shutil.copy2(steps[best_step] / name, target / steps[best_step].name / name)
        clock = run_dir / STAGE_CLOCK
        if clock.exists():  # the running attempt ends here, for the wall time of the whole run
            segments = json.loads(clock.read_text())
            segments = [[start, end if end is not None else time.time()] for start, end in segments]
            (target / STAGE_CLOCK).write_text(json.dumps(segments))
        size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file()) / 2**20
        print(f"parked {run_dir.relative_to(work)} at step {max(steps)} (best {best_step}): {size:.1f} MiB")
        kept.append(target)
    return kept


def restore(work: Path = WORK, parked: Path = PARKED) -> list[Path]:
    restored = []
    for source in run_dirs(parked):
        run_dir, parked_steps = work / source.relative_to(parked), checkpoints(source)
        if (run_dir / "eval_results.json").exists() or max(checkpoints(run_dir), default=-1) >= max(parked_steps):
            continue  # finished here, or further along than the parked copy
        run_dir.mkdir(parents=True, exist_ok=True)
        for path in parked_steps.values():
            shutil.rmtree(run_dir / path.name, ignore_errors=True)
            shutil.copytree(path, run_dir / path.name)
        if (source / STAGE_CLOCK).exists():
            shutil.copy2(source / STAGE_CLOCK, run_dir / STAGE_CLOCK)
        for state_file in run_dir.glob("checkpoint-*/trainer_state.json"):
            state = json.loads(state_file.read_text())
            if state.get("best_global_step"):  # recorded as an absolute path of the machine that wrote it
                state["best_model_checkpoint"] = str(run_dir / f"checkpoint-{state['best_global_step']}")
                state_file.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        print(f"restored {source.relative_to(parked)} at step {max(parked_steps)}")
        restored.append(run_dir)
    return restored


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["park", "restore"])
    parser.add_argument("--work_dir", type=Path, default=WORK, help="bench/accuracy.py's --work_dir.")
    parser.add_argument("--parked_dir", type=Path, default=PARKED)
    args = parser.parse_args(argv)
    (park if args.action == "park" else restore)(args.work_dir, args.parked_dir)


if __name__ == "__main__":
    main()
