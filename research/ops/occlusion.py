"""Occlusion sensitivity (Zeiler & Fergus 2013, §4.2, Fig. 7).

Slide a gray square over the image and record, for each position of the
square, what the network outputs: the probability of the correct class, the
total activation of a feature map, the most probable class. Where covering
the image changes the output most is what the output depends on; if the
network localises the object, that is the object and not its surroundings.

The square of side `size` is centred on a grid of positions every `stride`
pixels, (stride // 2, stride // 2 + stride, ...), and clipped at the image
border, so the map [H / stride, W / stride] lies over the image like a
downsampled copy of it.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp


def centres(length: int, stride: int) -> jax.Array:
  """The square's centres along one axis: int [ceil(length / stride)]."""
  return jnp.arange(stride // 2, length, stride)


def square_mask(image_hw, size: int, cy, cx) -> jax.Array:
  """float [H, W]: 1 on rows [cy - size // 2, cy - size // 2 + size) x the same
  columns around cx, clipped to the image; 0 elsewhere."""
  h, w = image_hw
  rows = jnp.arange(h)[:, None] - (cy - size // 2)
  cols = jnp.arange(w)[None, :] - (cx - size // 2)
  return ((rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)).astype(jnp.float32)


def occlude(image: jax.Array, mask: jax.Array, fill) -> jax.Array:
  """image [H, W, C] with the mask's pixels [H, W] replaced by `fill` (scalar or [C])."""
  m = mask[..., None].astype(image.dtype)
  return image * (1.0 - m) + jnp.asarray(fill, image.dtype) * m


def occlusion_map(fn: Callable, image: jax.Array, *, size: int, stride: int, fill,
                  batch_size: int = 128):
  """fn's outputs for every position of the occluder.

  Args:
    fn: one image [H, W, C] -> a pytree of arrays (e.g. the probability of the
      true class, a feature map's total activation); vmapped in batches.
    image: [H, W, C], in the space `fn` reads (e.g. [0, 1] pixels).
    size, stride: the square's side and the grid spacing, pixels.
    fill: the square's value, scalar or [C] (the paper's gray: the mean pixel).

  Returns:
    fn's pytree with each leaf [Gy, Gx, ...], Gy = ceil(H / stride): the
    output with the square centred at (centres(H)[i], centres(W)[j]).
  """
  h, w = image.shape[:2]
  ys, xs = centres(h, stride), centres(w, stride)
  grid = jnp.stack(jnp.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2)

  def at(centre):
    return fn(occlude(image, square_mask((h, w), size, centre[0], centre[1]), fill))

  outputs = jax.lax.map(at, grid, batch_size=batch_size)
  return jax.tree.map(lambda o: o.reshape(len(ys), len(xs), *o.shape[1:]), outputs)
