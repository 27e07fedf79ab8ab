#!/usr/bin/env bash
# Installs everything this project needs on a fresh Debian/Ubuntu machine:
# the apt packages (real data: Fashion-MNIST), then the pinned Python packages
# into the active Python environment (make and activate a venv first if you
# want one). Safe to rerun: installed packages are skipped.
#
#   bash scripts/setup.sh               # the project (jax's CPU build)
#   bash scripts/setup.sh --gpu         # also jax's CUDA 12 build, same jax version
#   bash scripts/setup.sh --gpu=cuda13  # or the CUDA 13 build (NVIDIA driver >= 580)
#   bash scripts/setup.sh --with-slurm  # also Slurm, munge and MariaDB, for the
#                                       # cluster tests and scripts/slurm_cluster.sh
#   bash scripts/setup.sh --dry-run ... # print the install commands, run none
set -euo pipefail
cd "$(dirname "$0")/.."

USAGE="options: --with-slurm, --gpu (= --gpu=cuda12), --gpu=cuda13, --dry-run."
APT_PACKAGES=(dataset-fashion-mnist)
GPU=""
DRY_RUN=0
for arg in "$@"; do
  case $arg in
    --with-slurm) APT_PACKAGES+=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server) ;;
    --gpu) GPU=cuda12 ;;
    --gpu=cuda12 | --gpu=cuda13) GPU=${arg#--gpu=} ;;
    --gpu=*) echo "Unknown CUDA build ${arg#--gpu=}; use --gpu=cuda12 or --gpu=cuda13." >&2; exit 2 ;;
    --dry-run) DRY_RUN=1 ;;
    *) echo "Unknown option $arg; $USAGE" >&2; exit 2 ;;
  esac
done

# The CUDA build must match the pinned jax (its plugin is pinned to one jaxlib).
JAX_VERSION=$(sed -n 's/^jax\[cpu\]==\([0-9.]*\).*/\1/p' requirements.txt)
if [[ -z $JAX_VERSION ]]; then
  echo "requirements.txt pins no jax[cpu]==VERSION; cannot choose the CUDA build." >&2; exit 1
fi

run() {  # Runs a command, or prints it with --dry-run.
  if ((DRY_RUN)); then printf '+ %s\n' "$*"; else "$@"; fi
}

missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]]; then SUDO=(); elif command -v sudo >/dev/null || ((DRY_RUN)); then
    SUDO=(sudo)
  else
    echo "Please install the Debian packages: ${missing[*]} (as root: apt-get install ${missing[*]})" >&2
    exit 1
  fi
  run "${SUDO[@]}" apt-get update -qq
  run "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

PIP=(python -m pip install -q --disable-pip-version-check)
run "${PIP[@]}" -r requirements.txt
if [[ -n $GPU ]]; then
  # jax[cudaNN] adds the CUDA plugin and NVIDIA's CUDA/cuDNN wheels beside jaxlib;
  # JAX then runs on the GPUs (check: python -c "import jax; print(jax.devices())").
  run "${PIP[@]}" "jax[$GPU]==$JAX_VERSION"
fi

# The oneDNN convolution op (research/ops/onednn_conv.py, issue 15): oneDNN's PyPI
# wheels and a 10-second g++ build. Optional: when it fails, the project runs on
# XLA's convolution as before and tests/test_onednn_conv.py skips, saying why.
run bash scripts/build_onednn_conv.sh \
  || echo "setup: the oneDNN convolution did not build (see above); XLA's convolution is used." >&2
