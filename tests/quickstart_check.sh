#!/usr/bin/env bash
# docs/quickstart.md as a user runs it (ctest: test_quickstart):
#   quickstart_check.sh CLI SOURCE_DIR TMP_DIR
# Every ```sh block of the page runs, in order, in a fresh directory, with
# MODEL = the shipped model and IMAGES = a generated folder of three colour
# classes; any failing command fails the test.
set -euo pipefail
cli=$(realpath "$1") src=$(realpath "$2") tmp=$(realpath "$3")/quickstart
rm -rf "$tmp" && mkdir -p "$tmp/bin"
ln -s "$cli" "$tmp/bin/cliptune"
/usr/bin/python3 "$src/tests/make_colours.py" "$tmp/images"
# the page's shell blocks, in order
awk '/^```sh$/ {on = 1; next} /^```$/ {on = 0} on' "$src/docs/quickstart.md" > "$tmp/steps.sh"
n=$(grep -c '^```sh$' "$src/docs/quickstart.md")
[ "$n" -ge 5 ] || { echo "quickstart_check: only $n sh blocks" >&2; exit 1; }
cd "$tmp"
export MODEL=$src/models/cliptune-small IMAGES=$tmp/images PATH=$tmp/bin:$PATH
if ! bash -euo pipefail -x "$tmp/steps.sh" > "$tmp/log.txt" 2>&1; then
    tail -30 "$tmp/log.txt" >&2
    echo "quickstart_check: FAIL (log: $tmp/log.txt)" >&2
    exit 1
fi
# what the page says the commands leave behind
for f in runs/zs/metrics.json runs/coop/learned.safetensors runs/coop/eval-images/metrics.json \
         runs/grid/results.md coop_ctx.safetensors; do
    [ -s "$f" ] || { echo "quickstart_check: no $f" >&2; exit 1; }
done
grep -q '"top1"' "$tmp/log.txt" || { echo "quickstart_check: eval --json printed no top1" >&2; exit 1; }
echo "quickstart_check: OK ($n blocks)"
