"""Run under `accelerate launch` by test_fsdp.py: `fsdp_run_script.py SCRIPT ARGS...` runs SCRIPT as
`ddp_run_script.py` does, with FSDP allowed on CPU.

accelerate keeps the FSDP plugin only for GPU-like devices (`AcceleratorState.__init__` in accelerate/state.py: its
FSDP branch is reached for MULTI_GPU/MULTI_XPU/... and never for MULTI_CPU), so on CPU a `--fsdp` run would silently
train with DDP (our trainers refuse that run, see trainers/fsdp.py). torch's `fully_shard` itself runs on CPU with
gloo; this launcher lifts that one check and nothing else: the plugin Trainer built from `--fsdp`/`--fsdp_config` is
kept and the distributed type becomes FSDP, as it would on GPUs. Everything after it (accelerate's `fully_shard`
wrapping, its full-state-dict save, its sharded optimizer checkpoint and their loading) is accelerate's own code.
"""

import accelerate.state
from accelerate.utils import DistributedType

from tests.ddp_run_script import main

FSDP_ON_CPU_LINE = "FSDP kept on CPU by fsdp_run_script"

_original_init = accelerate.state.AcceleratorState.__init__


def _init_keeping_fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
    _original_init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = fsdp_plugin
        accelerate.state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        print(f"{FSDP_ON_CPU_LINE}: FSDP version {fsdp_plugin.fsdp_version}", flush=True)


accelerate.state.AcceleratorState.__init__ = _init_keeping_fsdp_on_cpu

if __name__ == "__main__":
    main()
