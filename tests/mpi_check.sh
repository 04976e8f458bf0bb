#!/usr/bin/env bash
# The MPI variant's checks with 2 ranks (ctest's test_mpi in a -DCT_MPI=ON
# build; scripts/test.sh runs it after the release suite):
#   1. feature cache: `mpirun -n 2` writes the same cache files, byte for
#      byte, as one process (embeddings, and PLOT's per-token features), and
#      the same results;
#   2. protocol grid: the cells over a work queue give the single-process
#      results.json numbers; a re-run reads every cell back (resumable);
#   3. data-parallel training (VP, a pixel-path method): the learned tensors
#      within 1e-5 of one process's (float summation order; measured ~1e-9),
#      bit-identical across two 2-rank runs, and an interrupted 2-rank run
#      resumed with 2 ranks ends bit-identical to an uninterrupted one;
#   4. a failing rank (a truncated image in rank 1's share of the features)
#      ends the job at once with that rank's message and a non-zero status.
# usage: mpi_check.sh CLIPTUNE SOURCE_DIR TMP_DIR
set -uo pipefail
cli=$1 src=$2 tmp=$3
model=$src/models/cliptune-small
command -v mpirun > /dev/null || { echo "SKIP: no mpirun (apt-get install openmpi-bin)"; exit 77; }
[ -d /usr/share/datasets/fashion-mnist ] || { echo "SKIP: no Fashion-MNIST"; exit 77; }
rm -rf "$tmp" && mkdir -p "$tmp"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpi() { timeout 300 mpirun --oversubscribe --allow-run-as-root -n 2 "$@"; }
failed=0
fail() { echo "FAIL: $*"; failed=1; }
py=/usr/bin/python3

# 1. the feature cache (a linear probe reads train, val and test features)
fm=(--model "$model" --data fashion-mnist --shots 4 --max-test 300)
"$cli" train --method linear-probe "${fm[@]}" --out "$tmp/lp1" --cache "$tmp/cache1" \
    > "$tmp/lp1.log" 2>&1 || fail "linear-probe, 1 process (see $tmp/lp1.log)"
mpi "$cli" train --method linear-probe "${fm[@]}" --out "$tmp/lp2" --cache "$tmp/cache2" \
    > "$tmp/lp2.log" 2>&1 || fail "linear-probe, 2 ranks (see $tmp/lp2.log)"
