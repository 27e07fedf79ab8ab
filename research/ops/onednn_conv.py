"""A 2-D convolution on the CPU through oneDNN, called from JAX with its FFI.

`conv_general_dilated(lhs, rhs, window_strides, padding, ...)` takes the
arguments of `jax.lax.conv_general_dilated` as this project's layers use them
(flax's `nn.Conv` passes NHWC/HWIO/NHWC dimension numbers) and returns the
same array: forward through `onednn_conv_fwd`, and under `jax.grad` the input
gradient through `onednn_conv_bwd_data` and the weight gradient through
`onednn_conv_bwd_weights` (a `jax.custom_vjp`). The handlers are in
`research/ops/csrc/onednn_conv.cc`; `bash scripts/build_onednn_conv.sh` builds
them into `build/onednn_conv/libonednn_conv.so` from oneDNN's PyPI wheels.
`conv_or_lax` is the same call that falls back to lax where oneDNN cannot serve
(another backend, unsupported arguments, the library not built: one warning).

Supported: lhs [N, H, W, C] and rhs [KH, KW, C / groups, O], both float32 or
both bfloat16 (oneDNN accumulates bf16 in float32 and rounds the result to
bf16, as XLA does), any strides, explicit (lo, hi) paddings >= 0 or
"SAME"/"VALID", rhs (kernel) dilation, feature groups. Not supported (raises
ValueError): lhs (input) dilation, batch groups, other layouts or dtypes,
negative padding. Under `jax.vmap` each convolution stays one FFI call (the
mapped axis folded into the batch, or into feature groups where the weights
are mapped); under a data-parallel mesh each device convolves its shard of
the batch and the weight gradients are psummed: research/ops/onednn_conv_rules.py.

Why: XLA:CPU's convolutions with both backward passes ran at 0.5-0.6x
PyTorch's (oneDNN) on this project's ResNets (README, "Performance on the
CPU"); issue 15. The measurement against XLA is `benchmarks/conv_op.py`.

The library is found at $RESEARCH_ONEDNN_CONV_LIB, else
<repo>/build/onednn_conv/libonednn_conv.so. `available()` says whether it
loaded; `unavailable_reason()` says why not.

Threads: oneDNN runs each convolution on an OpenMP team of one thread per
core (or $OMP_NUM_THREADS) by default; `set_threads(n)` or
$RESEARCH_ONEDNN_THREADS=n changes it (0: that default). Why that default:
on this 2-core machine idle, ResNet-20's and ResNet-56's training steps run
1.53x / 1.81x XLA's in fp32 with 2 threads but 0.93x / 0.98x with 1
(results/onednn_conv/train_step_quiet.md). On a machine shared with other
jobs 1 thread does better (load 8-12, `python -m benchmarks.conv_op
--sections=threads`, ResNet-20's 18 3x3 convs with both backward passes: 1
thread 2.06x XLA in fp32 and 3.85x in bf16, 2 threads 1.53x and 1.18x, with
stalls of 0.1-3.7 s in bf16's stride-2 weight gradients: a team whose
threads wait at barriers for a thread that another process holds off its
core): set RESEARCH_ONEDNN_THREADS=1 there. Loading the library also sets
OMP_WAIT_POLICY=passive unless it is set (spinning OpenMP threads held the
cores XLA's threads needed: 2 threads spinning 1.28x / 1.48x).
"""

import ctypes
import functools
import os
import warnings
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from research.ops import onednn_conv_rules
from research.ops.onednn_conv_rules import Geometry as _Geometry

_DEFAULT_LIB = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "build",
                            "onednn_conv", "libonednn_conv.so")
_TARGETS = {"onednn_conv_fwd": "OnednnConvFwd", "onednn_conv_bwd_data": "OnednnConvBwdData",
            "onednn_conv_bwd_weights": "OnednnConvBwdWeights"}
_NHWC = ("NHWC", "HWIO", "NHWC")
_DTYPES = (jnp.float32, jnp.bfloat16)


