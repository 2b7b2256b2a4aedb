#!/usr/bin/env bash
# The sparsifier comparison (docs/method.md §7): l1, l0, spred and gmp at the same target
# NNZ (5% and 2% of the weights, ±1%) with the dense baseline beside them, on MNIST with
# lenet300100 and lenet5 and on Fashion-MNIST with lenet5. Pixels in [0, 1], batch 128, SGD.
#
# l1 appears three times: "l1" is the command line's default search for one total target (the
# adaptive strategy with the lazy l1 form and one lambda: one run, docs/method.md §3.1, §8.5 and
# §8.13), given only the target, data, model, budget and optimizer; "l1greedy" the same strategy
# with the paper's greedy step and the magnitude allocation (a lambda per layer; the default
# before the lazy form, with its lambda0 from all training rows); "l1paper" is the paper's
# search with one lambda (Algorithm 1: each run from the same initialization and stopped at its
# first step in the band; run 0 trains its whole budget, as in the authors' released code) plus
# --finetune (the rest of the in-band run's budget trains the surviving weights with the pattern
# fixed). l0 and spred use the paper's search with --finetune; gmp reaches the target with its
# schedule in one run. Every run gets the same epochs (EPOCHS_MLP for lenet300100, EPOCHS_LENET5
# for lenet5) and plain SGD at 0.1 (spred: 1 for its factors). Writes command, log and JSON
# report per row to OUT. ONLY="l1" (a space-separated list of methods) runs those rows alone.
#
#   SPARSEPROX=build/sparseprox DATA=../shared/data OUT=docs/results/compare \
#     bash docs/results/run_compare.sh cpu
#
# Jobs run in two lanes at once with one OpenMP and one OpenBLAS thread each.
set -euo pipefail
DEVICE=${1:-cpu}
SPARSEPROX=${SPARSEPROX:-build/sparseprox}
DATA=${DATA:-../shared/data}
OUT=${OUT:-docs/results/compare}
EPOCHS_MLP=${EPOCHS_MLP:-5}
EPOCHS_LENET5=${EPOCHS_LENET5:-2}
MAX_OUTER=${MAX_OUTER:-10}
mkdir -p "$OUT"
export SPARSEPROX_NUM_THREADS=1  # one CPU thread per job (sparseprox/threads.h)
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ONLY=${ONLY:-}
wanted() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }

# row NAME DATASET MODEL EPOCHS DENSITY METHOD
row() {
    local name=$1 data=$2 model=$3 epochs=$4 density=$5 method=$6
    wanted "$method" || return 0
    local data_flags="--data idx:$DATA/$data --model $model --pixel-scale unit --batch 128 --epochs $epochs --device $DEVICE"
    data_flags="$data_flags --progress-seconds 0 --target-density $density --tolerance 0.01"
    local base="$data_flags --max-outer $MAX_OUTER"
    case $method in
        l1) job "$name" "$SPARSEPROX" search $data_flags --method l1 --lr 0.1 ;;
        l1greedy) job "$name" "$SPARSEPROX" search $data_flags --method l1 --lr 0.1 --l1-form greedy --start-rows 60000 ;;
        l1paper) job "$name" "$SPARSEPROX" search $base --method l1 --strategy paper --lr 0.1 --no-stop-run0 --finetune ;;
        l0) job "$name" "$SPARSEPROX" search $base --method l0 --lr 0.1 --lambda0 1e-4 --lambda1 1e-5 \
                --no-stop-run0 --finetune ;;
        spred) job "$name" "$SPARSEPROX" search $base --method spred --lr 1 --lambda0 1e-2 --lambda1 1e-4 \
                --no-stop-run0 --finetune --finetune-lr 0.1 ;;
        gmp) job "$name" "$SPARSEPROX" search $base --method gmp --lr 0.1 ;;
        l0group) job "$name" "$SPARSEPROX" search $base --method l0 --l0-group --lr 0.1 --lambda0 1e-4 \
                --lambda1 1e-5 --no-stop-run0 --finetune ;;
    esac
}
dense() {
    local name=$1 data=$2 model=$3 epochs=$4
    wanted dense || return 0
    job "$name" "$SPARSEPROX" train --data idx:$DATA/$data --model $model --pixel-scale unit --batch 128 \
        --epochs $epochs --device $DEVICE --progress-seconds 0 --lambda 0 --lr 0.1
}

# set TAG DATASET MODEL EPOCHS: the dense baseline and every method at 5% and 2%
set_of() {
    local tag=$1 data=$2 model=$3 epochs=$4
    dense "$tag-dense-$DEVICE" "$data" "$model" "$epochs"
    for density in 0.05 0.02; do
        local pct=${density#0.0}
        for method in gmp l1 l1greedy l1paper spred l0; do
            row "$tag-$method-${pct}pct-$DEVICE" "$data" "$model" "$epochs" "$density" "$method"
        done
    done
}

lane_a() {
    set_of mnist-lenet300100 mnist lenet300100 "$EPOCHS_MLP"
    # L0 with group gates (input neurons), for the published structure of docs/method.md §7
    row "mnist-lenet300100-l0group-5pct-$DEVICE" mnist lenet300100 "$EPOCHS_MLP" 0.05 l0group
    set_of fashion-lenet5 fashion-mnist lenet5 "$EPOCHS_LENET5"
}
lane_b() {
    set_of mnist-lenet5 mnist lenet5 "$EPOCHS_LENET5"
}
lane_a &
lane_b &
wait
