"""FSDP on CPU (torch's `fully_shard`, FSDP2, gloo): 2 sharded processes x batch 16 end where an unsharded run ends,
their checkpoints resume exactly, and their saved folder is the one a single process writes.

How FSDP runs on CPU here: accelerate keeps the FSDP plugin only for GPU-like devices (accelerate/state.py,
`AcceleratorState.__init__`) and on CPU would silently train DDP, which our trainers refuse (the first test). The
FSDP runs go through `fsdp_run_script.py`, which lifts that one check; the rest (Trainer's `--fsdp` plugin,
accelerate's `fully_shard` wrapping, full-state-dict save, sharded optimizer checkpoint, its resume) is unmodified.

The references, and why they must agree (the design of test_ddp.py, whose helpers these tests use):

* DeiT-LT: the in-process 1 x 32 run, as in test_ddp.py (same data order, per-example seeded augmentation, no
  mixing, no drop path, no DRW; loss a batch mean): FSDP's reduce-scatter of the gradients averages as DDP's
  all-reduce does.
* MGP: MAE's random masks are drawn from each process's own torch RNG (both processes start from the same seed), so
  no multi-process run, DDP or FSDP, draws the masks of a one-process run. Its reference is the DDP run of the same
  layout (2 x 16: same batches, same masks on each process); what differs is only the sharding. The one-process run
  still gives the saved folder to compare with, and the counterfactual (other masks end far beyond the tolerance).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.fsdp_run_script import FSDP_ON_CPU_LINE
from tests.test_ddp import (
    ATOL,
    DATA,
    ENCODER,
    LAUNCH_TIMEOUT_S,
    ROOT,
    SAME_IN_ANY_LAYOUT,
    assert_clean_two_process_run,
    assert_same_weights,
    free_port,
    launch_two_processes,
    max_difference,
    weights,
)

sys.path.insert(0, str(ROOT / "scripts"))

import run_deit_lt  # noqa: E402
import run_mgp  # noqa: E402

from trainers.fsdp import check_fsdp, set_default_wrap_units  # noqa: E402

# The tolerance is test_ddp's (RTOL 1e-4, ATOL 1e-5): float32 gradients reduced in another order (reduce-scatter of
# 16 + 16 vs 32 at once, or vs DDP's all-reduce) through 4 AdamW steps at lr 1e-3. Measured: see the report lines
# the tests print (`pytest -s`); runs that see other masks or batches differ by ~1e-3.
MGP_ENCODER = ENCODER[:-1] + [ENCODER[-1] + ",decoder_hidden_size=32,decoder_num_hidden_layers=1,"
                              "decoder_num_attention_heads=2,decoder_intermediate_size=64"]
# MGP takes no mixing flags (refused: it mixes no images); the rest as test_ddp's SAME_IN_ANY_LAYOUT
MGP = DATA + MGP_ENCODER + ["--drop_path_rate", "0", "--max_steps", "4", "--warmup_steps", "0", "--learning_rate",
                            "1e-3", "--eval_strategy", "no", "--seed", "0", "--use_cpu", "true", "--report_to", "none",
                            "--disable_tqdm", "true", "--logging_steps", "1", "--save_strategy", "steps",
                            "--save_steps", "2"]
FSDP = ["--fsdp"]  # FSDP2, full state dict, auto-wrap by layer: the defaults Trainer and our trainers give
# what only a checkpoint of a sharded run holds (accelerate's FSDP model/optimizer files, one RNG file per process)
# or only an unsharded one (Trainer's optimizer.pt, one rng_state.pth)
LAYOUT_FILES = re.compile(r"^(pytorch_model_fsdp\.bin|optimizer\.bin|optimizer\.pt|rng_state(_\d+)?\.pth)$")


def launch_fsdp(script: str, args: list[str], cwd: Path):
    result = launch_two_processes(script, args + FSDP, cwd, runner="fsdp_run_script.py")
    assert f"{FSDP_ON_CPU_LINE}: FSDP version 2" in result.stdout  # both processes really sharded (FSDP2)
    assert "FSDP auto-wrap units: LongTailViTLayer" in result.stdout + result.stderr
    return result


def documented_config() -> str:
    """The accelerate config of docs/command_line.md (multi-node ViT-L MGP)."""
    blocks = re.findall(r"^```yaml\n(.*?)^```", (ROOT / "docs" / "command_line.md").read_text(),
                        re.DOTALL | re.MULTILINE)
    assert len(blocks) == 1
    return blocks[0]


def launch_with_config(config: str, script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`accelerate launch --config_file` (no --fsdp: the config asks for FSDP) through fsdp_run_script.py."""
    config_file = cwd / "accelerate_config.yaml"
    config_file.write_text(config)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file),
           str(ROOT / "tests" / "fsdp_run_script.py"), str(ROOT / "scripts" / script), *args, "--log_level", "info"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S, env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def folder_files(folder: Path) -> dict[str, list[str]]:
    """{"": the folder's files and subfolders, "checkpoint-N": its files less the layout ones}."""
    listing = {"": sorted(path.name + ("/" if path.is_dir() else "") for path in folder.iterdir())}
    for checkpoint in sorted(folder.glob("checkpoint-*")):
        listing[checkpoint.name] = sorted(p.name for p in checkpoint.iterdir() if not LAYOUT_FILES.match(p.name))
    return listing


