#!/usr/bin/env bash
# Installs everything this project needs on a fresh Debian/Ubuntu machine:
# the apt packages (real data: Fashion-MNIST), then the pinned Python packages
# into the active Python environment (make and activate a venv first if you
# want one). Safe to rerun: installed packages are skipped.
#
#   bash scripts/setup.sh               # the project
#   bash scripts/setup.sh --with-slurm  # also Slurm, munge and MariaDB, for the
#                                       # cluster tests and scripts/slurm_cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(dataset-fashion-mnist)
for arg in "$@"; do
  case $arg in
    --with-slurm) APT_PACKAGES+=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server) ;;
    *) echo "Unknown option $arg; the only option is --with-slurm." >&2; exit 2 ;;
  esac
done
missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "Please install the Debian packages: ${missing[*]} (as root: apt-get install ${missing[*]})" >&2
    exit 1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python -m pip install -q --disable-pip-version-check -r requirements.txt

# The oneDNN convolution op (research/ops/onednn_conv.py, issue 15): oneDNN's PyPI
# wheels and a 10-second g++ build. Optional: when it fails, the project runs on
# XLA's convolution as before and tests/test_onednn_conv.py skips, saying why.
bash scripts/build_onednn_conv.sh \
  || echo "setup: the oneDNN convolution did not build (see above); XLA's convolution is used." >&2
