#!/usr/bin/env bash
# Reproduce the shipped model, models/cliptune-small (its MODEL_CARD.md):
# build the corpus from Debian packages, train the BPE tokenizer on its
# captions, and pretrain with the exact settings and seed. About 80 minutes of
# the 2-core machine; resumable: run it again (or with --resume) after a stop.
#
#   scripts/pretrain.sh WORK_DIR [extra `cliptune pretrain` options]
#
# WORK_DIR (outside the repository) gets corpus/, tok/ and out/; the trained
# Hugging Face folder is WORK_DIR/out. Compare it with the shipped one with
#   cmp WORK_DIR/out/model.safetensors models/cliptune-small/model.safetensors
# (bit-identical only with the same OpenBLAS kernels: the shipped model was
# trained with OPENBLAS_CORETYPE unset, i.e. OpenBLAS's AVX-512 kernels, which
# is what this script does).
set -euo pipefail

[ $# -ge 1 ] && [ "${1#-}" = "$1" ] || {
    echo "usage: scripts/pretrain.sh WORK_DIR [cliptune pretrain options]" >&2
    exit 2
}
work=$(mkdir -p "$1" && cd "$1" && pwd)
shift
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case "$work/" in "$repo"/*)
    echo "scripts/pretrain.sh: WORK_DIR must be outside the repository" >&2
    exit 2 ;;
esac

"$repo/scripts/setup.sh"
"$repo/scripts/build-cli.sh"
ct="$repo/build/cliptune"

[ -f "$work/corpus/captions.csv" ] || "$repo/scripts/corpus.sh" "$work/corpus"
[ -f "$work/tok/merges.txt" ] ||
    "$ct" bpe-train --captions "csv:$work/corpus/captions.csv" --vocab-size 4096 --out "$work/tok"

resume=()
[ -f "$work/out/pretrain.json" ] && resume=(--resume)
for a in "$@"; do [ "$a" = --resume ] && resume=(); done

# The shipped model's settings (MODEL_CARD.md, "How it was made").
cd "$work"
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE GLIBC_TUNABLES=glibc.malloc.hugetlb=1 \
    "$ct" pretrain --corpus corpus/captions.csv --config "$repo/data/arch/cliptune-small.json" \
    --tokenizer tok --out out --epochs 60 --batch 256 --lr 1e-3 --warmup 100 \
    --aug flip=0.1 --aug grey=0.5 --aug invert=0.4 \
    --aug downscale=0.5 --aug downscale_min=6 --aug downscale_max=16 \
    --checkpoint-every 50 --eval-every 500 --seed 1 "${resume[@]}" "$@"
