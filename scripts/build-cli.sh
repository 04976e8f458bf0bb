#!/usr/bin/env bash
# Build build/cliptune when it is missing or older than a source file
# (used by scripts/demo.sh and scripts/pretrain.sh; quiet, log in build/).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x build/cliptune ] || [ -n "$(find src include tools CMakeLists.txt -newer build/cliptune -print -quit)" ]; then
    echo "building build/cliptune (log in build/build.log)"
    mkdir -p build
    cmake -S . -B build > build/configure.log 2>&1 || { cat build/configure.log; exit 1; }
    cmake --build build -j "$(nproc 2>/dev/null || echo 2)" --target cliptune > build/build.log 2>&1 ||
        { grep -E -B2 -A6 'error' build/build.log | head -60; exit 1; }
fi
