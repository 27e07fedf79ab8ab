"""Residual networks (He, Zhang, Ren & Sun 2015, "Deep residual learning for
image recognition").

ImageNet ResNets (§3.3-3.4, Table 1), 224x224x3 input:

  conv1 7x7/2 64 -> 112x112, BN, ReLU, max pool 3x3/2 -> 56x56
  conv2_x .. conv5_x: stages of blocks at 64, 128, 256, 512 (x4 for bottleneck
    outputs), 56 -> 28 -> 14 -> 7, the first block of stages 3-5 striding by 2
  global average pool, FC num_classes

  resnet18/34: basic blocks (3x3, 3x3), [2,2,2,2] / [3,4,6,3]
  resnet50/101/152: bottlenecks (1x1, 3x3, 1x1 x4), [3,4,6,3] / [3,4,23,3] /
    [3,8,36,3]

Shortcuts are identities, or (option B, §3.3) a 1x1 conv + BN where the shape
changes. Each conv is followed by batch norm (no conv bias); the block's ReLU
comes after the addition. Layout as torchvision: in a bottleneck the stride is
on the 3x3 conv ("ResNet v1.5"); the paper puts it on the first 1x1
(`stride_on_1x1=True`). Parameter counts are the same either way (11,689,512,
21,797,672, 25,557,032, 44,549,160, 60,192,808); MACs differ slightly.
The stem's 7x7/2 pad-3 conv and 3x3/2 pad-1 pool round down as in PyTorch
(224 -> 112 -> 56).

CIFAR ResNets (§4.2), 32x32 (or 28x28) input, 6n+2 layers:

  conv 3x3 16, then 3 stages of n basic blocks at 16, 32, 64 channels
  (32 -> 16 -> 8), global average pool, FC num_classes

with parameter-free option-A shortcuts: where the shape changes, the input is
subsampled with stride 2 and its new channels are zeros. resnet20/32/44/56/110
have n = 3/5/7/9/18; plain20..plain110 are the same stacks without shortcuts
(Fig. 6 left), the comparison showing that depth degrades plain nets.

Batch norm: `nn.BatchNorm(use_running_average=not train, momentum=0.9,
epsilon=1e-5)` (PyTorch's defaults); its running statistics are the
"batch_stats" collection, so train with mutable=["batch_stats"].
Convolutions use He initialization (§3.4, the "Delving deep" paper).
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from research.models import common, layers

_he_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # As torchvision.


def _conv(features: int, kernel: int, stride: int, x, name: str):
  """A bias-free conv with PyTorch's padding (k - 1) // 2, rounding down."""
  padding = common.window_padding(x.shape[1:3], kernel, stride, (kernel - 1) // 2, "floor")
  return nn.Conv(features, (kernel, kernel), stride, padding=padding, use_bias=False,
                 kernel_init=_he_init, name=name)(x)


def _bn(train: bool, name: str, scale_init=nn.initializers.ones):
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      scale_init=scale_init, name=name)


class Block(nn.Module):
  """A residual block, [B, H, W, C] -> [B, ceil(H/stride), ceil(W/stride), out].

  `bottleneck`: 1x1 (width) -> 3x3 (width) -> 1x1 (4 x width), else
  3x3 (width) -> 3x3 (width). `shortcut`: "B" (projection where shapes
  change), "A" (zero-padded identity), or None (a plain block, no shortcut).
  """
  width: int
  stride: int = 1
  bottleneck: bool = False
  shortcut: str | None = "B"
  stride_on_1x1: bool = False
  zero_init_residual: bool = False    # Last BN's scale 0: each block starts as identity.

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    s = self.stride
    if self.bottleneck:
      out_width = 4 * self.width
      specs = [(self.width, 1, s if self.stride_on_1x1 else 1),
               (self.width, 3, 1 if self.stride_on_1x1 else s),
               (out_width, 1, 1)]
    else:
      out_width = self.width
      specs = [(self.width, 3, s), (self.width, 3, 1)]
    y = x
    for i, (features, kernel, stride) in enumerate(specs, start=1):
      y = _conv(features, kernel, stride, y, name=f"conv{i}")
      last = i == len(specs)
      zero = last and self.zero_init_residual and self.shortcut is not None
      y = _bn(train, f"bn{i}", nn.initializers.zeros if zero else nn.initializers.ones)(y)
      if not last:
        y = nn.relu(y)
    if self.shortcut is None:
      return nn.relu(y)
    if s == 1 and x.shape[-1] == out_width:
      shortcut = x
    elif self.shortcut == "A":
      shortcut = x[:, ::s, ::s, :]   # Matches the conv's output size (rounding down).
      shortcut = jnp.pad(shortcut, [(0, 0)] * 3 + [(0, out_width - x.shape[-1])])
    else:
      shortcut = _bn(train, "shortcut_bn")(_conv(out_width, 1, s, x, name="shortcut_conv"))
    return nn.relu(y + shortcut)


