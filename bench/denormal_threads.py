#!/usr/bin/env python
"""Does `torch.set_flush_denormal(True)` reach every intra-op thread? It depends on when it is called.

The flag is the FTZ/DAZ bits of the x86 MXCSR register, which is per thread: `torch.set_flush_denormal` sets the
calling thread's only. OpenMP worker threads copy the creator's MXCSR when the pool is created (the first parallel
op), and keep it. So:

    set before any parallel op (e.g. at import)        -> every thread flushes
    set after a model was built (the pool exists)       -> only the main thread flushes; on N threads,
                                                           (N - 1) / N of every parallel kernel still makes denormals

The trainers used to call it in the Trainer's __init__ (`LongTailTrainerMixin._setup_long_tail`, dropped in commit
9478979), after the scripts had built the model: the second case. Each case runs in a fresh subprocess (the pool
cannot be re-created in one).

    python bench/denormal_threads.py
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import json, sys
import numpy as np
import torch
mode = sys.argv[1]
x = torch.from_numpy(np.full(4_000_000, 1e-39, dtype=np.float32))  # denormal inputs, made without any torch kernel
y = torch.from_numpy(np.full(4_000_000, 0.5, dtype=np.float32))
if mode == "before_pool":
    torch.set_flush_denormal(True)
from modeling_livt import LiVTConfig, LiVTForMaskedImageModeling
LiVTForMaskedImageModeling(LiVTConfig.from_preset("tiny", image_size=32, patch_size=4))  # as the scripts: model first
if mode == "after_model":
    torch.set_flush_denormal(True)   # what the trainers did (in Trainer.__init__)
z = x * y                              # a parallel elementwise kernel split across the pool's threads
print(json.dumps({"mode": mode, "threads": torch.get_num_threads(),
                  "denormal_fraction_of_result": float((z != 0).float().mean())}))
"""


def main():
    rows = []
    for mode in ("never", "after_model", "before_pool"):
        out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for row in rows:
        print(f"flush {row['mode']:12s} ({row['threads']} threads): {100 * row['denormal_fraction_of_result']:.0f}% "
              "of x * y still denormal")
    return rows


if __name__ == "__main__":
    main()
