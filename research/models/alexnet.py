"""AlexNet (Krizhevsky, Sutskever & Hinton 2012, "ImageNet classification with
deep convolutional neural networks", §3 and Fig. 2).

`alexnet_paper`, 227x227x3 input (the paper's "224" does not tile: the cs231n
notes' (224 - 11)/4 + 1 = 54.25):

  conv1 96 11x11/4 -> 55x55x96, ReLU, LRN, max pool 3x3/2 -> 27x27x96
  conv2 256 5x5 pad 2, 2 groups -> 27x27x256, ReLU, LRN, pool -> 13x13x256
  conv3 384 3x3 pad 1 (dense: "connected to all kernel maps in the second layer")
  conv4 384 3x3 pad 1, 2 groups;  conv5 256 3x3 pad 1, 2 groups, pool -> 6x6x256
  fc6 4096, fc7 4096 (ReLU, dropout 0.5 on their outputs, §4.2), fc8 1000

The two-GPU split (§3.2, Fig. 2) is `feature_group_count=2` on conv2, conv4
and conv5, whose kernels see only the maps on their own GPU; conv1 is split
too but each half sees the whole image, which is a dense conv. LRN (§3.3) and
overlapping 3x3/2 pooling (§3.4) as in the paper. 60,965,224 parameters (the
count of Caffe's bvlc_alexnet, the same layout).

`alexnet`: torchvision's single-stream variant (from Krizhevsky 2014, "One
weird trick"): 64/192/384/256/256 maps, no groups, no LRN, conv1 padding 2,
adaptive average pooling to 6x6, dropout before fc6 and fc7; 61,100,840
parameters. At 224 its conv1 gives (224 - 11 + 4)/4 + 1 = 55.25 and PyTorch
rounds down, so it uses `floor_mode` (the same output as padding (2, 1)).

`alexnet_small`: the paper's layout scaled to 28x28 (or 32x32) grayscale:
conv1 5x5/1, widths /4 and 4x narrower FC layers, floor rounding
(28 -> 28 -> pool 13 -> 13 -> pool 6 -> 6 -> pool 2). For the paper's
ablations: `activation` ("tanh": §3.1's saturating units), `pool_window=2`
(§3.4's non-overlapping s = z = 2 pooling: 28 -> 14 -> 7 -> 3, the sizes
3x3/2 pools give with `pool_rounding="ceil"`, so the two compare at equal
output sizes as in §3.4), `lrn=False` (§3.3), `dropout=0.0` (§4.2).

`alexnet_fig1`: §3.1's "four-layer convolutional neural network" of Fig. 1
(the paper gives no layers; this is a cuda-convnet-style CIFAR-10 net):
three 5x5 convs of 32, 32, 64 maps, each followed by the activation and a
3x3/2 max pool (28 -> 13 -> 6 -> 2), then a linear 10-way layer; no LRN, no
dropout, so that only the activation differs between its ReLU and tanh nets.
"""

import functools
from collections.abc import Sequence

import flax.linen as nn

from research.models import common, layers


