"""Run under `accelerate launch` by test_ddp.py: `ddp_run_script.py SCRIPT ARGS...` runs SCRIPT exactly as
`python SCRIPT ARGS...` does (as `__main__`), then prints whether this process's torch.distributed process group
outlived the script (a script must destroy it: a rank exiting with it alive can hang or abort its peers)."""

import os
import runpy
import sys

import torch.distributed as dist

GROUP_ALIVE_LINE = "process group alive after the script"


def main() -> None:
    script, args = sys.argv[1], sys.argv[2:]
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")
    print(f"rank {os.environ.get('RANK', '?')}: {GROUP_ALIVE_LINE}: {dist.is_initialized()}", flush=True)


if __name__ == "__main__":
    main()
