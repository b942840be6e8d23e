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
