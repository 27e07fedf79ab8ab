"""Local response normalization (Krizhevsky et al. 2012, §3.3)."""

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np


def local_response_norm(x: jax.Array, depth_radius: int = 2, bias: float = 2.0,
                        alpha: float = 1e-4, beta: float = 0.75) -> jax.Array:
  """b_c = a_c / (k + alpha * sum_{c' in [c-n/2, c+n/2]} a_{c'}^2) ** beta.

  AlexNet's constants are k=2, n=5 (depth_radius=2), alpha=1e-4, beta=0.75;
  the sum runs over the n adjacent channels at the same position (channels
  past either end count as zero).

  Args:
    x: float [..., C], channels last.

  Returns:
    float [..., C], same shape and dtype.
  """
  squared = jnp.square(x)
  # Each window is summed on its own (a reduce_window over the channel axis),
  # so b_c depends only on the channels of its window: a cumulative-sum
  # difference, used before, let one huge channel overflow the running sum
  # into NaN for every later channel and lost precision in the others.
  # Also faster here: 64x27x27x96 on the 2-core CPU (shared, load ~6), forward
  # 37 ms vs 100 ms, gradient 128 ms vs 321 ms for the cumulative sum.
  window = (1,) * (x.ndim - 1) + (2 * depth_radius + 1,)
  padding = [(0, 0)] * (x.ndim - 1) + [(depth_radius, depth_radius)]
  # A concrete (NumPy) zero: with it and lax.add, JAX recognises a window sum,
  # which it can differentiate; a traced init value makes a generic reduction.
  sums = lax.reduce_window(squared, np.zeros((), squared.dtype), lax.add, window,
                           (1,) * x.ndim, padding)
  return x / (bias + alpha * sums) ** beta
