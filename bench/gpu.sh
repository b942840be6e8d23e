#!/usr/bin/env bash
# The prepared GPU session: one command, about 9 minutes on one H100/H200, every step time-boxed.
#
#   bash bench/gpu_prepare.sh            # here, once: wheels the GPU image lacks + CIFAR-10 into .gpu/ (git-ignored)
#   bash bench/gpu.sh                    # there (carry .gpu): results in $OUT/gpu_results.tar.gz and $OUT/gpu.log
#   TINY=1 OUT=/tmp/gpu_out bash bench/gpu.sh   # on CPU, tiny budgets: checks the wiring in a few minutes
#
# In order (a step that runs out of its time box is stopped, the next one still runs):
#   1. bench/speed.py on CUDA, bf16: ViT-B/16 at 224 px with model FLOP utilisation (H100/H200 dense bf16 peak 989)
#   2. the DeiT-LT teacher (ResNet-32 + SAM, 200 epochs, the official LDAM-DRW + SAM recipe: crop + flip, rho 0.8,
#      weight decay 2e-4; bench/results/teacher_selection_cifar10lt.md), only when bench/models/cifar10lt_teacher is
#      missing
#   3. the 12-epoch table's four losses (CE, BCE, Bal-CE, Bal-BCE) at seeds 0, 1 and 2
#   4. the DeiT-LT student at 200 epochs from the teacher
# bench/accuracy.py appends each finished run to its .json at once, so whatever finishes comes back.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
TINY=${TINY:-0}
OUT=${OUT:-$REPO/outputs/gpu}
WORK=${WORK:-/tmp/livt_gpu_work}
PY=${PY:-python3}
mkdir -p "$OUT" "$WORK" "$WORK/results"
LOG=$OUT/gpu.log
: > "$LOG"
say() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }

# --- environment: the GPU image has torch, transformers, timm, accelerate; datasets and evaluate travel as wheels
if [ -d .gpu/wheels ]; then
    $PY -m pip install -q --no-index --find-links .gpu/wheels datasets evaluate >> "$LOG" 2>&1 || say "wheel install failed"
fi
$PY -c "import modeling_livt" 2>/dev/null || $PY -m pip install -q --no-deps --no-build-isolation -e . >> "$LOG" 2>&1
DATA=${DATA:-}
if [ -z "$DATA" ]; then
    if [ -d .gpu/cifar10 ]; then DATA=$REPO/.gpu/cifar10; else DATA=$REPO/../shared/data/cifar10; fi
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')" 2>&1 | tee -a "$LOG"

if [ "$TINY" = 1 ]; then   # CPU wiring check: minutes, fp32 (CPU bf16 is slow without native support)
    SPEED="--quick --device cpu --repeats 2"; T_SPEED=300; T_TEACHER=300; T_LOSSES=600; T_STUDENT=300
    PRECISION=""; WORKERS=0; SMALL="--max_train_samples 256 --max_eval_samples 256"
    TEACHER_EPOCHS=2; LOSS_EPOCHS=1; STUDENT_EPOCHS=1; SEEDS=0,1; RECIPES=bal_ce,bal_bce
else
    SPEED="--device cuda --dtype bf16 --peak_tflops 989"; T_SPEED=${T_SPEED:-90}; T_TEACHER=${T_TEACHER:-150}
    T_LOSSES=${T_LOSSES:-180}; T_STUDENT=${T_STUDENT:-120}
    PRECISION="--bf16"; WORKERS=${WORKERS:-10}; SMALL=""
    TEACHER_EPOCHS=200; LOSS_EPOCHS=12; STUDENT_EPOCHS=200; SEEDS=0,1,2; RECIPES=ce,bce,bal_ce,bal_bce
fi

run_step() {  # name, seconds, command...
    local name=$1 seconds=$2
    shift 2
    say "step $name (at most ${seconds}s): $*"
    local start=$SECONDS
    timeout --signal=INT --kill-after=20 "$seconds" "$@" >> "$WORK/results/$name.log" 2>&1
    say "step $name: exit $? after $((SECONDS - start))s"
}

# 1. speed and MFU
run_step speed "$T_SPEED" $PY bench/speed.py $SPEED --json --output_dir "$WORK/results/speed"

# 2. the teacher, when none is committed
TEACHER=$REPO/bench/models/cifar10lt_teacher
if [ ! -f "$TEACHER/model.safetensors" ]; then
    TEACHER=$WORK/cifar10lt_teacher
    run_step teacher "$T_TEACHER" $PY scripts/run_teacher.py --dataset_name "$DATA" --imbalance_factor 100 \
        --normalization cifar --teacher_arch resnet_cifar --loss_type ldam_drw --rand_augment false --sam_rho 0.8 \
        --weight_decay 2e-4 --output_dir "$TEACHER" --seed 0 \
        --per_device_train_batch_size 128 --per_device_eval_batch_size 1024 --num_train_epochs "$TEACHER_EPOCHS" \
        --learning_rate 0.1 --dataloader_num_workers "$WORKERS" --logging_steps 100 --disable_tqdm true \
        --report_to none --save_total_limit 1 $SMALL
fi

# 3. the four losses at seeds 0-2
run_step losses "$T_LOSSES" $PY bench/accuracy.py --recipes "$RECIPES" --seeds "$SEEDS" \
    --epochs "$LOSS_EPOCHS" --workers "$WORKERS" $PRECISION $SMALL --dataset "$DATA" --keep_going \
    --results_prefix "$WORK/results/accuracy_cifar10lt_seeds_gpu" --work_dir "$WORK/accuracy"

# 4. the DeiT-LT student at 200 epochs (DRW at 1100/1200 of the run, as the official CIFAR runs)
if [ -f "$TEACHER/model.safetensors" ]; then
    run_step student "$T_STUDENT" $PY bench/accuracy.py --recipes deit_lt --teacher_name_or_path "$TEACHER" \
        --epochs "$STUDENT_EPOCHS" --drw_fraction 0.9167 --workers "$WORKERS" $PRECISION $SMALL --dataset "$DATA" \
        --results_prefix "$WORK/results/deit_lt_cifar10lt_gpu" --work_dir "$WORK/accuracy"
else
    say "step student: skipped, no teacher at $TEACHER"
fi

# what comes back: one archive (results, logs, the teacher folder) and this log
if [ -d "$WORK/cifar10lt_teacher" ]; then
    mkdir -p "$WORK/results/cifar10lt_teacher"
    find "$WORK/cifar10lt_teacher" -maxdepth 1 -type f -exec cp {} "$WORK/results/cifar10lt_teacher/" \;
fi
tar -czf "$OUT/gpu_results.tar.gz" -C "$WORK" results
say "done: $OUT/gpu_results.tar.gz ($(du -h "$OUT/gpu_results.tar.gz" | cut -f1))"
