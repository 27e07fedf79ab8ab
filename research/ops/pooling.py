"""Max pooling, with a faster gradient for non-overlapping windows on the CPU.

XLA lowers the gradient of `lax.reduce_window` max to `select_and_scatter`,
which its CPU backend runs slowly: a 2x2/2 pool of a [128, 28, 28, 32] batch
took 42.6 ms forward and backward here, against 15.2 ms with this module
(`python -m benchmarks.step_variants --sections=pool`). When the windows
tile the input (stride == window, no padding), `max_pool` reshapes instead and
routes the gradient by hand to the first maximum of each window in row-major
order: exactly what `select_and_scatter` does, ties included, so values and
gradients are bit-identical to `flax.linen.max_pool` (tests/test_pooling.py).
"""

from collections.abc import Sequence
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp


def _tiles(padding, stride: int, window: int) -> bool:
  no_padding = padding == "VALID" or (not isinstance(padding, str)
                                      and all(lo == 0 and hi == 0 for lo, hi in padding))
  return no_padding and stride == window


def max_pool(x: jax.Array, window: int, stride: int,
             padding: str | Sequence[tuple[int, int]] = "VALID") -> jax.Array:
  """[B, H, W, C] -> [B, H', W', C], as `flax.linen.max_pool(x, (window,)*2, (stride,)*2, padding)`."""
  if not _tiles(padding, stride, window):
    return nn.max_pool(x, (window, window), (stride, stride), padding)
  h, w = x.shape[1] // window * window, x.shape[2] // window * window
  return _tiled_max_pool(x[:, :h, :w, :], window)  # VALID drops the remainder rows.


def _windows(x: jax.Array, k: int) -> jax.Array:
  """[B, H, W, C] -> [B, H/k, k, W/k, k, C] (a free reshape: no data moves)."""
  b, h, w, c = x.shape
  return x.reshape(b, h // k, k, w // k, k, c)


def _first_max_mask(x: jax.Array, k: int) -> jax.Array:
  """[B, H/k, k, W/k, k, C]: is this the first maximum of its window, in
  row-major order within the window (select_and_scatter's choice)?"""
  windows = _windows(x, k)
  is_max = windows == windows.max(axis=(2, 4), keepdims=True)
  # Earlier offsets score higher; the best-scoring maximum is the first one.
  score = (k * k - jnp.arange(k * k, dtype=jnp.int32)).reshape(1, 1, k, 1, k, 1)
  score = jnp.where(is_max, score, 0)
  return score == score.max(axis=(2, 4), keepdims=True)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _tiled_max_pool(x: jax.Array, k: int) -> jax.Array:
  return _windows(x, k).max(axis=(2, 4))


def _tiled_max_pool_fwd(x, k):
  return _windows(x, k).max(axis=(2, 4)), x


def _tiled_max_pool_bwd(k, x, g):
  routed = jnp.where(_first_max_mask(x, k), g[:, :, None, :, None, :], jnp.zeros((), g.dtype))
  return (routed.reshape(x.shape),)


_tiled_max_pool.defvjp(_tiled_max_pool_fwd, _tiled_max_pool_bwd)
