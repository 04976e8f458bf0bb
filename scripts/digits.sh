#!/usr/bin/env bash
# Prints the path of scikit-learn's digits.csv.gz (the `digits` dataset):
# python3-sklearn's own file when installed, else the same file taken out of
# the package's .deb (downloaded with apt-get, not installed) into
# .cliptune-cache/digits. Exit status 1 when neither is possible.
set -euo pipefail
cd "$(dirname "$0")/.."
digits=/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz
if [ -f "$digits" ]; then
    echo "$digits"
    exit 0
fi
cache=.cliptune-cache/digits
if [ ! -f "$cache/digits.csv.gz" ]; then
    mkdir -p "$cache"
    echo "extracting digits.csv.gz from the python3-sklearn package" >&2
    (cd "$cache" && rm -f python3-sklearn_*.deb && apt-get download -qq python3-sklearn) >&2
    for deb in "$cache"/python3-sklearn_*.deb; do break; done
    dpkg-deb --fsys-tarfile "$deb" |
        tar -xO "./usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz" \
            > "$cache/digits.csv.gz.tmp"
    mv "$cache/digits.csv.gz.tmp" "$cache/digits.csv.gz"
    rm -f "$deb"
fi
echo "$(pwd)/$cache/digits.csv.gz"
