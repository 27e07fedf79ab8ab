"""The All Convolutional Net (Springenberg, Dosovitskiy, Brox & Riedmiller 2014, §2-3).

"Striving for Simplicity" asks whether max pooling is needed at all. Its base
model C (Table 1) is two stages of two 3x3 convs with a 3x3/2 max pool after
each, then a 3x3 conv, two 1x1 convs and global averaging; Table 2 derives
three nets from it by changing only what sits where each pool was:

  downsample   name              stage (96 maps, then 192)
  "pool"       Model C           conv 3x3, conv 3x3, max pool 3x3/2
  "stride"     Strided-CNN-C     conv 3x3, conv 3x3 with stride 2 (the pool removed)
  "conv_pool"  ConvPool-CNN-C    conv 3x3, conv 3x3, conv 3x3, max pool 3x3/2
  "conv"       All-CNN-C         conv 3x3, conv 3x3, conv 3x3 with stride 2

and the same head for all four (Table 1):

  conv 3x3 192 (unpadded: 8x8 -> 6x6 on CIFAR-10), conv 1x1 192, conv 1x1 10,
  global averaging over the 6x6 maps, softmax.

Every conv is followed by a ReLU, the last 1x1 conv included (Table 1 lists
"1x1 conv. 10 ReLU"; `relu_class_maps=False` drops it). ConvPool-CNN-C is the
control for All-CNN-C: the same parameters, but the extra conv keeps stride 1
and the max pool stays, so a difference between the two is the pooling's.

Dropout (§3.2): 20% on the input image, 50% after each pool or after the
layer that replaces it (for Strided-CNN-C, after the strided conv).

Sizes: padded 3x3 convs keep the size; pools round up as in Caffe
(ceil((32 - 3) / 2) + 1 = 16) and the stride-2 convs pad 1 (16 too), so on
32x32 inputs the stages give 32 -> 16 -> 8 and the head's unpadded conv 6x6,
as the paper says; on 28x28 Fashion-MNIST 28 -> 14 -> 7 -> 5x5.

Parameters at full width on 32x32x3 (weights + biases, counted by hand in
tests/test_allcnn.py): Model C and Strided-CNN-C 954,730; ConvPool-CNN-C and
All-CNN-C 1,369,738 (Table 3 lists about 1.3M and 1.4M).

`width` multiplies every channel count but the classes' (96, 192 -> 24, 48
at 0.25): the CPU-scale nets of `experiments/allcnn.py`.
"""

import functools
from collections.abc import Sequence

import flax.linen as nn

from research.models import common, layers

DOWNSAMPLING = ("pool", "stride", "conv_pool", "conv")


class AllConvNet(nn.Module):
  """Model C and its Table 2 variants. Input float [B, H, W, C] -> logits [B, num_classes].

  Features: stage1, stage2 (after each downsampling, before its dropout) and
  class_maps ([B, h, w, num_classes], before the global average).

  Raises:
    ValueError: an unknown `downsample` (at the first call).
  """
  num_classes: int = 10
  downsample: str = "conv"          # One of DOWNSAMPLING; "conv" is All-CNN-C.
  widths: Sequence[int] = (96, 192)  # The two stages' maps; the head uses widths[-1].
  width: float = 1.0                 # Channel multiplier (1.0: the paper's nets).
  input_dropout: float = 0.2
  dropout: float = 0.5
  relu_class_maps: bool = True

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    if self.downsample not in DOWNSAMPLING:
      raise ValueError(f"Unknown downsample {self.downsample!r}; choose one of {DOWNSAMPLING} "
                       "(pool: Model C, stride: Strided-CNN-C, conv_pool: ConvPool-CNN-C, "
                       "conv: All-CNN-C).")

    def conv(x, n, k=3, stride=1, pad=1, *, name):
      return nn.relu(nn.Conv(common.scaled(n, self.width), (k, k), strides=stride,
                             padding=pad, name=name)(x))

    features = {}
    x = nn.Dropout(self.input_dropout, deterministic=not train)(x)
    for i, n in enumerate(self.widths, start=1):
      x = conv(x, n, name=f"conv{i}_1")
      # The layer before the pool gets stride 2 in Strided-CNN-C (Table 2).
      x = conv(x, n, stride=2 if self.downsample == "stride" else 1, name=f"conv{i}_2")
      if self.downsample in ("conv_pool", "conv"):
        x = conv(x, n, stride=2 if self.downsample == "conv" else 1, name=f"conv{i}_3")
      if self.downsample in ("pool", "conv_pool"):
        x = layers.MaxPool(3, 2, padding=common.window_padding(x.shape[1:3], 3, 2, 0, "ceil"),
                           name=f"pool{i}")(x)
      features[f"stage{i}"] = x
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = conv(x, self.widths[-1], pad=0, name="conv3_1")   # Unpadded: 8x8 -> 6x6.
    x = conv(x, self.widths[-1], k=1, pad=0, name="conv3_2")
    x = nn.Conv(self.num_classes, (1, 1), name="conv3_3")(x)
    if self.relu_class_maps:
      x = nn.relu(x)
    features["class_maps"] = x
    return layers.GlobalAvgPool(name="avg")(x), features


def pool_replacement_params(widths: Sequence[int] = (96, 192)) -> int:
  """Weights and biases that All-CNN-C (and ConvPool-CNN-C) add to Model C: one 3x3
  conv from c to c maps per stage of width c (Table 2); 415,008 at the paper's widths."""
  return sum(9 * c * c + c for c in widths)


MODELS = {
    # One dataclass with every field, so config.model.kwargs lists them all;
    # the others are the same net with Table 2's other downsampling, for summaries.
    "allcnn_c": AllConvNet,
    "model_c": functools.partial(AllConvNet, downsample="pool"),
    "strided_cnn_c": functools.partial(AllConvNet, downsample="stride"),
    "convpool_cnn_c": functools.partial(AllConvNet, downsample="conv_pool"),
}
