"""Pieces shared by the ImageNet-era CNNs (AlexNet, ZF Net, VGG, GoogLeNet, ResNet, NiN).

* `window_padding`: explicit paddings for the three rounding conventions the
  papers' shapes rely on. `summary.summarize` checks symmetric paddings with
  the cs231n rule (W - F + 2P) / S + 1 must be an integer; PyTorch and Caffe
  instead round down (convolutions) or up (Caffe's pooling, PyTorch's
  ceil_mode). Each rounding is the same as an exact window over an
  asymmetrically padded input, which is what these return, so the models
  compute what the original frameworks compute and the summary still
  checks every window it can.
* `classifier`: the fc6-fc7-fc8 head of AlexNet, ZF Net and VGG, and its
  `dense` mode: the same parameters applied as convolutions (`Dense`,
  `fc_to_conv_kernel`; VGG §3.2's dense evaluation).
* `AdaptiveAvgPool`: PyTorch's adaptive average pooling (torchvision AlexNet).
"""

import math
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


def fc_to_conv_kernel(kernel: jax.Array, channels: int) -> jax.Array:
  """A fully connected layer's kernel as the equivalent convolution's (cs231n notes,
  "Converting FC layers to CONV layers"; Simonyan & Zisserman 2015, §3.2).

  Args:
    kernel: [k * k * channels, out], the kernel of a Dense layer applied to a
      flattened (row-major: h, then w, then channel) [k, k, channels] input.
    channels: the input's channel count C.

  Returns:
    The [k, k, channels, out] (HWIO) kernel of the k x k VALID convolution that
    computes the same outputs on that input, and on a larger input the map of
    the layer's outputs at every k x k window (stride 1).

  Raises:
    ValueError: `kernel.shape[0]` is not k * k * channels for an integer k
      (a non-square window cannot be recovered from the kernel alone).
  """
  fan_in, out = kernel.shape
  k = math.isqrt(fan_in // channels) if fan_in % channels == 0 else 0
  if k * k * channels != fan_in:
    raise ValueError(f"A Dense kernel of {fan_in} inputs is not a square window of "
                     f"{channels} channels; it has no k x k convolution form.")
  return kernel.reshape(k, k, channels, out)


class Dense(nn.Dense):
  """`nn.Dense` (the same parameters and summary row) that can also run as its
  equivalent convolution, `as_conv`, for dense evaluation (VGG §3.2)."""

  def as_conv(self, x: jax.Array) -> jax.Array:
    """[B, H, W, C] -> [B, H - k + 1, W - k + 1, features]: at each position, this
    layer applied to the flattened k x k window there (k from the kernel's shape,
    `fc_to_conv_kernel`). Needs the layer's parameters (apply, not init)."""
    kernel = self.get_variable("params", "kernel")
    if kernel is None:
      raise ValueError(f"{self.name}: dense mode applies trained parameters; initialise the "
                       "model with dense=False.")
    bias = self.get_variable("params", "bias") if self.use_bias else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = jax.lax.conv_general_dilated(x, fc_to_conv_kernel(kernel, x.shape[-1]), (1, 1),
                                     "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     precision=self.precision)
    return y if bias is None else y + bias


def classifier(x: jax.Array, features: dict, *, widths: Sequence[int], num_classes: int,
               dropout: float, train: bool, dropout_first: bool = False,
               names: Sequence[str] = ("fc6", "fc7", "fc8"),
               kernel_init=None, hidden_bias_init=None, activation=nn.relu,
               dense: bool = False) -> jax.Array:
  """AlexNet's fully connected head, [B, ...] -> [B, num_classes] logits.

  Flattens, then Dense + `activation` (ReLU) for each of `widths` with dropout on each hidden
  layer's output (the paper's placement, AlexNet §4.2 and VGG §3.1), or on
  each hidden layer's input when `dropout_first` (torchvision's placement).
  Must be called from inside a compact module method: the layers it creates
  belong to that module, named `names`. `kernel_init` (all layers) and
  `hidden_bias_init` (hidden layers) replace Flax's defaults when given.

  `dense` (Simonyan & Zisserman 2015, §3.2; Sermanet et al. 2014, OverFeat):
  x is a [B, H, W, C] map at least as large as the one the layers were trained
  on (k x k, read from the first kernel) and the head runs as convolutions with
  the same parameters: the first layer as a k x k VALID conv, the others as 1 x 1
  convs, giving class scores [B, H - k + 1, W - k + 1, num_classes], the head's
  logits for every k x k window at stride 1 of this map (stride 32 in the image
  for VGG and AlexNet). On a k x k map that is the normal logits, [B, 1, 1, K].
  """
  init = {} if kernel_init is None else {"kernel_init": kernel_init}
  hidden_init = dict(init, **({} if hidden_bias_init is None else {"bias_init": hidden_bias_init}))
  # Dense layers contract the last axis, so on a map the later ones are 1 x 1 convs.
  x = x if dense else x.reshape(x.shape[0], -1)
  for i, (name, width) in enumerate(zip(names, widths)):
    if dropout_first:
      x = nn.Dropout(dropout, deterministic=not train)(x)
    fc = Dense(width, name=name, **hidden_init)
    x = features[name] = activation(fc.as_conv(x) if dense and i == 0 else fc(x))
    if not dropout_first:
      x = nn.Dropout(dropout, deterministic=not train)(x)
  fc = Dense(num_classes, name=names[len(widths)], **init)
  return fc.as_conv(x) if dense and not widths else fc(x)


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
