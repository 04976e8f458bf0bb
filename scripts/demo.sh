#!/usr/bin/env bash
# The README's first command: set up (apt-get, as root), build, and run
# `cliptune demo` on the shipped model. Arguments go to `cliptune demo`
# (e.g. --full). Idempotent: a second run only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

"$(pwd)/scripts/setup.sh"

# scikit-learn's digits: python3-sklearn's digits.csv.gz, or the same file
# taken out of the package's .deb (scripts/digits.sh)
args=(--digits "$(scripts/digits.sh)")

"$(pwd)/scripts/build-cli.sh"
exec build/cliptune demo "${args[@]}" "$@"
