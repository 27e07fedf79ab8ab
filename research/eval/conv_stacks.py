"""Stacks of small convolutions against one large one (Simonyan & Zisserman
2014, §2.3): the receptive field measured through a real stack, and the
weights of a stack counted from a traced model.
"""

import jax
import jax.numpy as jnp
import numpy as np

from research.models import summary, vgg


def measured_receptive_field(kernels: tuple[int, ...], size: int = 17) -> int:
  """The side of the input window that the centre output pixel depends on.

  The support of d(centre output)/d(input) through a linear stack of random
  convolutions (linear: a ReLU could zero a path by chance).
  """
  stack = vgg.ConvStack(kernels, width=2, linear=True)
  x = jnp.zeros((1, size, size, 2))
  params = stack.init(jax.random.key(0), x)
  grad = jax.grad(lambda x: stack.apply(params, x)[0, size // 2, size // 2].sum())(x)
  rows = np.flatnonzero(np.abs(np.asarray(grad[0])).sum(axis=(1, 2)) > 0)
  return int(rows[-1] - rows[0] + 1)


def stack_weights(kernels: tuple[int, ...], width: int) -> int:
  """Weights of a real conv stack with `width` maps in and out (traced, not built)."""
  return summary.summarize(vgg.ConvStack(kernels, width), (16, 16, width)).total_params
