"""ZF Net (Zeiler & Fergus 2013, "Visualizing and understanding convolutional
networks", §3 and Fig. 3).

AlexNet with the changes the paper's visualizations motivated (§4.1): a 7x7
stride-2 first layer instead of 11x11 stride 4, stride 2 in layer 2, and
dense connections in layers 3-5 (a single GPU, no two-group split). Fig. 3,
224x224x3 input:

  layer1 96 7x7/2 -> 110x110x96, ReLU, max pool 3x3/2 -> 55x55, contrast norm
  layer2 256 5x5/2 -> 26x26x256, ReLU, max pool 3x3/2 -> 13x13, contrast norm
  layer3 384 3x3/1 -> 13x13x384;  layer4 384 3x3/1 -> 13x13x384
  layer5 256 3x3/1 -> 13x13x256, max pool 3x3/2 -> 6x6x256
  layer6 4096, layer7 4096 (dropout 0.5, §3), output num_classes

The paper gives no paddings; these reproduce Fig. 3's shapes, with the
rounding of Caffe-era code (convolutions round down, pooling rounds up):
  layer1: pad 1, floor((224 - 7 + 2)/2) + 1 = 110 (explicitly pad (1, 0));
  pool1, pool2: no pad, ceil((110 - 3)/2) + 1 = 55, ceil((26 - 3)/2) + 1 = 13
    (explicitly pad (0, 1) with -inf);
  layer2: no pad, (55 - 5)/2 + 1 = 26 exactly; layers 3-5: pad 1;
  pool5: (13 - 3)/2 + 1 = 6 exactly.
"Contrast normalization" across feature maps is the LRN of AlexNet §3.3.
Training also renormalizes any first-layer filter whose RMS exceeds 0.1
(§3); that is the trainer's business, not the model's.

For the deconvnet of §2.1, `features` holds each layer's rectified output
before pooling (layer1..layer5), and the pools are `layers.MaxPool` modules
named pool1, pool2, pool5, whose switches can be recovered from those inputs.

`zfnet_small`: the same five layers scaled for 28x28 (or 32x32) grayscale:
layer1 5x5/1 pad 2, layer2 3x3/1 pad 1, widths /4, FC 1024
(28 -> 28 -> pool 14 -> 14 -> pool 7 -> 7 -> pool 3).
"""

import functools
from collections.abc import Sequence

import flax.linen as nn

from research.models import common, layers


class ZFNet(nn.Module):
  """ZF Net. Input float [B, 224, 224, C] (Fig. 3) -> logits [B, num_classes].

  Features: layer1..layer5 (after ReLU, before pooling), fc6 and fc7 (the
  paper's layers 6 and 7, after ReLU).
  """
  num_classes: int = 1000
  widths: Sequence[int] = (96, 256, 384, 384, 256)
  fc_width: int = 4096
  conv1_kernel: int = 7
  conv1_stride: int = 2
  conv1_padding: int = 1
  conv2_kernel: int = 5
  conv2_stride: int = 2
  conv2_padding: int = 0
  lrn: bool = True
  dropout: float = 0.5

  @nn.compact
  def __call__(self, x, *, train: bool = False, dense: bool = False):
    # dense: the FC layers as convolutions, a score map per 32-pixel step (VGG's docstring).
    features = {}
    kernels = (self.conv1_kernel, self.conv2_kernel, 3, 3, 3)
    strides = (self.conv1_stride, self.conv2_stride, 1, 1, 1)
    paddings = (self.conv1_padding, self.conv2_padding, 1, 1, 1)
    for i, (width, k, s, p) in enumerate(zip(self.widths, kernels, strides, paddings), start=1):
      x = nn.Conv(width, (k, k), s, padding=common.window_padding(x.shape[1:3], k, s, p, "floor"),
                  name=f"conv{i}")(x)
      x = features[f"layer{i}"] = nn.relu(x)
      if i in (1, 2, 5):
        x = layers.MaxPool(3, 2, padding=common.window_padding(x.shape[1:3], 3, 2, 0, "ceil"),
                           name=f"pool{i}")(x)
      if self.lrn and i <= 2:
        x = layers.LocalResponseNorm(name=f"norm{i}")(x)
    logits = common.classifier(x, features, widths=(self.fc_width,) * 2,
                               num_classes=self.num_classes, dropout=self.dropout, train=train,
                               dense=dense)
    return logits, features


zfnet_small = functools.partial(
    ZFNet, num_classes=10, widths=(24, 64, 96, 96, 64), fc_width=1024,
    conv1_kernel=5, conv1_stride=1, conv1_padding=2,
    conv2_kernel=3, conv2_stride=1, conv2_padding=1)

MODELS = {"zfnet": ZFNet, "zfnet_small": zfnet_small}
