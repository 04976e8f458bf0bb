#!/usr/bin/env bash
# The installed library as a user meets it (ctest: test_install):
#   install_check.sh BUILD_DIR SOURCE_DIR TMP_DIR
# installs BUILD_DIR into a fresh prefix under TMP_DIR, checks the files, that
# the shared library exports exactly what cliptune.h declares, and builds
# examples/zeroshot.c three ways -- pkg-config (shared), pkg-config --static,
# and a CMake project with find_package(cliptune) -- each run on the shipped
# model and compared with the installed CLI's `classify`; then
# examples/train_coop.c and examples/predict.c (pkg-config) on a generated
# image folder, compared with the CLI's `predict`.
set -euo pipefail
# sanitizer builds (CMake sets these): the flags programs built against the
# library need, and the runtimes Python must preload
san_cflags=${CT_SAN_CFLAGS:-}
py_env=()
if [ -n "${CT_SAN_PRELOAD:-}" ]; then py_env=(LD_PRELOAD="$CT_SAN_PRELOAD" ASAN_OPTIONS=detect_leaks=0); fi
build=$(realpath "$1") src=$(realpath "$2") tmp=$(realpath "$3")/install
rm -rf "$tmp" && mkdir -p "$tmp"
p=$tmp/prefix
fail() { echo "install_check: FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$p" > "$tmp/install.log" || fail "cmake --install (see $tmp/install.log)"
pc=$(find "$p" -name cliptune.pc | head -1)
[ -n "$pc" ] || fail "no cliptune.pc installed"
lib=$(dirname "$(dirname "$pc")")
for f in "$p/include/cliptune.h" "$lib/libcliptune.so" "$lib/libcliptune.a" "$p/bin/cliptune" \
         "$lib/cmake/cliptune/cliptuneConfig.cmake" "$lib/cmake/cliptune/cliptuneConfigVersion.cmake"; do
    [ -e "$f" ] || fail "missing $f"
done
echo "installed into $p (libdir $lib)"

# -march=native or other build flags must not travel
if grep -rq -- "-march" "$pc" "$lib/cmake/cliptune"; then fail "build flags in the installed files"; fi

# exported symbols: every one declared in cliptune.h, none of the internals
syms=$(nm -D --defined-only "$lib/libcliptune.so" | awk '$2 ~ /[TDBRV]/ {print $3}' | sort -u)
n=0
for s in $syms; do
    # the linker's own, and OpenMP's locks of named critical sections
    case $s in _init|_fini|_edata|_end|__bss_start|.gomp_critical_user_*) continue ;; esac
    grep -qw -- "$s" "$p/include/cliptune.h" || fail "libcliptune.so exports $s, which cliptune.h does not declare"
    n=$((n + 1))
done
echo "$syms" | grep -qx ct_clip_load || fail "ct_clip_load is not exported"
echo "$syms" | grep -qx ct_sgemm_avx512 && fail "an internal (ct_sgemm_avx512) is exported"
echo "exports: $n symbols, all declared in cliptune.h"

model=$src/models/cliptune-small
labels="t-shirt,trouser,sneaker,bag,ankle boot"
imgs=$(find "$src/tests/fixtures/images" -maxdepth 2 \( -name '*.png' -o -name '*.jpg' \) ! -path '*/bad/*' | sort | head -6)
[ -n "$imgs" ] || fail "no test images"
# shellcheck disable=SC2086
"$p/bin/cliptune" classify --model "$model" --labels "$labels" --top 1 $imgs > "$tmp/cli.txt" ||
    fail "installed CLI: classify"
"$p/bin/cliptune" version | grep -q "$(sed -n 's/^#define CLIPTUNE_VERSION "\(.*\)"/\1/p' "$p/include/cliptune.h")" ||
    fail "cliptune version does not print the header's version"

check_run() { # name binary: runs it and compares the best labels with the CLI's
    # shellcheck disable=SC2086
    LD_LIBRARY_PATH=$lib "$2" "$model" "$labels" $imgs > "$tmp/$1.txt" || fail "$1: run"
    local want got
    want=$(cut -f1,2 "$tmp/cli.txt")
    got=$(cut -f1,2 "$tmp/$1.txt")
    if [ "$want" != "$got" ]; then
        fail "$1: labels differ from the CLI's:"$'\n'"$got"$'\n'"vs"$'\n'"$want"
    fi
    echo "$1: $(wc -l < "$tmp/$1.txt") images classified"
}

export PKG_CONFIG_PATH=$lib/pkgconfig
# shellcheck disable=SC2086
cc -std=c11 -Wall -Wextra -Werror $san_cflags "$src/examples/zeroshot.c" $(pkg-config --cflags --libs cliptune) \
    -o "$tmp/zs_shared" || fail "pkg-config build (shared)"
