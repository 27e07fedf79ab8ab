"""Network in Network (Lin, Chen & Yan 2013, §3 and §4.2).

An mlpconv block (§3.1) is a spatial convolution followed by two 1x1
convolutions, all with ReLU: a small MLP slid over the image. Three blocks,
with 3x3/2 max pooling and dropout 0.5 (§4.2) between them; the last block
outputs one map per class and global average pooling turns the maps into
logits (§3.2): no fully connected layers, so nothing there to overfit.

`nin_cifar10` (32x32x3 input): the widths of the authors' released CIFAR-10
model, which the paper does not list:

  conv 5x5 192, 1x1 160, 1x1 96    -> 32x32, max pool 3x3/2 -> 16x16, dropout
  conv 5x5 192, 1x1 192, 1x1 192   -> 16x16, max pool 3x3/2 -> 8x8, dropout
  conv 3x3 192, 1x1 192, 1x1 10    -> 8x8x10, global average pool -> 10

Pools round up as in Caffe (ceil((32 - 3)/2) + 1 = 16); convs pad to keep the
size. The released model averages rather than max-pools after the second
block; the paper's text ("followed by a spatial max pooling layer") says max,
which we follow. The class maps get no ReLU here, so the averaged logits can
be negative.

`nin_small`: the same for 28x28 grayscale at half width
(28 -> pool 14 -> pool 7).

`head="fc"`: §4.6's comparison, the global average pooling replaced by a
fully connected layer from the flattened class maps to the logits ("the
other parts of the model remain the same"), with dropout `fc_dropout` on
its input (§4.6 tries 0 and 0.5).
"""

import functools
from collections.abc import Sequence

import flax.linen as nn

from research.models import common, layers


class MLPConv(nn.Module):
  """[B, H, W, C] -> [B, H, W, widths[-1]]: a k x k conv, then 1x1 convs (§3.1)."""
  widths: Sequence[int]
  kernel: int
  relu_last: bool = True

  @nn.compact
  def __call__(self, x):
    k = self.kernel
    for i, width in enumerate(self.widths):
      size = k if i == 0 else 1
      x = nn.Conv(width, (size, size), padding=(size - 1) // 2,
                  name="conv" if i == 0 else f"mlp{i}")(x)
      if self.relu_last or i < len(self.widths) - 1:
        x = nn.relu(x)
    return x


class NiN(nn.Module):
  """Network in Network. Input float [B, H, W, C] -> logits [B, num_classes].

  Features: block1..block3, the mlpconv outputs (block3 = the class maps).
  """
  num_classes: int = 10
  # The last block's final width is num_classes.
  widths: Sequence[Sequence[int]] = ((192, 160, 96), (192, 192, 192), (192, 192))
  kernels: Sequence[int] = (5, 5, 3)
  dropout: float = 0.5
  head: str = "gap"              # "gap" (§3.2) or "fc" (§4.6's comparison).
  fc_dropout: float = 0.0        # head="fc": dropout on the FC layer's input.

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    features = {}
    n = len(self.widths)
    for i, (widths, kernel) in enumerate(zip(self.widths, self.kernels), start=1):
      last = i == n
      if last:
        widths = (*widths, self.num_classes)
      x = features[f"block{i}"] = MLPConv(tuple(widths), kernel, relu_last=not last,
                                          name=f"block{i}")(x)
      if not last:
        x = layers.MaxPool(3, 2, padding=common.window_padding(x.shape[1:3], 3, 2, 0, "ceil"),
                           name=f"pool{i}")(x)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
    if self.head == "gap":
      logits = layers.GlobalAvgPool(name="avgpool")(x)
    elif self.head == "fc":
      x = nn.Dropout(self.fc_dropout, deterministic=not train)(x.reshape(x.shape[0], -1))
      logits = nn.Dense(self.num_classes, name="fc")(x)
    else:
      raise ValueError(f"Unknown NiN head {self.head!r}; choose 'gap' or 'fc'.")
    return logits, features


MODELS = {
    "nin_cifar10": NiN,
    "nin_small": functools.partial(NiN, widths=((96, 80, 48), (96, 96, 96), (96, 96))),
}