@functools.cache
def _load() -> tuple[ctypes.CDLL | None, str]:
  """(library, "") once registered with XLA for the CPU, else (None, reason)."""
  path = os.path.abspath(os.environ.get("RESEARCH_ONEDNN_CONV_LIB", _DEFAULT_LIB))
  if not os.path.exists(path):
    return None, f"{path} does not exist (build it: bash scripts/build_onednn_conv.sh)"
  # libgomp reads this once, when it loads (with this library unless something
  # else loaded it first).
  os.environ.setdefault("OMP_WAIT_POLICY", "passive")
  try:
    lib = ctypes.CDLL(path)
    threads = os.environ.get("RESEARCH_ONEDNN_THREADS", "0")
    if not threads.isdigit():
      return None, f"RESEARCH_ONEDNN_THREADS={threads!r} is not a whole number (0: one per core)"
    lib.OnednnConvSetThreads(ctypes.c_int(int(threads)))
    for target, symbol in _TARGETS.items():
      jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)),
                                  platform="cpu")
  except (OSError, AttributeError) as e:
    return None, f"{path} did not load ({e}; rebuild it: bash scripts/build_onednn_conv.sh)"
  return lib, ""


def available() -> bool:
  """Whether the oneDNN library is built and registered with XLA (CPU)."""
  return _load()[0] is not None


def unavailable_reason() -> str:
  """Why `available()` is False ("" when it is True)."""
  return _load()[1]


def set_threads(threads: int) -> None:
  """OpenMP threads per convolution from now on (0, the default: $OMP_NUM_THREADS, else one per core).

  Raises ValueError when the library is not available or threads < 0.
  """
  if threads < 0:
    raise ValueError(f"threads must be >= 0 (0: one per core), got {threads}.")
  lib = _load()[0]
  if lib is None:
    raise ValueError(f"onednn_conv: the library is not available: {unavailable_reason()}.")
  lib.OnednnConvSetThreads(ctypes.c_int(threads))


def onednn_version() -> str:
  """The version of the oneDNN the library runs, e.g. "3.2.0"; "" when not loaded."""
  lib = _load()[0]
  if lib is None:
    return ""
  lib.OnednnConvVersion.restype = ctypes.c_int64
  v = lib.OnednnConvVersion()
  return f"{v // 10000}.{v // 100 % 100}.{v % 100}"


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv(x, w, geometry: _Geometry):
  return _ops(geometry, x, w)[0](x, w)


def _ops(geometry: _Geometry, x, w):
  return onednn_conv_rules.ops(geometry, tuple(x.shape[1:3]), tuple(w.shape[:2]))


def _conv_fwd(x, w, geometry):
  return _conv(x, w, geometry), (x, w)


def _conv_bwd(geometry, residuals, dy):
  x, w = residuals
  _, bwd_data, bwd_weights = _ops(geometry, x, w)
  dy = dy.astype(x.dtype)
  return bwd_data(dy, w), bwd_weights(x, dy)


_conv.defvjp(_conv_fwd, _conv_bwd)


def _dimension_numbers_are_nhwc(dimension_numbers) -> bool:
  if dimension_numbers is None:
    return False
  return (tuple(jax.lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), dimension_numbers))
          == tuple(jax.lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), _NHWC)))


