#!/usr/bin/env bash
# All benchmarks (none is a test). First the peers: cliptune's CLIP encoders
# next to PyTorch and ONNX Runtime, interleaved, 3 rounds, min / median /
# max, ratios and peak RSS (bench/peers.sh). Then the engine benchmarks,
# twice: with the environment's OpenBLAS settings (OPENBLAS_CORETYPE,
# OPENBLAS_L2_SIZE) as they are, and with both unset (OpenBLAS then picks its
# AVX-512 kernels): the engine's GEMM next to cblas_sgemm (bench_gemm), the
# tape's linear layer and attention against raw sgemm, the encoders, the
# pretraining and image-side training steps next to PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
bench/peers.sh "${PEER_ROUNDS:-3}"
cmake --build build -j "$(nproc)" --target bench_gemm bench_linear bench_attention > /dev/null
echo "== the engine's GEMM vs cblas_sgemm (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset})"
build/bench_gemm
echo "== the engine's GEMM vs cblas_sgemm, OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE build/bench_gemm
if grep -q avx2 /proc/cpuinfo; then
    echo "== the engine's AVX2 path forced (CLIPTUNE_ISA=avx2), OPENBLAS_* as set"
    CLIPTUNE_ISA=avx2 build/bench_gemm
fi
echo "== OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-unset}"
build/bench_linear "$@"
build/bench_attention "$@"
echo "== OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE build/bench_linear "$@"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE build/bench_attention "$@"
echo "== CLIP encoders (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset})"
cmake --build build -j "$(nproc)" --target bench_clip > /dev/null
build/bench_clip "$@"
echo "== CLIP encoders, OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE build/bench_clip "$@"
echo "== CLIP pretraining step (shipped architecture, batch 256), ours and PyTorch, interleaved;"
echo "   each pair: as set (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}), then unset"
cmake --build build -j "$(nproc)" --target bench_pretrain > /dev/null
for round in 1 2; do
    build/bench_pretrain
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE build/bench_pretrain
    if /usr/bin/python3 -c "import torch" 2> /dev/null; then
        /usr/bin/python3 bench/pretrain_torch.py
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench/pretrain_torch.py
    else
        echo "(PyTorch baseline skipped: apt-get install python3-torch)"
    fi
done
echo "== image-side training steps at ViT-B/16 shape (MaPLe batch 4, CLIP-LoRA batch 32,"
echo "   100 classes), ours and PyTorch interleaved; each: as set, then OPENBLAS_* unset"
cmake --build build -j "$(nproc)" --target bench_image_prompts > /dev/null
for round in 1 2; do
    for m in "maple 2" "clip-lora 1"; do
        build/bench_image_prompts $m
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE build/bench_image_prompts $m
        if /usr/bin/python3 -c "import torch" 2> /dev/null; then
            /usr/bin/python3 bench/image_prompts_torch.py $m
            env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench/image_prompts_torch.py $m
        else
            echo "(PyTorch baseline skipped: apt-get install python3-torch)"
        fi
    done
done
echo "== the image tower forward + backward to the input (ViT-B/16, batch 8) and CoOp's step"
echo "   doing coop.py's work (100 prompts of 77 tokens; ours: bench_coop's \"full\" variant),"
echo "   ours and PyTorch interleaved, 3 rounds; each: as set, then OPENBLAS_* unset"
cmake --build build -j "$(nproc)" --target bench_coop > /dev/null
for round in 1 2 3; do
    for e in set unset; do
        pre=()
        if [ "$e" = unset ]; then pre=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE); fi
        "${pre[@]}" build/bench_image_prompts tower 3
        "${pre[@]}" build/bench_coop 3 full
        if /usr/bin/python3 -c "import torch" 2> /dev/null; then
            "${pre[@]}" /usr/bin/python3 bench/image_prompts_torch.py tower 3
            "${pre[@]}" /usr/bin/python3 bench/image_prompts_torch.py coop 3
        fi
    done
done