def assert_same_saved_folder(got: Path, expected: Path) -> None:
    """Same files; the same config, image processor, class counts, split and code; the same card."""
    assert folder_files(got) == folder_files(expected)
    for name in ("config.json", "preprocessor_config.json", "class_counts.json", "long_tailed_indices.json"):
        assert json.loads((got / name).read_text()) == json.loads((expected / name).read_text()), name
    for code in expected.glob("*.py"):  # the model's remote code, never torch's FSDP files
        assert (got / code.name).read_text() == code.read_text()
    if (expected / "README.md").exists():
        assert card_text(got) == card_text(expected)


def card_text(folder: Path) -> str:
    """The model card, less what legitimately differs between two runs: none is known, but a training time or an
    absolute path would be one (each run has its own folder)."""
    text = (folder / "README.md").read_text()
    text = text.replace(str(folder.parent), "<parent>")
    return re.sub(r"(runtime|seconds?|per_second)\W+[\d.:]+", r"\1 <time>", text)


def train_losses(folder: Path) -> dict[int, float]:
    history = json.loads((folder / "trainer_state.json").read_text())["log_history"]
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


def test_fsdp_on_cpu_without_the_test_launcher_is_refused(tmp_path):
    """Plain `accelerate launch` on CPU drops the FSDP plugin (trains DDP): our trainers refuse the run, naming it."""
    result = launch_two_processes("run_mgp.py", MGP + FSDP + ["--per_device_train_batch_size", "16",
                                                              "--output_dir", str(tmp_path / "out")],
                                  tmp_path, expect_success=False)
    assert result.returncode != 0
    assert "accelerate did not turn FSDP on for this run" in result.stderr, result.stderr[-3000:]
    assert "AcceleratorState.__init__" in result.stderr
    assert "trained 4 steps" not in result.stdout


@pytest.fixture(scope="module")
def mgp_fsdp(tmp_path_factory):
    """The 4-step FSDP MGP run (checkpoints at steps 2 and 4) in `<tmp>/fsdp/mgp`."""
    root = tmp_path_factory.mktemp("mgp_fsdp")
    result = launch_fsdp("run_mgp.py", MGP + ["--per_device_train_batch_size", "16", "--output_dir",
                                              str(root / "fsdp" / "mgp")], root)
    assert_clean_two_process_run(result, steps=4)
    return root


def test_mgp_fsdp_equals_ddp_and_saves_the_single_process_folder(mgp_fsdp):
    root = mgp_fsdp
    ddp = launch_two_processes("run_mgp.py", MGP + ["--per_device_train_batch_size", "16", "--output_dir",
                                                    str(root / "ddp" / "mgp")], root)
    assert_clean_two_process_run(ddp, steps=4)
    run_mgp.main(MGP + ["--per_device_train_batch_size", "32", "--output_dir", str(root / "one" / "mgp")])

    fsdp, ddp_run, one = (root / name / "mgp" for name in ("fsdp", "ddp", "one"))
    assert_same_weights(weights(fsdp), weights(ddp_run))
    for step in ("checkpoint-2", "checkpoint-4"):  # the checkpoints' full weights too
        assert_same_weights(weights(fsdp / step), weights(ddp_run / step))
    difference, counterfactual = max_difference(weights(fsdp), weights(ddp_run)), max_difference(weights(fsdp),
                                                                                                 weights(one))
    print(f"MGP: FSDP vs DDP (2 x 16) max |difference| {difference:.2e}; vs 1 x 32 (other masks) {counterfactual:.2e}")
    # the counterfactual: other masks end far beyond the tolerance (and the runs trained: 4 steps at lr 1e-3)
    assert counterfactual > 100 * ATOL, counterfactual
    assert difference < counterfactual / 100
    assert_same_saved_folder(fsdp, one)
    assert (fsdp / "mgp_reconstructions.png").exists()  # drawn by the main process, every process ran the model


