"""DDP on CPU (gloo): 2 processes x batch 16 end with the same weights as 1 process x batch 32.

Why the two runs must agree (everything else that could legitimately differ is switched off or process-independent):

* data order: Trainer's shuffle becomes accelerate's `SeedableRandomSampler` (seeded by the run's seed), the same
  permutation for any number of processes; accelerate deals batch k of the 16-batches to process k % 2, so the global
  batch of step s is 16-batches 2s and 2s+1 = the s-th 32-batch of the same permutation.
* augmentation: seeded per example by (seed, epoch, example index) (`make_transform_fn`), so RandAugment, crops
  and random erasing stay ON: an example is augmented identically whichever process reads it. Label smoothing is
  deterministic and stays on; MixUp/CutMix are off (they mix within a batch: a 16-batch cannot mix with the other
  process's half), drop path is 0 (drawn from each process's own RNG), DeiT-LT's repeated augmentation is 1 (its
  sampler sends an image's copies to different processes by design), no DRW (a class-weighted mean over 16 + 16 is
  not the weighted mean over 32), no evaluation during training (no best-model reload).
* loss: our losses are batch means and DDP averages the gradients of the processes: the mean of two 16-means is the
  32-mean. Gradient clipping is off (`--max_grad_norm 0`, our default).

The reference runs are in-process (`main(argv)`); the DDP runs are real `accelerate launch` subprocesses, each on a
free port, through `ddp_run_script.py`, which reports whether the script left its process group alive.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import run_deit_lt  # noqa: E402
import run_finetune  # noqa: E402

from tests.ddp_run_script import GROUP_ALIVE_LINE  # noqa: E402

# A launch imports torch + transformers twice over: ~30 s on a quiet 2-core machine, minutes on a loaded one.
LAUNCH_TIMEOUT_S = 900
# float32 gradients summed in another order (16 + 16 all-reduced vs 32 at once), through 4 AdamW steps at lr 1e-3:
# measured differences are <= 4e-7 (LiVT 9e-8, DeiT-LT 4e-7); runs that see different batches differ by ~4e-3 (the
# counterfactual below).
RTOL, ATOL = 1e-4, 1e-5

DATA = ["--dataset_name", "digits", "--imbalance_factor", "10", "--normalization", "digits", "--max_eval_samples", "16"]
ENCODER = ["--config_name", "tiny", "--image_size", "32", "--patch_size", "4", "--config_overrides",
           "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64"]
# 4 steps of the default recipe (RandAugment, random erasing, label smoothing, AdamW, cosine, layer decay) with what
# would legitimately differ between 1 and 2 processes turned off (see the module docstring)
SAME_IN_ANY_LAYOUT = ["--mixup", "0", "--cutmix", "0", "--drop_path_rate", "0", "--max_steps", "4",
                      "--warmup_steps", "0", "--learning_rate", "1e-3", "--eval_strategy", "no", "--save_strategy",
                      "no", "--seed", "0", "--use_cpu", "true", "--report_to", "none", "--disable_tqdm", "true"]
FINETUNE = DATA + ENCODER + SAME_IN_ANY_LAYOUT


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it): each launch gets its own, so tests never collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_two_processes(script: str, args: list[str], cwd: Path, runner: str = "ddp_run_script.py",
                         expect_success: bool = True) -> subprocess.CompletedProcess:
    """`accelerate launch` (torch.distributed, gloo on CPU) of `scripts/<script>` on 2 processes and a free port,
    through `tests/<runner>`; asserts that it succeeded (`expect_success=False`: returns it as it ended)."""
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
        "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1",
        "--main_process_port", str(free_port()), str(ROOT / "tests" / runner),
        str(ROOT / "scripts" / script), *args, "--log_level", "info",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S, env=env, cwd=cwd)
    if expect_success:
        assert result.returncode == 0, result.stderr[-4000:]
    return result


def assert_clean_two_process_run(result: subprocess.CompletedProcess, steps: int) -> None:
    """Both processes trained `steps` steps on a global batch of 32 and destroyed their process group."""
    log = result.stdout + result.stderr
    assert "Total train batch size (w. parallel, distributed & accumulation) = 32" in log  # 2 processes x 16
    for rank in (1, 2):
        assert f"process {rank}/2: trained {steps} steps" in result.stdout
    for rank in (0, 1):
        assert f"rank {rank}: {GROUP_ALIVE_LINE}: False" in result.stdout, result.stdout[-2000:]
    # torch's own complaint (NCCL prints it; gloo leaks silently, hence the line above)
    assert "destroy_process_group() was not called" not in log


def weights(folder: Path) -> dict[str, torch.Tensor]:
    """The saved weights, less what is float noise by construction: the key third of each fused qkv bias. Adding a
    constant to every key shifts all logits of a softmax row equally, so its exact gradient is 0; AdamW divides the
    rounding noise left in its place by that noise's own RMS and steps by up to lr (measured: 2e-6 apart, on values of
    1e-6), whatever the process layout."""
    state = load_file(str(folder / "model.safetensors"))
    for key in [key for key in state if key.endswith("attn.qkv.bias")]:
        query, _, value = state[key].chunk(3)
        state[key] = torch.cat([query, value])
    return state


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[key] - b[key]).abs().max()) for key in a)


def assert_same_weights(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=RTOL, atol=ATOL, msg=lambda m, k=key: f"{k}: {m}")


def test_finetune_two_processes_x16_equal_one_process_x32(tmp_path):
    ddp = launch_two_processes(
        "run_finetune.py", FINETUNE + ["--per_device_train_batch_size", "16", "--output_dir", str(tmp_path / "ddp")],
        tmp_path,
    )
    assert_clean_two_process_run(ddp, steps=4)
    run_finetune.main(FINETUNE + ["--per_device_train_batch_size", "32", "--output_dir", str(tmp_path / "x32")])
    run_finetune.main(FINETUNE + ["--per_device_train_batch_size", "16", "--output_dir", str(tmp_path / "x16")])

    two_x16, one_x32, one_x16 = (weights(tmp_path / name) for name in ("ddp", "x32", "x16"))
    assert_same_weights(two_x16, one_x32)
    # counterfactual: a run that sees other batches (the first 4 x 16 images, not 4 x 32) ends elsewhere, far beyond
    # the tolerance, so the comparison above can fail; and both runs really trained (4 steps at lr 1e-3 move weights
    # by ~1e-3; two untrained runs would both equal the initialisation)
    counterfactual = max_difference(one_x16, one_x32)
    assert counterfactual > 100 * ATOL, counterfactual
    assert max_difference(two_x16, one_x32) < counterfactual / 100


def test_deit_lt_two_processes_x16_equal_one_process_x32(tmp_path, teacher_dir):
    from modeling_livt import DeiTLTForImageClassification

    args = DATA + ENCODER + SAME_IN_ANY_LAYOUT + ["--teacher_name_or_path", str(teacher_dir),
                                                  "--repeated_augmentation", "1"]
    ddp = launch_two_processes(
        "run_deit_lt.py", args + ["--per_device_train_batch_size", "16", "--output_dir", str(tmp_path / "ddp")],
        tmp_path,
    )
    assert_clean_two_process_run(ddp, steps=4)
    model = DeiTLTForImageClassification.from_pretrained(tmp_path / "ddp")
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 32, 32))
    assert out.logits.shape == (2, 10) and torch.isfinite(out.logits).all()
    assert (tmp_path / "ddp" / "eval_results.json").exists()  # the final test evaluation ran on rank 0

    run_deit_lt.main(args + ["--per_device_train_batch_size", "32", "--output_dir", str(tmp_path / "x32")])
    two_x16, one_x32 = weights(tmp_path / "ddp"), weights(tmp_path / "x32")
    assert_same_weights(two_x16, one_x32)