check_run pkgconfig-shared "$tmp/zs_shared"
# shellcheck disable=SC2086
cc -std=c11 -Wall -Wextra -Werror $san_cflags "$src/examples/zeroshot.c" $(pkg-config --cflags cliptune) \
    "$lib/libcliptune.a" $(pkg-config --static --libs cliptune | sed 's/-lcliptune//') \
    -o "$tmp/zs_static" || fail "pkg-config build (static)"
ldd "$tmp/zs_static" | grep -q libcliptune && fail "the static build links libcliptune.so"
check_run pkgconfig-static "$tmp/zs_static"

mkdir -p "$tmp/consumer"
cat > "$tmp/consumer/CMakeLists.txt" << CMAKE
cmake_minimum_required(VERSION 3.18)
project(consumer C)
find_package(cliptune 0.1 REQUIRED)
add_executable(zs "$src/examples/zeroshot.c")
target_link_libraries(zs PRIVATE cliptune::cliptune)
CMAKE
cmake -S "$tmp/consumer" -B "$tmp/consumer/build" -DCMAKE_PREFIX_PATH="$p" \
    -DCMAKE_C_FLAGS="$san_cflags" > "$tmp/consumer.log" 2>&1 &&
    cmake --build "$tmp/consumer/build" >> "$tmp/consumer.log" 2>&1 || fail "find_package build (see $tmp/consumer.log)"
check_run cmake-package "$tmp/consumer/build/zs"
# examples/train_coop.c and examples/predict.c: train CoOp on an image
# folder and save the run; load the run and predict -- the same labels as
# the installed CLI's `predict` on that run
data=$tmp/colours
/usr/bin/python3 "$src/tests/make_colours.py" "$data"
for ex in train_coop predict; do
    # shellcheck disable=SC2086
    cc -std=c11 -Wall -Wextra -Werror $san_cflags "$src/examples/$ex.c" \
        $(pkg-config --cflags --libs cliptune) -o "$tmp/$ex" || fail "pkg-config build of $ex.c"
done
LD_LIBRARY_PATH=$lib "$tmp/train_coop" "$model" "folder:$data" "$tmp/coop_run" 4 "epochs=2" \
    > "$tmp/train_coop.txt" || fail "train_coop: run (see $tmp/train_coop.txt)"
grep -q "coop: test top-1" "$tmp/train_coop.txt" || fail "train_coop: no result line"
for f in config.json metrics.json learned.safetensors report.md; do
    [ -s "$tmp/coop_run/$f" ] || fail "train_coop: no $f in the run"
done
grep -q '"ctx"' "$tmp/coop_run/learned.safetensors" || fail "train_coop: the context is not saved as ctx"
pimgs=$(find "$data" -name 'img_1[89].ppm' | sort)
# shellcheck disable=SC2086
LD_LIBRARY_PATH=$lib "$tmp/predict" "$tmp/coop_run" $pimgs > "$tmp/predict.txt" || fail "predict: run"
# shellcheck disable=SC2086
"$p/bin/cliptune" predict --run "$tmp/coop_run" --top 1 $pimgs > "$tmp/cli_predict.txt" ||
    fail "installed CLI: predict"
[ "$(cut -f1,2 "$tmp/predict.txt")" = "$(cut -f1,2 "$tmp/cli_predict.txt")" ] ||
    fail "predict: labels differ from the CLI's"
echo "examples: train_coop ($(grep -o 'top-1 [0-9.]*%' "$tmp/train_coop.txt")), predict: $(wc -l < "$tmp/predict.txt") images as the CLI"

# the Python binding as installed: finds the library beside it
v=$(env -u CLIPTUNE_LIB "${py_env[@]}" PYTHONPATH="$lib/python3/dist-packages" /usr/bin/python3 -c \
    'import cliptune, sys; m = cliptune.Model(sys.argv[1]); print(cliptune.version(), m.embed_dim)' \
    "$model") || fail "installed Python binding"
echo "python binding: version and embedding size $v"
# its runs API on the CoOp run above: the labels of the CLI's predict
# shellcheck disable=SC2086
env -u CLIPTUNE_LIB "${py_env[@]}" PYTHONPATH="$lib/python3/dist-packages" /usr/bin/python3 -c '
import cliptune, sys
run = cliptune.Run(sys.argv[1])
for path, row in zip(sys.argv[2:], run.predict(sys.argv[2:])):
    print("%s\t%s" % (path, run.classnames[int(row.argmax())]))' "$tmp/coop_run" $pimgs \
    > "$tmp/py_predict.txt" || fail "installed Python binding: Run.predict"
[ "$(cat "$tmp/py_predict.txt")" = "$(cut -f1,2 "$tmp/cli_predict.txt")" ] ||
    fail "installed Python binding: Run.predict labels differ from the CLI's"
echo "python binding: Run.predict on $(wc -l < "$tmp/py_predict.txt") images as the CLI"
echo "install_check: OK"
