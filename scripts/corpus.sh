#!/usr/bin/env bash
# Build the image-caption pretraining corpus from Debian packages
# (docs/corpus.md). Installs what is missing when run as root; otherwise
# prints the apt-get command and stops.
#
#   scripts/corpus.sh OUT_DIR [--size 64] [--jobs N] [--only SOURCES]
#                     [--digit-reps 6] [--letter-reps 2]
#   scripts/corpus.sh --check OUT_DIR     validate a built corpus (needs only python3)
#
# OUT_DIR must be outside the repository's tracked tree (e.g. /tmp/corpus):
# the corpus is never committed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
builder="$here/../tools/corpus/build.py"
# Debian's interpreter: python3-pil, python3-gi and python3-fonttools are
# installed for it, not for another python3 that may come first on PATH.
py=/usr/bin/python3

usage() {
    echo "usage: scripts/corpus.sh OUT_DIR [--size 64] [--jobs N] [--only SOURCES]" >&2
    echo "       scripts/corpus.sh --check OUT_DIR" >&2
    exit 2
}

[ $# -ge 1 ] || usage
case "$1" in --check) ;; -*) usage ;; esac

if [ "$1" = "--check" ]; then
    [ $# -eq 2 ] || usage
    command -v "$py" >/dev/null || py=python3
    exec "$py" "$builder" --check "$2"
fi

pkgs=(python3 python3-pil python3-fonttools python3-gi python3-gi-cairo gir1.2-rsvg-2.0
      unicode-data unicode-cldr-core
      fonts-noto-color-emoji fonts-symbola
      tuxpaint-stamps-default openclipart-svg
      hershey-fonts-data
      fonts-bwht fonts-humor-sans fonts-dkg-handwriting fonts-breip fonts-femkeklaver
      fonts-rufscript fonts-kristi fonts-sjfonts fonts-tomsontalks fonts-dancingscript
      fonts-kaushanscript fonts-comic-neue fonts-opendyslexic fonts-dejavu-core)

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "corpus: error: missing packages: ${missing[*]}" >&2
        echo "corpus: run as root: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
    echo "corpus: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The corpus is data, not source: refuse a tracked place inside the repository.
repo="$(cd "$here/.." && pwd)"
out="$(realpath -m -- "$1")"
case "$out/" in
    "$repo"/*)
        if ! git -C "$repo" check-ignore -q -- "$out" 2>/dev/null; then
            echo "corpus: error: $1 is inside the repository and not git-ignored;" \
                 "build into e.g. /tmp/corpus" >&2
            exit 1
        fi ;;
esac

export PYTHONDONTWRITEBYTECODE=1
exec "$py" "$builder" "$@"
