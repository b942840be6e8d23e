#!/usr/bin/env bash
# The long CPU runs behind the DeiT-LT comparison on CIFAR-10-LT, in the order they are run, then bench/compare.py.
# Every step appends each finished run to its results JSON (bench/results/) and skips the runs already there; an
# interrupted run resumes from its latest checkpoint under outputs/. Rerun the script until it has nothing left to do.
# A run longer than the machine lasts: `park` copies its checkpoints into bench/parked/ (commit them), and the next
# call on a fresh clone restores them first (bench/park_runs.py).
#
#   bash bench/deit_lt_cifar10lt.sh                 # every step, in order
#   bash bench/deit_lt_cifar10lt.sh students seeds  # some steps
#   bash bench/deit_lt_cifar10lt.sh park            # before the machine goes
#
# The teacher (bench/models/cifar10lt_teacher) was trained first: its command and validation rows are in
# bench/results/teacher_selection_cifar10lt.md. Wall times below are for 2 CPU cores (AVX2, fp32).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

TEACHER=bench/models/cifar10lt_teacher
DEIT_LT=bench/results/deit_lt_cifar10lt
# 50 epochs, DRW at the official fraction of the run (epoch 1100 of 1200); one DataLoader worker overlaps decoding
STUDENT=(bench/accuracy.py --recipes deit_lt --teacher_name_or_path "$TEACHER" --epochs 50 --drw_fraction 0.9167
         --workers 1 --results_prefix "$DEIT_LT")

# The student's augmentation arm with the better seed-0 validation accuracy (never the test split's).
chosen_arm() {
    "$PY" bench/publish_student.py --print_arm
}

# Crop + flip only, then the papers' augmentation (RandAugment, MixUp/CutMix off after DRW, erasing): ~2.5 h each.
students() {
    for arm in none paper; do
        "$PY" "${STUDENT[@]}" --student_augmentation "$arm"
        "$PY" bench/publish_student.py  # bench/models/cifar10lt_deit_lt: the better arm on validation so far
    done
}

# The 12-epoch table's four losses at seeds 0-2: ~25 min a run.
seeds() {
    "$PY" bench/accuracy.py --recipes ce,bce,bal_ce,bal_bce --seeds 0,1,2 --workers 1 \
        --results_prefix bench/results/accuracy_cifar10lt_seeds
}

# The independent timm loop's Bal-BCE at the same seeds.
timm_loop() {
    "$PY" bench/timm_loop.py --losses bal_bce --seeds 0,1,2
}

# A second seed of the chosen student, and Bal-BCE from scratch at the same 50 epochs, seeds 0 and 1.
second_seeds() {
    "$PY" "${STUDENT[@]}" --student_augmentation "$(chosen_arm)" --seeds 1
    "$PY" bench/accuracy.py --recipes bal_bce --epochs 50 --seeds 0,1 --workers 1 --results_prefix "$DEIT_LT"
}

# The combined recipe: the student from an MGP checkpoint of the same budget.
mgp_deit_lt() {
    "$PY" bench/accuracy.py --recipes mgp_deit_lt --teacher_name_or_path "$TEACHER" --epochs 50 --drw_fraction 0.9167 \
        --workers 1 --results_prefix "$DEIT_LT" --student_augmentation "$(chosen_arm)"
}

compare() {
    "$PY" bench/compare.py
}

park() {
    "$PY" bench/park_runs.py park
}

ALL=(students seeds timm_loop second_seeds mgp_deit_lt compare)
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=("${ALL[@]}")
for step in "${steps[@]}"; do
    [[ " ${ALL[*]} park " == *" $step "* ]] || { echo "unknown step '$step': choose from ${ALL[*]} park" >&2; exit 2; }
done
[ "${steps[*]}" = park ] || "$PY" bench/park_runs.py restore
for step in "${steps[@]}"; do "$step"; done
