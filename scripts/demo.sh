#!/usr/bin/env bash
# The README's first command: set up (apt-get, as root), build, and run
# `cliptune demo` on the shipped model. Arguments go to `cliptune demo`
# (e.g. --full). Idempotent: a second run only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

"$(pwd)/scripts/setup.sh"

# scikit-learn's digits: python3-sklearn's digits.csv.gz, or the same file
# taken out of the package's .deb (downloaded, not installed).
digits=/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz
args=()
if [ ! -f "$digits" ]; then
    cache=.cliptune-cache/digits
    if [ ! -f "$cache/digits.csv.gz" ]; then
        mkdir -p "$cache"
        echo "demo: extracting digits.csv.gz from the python3-sklearn package"
        (cd "$cache" && rm -f python3-sklearn_*.deb && apt-get download -qq python3-sklearn)
        for deb in "$cache"/python3-sklearn_*.deb; do break; done
        dpkg-deb --fsys-tarfile "$deb" |
            tar -xO "./usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz" \
                > "$cache/digits.csv.gz.tmp"
        mv "$cache/digits.csv.gz.tmp" "$cache/digits.csv.gz"
        rm -f "$deb"
    fi
    args+=(--digits "$cache/digits.csv.gz")
fi

"$(pwd)/scripts/build-cli.sh"
exec build/cliptune demo "${args[@]}" "$@"
