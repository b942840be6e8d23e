"""Tiny configurations shared by the tests (hidden 32, 2 layers, patch 4, 32-px images)."""

import modeling_livt as ml

TINY = dict(
    image_size=32,
    patch_size=4,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    decoder_hidden_size=32,
    decoder_num_hidden_layers=1,
    decoder_num_attention_heads=2,
    decoder_intermediate_size=64,
)


def tiny_livt_config(**overrides) -> "ml.LiVTConfig":
    return ml.LiVTConfig(**{**TINY, **overrides})


def save_tiny_teacher(out, normalization: str = "digits"):
    """A random tiny CIFAR ResNet teacher for digits (10 classes), saved as run_teacher.py saves one: weights, labels
    and a 32-px image processor with the `normalization` preset's mean/std. Returns `out`."""
    import torch

    from modeling_livt.data.transforms import build_image_processor, get_normalization

    torch.manual_seed(0)
    names = {i: str(i) for i in range(10)}
    config = ml.ResNetCifarConfig(depth=8, base_width=4, id2label=names, label2id={v: k for k, v in names.items()})
    ml.ResNetCifarForImageClassification(config).save_pretrained(out)
    build_image_processor(32, *get_normalization(normalization)).save_pretrained(out)
    return out


_BLOCK_OUR_PACKAGE = """
import sys
class _Block:
    # makes `import modeling_livt` fail, as on a machine with only transformers installed
    def find_spec(self, name, path=None, target=None):
        if name == "modeling_livt" or name.startswith("modeling_livt.") or name == "trainers":
            raise ModuleNotFoundError(f"blocked import of {name}")
sys.meta_path.insert(0, _Block())
"""


def run_without_our_package(script: str, cwd):
    """Run `script` in a fresh interpreter where importing our package fails (Hub users only have transformers)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(cwd / "hf_modules")}
    return subprocess.run(
        [sys.executable, "-c", _BLOCK_OUR_PACKAGE + script],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )
