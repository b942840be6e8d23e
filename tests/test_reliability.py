"""Kill and resume, interrupted (atomic) saves, strict resume. Each run is a real subprocess of a script."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers.trainer_utils import get_last_checkpoint

from trainers.base import STAGING_DIR

ROOT = Path(__file__).resolve().parents[1]
DATA = ["--dataset_name", "digits", "--imbalance_factor", "10", "--normalization", "digits"]
TINY = [
    "--config_name",
    "tiny",
    "--image_size",
    "32",
    "--patch_size",
    "4",
    "--config_overrides",
    "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64,"
    "decoder_hidden_size=32,decoder_num_hidden_layers=1,decoder_num_attention_heads=2,decoder_intermediate_size=64",
]
RUN = [
    "--per_device_train_batch_size",
    "16",
    "--disable_tqdm",
    "true",
    "--report_to",
    "none",
    "--seed",
    "0",
    "--save_strategy",
    "steps",
    "--save_steps",
    "2",
    "--max_steps",
    "6",
    "--logging_steps",
    "1",
    "--save_total_limit",
    "5",
]
SCRIPTS = {
    "run_mgp.py": DATA + TINY + RUN,
    # 48 images, 3 steps an epoch: the run killed after step 3 resumes from step 2 across an epoch boundary, with the
    # progressive class-aware sampler, whose draw depends on the epoch (CE: 48 images miss a class)
    "run_finetune.py": DATA
    + TINY
    + RUN
    + ["--eval_strategy", "steps", "--eval_steps", "2", "--max_eval_samples", "40", "--max_train_samples", "48",
       "--loss_type", "ce", "--sampler", "progressive"],
}


def _script_args(script, teacher_dir):
    if script != "run_deit_lt.py":
        return SCRIPTS[script]
    # DRW switches on at step 3, where the first run is killed: the resumed run must come back with DRW on
    encoder = ["--config_name", "tiny", "--image_size", "32", "--patch_size", "4", "--config_overrides",
               "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64"]
    return DATA + encoder + RUN + ["--eval_strategy", "steps", "--eval_steps", "2", "--max_eval_samples", "40",
                                   "--teacher_name_or_path", str(teacher_dir), "--drw_step", "3"]


def _run(script, args, kill_at_step=None, die_in_save_at_step=None):
    """Run `scripts/<script>`; with a fault, through tests/fault_injection.py (SIGKILL after a step, or death inside a
    checkpoint save)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    faults = []
    if kill_at_step is not None:
        faults += ["--kill_at_step", str(kill_at_step)]
    if die_in_save_at_step is not None:
        faults += ["--die_in_save_at_step", str(die_in_save_at_step)]
    runner = [str(ROOT / "tests" / "fault_injection.py"), *faults] if faults else []
    return subprocess.run([sys.executable, *runner, str(ROOT / "scripts" / script), *args], capture_output=True,
                          text=True, env=env, timeout=600)


def _weights(folder):
    return load_file(str(Path(folder) / "model.safetensors"))


@pytest.mark.parametrize("script", [*sorted(SCRIPTS), "run_deit_lt.py"])
def test_sigkill_then_resume_matches_an_uninterrupted_run(script, tmp_path, teacher_dir):
    args = _script_args(script, teacher_dir)
    reference = _run(script, args + ["--output_dir", str(tmp_path / "ref")])
    assert reference.returncode == 0, reference.stderr[-3000:]

    out = tmp_path / "killed"
    killed = _run(script, args + ["--output_dir", str(out)], kill_at_step=3)
    assert killed.returncode == -signal.SIGKILL
    assert get_last_checkpoint(str(out)).endswith("checkpoint-2")
    split_before = (out / "long_tailed_indices.json").read_text()
    counts_before = (out / "class_counts.json").read_text()

    resumed = _run(script, args + ["--output_dir", str(out), "--resume_from_checkpoint", "latest"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "reusing the long-tailed split" in resumed.stderr
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 6
    assert (out / "long_tailed_indices.json").read_text() == split_before
    assert (out / "class_counts.json").read_text() == counts_before
    # optimizer, scheduler, RNG (masking, drop-path), seeded augmentation and mixing, data order and the DRW state
    # restored: the same weights as the uninterrupted run. Compared at the final step (checkpoint-6): the output
    # folder holds the best checkpoint under load_best_model_at_end, which may predate the kill.
    for folder in ("checkpoint-6", "."):
        ref, got = _weights(tmp_path / "ref" / folder), _weights(out / folder)
        assert ref.keys() == got.keys()
        for key in ref:
            torch.testing.assert_close(got[key], ref[key], rtol=1e-5, atol=1e-6, msg=f"{folder}: {key}")
    # and the final step really moved past the (possibly best) step-2 checkpoint the kill left behind
    step2, step6 = _weights(out / "checkpoint-2"), _weights(out / "checkpoint-6")
    assert any(not torch.equal(step2[key], step6[key]) for key in step6)
    if script == "run_finetune.py":
        assert "progressive (p_j(t)" in (out / "README.md").read_text()  # the card names the sampler


def test_save_killed_midway_keeps_previous_checkpoint_usable_and_a_damaged_one_fails_loudly(tmp_path):
    out = tmp_path / "run"
    args = SCRIPTS["run_mgp.py"] + ["--output_dir", str(out)]
    died = _run("run_mgp.py", args, die_in_save_at_step=4)
    assert died.returncode == 137
    staged = out / STAGING_DIR / "checkpoint-4"
    assert (staged / "model.safetensors").exists() and not (staged / "trainer_state.json").exists()
    assert not (out / "checkpoint-4").exists()  # the half-written save never became a checkpoint
    last = get_last_checkpoint(str(out))
    assert last.endswith("checkpoint-2")
    for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json", "rng_state.pth"):
        assert (Path(last) / name).exists(), name

    # a copy of the run whose checkpoint lost two weights: resuming from it must fail, naming them
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    weights_file = damaged / "checkpoint-2" / "model.safetensors"
    weights = load_file(str(weights_file))
    dropped = [k for k in weights if k.startswith("decoder.decoder_pred")]
    save_file({k: v for k, v in weights.items() if k not in dropped}, str(weights_file), metadata={"format": "pt"})
    damaged_args = SCRIPTS["run_mgp.py"] + ["--output_dir", str(damaged)]
    failed = _run("run_mgp.py", damaged_args + ["--resume_from_checkpoint", str(damaged / "checkpoint-2")])
    assert failed.returncode != 0
    assert "lacks 2 model weights" in failed.stderr and "decoder.decoder_pred" in failed.stderr

    resumed = _run("run_mgp.py", args + ["--resume_from_checkpoint", "latest"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 6
    assert (out / "checkpoint-4" / "trainer_state.json").exists()
