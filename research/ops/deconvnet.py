"""The deconvnet of Zeiler & Fergus 2013 ("Visualizing and understanding
convolutional networks", §2.1): a feature map's activations projected back to
pixel space.

To see what excites one feature map, keep its activation (all other
activations of the layer set to zero) and run the layers below in reverse:
  - max pooling -> unpooling: each pooled value goes back to the position that
    won the max in the forward pass (the "switches" recorded then); the
    other positions get zero;
  - ReLU -> ReLU on the reconstructed signal (keeps it non-negative, as the
    feature maps it stands for are);
  - convolution -> the same filters transposed: every activation paints its
    filter (the paper's "flipped" filter, as a correlation) into the input
    window it was computed from, summed where windows overlap;
  - contrast normalization (LRN) -> nothing (the paper's deconvnet skips it;
    so do we).
This is not the gradient: the gradient would gate the backward signal with
the forward pass's ReLU masks, while the deconvnet rectifies the backward
signal itself; only the pooling switches carry information from the image.

Supported networks: the convolutional part must be a chain of `nn.Conv`
layers (any stride, explicit or named padding, groups; no dilation), each
followed by a ReLU, with `layers.MaxPool` and `layers.LocalResponseNorm`
anywhere between them (ZF Net: conv, ReLU, pool, norm; AlexNet: conv, ReLU,
norm, pool), ending at the first `nn.Dense` (the classifier, not projected).
The chain is a tuple of the `Conv` / `Pool` / `Norm` records below;
`research.models.deconvnet_chain.read_chain` reads it off a Flax model, so
strides and paddings come from the modules themselves.
The ReLUs are not modules and so are assumed; `forward` reproduces the
model's per-layer features, which the tests check for ZF Net and AlexNet.
Layers are numbered like the paper's: layer n is the n-th convolution.
"""

import dataclasses

import jax
import jax.numpy as jnp

from research import ops

_DIMS = ("NHWC", "HWIO", "NHWC")


@dataclasses.dataclass(frozen=True)
class Conv:
  path: tuple[str, ...]                        # Its parameters: params[path]["kernel"].
  strides: tuple[int, int]
  padding: tuple[tuple[int, int], tuple[int, int]]
  groups: int = 1
  window: tuple[int, int] = (1, 1)             # The kernel's spatial size.


@dataclasses.dataclass(frozen=True)
class Pool:
  window: tuple[int, int]
  strides: tuple[int, int]
  padding: tuple[tuple[int, int], tuple[int, int]]


@dataclasses.dataclass(frozen=True)
class Norm:
  depth_radius: int
  bias: float
  alpha: float
  beta: float


# --- Pooling with switches ---------------------------------------------------


def max_pool_with_switches(x: jax.Array, window, strides, padding):
  """Max pooling that also returns where each max came from.

  Args:
    x: float [B, H, W, C].
    window, strides: (ky, kx), (sy, sx). padding: ((lo, hi), (lo, hi)), read as -inf.

  Returns:
    pooled [B, H', W', C], the same as `nn.max_pool`, and switches int32
    [B, H', W', C]: the flat index row * W + col into x's [H, W] plane of the
    element each window chose (the first, in row-major window order, on ties).
  """
  _, h, w, _ = x.shape
  (ky, kx), (sy, sx) = window, strides
  (ty, by), (lx, rx) = padding
  # lax.pad: a negative pad crops (floor-mode pooling, common.window_padding).
  xp = jax.lax.pad(x, jnp.array(-jnp.inf, x.dtype),
                   ((0, 0, 0), (ty, by, 0), (lx, rx, 0), (0, 0, 0)))
  ho, wo = (h + ty + by - ky) // sy + 1, (w + lx + rx - kx) // sx + 1
  # Each window offset (i, j) as one strided view: [B, H', W', C, ky * kx].
  candidates = jnp.stack([xp[:, i:i + sy * (ho - 1) + 1:sy, j:j + sx * (wo - 1) + 1:sx]
                          for i in range(ky) for j in range(kx)], axis=-1)
  best = jnp.argmax(candidates, axis=-1)
  rows = jnp.arange(ho)[:, None, None] * sy + best // kx - ty
  cols = jnp.arange(wo)[None, :, None] * sx + best % kx - lx
  return jnp.max(candidates, axis=-1), (rows * w + cols).astype(jnp.int32)


def unpool(values: jax.Array, switches: jax.Array, input_hw) -> jax.Array:
  """Places values [B, H', W', C] at their switches in zeros [B, H, W, C].

  Overlapping windows (ZF Net pools 3x3 with stride 2) can choose the same
  input element; its unpooled value is then the sum of theirs (the transpose
  of the selection).
  """
  b, ho, wo, c = values.shape
  h, w = input_hw
  v = values.transpose(0, 3, 1, 2).reshape(b * c, ho * wo)
  s = switches.transpose(0, 3, 1, 2).reshape(b * c, ho * wo)
  out = jax.vmap(lambda vi, si: jnp.zeros(h * w, values.dtype).at[si].add(vi))(v, s)
  return out.reshape(b, c, h, w).transpose(0, 2, 3, 1)


