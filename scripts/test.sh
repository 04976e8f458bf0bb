#!/usr/bin/env bash
# Set up, build with warnings as errors, run the whole test suite.
#   scripts/test.sh              release build in build/
#   scripts/test.sh --sanitize   ASan + UBSan (and LeakSanitizer) build in build-asan/
# The release run then builds the MPI variant (-DCT_MPI=ON, Open MPI installed
# when missing) in build-mpi/ and runs its 2-rank checks (test_mpi,
# tests/mpi_check.sh; a few minutes); the script fails if they fail.
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
if [ "$dir" != build ]; then
    ctest --test-dir "$dir" --output-on-failure -j 1
    exit
fi
# the release suite, then the MPI variant's 2-rank checks; the suite's
# summary is repeated last
suite=0
ctest --test-dir "$dir" --output-on-failure -j 1 | tee "$dir/ctest.log" || suite=1
mpi=0
mkdir -p build-mpi
if ! "$(pwd)/scripts/setup.sh" --mpi; then
    mpi=1
elif ! cmake -S . -B build-mpi "${opts[@]}" -DCT_MPI=ON > build-mpi/configure.log 2>&1; then
    cat build-mpi/configure.log; mpi=1
elif ! cmake --build build-mpi -j "$jobs" --target cliptune test_dist > build-mpi/build.log 2>&1; then
    grep -E -B2 -A6 'error|warning' build-mpi/build.log | head -100; mpi=1
else
    echo "MPI variant (build-mpi): the 2-rank checks"
    ctest --test-dir build-mpi -R '^test_(dist|mpi)$' --output-on-failure -j 1 || mpi=1
fi
[ "$mpi" = 0 ] || echo "scripts/test.sh: the MPI variant's checks failed (above)"
echo "release suite (build):"
grep -E "tests passed|tests failed" "$dir/ctest.log" | tail -1 || true
[ "$suite" = 0 ] && [ "$mpi" = 0 ]
