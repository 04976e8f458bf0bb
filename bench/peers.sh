#!/usr/bin/env bash
# cliptune's CLIP encoders next to PyTorch (Debian's python3-torch) and ONNX
# Runtime (onnxruntime-node from npm, CPU, fp32) on the same machine:
# ViT-B/32, ViT-B/16 and RN50 image towers (batch 32) and the text tower (77
# tokens, batch 100), random weights in OpenAI's architecture, 2 threads,
# inference. The engines run interleaved, one process per (engine, workload)
# so each reports its own peak RSS, for ROUNDS rounds (default 3) of REPS
# timed repetitions each (default 3, after one warm-up). Prints min / median
# / max of items/s over all timed repetitions, the ratio of medians against
# each peer, and peak RSS; the CPU model and flags first. Where the
# environment sets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, every engine also
# runs with both unset (ONNX Runtime ignores them; PyTorch's OpenBLAS and
# CLIPTUNE_GEMM=blas do not). Where the CPU has AVX512_BF16, cliptune also
# runs with bf16 weights (ct_clip_set_precision; engine cliptune-bf16, its
# ratio to each engine in the last column).
#     bench/peers.sh [ROUNDS [REPS]]     (not part of the tests)
# The ONNX Runtime package and the exported graphs (about 1 GB) are kept in
# ${CT_BENCH_CACHE:-$HOME/.cache/cliptune-bench}.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
reps=${2:-3}
cache=${CT_BENCH_CACHE:-$HOME/.cache/cliptune-bench}
export CLIPTUNE_THREADS=${CLIPTUNE_THREADS:-2}

scripts/setup.sh
cmake -S . -B build -DCT_WERROR=ON > /dev/null
cmake --build build -j "$(nproc)" --target bench_clip > /dev/null

have_torch=0
if /usr/bin/python3 -c "import torch" 2> /dev/null; then have_torch=1; fi
have_ort=0
mkdir -p "$cache"
if [ ! -d "$cache/node_modules/onnxruntime-node" ] && command -v npm > /dev/null; then
    # --ignore-scripts: the package ships its CPU binaries; its install
    # script only fetches GPU ones (from GitHub, unreachable here)
    (cd "$cache" && { [ -f package.json ] || npm init -y > /dev/null; } &&
        npm install --ignore-scripts --no-audit --no-fund onnxruntime-node@1.30.0 > /dev/null) ||
        echo "(npm install onnxruntime-node failed: ONNX Runtime skipped)"
fi
if [ -d "$cache/node_modules/onnxruntime-node" ] && [ "$have_torch" = 1 ]; then
    if [ ! -f "$cache/onnx/text.onnx" ] || [ ! -f "$cache/onnx/rn50.onnx" ]; then
        /usr/bin/python3 bench/clip_torch.py --export "$cache/onnx" 2> /dev/null
    fi
    have_ort=1
fi

echo "== $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
echo "   flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' |
    grep -E '^(avx2|fma|avx512f|avx512bw|avx512vl|avx512_bf16|avx512_vnni|amx_bf16)$' | tr '\n' ' ')"
echo "   cliptune path: $(build/bench_clip --path) (cliptune+blas: its GEMMs in OpenBLAS instead)"
echo "   threads ${CLIPTUNE_THREADS}; ${rounds} rounds x ${reps} timed repetitions; PyTorch:" \
    "$([ $have_torch = 1 ] && /usr/bin/python3 -c 'import torch; print(torch.__version__)' || echo absent);" \
    "ONNX Runtime: $([ $have_ort = 1 ] && echo 1.30.0 || echo absent)"

envs=("as set")
if [ -n "${OPENBLAS_CORETYPE:-}${OPENBLAS_L2_SIZE:-}" ]; then envs+=("unset"); fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for round in $(seq "$rounds"); do
    for w in b32 b16 text rn50; do
        for e in "${envs[@]}"; do
            pre=()
            if [ "$e" = unset ]; then pre=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE); fi
            tag="env=${e// /_}"
            echo "$tag $("${pre[@]}" build/bench_clip "$w" "$reps")" >> "$out"
            echo "$tag $("${pre[@]}" env CLIPTUNE_GEMM=blas build/bench_clip "$w" "$reps" |
                sed 's/engine=cliptune/engine=cliptune+blas/')" >> "$out"
            if [ "$e" = "as set" ] && r=$(build/bench_clip "$w" "$reps" bf16 2> /dev/null); then
                echo "$tag ${r/engine=cliptune/engine=cliptune-bf16}" >> "$out"
            fi
            if [ $have_torch = 1 ]; then
                echo "$tag $("${pre[@]}" /usr/bin/python3 bench/clip_torch.py "$w" "$reps")" >> "$out"
            fi
            if [ $have_ort = 1 ] && [ "$e" = "as set" ]; then
                echo "$tag $(CT_ORT_PREFIX="$cache" node bench/clip_ort.mjs "$cache/onnx" "$w" "$reps")" >> "$out"
            fi
        done
    done
    echo "   round $round done" >&2
done

# min / median / max per (environment, workload, engine), ratios of medians
/usr/bin/python3 - "$out" << 'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
    key = (f["env"], f["workload"], f["engine"])
    r = rows.setdefault(key, {"rates": [], "rss": []})
    r["rates"] += [float(x) for x in f["per_s"].split(",")]
    r["rss"].append(float(f["rss_mb"]))
names = {"b32": "ViT-B/32 image, img/s", "b16": "ViT-B/16 image, img/s",
         "text": "text 77 tokens, prompts/s", "rn50": "RN50 image, img/s"}
for env in sorted({k[0] for k in rows}):
    print("\nOPENBLAS_* %s:" % env.replace("_", " "))
    print("| workload | engine | min | median | max | cliptune / engine (medians) | peak RSS MB "
          "| cliptune-bf16 / engine |")
    print("|---|---|---|---|---|---|---|---|")
    for w in ("b32", "b16", "text", "rn50"):
        ours = rows.get((env, w, "cliptune"))
        bf = rows.get(("as_set", w, "cliptune-bf16"))
        for eng in ("cliptune", "cliptune-bf16", "cliptune+blas", "pytorch", "onnxruntime"):
            shared = eng in ("onnxruntime", "cliptune-bf16")  # measured with the env as set only
            r = rows.get((env, w, eng)) or (rows.get(("as_set", w, eng)) if shared else None)
            if not r:
                continue
            med = statistics.median(r["rates"])
            ratio = "" if eng == "cliptune" or not ours else \
                "%.2fx" % (statistics.median(ours["rates"]) / med)
            bratio = "" if eng == "cliptune-bf16" or not bf else \
                "%.2fx" % (statistics.median(bf["rates"]) / med)
            print("| %s | %s | %.2f | %.2f | %.2f | %s | %.0f | %s |" % (
                names[w], eng, min(r["rates"]), med, max(r["rates"]), ratio, max(r["rss"]),
                bratio))
EOF
