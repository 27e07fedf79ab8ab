"""Local response normalization (Krizhevsky et al. 2012, §3.3)."""

import jax
import jax.numpy as jnp


def local_response_norm(x: jax.Array, depth_radius: int = 2, bias: float = 2.0,
                        alpha: float = 1e-4, beta: float = 0.75) -> jax.Array:
  """b_c = a_c / (k + alpha * sum_{c' in [c-n/2, c+n/2]} a_{c'}^2) ** beta.

  AlexNet's constants are k=2, n=5 (depth_radius=2), alpha=1e-4, beta=0.75;
  the sum runs over the n adjacent channels at the same position.

  Args:
    x: float [..., C], channels last.

  Returns:
    float [..., C], same shape.
  """
  squared = jnp.square(x)
  # A channel-axis window sum as a cumulative-sum difference: exact, and
  # cheaper on CPU than a reduce_window over the last axis.
  padded = jnp.pad(squared, [(0, 0)] * (x.ndim - 1) + [(depth_radius + 1, depth_radius)])
  csum = jnp.cumsum(padded, axis=-1)
  window = 2 * depth_radius + 1
  sums = csum[..., window:] - csum[..., :-window]
  return x / (bias + alpha * sums) ** beta
