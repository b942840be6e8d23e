#!/usr/bin/env bash
# Puts what bench/gpu.sh needs on a GPU machine, which reaches no network, into .gpu/ (git-ignored; carry it):
# wheels of the packages its image lacks (for its Python 3.12) and the CIFAR-10 folder (../shared does not travel).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpu/wheels
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any \
    -d .gpu/wheels "datasets>=3.0" "evaluate>=0.4.3" dill multiprocess
rm -rf .gpu/cifar10
cp -r ../shared/data/cifar10 .gpu/cifar10
du -sh .gpu/wheels .gpu/cifar10
