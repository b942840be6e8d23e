"""bench/park_runs.py: an unfinished run's checkpoints carried through the repository and back, the recorded best
checkpoint re-pointed at its new place, finished runs dropped."""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import park_runs  # noqa: E402

CHECKPOINT_FILES = ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "config.json")
REMOTE_CODE = "modeling_livt.py"  # the checkpoint's copy of a package module: not parked


def _checkpoint(path: Path, step: int, best_step: int, old_root: str):
    path.mkdir(parents=True)
    for name in (*CHECKPOINT_FILES, REMOTE_CODE):
        (path / name).write_bytes(f"{name} at {step}".encode())
    state = {"global_step": step, "best_global_step": best_step,
             "best_model_checkpoint": f"{old_root}/checkpoint-{best_step}"}
    (path / "trainer_state.json").write_text(json.dumps(state))


def _run(work: Path, name="abc123/deit_lt", steps=(10, 20), best=10):
    run_dir = work / name
    for step in steps:
        _checkpoint(run_dir / f"checkpoint-{step}", step, min(best, step), "/elsewhere/deit_lt")
    # bench/accuracy.py's clock: an earlier attempt, and the one running now
    (run_dir / park_runs.STAGE_CLOCK).write_text(json.dumps([[100.0, 160.0], [200.0, None]]))
    return run_dir


def test_park_keeps_the_latest_checkpoint_whole_and_the_best_ones_weights(tmp_path):
    work, parked = tmp_path / "outputs", tmp_path / "parked"
    _run(work)
    park_runs.park(work, parked)
    latest, best = parked / "abc123/deit_lt/checkpoint-20", parked / "abc123/deit_lt/checkpoint-10"
    assert sorted(os.listdir(latest)) == sorted([*CHECKPOINT_FILES, "trainer_state.json"])
    assert sorted(os.listdir(best)) == sorted(park_runs.BEST_FILES)
    assert (latest / "optimizer.pt").read_bytes() == b"optimizer.pt at 20"
    assert (best / "model.safetensors").read_bytes() == b"model.safetensors at 10"
    # the running attempt is closed in the parked copy (now), the run's own clock is left as it is
    clock = json.loads((parked / "abc123/deit_lt" / park_runs.STAGE_CLOCK).read_text())
    assert clock[0] == [100.0, 160.0] and clock[1][0] == 200.0 and clock[1][1] > 1.7e9
    assert json.loads((work / "abc123/deit_lt" / park_runs.STAGE_CLOCK).read_text())[1] == [200.0, None]


def test_restore_resumes_where_parked_with_the_best_checkpoint_at_its_new_path(tmp_path):
    work, parked, fresh = tmp_path / "outputs", tmp_path / "parked", tmp_path / "fresh"
    _run(work)
    park_runs.park(work, parked)
    assert park_runs.restore(fresh, parked) == [fresh / "abc123/deit_lt"]
    run_dir = fresh / "abc123/deit_lt"
    assert sorted(park_runs.checkpoints(run_dir)) == [10, 20]
    for step in (10, 20):
        state = json.loads((run_dir / f"checkpoint-{step}" / "trainer_state.json").read_text())
        # Trainer drops a recorded best checkpoint that is not a folder, and would keep the last model at the end
        assert state["best_model_checkpoint"] == str(run_dir / "checkpoint-10")
        assert os.path.isdir(state["best_model_checkpoint"])
    assert (run_dir / "checkpoint-20" / "rng_state.pth").read_bytes() == b"rng_state.pth at 20"
    clock = park_runs.STAGE_CLOCK
    assert (run_dir / clock).read_text() == (parked / "abc123/deit_lt" / clock).read_text()
    # a second restore, or one onto a run that is further along, changes nothing
    assert park_runs.restore(fresh, parked) == []
    _checkpoint(run_dir / "checkpoint-30", 30, 30, str(run_dir))
    assert park_runs.restore(fresh, parked) == []


def test_a_finished_run_is_not_parked_and_its_parked_copy_is_dropped(tmp_path):
    work, parked = tmp_path / "outputs", tmp_path / "parked"
    run_dir = _run(work)
    _run(work, name="abc123/bal_bce", steps=(5,), best=5)
    park_runs.park(work, parked)
    assert (parked / "abc123/deit_lt").is_dir() and (parked / "abc123/bal_bce/checkpoint-5").is_dir()
    (run_dir / "eval_results.json").write_text("{}")
    assert park_runs.park(work, parked) == [parked / "abc123/bal_bce"]
    assert not (parked / "abc123/deit_lt").exists()
    assert park_runs.restore(work, parked) == []  # bal_bce is already here at its parked step