class AlexNet(nn.Module):
  """AlexNet. Input float [B, H, W, C] (227x227x3 for the paper's shapes).

  Returns logits [B, num_classes] and features conv1..conv5 (after ReLU,
  before LRN and pooling), pool5 (fc6's input map) and fc6, fc7.

  `dense=True` (apply only, with the trained parameters): the FC layers run as
  convolutions (fc6 a 6 x 6 conv at the paper's sizes, fc7 and fc8 1 x 1,
  `common.classifier`), giving a class score map [B, H', W', num_classes], one
  position per window of the training size at stride 32 (the conv and pool
  strides' product). The adaptive pool of `pooled_size` is left out: it is the
  identity at the size the FC layers were trained on, and would squash a
  larger map instead of sliding fc6 over it.
  """
  num_classes: int = 1000
  widths: Sequence[int] = (96, 256, 384, 384, 256)
  groups: Sequence[int] = (1, 2, 1, 2, 2)   # The two-GPU split of §3.2.
  fc_width: int = 4096
  conv1_kernel: int = 11
  conv1_stride: int = 4
  conv1_padding: int = 0
  lrn: bool = True
  activation: str = "relu"         # "tanh": §3.1's comparison.
  pool_window: int = 3             # 3: overlapping 3x3/2 pools (§3.4); 2: s = z = 2.
  pool_rounding: str = ""          # The pools' rounding ("floor", "ceil"); "": as convs.
  # torchvision: AdaptiveAvgPool2d((6, 6)) before the classifier.
  pooled_size: int | None = None
  dropout: float = 0.5
  dropout_first: bool = False      # torchvision: dropout on fc6's and fc7's inputs.
  # False: every window must tile its input (the summary's check, hence 227).
  # True: round down like PyTorch.
  floor_mode: bool = False
  # §5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5 and the FC layers
  # ("accelerates the early stages of learning" by giving ReLUs positive
  # inputs), 0 elsewhere. Off by default: Flax's LeCun-normal init instead.
  paper_init: bool = False

  def _paper_init(self, *, bias_one: bool = False, fc: bool = False) -> dict:
    """Initializer keyword arguments for a conv layer (or, with fc, the classifier)."""
    if not self.paper_init:
      return {}
    weights = nn.initializers.normal(0.01)
    if fc:
      return {"kernel_init": weights, "hidden_bias_init": nn.initializers.ones}
    return {"kernel_init": weights,
            "bias_init": nn.initializers.ones if bias_one else nn.initializers.zeros}

  @nn.compact
  def __call__(self, x, *, train: bool = False, dense: bool = False):
    mode = "floor" if self.floor_mode else "exact"
    features = {}
    act = layers.activation(self.activation)
    kernels = (self.conv1_kernel, 5, 3, 3, 3)
    strides = (self.conv1_stride, 1, 1, 1, 1)
    paddings = (self.conv1_padding, 2, 1, 1, 1)
    for i, (width, groups, k, s, p) in enumerate(
        zip(self.widths, self.groups, kernels, strides, paddings), start=1):
      x = nn.Conv(width, (k, k), s, padding=common.window_padding(x.shape[1:3], k, s, p, mode),
                  feature_group_count=groups, name=f"conv{i}",
                  **self._paper_init(bias_one=i in (2, 4, 5)))(x)
      x = features[f"conv{i}"] = act(x)
      if self.lrn and i <= 2:
        x = layers.LocalResponseNorm(name=f"norm{i}")(x)
      if i in (1, 2, 5):
        w, rounding = self.pool_window, self.pool_rounding or mode
        x = layers.MaxPool(w, 2, padding=common.window_padding(x.shape[1:3], w, 2, 0, rounding),
                           name=f"pool{i}")(x)
    if self.pooled_size is not None and not dense:
      x = common.AdaptiveAvgPool(self.pooled_size, name="avgpool")(x)
    features["pool5"] = x  # fc6's input: R-CNN's box regressors read it (appendix C).
    logits = common.classifier(x, features, widths=(self.fc_width,) * 2,
                               num_classes=self.num_classes, dropout=self.dropout,
                               train=train, dropout_first=self.dropout_first,
                               activation=act, dense=dense, **self._paper_init(fc=True))
    return logits, features


class FourLayerCNN(nn.Module):
  """Fig. 1's four-layer net. Input float [B, 28, 28, C] -> logits [B, num_classes].

  Features: conv1..conv3 (after the activation, before pooling).
  """
  num_classes: int = 10
  widths: Sequence[int] = (32, 32, 64)
  activation: str = "relu"

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    del train  # No dropout or batch norm.
    act = layers.activation(self.activation)
    features = {}
    for i, width in enumerate(self.widths, start=1):
      x = features[f"conv{i}"] = act(nn.Conv(width, (5, 5), padding=2, name=f"conv{i}")(x))
      x = layers.MaxPool(3, 2, padding=common.window_padding(x.shape[1:3], 3, 2, 0, "floor"),
                         name=f"pool{i}")(x)
    logits = nn.Dense(self.num_classes, name="fc")(x.reshape(x.shape[0], -1))
    return logits, features


alexnet_paper = AlexNet
alexnet = functools.partial(
    AlexNet, widths=(64, 192, 384, 256, 256), groups=(1,) * 5, conv1_padding=2, lrn=False,
    pooled_size=6, dropout_first=True, floor_mode=True)
alexnet_small = functools.partial(
    AlexNet, num_classes=10, widths=(24, 64, 96, 96, 64), fc_width=1024,
    conv1_kernel=5, conv1_stride=1, conv1_padding=2, floor_mode=True)

MODELS = {"alexnet": alexnet, "alexnet_paper": alexnet_paper, "alexnet_small": alexnet_small,
          "alexnet_fig1": FourLayerCNN}