class ResNet(nn.Module):
  """A ResNet. Input float [B, H, W, C] -> logits [B, num_classes].

  ImageNet layout when `cifar_stem` is False (7x7/2 stem and max pool),
  CIFAR layout (3x3/1 stem) otherwise. Features: stem, stage1..stageN (each
  stage's output), pooled (the [B, C] input of the classifier).
  """
  num_classes: int = 1000
  blocks: Sequence[int] = (2, 2, 2, 2)
  widths: Sequence[int] = (64, 128, 256, 512)
  bottleneck: bool = False
  shortcut: str | None = "B"          # "A", "B" or None (plain net).
  cifar_stem: bool = False
  stride_on_1x1: bool = False
  zero_init_residual: bool = False

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    features = {}
    if self.cifar_stem:
      x = _conv(self.widths[0], 3, 1, x, name="conv1")
    else:
      x = _conv(self.widths[0], 7, 2, x, name="conv1")
    x = nn.relu(_bn(train, "bn1")(x))
    if not self.cifar_stem:
      x = layers.MaxPool(3, 2, padding=common.window_padding(x.shape[1:3], 3, 2, 1, "floor"),
                         name="pool1")(x)
    features["stem"] = x
    for stage, (n, width) in enumerate(zip(self.blocks, self.widths), start=1):
      for i in range(n):
        x = Block(width, 2 if i == 0 and stage > 1 else 1, self.bottleneck, self.shortcut,
                  self.stride_on_1x1, self.zero_init_residual,
                  name=f"stage{stage}_block{i + 1}")(x, train=train)
      features[f"stage{stage}"] = x
    x = features["pooled"] = layers.GlobalAvgPool(name="avgpool")(x)
    logits = nn.Dense(self.num_classes, name="fc")(x)
    return logits, features


def cifar_resnet(depth: int, *, plain: bool = False) -> functools.partial:
  """The 6n+2-layer CIFAR-10 net of §4.2 (10 classes unless given), as a constructor.

  A partial of `ResNet`, so every field stays a keyword (and a
  `config.model.kwargs` key): cifar_resnet(20)(num_classes=100).

  Raises:
    ValueError: depth is not 6n + 2.
  """
  if (depth - 2) % 6:
    raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}.")
  n = (depth - 2) // 6
  return functools.partial(ResNet, num_classes=10, blocks=(n, n, n), widths=(16, 32, 64),
                           shortcut=None if plain else "A", cifar_stem=True)


_IMAGENET = {
    18: dict(blocks=(2, 2, 2, 2)),
    34: dict(blocks=(3, 4, 6, 3)),
    50: dict(blocks=(3, 4, 6, 3), bottleneck=True),
    101: dict(blocks=(3, 4, 23, 3), bottleneck=True),
    152: dict(blocks=(3, 8, 36, 3), bottleneck=True),
}

MODELS = {
    **{f"resnet{d}": functools.partial(ResNet, **cfg) for d, cfg in _IMAGENET.items()},
    **{f"resnet{d}": cifar_resnet(d) for d in (20, 32, 44, 56, 110)},
    **{f"plain{d}": cifar_resnet(d, plain=True) for d in (20, 32, 44, 56, 110)},
}
