#!/usr/bin/env bash
# Set up, build with warnings as errors, run the whole test suite.
#   scripts/test.sh              release build in build/
#   scripts/test.sh --sanitize   ASan + UBSan (and LeakSanitizer) build in build-asan/
# The last line printed is ctest's summary.
set -euo pipefail
cd "$(dirname "$0")/.."

"$(pwd)/scripts/setup.sh"

dir=build
opts=(-DCT_WERROR=ON)
if [ "${1:-}" = "--sanitize" ]; then
    dir=build-asan
    opts+=(-DCT_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo)
fi

jobs=$(nproc 2>/dev/null || echo 2)
mkdir -p "$dir"
if ! cmake -S . -B "$dir" "${opts[@]}" > "$dir/configure.log" 2>&1; then
    cat "$dir/configure.log"; exit 1
fi
echo "build: $dir (log in $dir/build.log)"
if ! cmake --build "$dir" -j "$jobs" > "$dir/build.log" 2>&1; then
    grep -E -B2 -A6 'error|warning' "$dir/build.log" | head -100; exit 1
fi
# scikit-learn's digits file for test_digits' real-file test (as the demo
# gets it; the test skips when neither the package nor a download is there)
if d=$(scripts/digits.sh 2> /dev/null); then export CT_DIGITS_CSV="$d"; fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir "$dir" --output-on-failure -j 1
