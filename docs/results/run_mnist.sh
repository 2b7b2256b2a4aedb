#!/usr/bin/env bash
# Reproduces the MNIST experiments of docs/method.md §6 with CNN8: the single target 50,000 NNZ
# (±0.1%), the multi targets (250, 8000, 13000, 20000, 4200) (±10%, all 5 layers) and the dense
# baseline; SGD, eta 0.1, batch 128, pixels in [-1, 1]. The paper's budget is 200 epochs per
# run; on a CPU the budgets below are reduced (and stated in mnist.md). Writes commands, logs,
# reports, traces and models to OUT (the models are not kept in the repository).
#
#   SPARSEPROX=build/sparseprox DATA=../shared/data OUT=docs/results/mnist \
#     bash docs/results/run_mnist.sh cpu
#   ADAPTIVE_EPOCHS=200 PAPER_EPOCHS=200 DENSE_EPOCHS=200 FINETUNE_EPOCHS=200 \
#     bash docs/results/run_mnist.sh cuda
#
# Jobs run in three lanes at once with one OpenMP and one OpenBLAS thread each.
set -euo pipefail
DEVICE=${1:-cpu}
SPARSEPROX=${SPARSEPROX:-build/sparseprox}
DATA=${DATA:-../shared/data}
OUT=${OUT:-docs/results/mnist}
ADAPTIVE_EPOCHS=${ADAPTIVE_EPOCHS:-5}
PAPER_EPOCHS=${PAPER_EPOCHS:-3}
DENSE_EPOCHS=${DENSE_EPOCHS:-5}
FINETUNE_EPOCHS=${FINETUNE_EPOCHS:-5}
mkdir -p "$OUT"
export SPARSEPROX_NUM_THREADS=1  # one CPU thread per job (sparseprox/threads.h)
BASE="--data idx:$DATA/mnist --model cnn8 --lr 0.1 --batch 128 --device $DEVICE --progress-seconds 60"
SINGLE="--target-nnz 50000 --tolerance 0.001"
MULTI="--target-nnz 250,8000,13000,20000,4200 --tolerance 0.1"

. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
search() {
    local name=$1; shift
    job "$name" "$SPARSEPROX" search $BASE "$@" --trace-csv "$OUT/$name.csv" --save "$OUT/$name.safetensors"
}

# --no-finetune where a search returned its in-band run as it was when these results were measured.
# The *-adaptive-* rows of docs/results/mnist.md were measured with the adaptive rule before the
# warm-up, settled count, allocation and landing of docs/method.md §8.5 (interval 50 given, ramp
# half the budget); the same commands now run the current rule. The *-default-1epoch-* rows are
# the current default strategy, one epoch.
lane_c() {
    search multi-default-1epoch-$DEVICE $MULTI --epochs 1 --strategy adaptive
    search single-default-1epoch-$DEVICE $SINGLE --epochs 1
}
lane_a() {
    search single-adaptive-$DEVICE $SINGLE --epochs $ADAPTIVE_EPOCHS --strategy adaptive --adapt-interval 50 --no-finetune
    search single-adaptive8-$DEVICE $SINGLE --epochs $((ADAPTIVE_EPOCHS + 3)) --strategy adaptive --adapt-interval 50 \
        --adapt-rate 0.25 --no-finetune
    job dense-$DEVICE "$SPARSEPROX" train $BASE --epochs $DENSE_EPOCHS --lambda 0 --save "$OUT/dense-$DEVICE.safetensors"
}
lane_b() {
    # The acceptance run of a single CPU epoch, with per-layer lambdas.
    job cnn8-1epoch-$DEVICE "$SPARSEPROX" train --model cnn8 --data idx:$DATA/mnist --epochs 1 --device $DEVICE \
        --lr 0.2 --lambda 5e-5,1e-4,1e-4,3e-4,1e-4 --progress-seconds 30
    search multi-adaptive-$DEVICE $MULTI --epochs $ADAPTIVE_EPOCHS --strategy adaptive --adapt-interval 50 --no-finetune
    # The paper's rules with its starting values; run 0 trains its whole budget as in the
    # authors' released code (the exact rule would stop it on its way down through the band).
    search single-paper-run0-$DEVICE $SINGLE --epochs $PAPER_EPOCHS --strategy paper --lambda0 1e-2 \
        --lambda1 1e-7 --max-outer 29 --no-stop-run0 --no-finetune
    # The lambda that search found, run again with a longer budget and --finetune: the run stops
    # at its first step in the band and trains the rest of the budget with that pattern fixed.
    local lambda
    lambda=$(python3 -c 'import json, sys; print(repr(json.load(open(sys.argv[1]))["lambda_final"][0]))' \
        "$OUT/single-paper-run0-$DEVICE.json")
    search multi-paper-finetune-$DEVICE $MULTI --epochs $PAPER_EPOCHS --strategy paper --lambda0 1e-2 \
        --lambda1 1e-7 --max-outer 15 --no-stop-run0 --no-bisect-stalls --finetune
    job single-paper-finetune-$DEVICE "$SPARSEPROX" train $BASE $SINGLE --lambda "$lambda" --finetune \
        --epochs $FINETUNE_EPOCHS --save "$OUT/single-paper-finetune-$DEVICE.safetensors"
}
lane_a &
lane_b &
lane_c &
wait
