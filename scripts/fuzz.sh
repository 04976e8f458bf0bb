#!/usr/bin/env bash
# Fuzz every file parser: build the libFuzzer targets of fuzz/ with clang
# (ASan + UBSan, build-fuzz/) and run each for SECONDS (default 60) from its
# seed corpus (fuzz/corpus/<target>, read only) with a fixed seed, after
# replaying the kept regression inputs (fuzz/regressions/<target>). A crash,
# a sanitizer report, a leak, an input slower than 10 s or above 2.5 GB fails;
# the input is left in build-fuzz/findings/<target>/ (copy it into
# fuzz/regressions/<target>/ with the fix). Installs clang and libomp-dev
# (as root) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
scripts/setup.sh --fuzz
echo "fuzz: building (log in build-fuzz/build.log)"
mkdir -p build-fuzz
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCT_FUZZ=ON -DCT_NATIVE=OFF \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo > build-fuzz/build.log 2>&1
cmake --build build-fuzz --target fuzz_all -j "$(nproc)" >> build-fuzz/build.log 2>&1 ||
    { tail -30 build-fuzz/build.log; exit 1; }
export TMPDIR="$(pwd)/build-fuzz/tmp"
mkdir -p "$TMPDIR"
status=0
for src in fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    work=build-fuzz/corpus/$name findings=build-fuzz/findings/$name
    rm -rf "$work" && mkdir -p "$work" "$findings"
    dict=()
    [ -f "fuzz/${name#fuzz_}.dict" ] && dict=(-dict="fuzz/${name#fuzz_}.dict")
    if [ -d "fuzz/regressions/$name" ] && [ -n "$(ls -A "fuzz/regressions/$name")" ]; then
        build-fuzz/$name -runs=0 fuzz/regressions/$name > "$findings/regressions.log" 2>&1 ||
            { echo "fuzz: $name: a kept regression input fails again"; tail -20 "$findings/regressions.log"; status=1; continue; }
    fi
    if build-fuzz/$name -seed=1 -max_total_time="$secs" -timeout=10 -rss_limit_mb=2560 \
           -print_final_stats=1 -artifact_prefix="$findings/" "${dict[@]}" \
           "$work" "fuzz/corpus/$name" > "$findings/fuzz.log" 2>&1; then
        runs=$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$findings/fuzz.log" | grep -o '[0-9]*$' || echo "?")
        echo "fuzz: $name: ${secs} s, ${runs} inputs, no failure"
    else
        echo "fuzz: $name: FAILED (input and log in $findings/)"
        grep -E "ERROR|SUMMARY|Test unit written" "$findings/fuzz.log" | head -8
        status=1
    fi
done
exit $status