# --- Forward and projection ---------------------------------------------------


def _conv_fn(layer: Conv, kernel):
  return lambda x: jax.lax.conv_general_dilated(
      x, kernel, layer.strides, layer.padding, dimension_numbers=_DIMS,
      feature_group_count=layer.groups)


def _params_at(params, path):
  for name in path:
    params = params[name]
  return params


def forward(chain, params, images: jax.Array, upto: int | None = None):
  """Runs the chain on standardised images [B, H, W, C] up to conv layer `upto`.

  Returns:
    (features, trace): features[n - 1] is layer n's rectified output [B, h, w, c]
    (the model's `features`); trace[i] is what the projection needs of
    chain[i]: its input shape, and for a Pool also the switches.
  """
  features, trace, x = [], [], images
  for layer in chain:
    if upto is not None and len(features) == upto:
      break
    if isinstance(layer, Conv):
      p = _params_at(params, layer.path)
      trace.append((x.shape, None))
      x = jax.nn.relu(_conv_fn(layer, p["kernel"])(x) + p.get("bias", 0.0))
      features.append(x)
    elif isinstance(layer, Pool):
      pooled, switches = max_pool_with_switches(x, layer.window, layer.strides, layer.padding)
      trace.append((x.shape, switches))
      x = pooled
    else:
      trace.append((x.shape, None))
      x = ops.local_response_norm(x, layer.depth_radius, layer.bias, layer.alpha, layer.beta)
  return features, trace


def backward(chain, params, signal: jax.Array, trace) -> jax.Array:
  """The deconvnet: a signal at the output of the last traced conv layer
  [B, h, w, c] -> pixel space [B, H, W, C] (unpool, rectify, transposed filters)."""
  for layer, (in_shape, switches) in reversed(list(zip(chain, trace))):
    if isinstance(layer, Conv):
      kernel = _params_at(params, layer.path)["kernel"]
      signal = jax.nn.relu(signal)
      (signal,) = jax.linear_transpose(_conv_fn(layer, kernel),
                                       jax.ShapeDtypeStruct(in_shape, signal.dtype))(signal)
    elif isinstance(layer, Pool):
      signal = unpool(signal, switches, in_shape[1:3])
    # Norm: skipped, as in the paper's deconvnet.
  return signal


def project(chain, params, images: jax.Array, layer: int, channel, *,
            keep: str = "max") -> jax.Array:
  """Projects feature map `channel` of conv layer `layer` (1-based) to pixel space.

  Args:
    images: standardised inputs [B, H, W, C].
    channel: int, or int [B] (one map per image).
    keep: "max": only the map's strongest activation in each image (Fig. 2's
      single activations, which line up with one image patch); "map": the
      whole map. Either way every other map of the layer is zeroed.

  Returns:
    float [B, H, W, C], the reconstruction in the input's (standardised) space.
  """
  features, trace = forward(chain, params, images, upto=layer)
  acts = features[layer - 1]
  channel = jnp.broadcast_to(jnp.asarray(channel), acts.shape[:1])
  one_map = jax.nn.one_hot(channel, acts.shape[-1], dtype=acts.dtype)[:, None, None, :]
  signal = acts * one_map
  if keep == "max":
    flat = signal.sum(-1).reshape(signal.shape[0], -1)
    at_max = jax.nn.one_hot(jnp.argmax(flat, -1), flat.shape[1], dtype=acts.dtype)
    signal = signal * at_max.reshape(*signal.shape[:3], 1)
  elif keep != "map":
    raise ValueError(f"keep={keep!r}: use 'max' or 'map'.")
  return backward(chain, params, signal, trace)


def receptive_box(chain, layer: int, y: int, x: int) -> tuple[int, int, int, int]:
  """The input pixels (top, left, bottom, right), bottom/right exclusive, that
  feed position (y, x) of conv layer `layer`'s output; may reach past the
  image border (padding), so clip before cropping."""
  convs = [i for i, l in enumerate(chain) if isinstance(l, Conv)]
  top, left, bottom, right = y, x, y, x  # Inclusive while walking down.
  for l in reversed(chain[:convs[layer - 1] + 1]):
    if isinstance(l, Norm):
      continue
    (ky, kx), (sy, sx), ((ty, _), (lx, _)) = l.window, l.strides, l.padding
    top, bottom = top * sy - ty, bottom * sy - ty + ky - 1
    left, right = left * sx - lx, right * sx - lx + kx - 1
  return top, left, bottom + 1, right + 1
