"""Truncated SVD of a fully connected layer (Girshick 2015, "Fast R-CNN", §3.1).

At test time Fast R-CNN spends nearly half its time in the fully connected
layers (one pass per RoI). A layer y = W x with W of size u x v is
approximated by the rank-t SVD W ~ U_t S_t V_t^T and replaced by two layers
with no non-linearity between them: the first with weights S_t V_t^T and no
bias, the second with U_t and the original bias. Parameters go from u v to
t (u + v); the paper compresses fc6 (25088 -> 4096, t = 1024) and fc7 (4096
-> 4096, t = 256) of VGG16 and reports a >30% cut in detection time for a
0.3 mAP drop. Flax's Dense stores the transpose (kernel [in, out], y = x K),
so here K ~ (V_t S_t)(U_t^T). The measured speed-up of the two matmuls on
this machine is in benchmarks/truncated_svd.py.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp


class TruncatedDense(NamedTuple):
  """Two Dense layers replacing one: y = (x @ first_kernel) @ second_kernel + bias."""
  first_kernel: jax.Array     # [in, t], S_t V_t^T transposed; no bias.
  second_kernel: jax.Array    # [t, out], U_t transposed.
  bias: jax.Array | None      # [out], the original layer's, or None.
  singular_values: jax.Array  # [min(in, out)], all of them, decreasing.


def parameter_counts(fan_in: int, fan_out: int, rank: int) -> tuple[int, int]:
  """(weights of the dense layer, weights of its rank-`rank` factorisation):
  in * out and rank * (in + out); biases (out in both) are not counted."""
  return fan_in * fan_out, rank * (fan_in + fan_out)


@functools.partial(jax.jit, static_argnames=("rank",))
def truncated_svd(kernel: jax.Array, rank: int, bias: jax.Array | None = None) -> TruncatedDense:
  """Factorises a Dense kernel by its rank-t SVD (Fast R-CNN §3.1).

  Args:
    kernel: float [in, out], Flax's Dense kernel.
    rank: static int t, 1 <= t <= min(in, out).
    bias: optional float [out], carried over to the second layer.

  Returns:
    TruncatedDense, float dtype of the kernel (the SVD runs in float32 at
    least). first_kernel @ second_kernel is the best rank-t approximation of
    kernel in the Frobenius norm (Eckart-Young); its relative error is
    sqrt(sum_{i > t} s_i^2 / sum_i s_i^2) of the singular values.

  Raises:
    ValueError: rank out of range, or a kernel that is not 2-D.
  """
  if kernel.ndim != 2:
    raise ValueError(f"truncated_svd: the kernel must be [in, out], got shape {kernel.shape}")
  if not 1 <= rank <= min(kernel.shape):
    raise ValueError(f"truncated_svd: rank={rank} must be in [1, {min(kernel.shape)}] for a "
                     f"{kernel.shape[0]} x {kernel.shape[1]} kernel (the paper: 1024 for fc6, "
                     "256 for fc7)")
  dtype = jnp.promote_types(kernel.dtype, jnp.float32)
  # K = A diag(s) B: A [in, r] holds W's right singular vectors V, B [r, out] U^T.
  a, s, b = jnp.linalg.svd(kernel.astype(dtype), full_matrices=False)
  first = (a[:, :rank] * s[:rank]).astype(kernel.dtype)
  return TruncatedDense(first, b[:rank].astype(kernel.dtype), bias, s)