def test_mgp_fsdp_checkpoint_resumes_exactly(mgp_fsdp):
    """Resume the sharded run from its step-2 checkpoint (sharded model and optimizer state, per-process RNG) up to
    step 4: the same losses at steps 3 and 4 and the same weights as the uninterrupted run."""
    root = mgp_fsdp
    full, resumed = root / "fsdp" / "mgp", root / "resumed" / "mgp"
    result = launch_fsdp("run_mgp.py", MGP + ["--per_device_train_batch_size", "16", "--output_dir", str(resumed),
                                              "--resume_from_checkpoint", str(full / "checkpoint-2")], root)
    assert_clean_two_process_run(result, steps=4)
    assert f"Loading model from {full / 'checkpoint-2'}" in result.stderr  # Trainer's resume, not a fresh start
    assert (full / "checkpoint-2" / "pytorch_model_fsdp.bin").exists()  # accelerate's FSDP checkpoint was resumed
    got, expected = train_losses(resumed), train_losses(full)
    assert sorted(got) == [1, 2, 3, 4] and [got[s] for s in (3, 4)] == pytest.approx([expected[s] for s in (3, 4)],
                                                                                     rel=1e-5)
    difference = max_difference(weights(resumed), weights(full))
    print(f"MGP FSDP resume from step 2 vs uninterrupted: max |difference| {difference:.2e}")
    assert_same_weights(weights(resumed), weights(full))


def test_deit_lt_fsdp_two_processes_x16_equal_one_process_x32(tmp_path, teacher_dir):
    args = DATA + ENCODER + SAME_IN_ANY_LAYOUT + ["--teacher_name_or_path", str(teacher_dir),
                                                  "--repeated_augmentation", "1"]
    fsdp_dir, one_dir = tmp_path / "fsdp" / "deit_lt", tmp_path / "one" / "deit_lt"
    result = launch_fsdp("run_deit_lt.py", args + ["--per_device_train_batch_size", "16", "--output_dir",
                                                   str(fsdp_dir)], tmp_path)
    assert_clean_two_process_run(result, steps=4)
    run_deit_lt.main(args + ["--per_device_train_batch_size", "32", "--output_dir", str(one_dir)])

    difference = max_difference(weights(fsdp_dir), weights(one_dir))
    print(f"DeiT-LT: FSDP 2 x 16 vs 1 x 32 max |difference| {difference:.2e}")
    assert_same_weights(weights(fsdp_dir), weights(one_dir))
    assert_same_saved_folder(fsdp_dir, one_dir)  # the card (with the test results of the sharded model) included
    assert json.loads((fsdp_dir / "eval_results.json").read_text())["accuracy"] == pytest.approx(
        json.loads((one_dir / "eval_results.json").read_text())["accuracy"])


# ---------------------------------------------------------------------------------------------------------------------
# What is refused, without a launch (a stand-in trainer whose accelerator has FSDP on)
# ---------------------------------------------------------------------------------------------------------------------
def fake_trainer(model=None, plugin=None, fsdp="full_shard", **args):
    plugin = plugin or SimpleNamespace(fsdp_version=2, state_dict_type="StateDictType.FULL_STATE_DICT",
                                       auto_wrap_policy="TRANSFORMER_BASED_WRAP", transformer_cls_names_to_wrap=None)
    accelerator = SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin), distributed_type="FSDP",
                                  unwrap_model=lambda m: m)
    return SimpleNamespace(args=SimpleNamespace(fsdp=fsdp, **args), is_fsdp_enabled=True, accelerator=accelerator,
                           model=model or torch.nn.Linear(2, 2))


