"""Parameter-free layers as Flax modules, so model summaries list them.

Flax's pooling is plain functions, invisible to a summary; wrapping them
gives the cs231n-style table its POOL rows (and their activation memory).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax

from research import ops
from research.ops import pooling


def _crop_negative_padding(x: jax.Array, padding):
  """Crops the rows a negative (lo, hi) pad would drop; returns (x, padding >= 0).

  `common.window_padding(..., "floor")` crops with negative pads, which the
  forward pass accepts but the gradient of `lax.reduce_window` rejects.
  """
  if isinstance(padding, str) or all(lo >= 0 and hi >= 0 for lo, hi in padding):
    return x, padding
  for axis, (lo, hi) in enumerate(padding, start=1):
    x = jax.lax.slice_in_dim(x, max(0, -lo), x.shape[axis] - max(0, -hi), axis=axis)
  return x, [(max(0, lo), max(0, hi)) for lo, hi in padding]


class MaxPool(nn.Module):
  """Max pooling: [B, H, W, C] -> [B, H', W', C]. AlexNet pools 3x3/2 (overlapping)."""
  window: int = 2
  stride: int | None = None
  padding: str | Sequence[tuple[int, int]] = "VALID"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    stride = self.stride or self.window
    x, padding = _crop_negative_padding(x, self.padding)
    return pooling.max_pool(x, self.window, stride, padding)


class AvgPool(nn.Module):
  """Average pooling: [B, H, W, C] -> [B, H', W', C]."""
  window: int = 2
  stride: int | None = None
  padding: str | Sequence[tuple[int, int]] = "VALID"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    stride = self.stride or self.window
    x, padding = _crop_negative_padding(x, self.padding)
    return nn.avg_pool(x, (self.window,) * 2, (stride,) * 2, padding,
                       count_include_pad=True)


class GlobalAvgPool(nn.Module):
  """[B, H, W, C] -> [B, C] (Network in Network §3.2)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return x.mean(axis=(1, 2))


class LocalResponseNorm(nn.Module):
  """`ops.local_response_norm` with AlexNet's constants by default."""
  depth_radius: int = 2
  bias: float = 2.0
  alpha: float = 1e-4
  beta: float = 0.75

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return ops.local_response_norm(x, self.depth_radius, self.bias, self.alpha, self.beta)


ACTIVATIONS = {
    "relu": nn.relu,
    "tanh": nn.tanh,
    # LeCun et al. 1998, Appendix A: f(a) = 1.7159 tanh(2a/3).
    "scaled_tanh": lambda x: 1.7159 * nn.tanh(2.0 * x / 3.0),
    "sigmoid": nn.sigmoid,
    "leaky_relu": nn.leaky_relu,
}


def activation(name: str):
  """An activation function by name; the error lists the known names."""
  if name not in ACTIVATIONS:
    raise ValueError(f"Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}.")
  return ACTIVATIONS[name]
