"""Pieces shared by the ImageNet-era CNNs (AlexNet, ZF Net, VGG, GoogLeNet, ResNet, NiN).

* `window_padding`: explicit paddings for the three rounding conventions the
  papers' shapes rely on. `summary.summarize` checks symmetric paddings with
  the cs231n rule (W - F + 2P) / S + 1 must be an integer; PyTorch and Caffe
  instead round down (convolutions) or up (Caffe's pooling, PyTorch's
  ceil_mode). Each rounding is the same as an exact window over an
  asymmetrically padded input, which is what these return, so the models
  compute what the original frameworks compute and the summary still
  checks every window it can.
* `classifier`: the fc6-fc7-fc8 head of AlexNet, ZF Net and VGG.
* `AdaptiveAvgPool`: PyTorch's adaptive average pooling (torchvision AlexNet).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

PADDING_MODES = ("exact", "floor", "ceil")


def _axis_padding(size: int, window: int, stride: int, padding: int,
                  mode: str) -> tuple[int, int]:
  span = size - window + 2 * padding
  remainder = span % stride
  if mode == "exact" or remainder == 0:
    return padding, padding
  if mode == "floor":
    # floor(span / S) + 1 windows never reach the last `remainder` padded rows:
    # drop them (a negative pad crops input rows no window reads).
    return padding, padding - remainder
  # ceil: one more window, padded on the high side. PyTorch's rule: a last
  # window that would start in the high padding is dropped.
  out = -(-span // stride) + 1
  if (out - 1) * stride >= size + padding:
    return padding, padding - remainder
  return padding, padding + stride - remainder


def window_padding(input_hw: Sequence[int], window: int, stride: int = 1,
                   padding: int = 0, mode: str = "exact") -> list[tuple[int, int]]:
  """Explicit [(lo, hi), (lo, hi)] padding for a square window on an [H, W] input.

  Args:
    input_hw: the input's spatial size, e.g. `x.shape[1:3]`.
    window, stride, padding: F, S and the symmetric P of the original layer.
    mode: "exact": (P, P); the summary then demands that the window tiles the
      input. "floor": output floor((W - F + 2P) / S) + 1, as PyTorch and Caffe
      convolutions (e.g. torchvision's 7x7/2 pad-3 stem on 224: 112.5 -> 112).
      "ceil": ceil(...) + 1, as Caffe pooling and PyTorch's ceil_mode=True
      (e.g. GoogLeNet's 3x3/2 pools: 112 -> 56).

  Returns:
    Per spatial axis (lo, hi) with (W - F + lo + hi) divisible by S, giving the
    output size the mode asks for.
  """
  if mode not in PADDING_MODES:
    raise ValueError(f"Unknown padding mode {mode!r}; choose one of {PADDING_MODES}.")
  return [_axis_padding(int(w), window, stride, padding, mode) for w in input_hw]


def classifier(x: jax.Array, features: dict, *, widths: Sequence[int], num_classes: int,
               dropout: float, train: bool, dropout_first: bool = False,
               names: Sequence[str] = ("fc6", "fc7", "fc8"),
               kernel_init=None, hidden_bias_init=None, activation=nn.relu) -> jax.Array:
  """AlexNet's fully connected head, [B, ...] -> [B, num_classes] logits.

  Flattens, then Dense + `activation` (ReLU) for each of `widths` with dropout on each hidden
  layer's output (the paper's placement, AlexNet §4.2 and VGG §3.1), or on
  each hidden layer's input when `dropout_first` (torchvision's placement).
  Must be called from inside a compact module method: the layers it creates
  belong to that module, named `names`. `kernel_init` (all layers) and
  `hidden_bias_init` (hidden layers) replace Flax's defaults when given.
  """
  init = {} if kernel_init is None else {"kernel_init": kernel_init}
  hidden_init = dict(init, **({} if hidden_bias_init is None else {"bias_init": hidden_bias_init}))
  x = x.reshape(x.shape[0], -1)
  for name, width in zip(names, widths):
    if dropout_first:
      x = nn.Dropout(dropout, deterministic=not train)(x)
    x = features[name] = activation(nn.Dense(width, name=name, **hidden_init)(x))
    if not dropout_first:
      x = nn.Dropout(dropout, deterministic=not train)(x)
  return nn.Dense(num_classes, name=names[len(widths)], **init)(x)


def _adaptive_matrix(size: int, out: int) -> np.ndarray:
  """[out, size] averaging weights of PyTorch's adaptive pooling along one axis.

  Bin i covers [floor(i * size / out), ceil((i + 1) * size / out)).
  """
  m = np.zeros((out, size), np.float32)
  for i in range(out):
    lo, hi = (i * size) // out, -(-((i + 1) * size) // out)
    m[i, lo:hi] = 1.0 / (hi - lo)
  return m


class AdaptiveAvgPool(nn.Module):
  """[B, H, W, C] -> [B, size, size, C], PyTorch's AdaptiveAvgPool2d.

  The identity when H = W = size (torchvision AlexNet at 224: 6x6 -> 6x6).
  """
  size: int = 6

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = jnp.asarray(_adaptive_matrix(x.shape[1], self.size), x.dtype)
    w = jnp.asarray(_adaptive_matrix(x.shape[2], self.size), x.dtype)
    return jnp.einsum("bhwc,ih,jw->bijc", x, h, w)


def scaled(channels: int, width: float) -> int:
  """A channel count times a width multiplier, at least 1."""
  return max(1, int(round(channels * width)))
