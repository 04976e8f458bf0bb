#!/usr/bin/env bash
# Install cliptune's build dependencies from Debian (12, "bookworm").
# Idempotent: installs only what is missing; does nothing when all is there.
set -euo pipefail

pkgs=(gcc make cmake pkg-config libopenblas-openmp-dev libcjson-dev libstb-dev zlib1g-dev
      libjpeg62-turbo-dev libpng-dev libtiff-dev libwebp-dev dataset-fashion-mnist python3-numpy)
# scripts/fuzz.sh: clang's libFuzzer and its OpenMP runtime
if [ "${1:-}" = "--fuzz" ]; then
    pkgs+=(clang libomp-dev)
fi
# scripts/test.sh's MPI variant (-DCT_MPI=ON, docs/distributed.md): Open MPI
if [ "${1:-}" = "--mpi" ]; then
    pkgs=(libopenmpi-dev openmpi-bin)
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "cliptune: error: missing packages: ${missing[*]}" >&2
    echo "cliptune: run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