@pytest.mark.parametrize("change, message", [
    (dict(plugin=SimpleNamespace(fsdp_version=1, state_dict_type="FULL_STATE_DICT")), "FSDP version 1"),
    (dict(plugin=SimpleNamespace(fsdp_version=2, state_dict_type="StateDictType.SHARDED_STATE_DICT")),
     "SHARDED_STATE_DICT: the saved folder needs the full weights"),
    (dict(model_ema=True), "--model_ema true with FSDP"),
])
def test_fsdp_settings_that_cannot_be_honoured_are_refused(change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_fsdp(fake_trainer(**change))


def test_fsdp_request_accelerate_dropped_is_refused(monkeypatch):
    trainer = fake_trainer(fsdp=None)
    trainer.is_fsdp_enabled, trainer.accelerator.distributed_type = False, "MULTI_CPU"
    check_fsdp(trainer)  # no request, no FSDP: nothing to say
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # accelerate launch --use_fsdp / distributed_type: FSDP
    with pytest.raises(ValueError, match="accelerate did not turn FSDP on"):
        check_fsdp(trainer)


def test_teacher_trainer_refuses_fsdp():
    from trainers.teacher import TeacherTrainer

    trainer = fake_trainer()
    trainer.fsdp_refusal = TeacherTrainer.fsdp_refusal
    with pytest.raises(ValueError, match="the teacher trains with SAM"):
        check_fsdp(trainer)


def test_default_wrap_units_leave_out_the_block_holding_the_patch_embeddings():
    from modeling_livt import DeiTLTConfig, DeiTLTForImageClassification, LiVTForMaskedImageModeling
    from tests.helpers import tiny_livt_config

    for model in (LiVTForMaskedImageModeling(tiny_livt_config()),
                  DeiTLTForImageClassification(DeiTLTConfig(image_size=32, patch_size=4, hidden_size=32,
                                                            num_hidden_layers=1, num_attention_heads=2,
                                                            intermediate_size=64, num_labels=3))):
        assert "LongTailViTEmbeddings" in model._no_split_modules
        trainer = fake_trainer(model=model)
        check_fsdp(trainer)
        assert trainer.accelerator.state.fsdp_plugin.transformer_cls_names_to_wrap == ["LongTailViTLayer"]
    named = fake_trainer().accelerator.state.fsdp_plugin
    named.transformer_cls_names_to_wrap = ["Mine"]  # the user's choice (fsdp_config transformer_layer_cls_to_wrap)
    set_default_wrap_units(named, LiVTForMaskedImageModeling(tiny_livt_config()))
    assert named.transformer_cls_names_to_wrap == ["Mine"]


# ---------------------------------------------------------------------------------------------------------------------
# The documented multi-node config (docs/command_line.md) is one accelerate reads as FSDP2, full state dict, our units
# ---------------------------------------------------------------------------------------------------------------------
def test_documented_multi_node_config_gives_fsdp2_with_full_state_dict(tmp_path, monkeypatch):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    text = (ROOT / "docs" / "command_line.md").read_text()
    config_file = tmp_path / "fsdp_2x8.yaml"
    config_file.write_text(documented_config())
    config = ClusterConfig.from_yaml_file(str(config_file))  # raises on keys accelerate does not know
    assert config.distributed_type == DistributedType.FSDP and config.num_machines == 2

    args = launch_command_parser().parse_args(["--config_file", str(config_file), "scripts/run_mgp.py"])
    args, _, _ = _validate_launch_command(args)
    env = prepare_multi_gpu_env(args)  # what `accelerate launch --config_file` hands each process
    assert env["ACCELERATE_USE_FSDP"] == "true"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()  # as Accelerator builds it from that environment
    assert plugin.fsdp_version == 2
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)
    assert plugin.transformer_cls_names_to_wrap == ["LongTailViTLayer"]
    from modeling_livt import LIVT_PRESETS

    assert "--config_name large" in text and "large" in LIVT_PRESETS  # the ViT-L preset the command names


def test_documented_config_on_one_cpu_machine_trains_as_the_fsdp_flag(mgp_fsdp):
    """The documented config's FSDP settings, on 1 machine x 2 CPU processes: the run `--fsdp` gives (same weights)."""
    root = mgp_fsdp
    local = {"num_machines": "1", "num_processes": "2", "machine_rank": "0", "main_process_ip": "127.0.0.1",
             "main_process_port": str(free_port()), "mixed_precision": "'no'", "use_cpu": "true"}
    config = documented_config()
    for key, value in local.items():
        config, count = re.subn(rf"^{key}: .*$", f"{key}: {value}", config, flags=re.MULTILINE)
        assert count == 1, key
    out = root / "config_launch" / "mgp"
    result = launch_with_config(config, "run_mgp.py", MGP + ["--per_device_train_batch_size", "16", "--output_dir",
                                                             str(out)], root)
    assert f"{FSDP_ON_CPU_LINE}: FSDP version 2" in result.stdout
    assert_clean_two_process_run(result, steps=4)
    assert_same_weights(weights(out), weights(root / "fsdp" / "mgp"))
