"""The convolutional part of a Flax model as the chain that the deconvnet of
`research/ops/deconvnet.py` runs (Zeiler & Fergus 2013, §2.1).

`read_chain` intercepts the module calls of one abstract forward pass and
records each `nn.Conv`, `layers.MaxPool` and `layers.LocalResponseNorm` up to
the first `nn.Dense` (the classifier), with the strides and paddings the
modules themselves hold. Any other layer there (batch norm, average pooling,
...) raises NotImplementedError: the deconvnet cannot invert it. It lives
with the models, not the ops, because it has to know the model layers.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.models import layers
from research.ops import deconvnet


def _pair(v) -> tuple[int, int]:
  return (int(v), int(v)) if isinstance(v, int) else tuple(int(a) for a in v)


def _pads(padding, in_hw, window, strides):
  if isinstance(padding, str):
    return tuple(jax.lax.padtype_to_pads(in_hw, window, strides, padding))
  if isinstance(padding, int):
    return ((padding, padding),) * 2
  return tuple((int(lo), int(hi)) for lo, hi in padding)


def read_chain(model: nn.Module, params, image_shape) -> tuple:
  """The model's convolutional part: a tuple of deconvnet.Conv / Pool / Norm, in order.

  image_shape: (H, W, C) of one input. Raises NotImplementedError on a layer
  the deconvnet cannot invert (see `research.ops.deconvnet`).
  """
  chain, reached_classifier = [], [False]

  def record(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != "__call__" or not module.path or reached_classifier[0]:
      return next_fun(*args, **kwargs)
    in_hw = args[0].shape[1:3]
    if isinstance(module, nn.Dense):
      reached_classifier[0] = True
    elif isinstance(module, nn.Conv):
      dilations = (module.kernel_dilation or 1, module.input_dilation or 1)
      if any(_pair(d) != (1, 1) for d in dilations):
        raise NotImplementedError(f"Dilated convolution {'/'.join(module.path)}.")
      window, strides = _pair(module.kernel_size), _pair(module.strides or 1)
      chain.append(deconvnet.Conv(tuple(module.path), strides,
                                  _pads(module.padding, in_hw, window, strides),
                                  module.feature_group_count, window))
    elif isinstance(module, layers.MaxPool):
      window, strides = _pair(module.window), _pair(module.stride or module.window)
      chain.append(deconvnet.Pool(window, strides,
                                  _pads(module.padding, in_hw, window, strides)))
    elif isinstance(module, layers.LocalResponseNorm):
      chain.append(deconvnet.Norm(module.depth_radius, module.bias, module.alpha, module.beta))
    else:
      raise NotImplementedError(
          f"The deconvnet cannot invert {type(module).__name__} ({'/'.join(module.path)}); "
          "supported before the classifier: Conv (+ ReLU), MaxPool, LocalResponseNorm.")
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda: model.apply({"params": params},
                                       jnp.zeros((1, *image_shape)), train=False))
  return tuple(chain)
