"""VGG nets (Simonyan & Zisserman 2014, "Very deep convolutional networks for
large-scale image recognition", §2 and Table 1).

Five stages of 3x3 stride-1 pad-1 convolutions with ReLU, each followed by a
2x2/2 max pool (224 -> 112 -> 56 -> 28 -> 14 -> 7), widths 64-128-256-512-512,
then FC-4096, FC-4096 (dropout 0.5 on both, §3.1) and FC-num_classes.
Table 1's configurations, as the kernel sizes of each stage's convolutions:

  A (vgg11)      1, 1, 2, 2, 2 convs of 3x3            133M params (Table 2)
  A-LRN          A with LRN after the first conv       133M
  B (vgg13)      2, 2, 2, 2, 2                         133M
  C (vgg16_c)    B plus a 1x1 conv ending stages 3-5   134M
  D (vgg16)      2, 2, 3, 3, 3                         138M
  E (vgg19)      2, 2, 4, 4, 4                         144M

Stacked 3x3 convolutions see what one larger filter would (two: 5x5, three:
7x7, §2.3) with fewer parameters and more nonlinearities; C's 1x1 convs add
nonlinearity without changing the receptive field.

Conv weights use Glorot initialization, which §3.1 reports trains the deep
configurations without the paper's staged pre-training from A.

`vgg_small`: configuration A (any other via `config`) with 4x narrower
stages and 256-wide FC layers for 28x28 grayscale, zero-padded to 32x32 (as
LeNet does) so the five pools divide evenly: 32 -> 16 -> 8 -> 4 -> 2 -> 1.
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from research.models import common, layers

CONFIGS = {
    "A": ((3,), (3,), (3, 3), (3, 3), (3, 3)),
    "B": ((3, 3), (3, 3), (3, 3), (3, 3), (3, 3)),
    "C": ((3, 3), (3, 3), (3, 3, 1), (3, 3, 1), (3, 3, 1)),
    "D": ((3, 3), (3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
    "E": ((3, 3), (3, 3), (3, 3, 3, 3), (3, 3, 3, 3), (3, 3, 3, 3)),
}


class VGG(nn.Module):
  """A VGG net. Input float [B, 224, 224, C] -> logits [B, num_classes].

  Features: every conv's rectified output, named convS_I as in the paper's
  released models (stage S, layer I, e.g. conv5_3), and fc6, fc7.

  `dense=True` (§3.2's dense evaluation; apply only, with the trained
  parameters): the FC layers run as convolutions (fc6 a 7 x 7 conv, fc7 and
  fc8 1 x 1, `common.classifier`), so an image of any size >= 224 gives a class
  score map [B, (H - 224) // 32 + 1, (W - 224) // 32 + 1, num_classes]: at
  (i, j), the scores of the 224 x 224 window at (32 i, 32 j), its convolutions
  padded by that window's neighbourhood instead of zeros (§3.2's point about
  boundary conditions).
  """
  num_classes: int = 1000
  config: str = "D"
  widths: Sequence[int] = (64, 128, 256, 512, 512)
  fc_width: int = 4096
  lrn: bool = False            # A-LRN: LRN (AlexNet's) after conv1_1.
  dropout: float = 0.5
  pad_input: int = 0           # Zero padding on each side of the image.

  @nn.compact
  def __call__(self, x, *, train: bool = False, dense: bool = False):
    if self.config not in CONFIGS:
      raise ValueError(f"Unknown VGG configuration {self.config!r}; "
                       f"choose one of {sorted(CONFIGS)}.")
    if self.pad_input:
      p = self.pad_input
      x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    features = {}
    init = nn.initializers.xavier_uniform()
    for stage, (kernels, width) in enumerate(zip(CONFIGS[self.config], self.widths), start=1):
      for i, k in enumerate(kernels, start=1):
        name = f"conv{stage}_{i}"
        x = nn.Conv(width, (k, k), padding=(k - 1) // 2, kernel_init=init, name=name)(x)
        x = features[name] = nn.relu(x)
        if self.lrn and name == "conv1_1":
          x = layers.LocalResponseNorm(name="norm1")(x)
      x = layers.MaxPool(2, name=f"pool{stage}")(x)
    logits = common.classifier(x, features, widths=(self.fc_width,) * 2,
                               num_classes=self.num_classes, dropout=self.dropout, train=train,
                               dense=dense)
    return logits, features


class ConvStack(nn.Module):
  """§2.3's comparison: bias-free stride-1 'same' convs of `width` maps, with ReLUs unless `linear`."""
  kernels: tuple[int, ...]
  width: int
  linear: bool = False

  @nn.compact
  def __call__(self, x):
    for i, k in enumerate(self.kernels):
      x = nn.Conv(self.width, (k, k), padding=(k - 1) // 2, use_bias=False, name=f"conv{i}")(x)
      x = x if self.linear else nn.relu(x)
    return x


MODELS = {
    "vgg11": functools.partial(VGG, config="A"),
    "vgg11_lrn": functools.partial(VGG, config="A", lrn=True),
    "vgg13": functools.partial(VGG, config="B"),
    "vgg16_c": functools.partial(VGG, config="C"),
    "vgg16": functools.partial(VGG, config="D"),
    "vgg19": functools.partial(VGG, config="E"),
    "vgg_small": functools.partial(VGG, config="A", num_classes=10, widths=(16, 32, 64, 128, 128),
                                   fc_width=256, pad_input=2),
}