def unsupported(lhs_shape: Sequence[int], rhs_shape: Sequence[int], lhs_dtype, rhs_dtype,
                padding, lhs_dilation=None, dimension_numbers=None, batch_group_count: int = 1,
                preferred_element_type=None) -> str:
  """Why oneDNN cannot compute this convolution ("" when it can); shapes as lax's."""
  if len(lhs_shape) != 4 or len(rhs_shape) != 4:
    return f"a 2-D convolution needs rank-4 operands, got {len(lhs_shape)} and {len(rhs_shape)}"
  if not _dimension_numbers_are_nhwc(dimension_numbers):
    return f"only NHWC/HWIO/NHWC dimension numbers are supported, got {dimension_numbers}"
  if jnp.dtype(lhs_dtype) != jnp.dtype(rhs_dtype) or jnp.dtype(lhs_dtype) not in _DTYPES:
    return f"operands must both be float32 or both bfloat16, got {lhs_dtype} and {rhs_dtype}"
  if preferred_element_type is not None and jnp.dtype(preferred_element_type) != lhs_dtype:
    return f"preferred_element_type {preferred_element_type} differs from the operands' dtype"
  if lhs_dilation is not None and any(d != 1 for d in lhs_dilation):
    return f"input (lhs) dilation {tuple(lhs_dilation)} is not supported"
  if batch_group_count != 1:
    return f"batch_group_count {batch_group_count} is not supported"
  if not isinstance(padding, str) and any(p < 0 for pair in padding for p in pair):
    return f"negative padding {padding} is not supported"
  return ""


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: str | Sequence[tuple[int, int]],
                         lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers=_NHWC, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision=None,
                         preferred_element_type=None) -> jax.Array:
  """`jax.lax.conv_general_dilated` through oneDNN, for NHWC/HWIO 2-D convolutions.

  Args:
    lhs: [N, H, W, C] float32 or bfloat16.
    rhs: [KH, KW, C / feature_group_count, O], the dtype of lhs.
    window_strides, padding, rhs_dilation, feature_group_count: as lax's
      (padding: "SAME", "VALID" or [(lo, hi), (lo, hi)], each >= 0).
    lhs_dilation, batch_group_count, preferred_element_type: only their
      no-op values (None or 1s, 1, None or lhs's dtype).
    dimension_numbers: ("NHWC", "HWIO", "NHWC") or its ConvDimensionNumbers.
    precision: ignored (oneDNN computes float32 in float32, bf16 with float32
      accumulation).

  Returns:
    [N, OH, OW, O] in lhs's dtype, equal to lax's within float rounding.

  Raises:
    ValueError: an unsupported argument (see `unsupported`), or the library is
      not built (`unavailable_reason()`).
  """
  del precision
  reason = unsupported(lhs.shape, rhs.shape, lhs.dtype, rhs.dtype, padding, lhs_dilation,
                       dimension_numbers, batch_group_count, preferred_element_type)
  if reason:
    raise ValueError(f"onednn_conv: {reason}; use jax.lax.conv_general_dilated.")
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
  dilation = tuple(rhs_dilation) if rhs_dilation is not None else (1, 1)
  geometry = _Geometry(tuple(int(s) for s in window_strides),
                       tuple(int(lo) for lo, _ in padding), tuple(int(hi) for _, hi in padding),
                       tuple(int(d) for d in dilation), int(feature_group_count))
  if rhs.shape[2] * geometry.groups != lhs.shape[3] or rhs.shape[3] % geometry.groups:
    raise ValueError(f"onednn_conv: rhs {rhs.shape} does not fit lhs {lhs.shape} with "
                     f"feature_group_count={geometry.groups} (rhs needs C / groups inputs and "
                     "a multiple of groups outputs).")
  if not available():
    raise ValueError(f"onednn_conv: the library is not available: {unavailable_reason()}.")
  return _conv(lhs, rhs, geometry)


@functools.cache
def _warn_unavailable_once() -> None:
  warnings.warn(f"onednn_conv: {unavailable_reason()}; using XLA's convolution.", RuntimeWarning,
                stacklevel=3)


def conv_or_lax(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                padding: str | Sequence[tuple[int, int]], lhs_dilation=None, rhs_dilation=None,
                dimension_numbers=None, feature_group_count: int = 1, batch_group_count: int = 1,
                precision=None, preferred_element_type=None) -> jax.Array:
  """`jax.lax.conv_general_dilated`, computed by oneDNN where it can be, else by lax.

  oneDNN when JAX's default backend is the CPU, the library is loaded and
  `unsupported(...)` finds nothing; lax otherwise (GPU/TPU, other layouts,
  input dilation, ...). A library that is not built gives one RuntimeWarning
  per process, naming why, and lax. For flax: `nn.Conv(...,
  conv_general_dilated=conv_or_lax)`. Same arguments, shapes and dtypes as lax.
  """
  args = (lhs, rhs, window_strides, padding)
  kwargs = dict(lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
                dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
                batch_group_count=batch_group_count, precision=precision,
                preferred_element_type=preferred_element_type)
  if jax.default_backend() != "cpu" or unsupported(
      lhs.shape, rhs.shape, lhs.dtype, rhs.dtype, padding, lhs_dilation, dimension_numbers,
      batch_group_count, preferred_element_type):
    return jax.lax.conv_general_dilated(*args, **kwargs)
  if not available():
    _warn_unavailable_once()
    return jax.lax.conv_general_dilated(*args, **kwargs)
  return conv_general_dilated(*args, **kwargs)
