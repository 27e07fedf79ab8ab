#!/usr/bin/env bash
# Builds the oneDNN convolution (research/ops/csrc/onednn_conv.cc) into
# build/onednn_conv/libonednn_conv.so, for research/ops/onednn_conv.py.
#
#   bash scripts/build_onednn_conv.sh
#
# oneDNN comes from PyPI: onednn-cpu-gomp + onednn-devel-cpu-gomp 2023.2.0
# (oneDNN 3.2, the plain CPU build with OpenMP; the newer `onednn` wheels are
# SYCL/TBB builds that need Intel runtimes these machines lack, and Debian's
# libdnnl-dev is oneDNN 2.6, whose API differs). JAX's FFI headers come with
# jaxlib. Needs g++ (C++17). Exits non-zero on any failure; the Python side
# then falls back to XLA's convolution.
set -euo pipefail
cd "$(dirname "$0")/.."
ONEDNN_VERSION=2023.2.0
PYTHON=${PYTHON:-python}

$PYTHON -m pip install -q --disable-pip-version-check \
  "onednn-cpu-gomp==$ONEDNN_VERSION" "onednn-devel-cpu-gomp==$ONEDNN_VERSION"
# The wheels put headers and libdnnl.so under the environment's prefix; find
# them through the installed files' records rather than guessing the prefix.
FIND_PATHS='
import importlib.metadata as md, os, jax
def find(dist, suffix):
  for f in md.files(dist) or ():
    if str(f).endswith(suffix):
      return os.path.realpath(f.locate())
  raise SystemExit(f"{dist} has no {suffix}: reinstall it")
header = find("onednn-devel-cpu-gomp", "oneapi/dnnl/dnnl.hpp")
print(header[:-len("/oneapi/dnnl/dnnl.hpp")],
      os.path.dirname(find("onednn-cpu-gomp", "libdnnl.so.3")), jax.ffi.include_dir())
'
read -r INCLUDE LIB JAX_INCLUDE < <($PYTHON -c "$FIND_PATHS")
OUT=build/onednn_conv
mkdir -p "$OUT"
${CXX:-g++} -O3 -std=c++17 -fopenmp -shared -fPIC \
  -isystem "$JAX_INCLUDE" -I"$INCLUDE" -o "$OUT/libonednn_conv.so.tmp" \
  research/ops/csrc/onednn_conv.cc "$LIB/libdnnl.so.3" -Wl,-rpath,"$LIB"
mv "$OUT/libonednn_conv.so.tmp" "$OUT/libonednn_conv.so"
echo "built $OUT/libonednn_conv.so (oneDNN from $LIB)"
# oneDNN alone, without JAX (benchmarks/onednn_alone.cc): the kernels' own speed.
${CXX:-g++} -O2 -std=c++17 -fopenmp -I"$INCLUDE" -o "$OUT/onednn_alone" \
  benchmarks/onednn_alone.cc "$LIB/libdnnl.so.3" -Wl,-rpath,"$LIB"