n1=$(ls "$tmp/cache1" | wc -l)
[ "$n1" -ge 3 ] || fail "feature cache: $n1 files from one process"
for f in "$tmp"/cache1/*; do
    cmp -s "$f" "$tmp/cache2/$(basename "$f")" || fail "feature cache: $(basename "$f") differs"
done
[ "$(ls "$tmp/cache2" | wc -l)" = "$n1" ] || fail "feature cache: other files with 2 ranks"
cmp -s "$tmp/lp1/metrics.json" "$tmp/lp2/metrics.json" || fail "linear-probe: metrics differ"
# per-token (dense) features too (PLOT); its 20-image sets are one batch, so
# rank 1 has nothing to encode there
pl=(--method plot --model "$model" --data fashion-mnist --shots 2 --max-test 100 --set epochs=1)
"$cli" train "${pl[@]}" --out "$tmp/pl1" --cache "$tmp/dense1" > "$tmp/pl1.log" 2>&1 ||
    fail "plot, 1 process (see $tmp/pl1.log)"
mpi "$cli" train "${pl[@]}" --out "$tmp/pl2" --cache "$tmp/dense2" > "$tmp/pl2.log" 2>&1 ||
    fail "plot, 2 ranks (see $tmp/pl2.log)"
nd=$(ls "$tmp/dense1" | wc -l)
for f in "$tmp"/dense1/*; do
    cmp -s "$f" "$tmp/dense2/$(basename "$f")" || fail "dense feature cache: $(basename "$f") differs"
done
cmp -s "$tmp/pl1/metrics.json" "$tmp/pl2/metrics.json" || fail "plot: metrics differ"
echo "1. feature cache: $n1 + $nd (dense) files byte-identical, metrics identical"

# 2. a protocol grid over the work queue, then read back
pa=(--model "$model" --data fashion-mnist --methods zeroshot,linear-probe,coop --shots 1,2
    --seeds 1,2 --max-test 200 --set coop.epochs=2)
"$cli" protocol "${pa[@]}" --out "$tmp/p1" --cache "$tmp/cache1" > "$tmp/p1.log" 2>&1 ||
    fail "protocol, 1 process (see $tmp/p1.log)"
mpi "$cli" protocol "${pa[@]}" --out "$tmp/p2" --cache "$tmp/cache2" > "$tmp/p2.log" 2>&1 ||
    fail "protocol, 2 ranks (see $tmp/p2.log)"
grep -q "rank 0\]" "$tmp/p2.log" && grep -q "rank 1\]" "$tmp/p2.log" ||
    fail "protocol: the cells did not go to both ranks (see $tmp/p2.log)"
same_grid() {
    $py - "$1" "$2" << 'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
key = lambda c: (c["method"], c["shots"], c["seed"], c["top1"])
ok = sorted(map(key, a["cells"])) == sorted(map(key, b["cells"])) and a["summary"] == b["summary"]
print("%d cells %s" % (len(a["cells"]), "equal" if ok else "DIFFER"))
sys.exit(0 if ok else 1)
PY
}
same_grid "$tmp/p1/results.json" "$tmp/p2/results.json" || fail "protocol: results.json differ"
mpi "$cli" protocol "${pa[@]}" --out "$tmp/p2" --cache "$tmp/cache2" > "$tmp/p2b.log" 2>&1 ||
    fail "protocol re-run, 2 ranks (see $tmp/p2b.log)"
[ "$(grep -c "skipped: done" "$tmp/p2b.log")" = 9 ] || fail "protocol re-run: not every cell read back"
same_grid "$tmp/p1/results.json" "$tmp/p2/results.json" || fail "protocol re-run: results.json differ"
echo "2. protocol grid: equal to one process's, re-run read back"

# 3. data-parallel training of VP (each rank half of every batch)
va=(--method vp --model "$model" --data fashion-mnist --shots 4 --max-test 64 --cache none
    --set epochs=3 --set batch_size=16)
"$cli" train "${va[@]}" --out "$tmp/vp1" > "$tmp/vp1.log" 2>&1 || fail "vp, 1 process"
mpi "$cli" train "${va[@]}" --out "$tmp/vp2" > "$tmp/vp2.log" 2>&1 || fail "vp, 2 ranks"
mpi "$cli" train "${va[@]}" --out "$tmp/vp2b" > "$tmp/vp2b.log" 2>&1 || fail "vp, 2 ranks again"
$py "$src/tests/mpi_compare.py" "$tmp/vp1/learned.safetensors" "$tmp/vp2/learned.safetensors" 1e-5 ||
    fail "vp: 2 ranks not within 1e-5 of 1 process"
cmp -s "$tmp/vp2/learned.safetensors" "$tmp/vp2b/learned.safetensors" ||
    fail "vp: two 2-rank runs differ"
# interrupted after its first checkpoint, resumed with the same 2 ranks
timeout 300 mpirun --oversubscribe --allow-run-as-root -n 2 "$cli" train "${va[@]}" \
    --out "$tmp/vp2r" > "$tmp/vp2r.log" 2>&1 &
job=$!
for _ in $(seq 600); do
    [ -e "$tmp/vp2r/checkpoint.safetensors" ] && break
    kill -0 "$job" 2> /dev/null || break
    sleep 0.1
done
kill -TERM "$job" 2> /dev/null
wait "$job" 2> /dev/null
mpi "$cli" train "${va[@]}" --out "$tmp/vp2r" --resume > "$tmp/vp2r2.log" 2>&1 ||
    fail "vp: 2-rank resume (see $tmp/vp2r2.log)"
cmp -s "$tmp/vp2/learned.safetensors" "$tmp/vp2r/learned.safetensors" ||
    fail "vp: the resumed 2-rank run differs from the uninterrupted one"
echo "3. data-parallel VP: within 1e-5 of one process, identical across 2-rank runs and resume"

# 4. a failing rank: a truncated image among the test images rank 1 encodes
/usr/bin/python3 "$src/tests/make_colours.py" "$tmp/col"
mkdir -p "$tmp/bad" && cp -r "$tmp/col" "$tmp/bad/train" && cp -r "$tmp/col" "$tmp/bad/test"
printf 'P6\n32 32\n255\nxx' > "$tmp/bad/test/red/img_19.ppm"
start=$(date +%s)
mpi "$cli" zeroshot --model "$model" --data "folder:$tmp/bad" --out "$tmp/bad_run" \
    --cache "$tmp/cache_bad" > "$tmp/bad.out" 2> "$tmp/bad.err"
rc=$?
took=$(($(date +%s) - start))
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "failing rank: status $rc (124: the job hung)"
grep -q "error: rank 1 of 2: .*img_19.ppm" "$tmp/bad.err" ||
    fail "failing rank: no message from rank 1 naming the file (see $tmp/bad.err)"
echo "4. failing rank: status $rc after ${took} s, $(grep -o 'rank 1 of 2: .*' "$tmp/bad.err" | head -1)"

[ "$failed" = 0 ] && echo "mpi checks: all passed"
exit "$failed"
