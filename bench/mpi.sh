#!/usr/bin/env bash
# The MPI variant with 1 and 2 ranks on this machine (docs/distributed.md
# "What scales"): feature-extraction throughput (the image tower over the
# test images into a fresh cache) and one training step of a pixel-path
# method (VP, batch 32, each rank half of it). Not a test.
#   bench/mpi.sh [--tiny]       needs build-mpi/cliptune (-DCT_MPI=ON)
# Each number is a difference of two wall times of the CLI, so that model
# loading and the text tower drop out:
#   images/s = N / (zeroshot with a cold cache - the same with the cache warm)
#   s/step   = (train with E2 epochs - with E1 epochs) / (steps in between),
#              the per-epoch validation of 40 images included.
set -euo pipefail
cd "$(dirname "$0")/.."
cli=build-mpi/cliptune
[ -x "$cli" ] || { echo "bench/mpi.sh: build the MPI variant first (cmake -S . -B build-mpi -DCT_MPI=ON && cmake --build build-mpi --target cliptune)" >&2; exit 1; }
n_img=5000 shots=16 e1=1 e2=3
if [ "${1:-}" = "--tiny" ]; then n_img=256 shots=4 e1=1 e2=2; fi
model=models/cliptune-small
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
calc() { awk "BEGIN { print $1 }"; }
wall() { local t0 t1; t0=$(date +%s.%N); "$@" > "$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }; t1=$(date +%s.%N); calc "$t1 - $t0"; }
launch() { local n=$1; shift; if [ "$n" = 1 ]; then "$@"; else mpirun --oversubscribe --allow-run-as-root -n "$n" "$@"; fi; }
steps_per_epoch=$(( (10 * shots) / 32 )); [ "$steps_per_epoch" -ge 1 ] || steps_per_epoch=1
echo "machine: $(nproc) cores; $n_img test images; VP at $shots shots ($steps_per_epoch steps/epoch, batch 32)"
printf "%-6s %14s %12s\n" ranks "features img/s" "VP s/step"
for n in 1 2; do
    zs=(zeroshot --model "$model" --data fashion-mnist --max-test "$n_img" --cache "$tmp/cache$n")
    cold=$(wall launch "$n" "$cli" "${zs[@]}" --out "$tmp/zs$n-a")
    warm=$(wall launch "$n" "$cli" "${zs[@]}" --out "$tmp/zs$n-b")
    tr=(train --method vp --model "$model" --data fashion-mnist --shots "$shots" --max-test 32
        --cache none --set batch_size=32)
    t1=$(wall launch "$n" "$cli" "${tr[@]}" --set epochs=$e1 --out "$tmp/vp$n-a")
    t2=$(wall launch "$n" "$cli" "${tr[@]}" --set epochs=$e2 --out "$tmp/vp$n-b")
    printf "%-6s %14.1f %12.3f\n" "$n" "$(calc "$n_img / ($cold - $warm)")" \
        "$(calc "($t2 - $t1) / ($e2 - $e1) / $steps_per_epoch")"
done
