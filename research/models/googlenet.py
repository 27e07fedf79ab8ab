"""GoogLeNet / Inception v1 (Szegedy et al. 2014, "Going deeper with
convolutions", §4-5, Table 1 and Fig. 3).

224x224x3 input (Table 1's output sizes):

  conv 7x7/2 64 -> 112x112x64, max pool 3x3/2 -> 56x56, LRN
  conv 1x1 64, conv 3x3 192 -> 56x56x192, LRN, max pool 3x3/2 -> 28x28
  inception 3a, 3b -> 28x28x480, max pool 3x3/2 -> 14x14
  inception 4a..4e -> 14x14x832, max pool 3x3/2 -> 7x7
  inception 5a, 5b -> 7x7x1024, average pool -> 1024, dropout 0.4, linear

An inception module (Fig. 2b) concatenates four branches: 1x1; 1x1 reduce then
3x3; 1x1 reduce then 5x5; 3x3/1 max pool then a 1x1 "pool proj". The 1x1
reductions before the expensive convolutions are what keep the net at 1.5
GMACs (§4). Every convolution is followed by ReLU. Pools "3x3/2 (S)" pad like
Caffe's ceil rounding (112 -> 56, 14 -> 7); the 7x7/2 stem rounds down
(pad 3: 224 -> 112). The paper gives no LRN constants; we use AlexNet's.
(torchvision differs in ways that change no parameter count: no LRN, a 2x2/2
pool before 5a, dropout 0.2; `googlenet_bn` takes its dropout and LRN choice.)

Auxiliary classifiers (§5) on the outputs of 4a and 4d, only when train=True:
5x5/3 average pool (14x14 -> 4x4), 1x1 conv 128, FC 1024, dropout 0.7, linear.
Their losses are added with weight 0.3 during training and they are
discarded at inference; here their parameters exist only in a train=True
init, so initialize with train=True to train them, and apply with
train=False (which ignores them) to evaluate.

Parameter counts without the aux heads (pinned in tests):
  googlenet     (the paper: conv biases, no batch norm, 5x5 branch) 6,998,552
  googlenet_bn  (torchvision: conv without bias + batch norm (eps 1e-3), and
                 3x3 where the paper has 5x5, torchvision's documented
                 "known bug" kept for weight compatibility)          6,624,904
6,624,904 is the count torchvision reports for googlenet(aux_logits=False);
it needs both its batch norm and its 3x3 branch. The aux heads add 6,379,984
(googlenet_bn; torchvision's 13,004,888 total).

`googlenet_small`: all widths x0.25 and, for 28x28 (or 32x32) inputs, a stem
without its stride and pools (3x3/1 first conv), so inception 3a sees 28x28 as
it does in the full net; the aux heads still pool 14x14 -> 4x4.
`small_input_pool=True` keeps the stem's second pool (28 -> 14: inception 3 at
14x14, 4 at 7x7, 5 at 3x3), a quarter of the MACs, for CPU training.

`plain_width > 0` makes a plain baseline of the same layout: each inception
module becomes one 3x3 conv + ReLU whose width is `plain_width` times the
module's output width (choose it to match the inception net's MACs or
parameters); stem, pools, aux heads and classifier are unchanged.
"""

import functools
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from research.models import AUX_LOGITS, common, layers

# Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


class ConvUnit(nn.Module):
  """Conv (same padding, stride 1 unless given) + [batch norm] + ReLU.

  With batch norm the conv has no bias (torchvision's BasicConv2d).
  """
  features: int
  kernel: int
  stride: int = 1
  padding: Sequence[tuple[int, int]] | None = None   # Default: (k - 1) // 2 each side.
  batch_norm: bool = False

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    k = self.kernel
    padding = self.padding if self.padding is not None else (k - 1) // 2
    x = nn.Conv(self.features, (k, k), self.stride, padding=padding,
                use_bias=not self.batch_norm, name="conv")(x)
    if self.batch_norm:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-3, name="bn")(x)
    return nn.relu(x)


class Inception(nn.Module):
  """[B, H, W, C] -> [B, H, W, n1x1 + n3x3 + n5x5 + pool_proj] (Fig. 2b)."""
  widths: Sequence[int]          # An INCEPTION row.
  branch3_kernel: int = 5
  batch_norm: bool = False

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    n1, r3, n3, r5, n5, proj = self.widths
    unit = functools.partial(ConvUnit, batch_norm=self.batch_norm)
    b1 = unit(n1, 1, name="1x1")(x, train=train)
    b2 = unit(n3, 3, name="3x3")(unit(r3, 1, name="3x3_reduce")(x, train=train), train=train)
    b3 = unit(n5, self.branch3_kernel, name="5x5")(
        unit(r5, 1, name="5x5_reduce")(x, train=train), train=train)
    b4 = layers.MaxPool(3, 1, padding=((1, 1), (1, 1)), name="pool")(x)
    b4 = unit(proj, 1, name="pool_proj")(b4, train=train)
    return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class AuxClassifier(nn.Module):
  """§5: [B, 14, 14, C] -> avg pool 5x5/3 -> 1x1 conv -> FC -> dropout -> [B, num_classes]."""
  num_classes: int
  conv_width: int = 128
  fc_width: int = 1024
  dropout: float = 0.7
  batch_norm: bool = False

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    x = layers.AvgPool(5, 3, padding=common.window_padding(x.shape[1:3], 5, 3, 0, "floor"),
                       name="pool")(x)
    x = ConvUnit(self.conv_width, 1, batch_norm=self.batch_norm, name="conv")(x, train=train)
    x = nn.relu(nn.Dense(self.fc_width, name="fc")(x.reshape(x.shape[0], -1)))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, name="logits")(x)


class GoogLeNet(nn.Module):
  """GoogLeNet. Input float [B, 224, 224, C] -> logits [B, num_classes].

  Features: stem (the 28x28x192 input of 3a), inception_3a..inception_5b, and
  when train=True the auxiliary classifiers' logits
  features[models.AUX_LOGITS] = {"aux1": [B, num_classes], "aux2": ...}.
  """
  num_classes: int = 1000
  width: float = 1.0             # Multiplies every channel count.
  batch_norm: bool = False
  branch3_kernel: int = 5        # torchvision: 3.
  lrn: bool = True               # torchvision: none (batch norm instead).
  dropout: float = 0.4           # torchvision: 0.2.
  aux_dropout: float = 0.7
  small_input: bool = False      # 3x3/1 first conv and no stem pools (28x28 images).
  small_input_pool: bool = False  # small_input, but keep pool2 (28 -> 14).
  plain_width: float = 0.0       # > 0: one 3x3 conv per module, this x its output width.

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    c = lambda n: common.scaled(n, self.width)  # noqa: E731
    unit = functools.partial(ConvUnit, batch_norm=self.batch_norm)
    pool = lambda x, name: layers.MaxPool(  # noqa: E731
        3, 2, padding=common.window_padding(x.shape[1:3], 3, 2, 0, "ceil"), name=name)(x)
    features = {}

    if self.small_input:
      x = unit(c(64), 3, name="conv1")(x, train=train)
    else:
      x = unit(c(64), 7, 2, padding=common.window_padding(x.shape[1:3], 7, 2, 3, "floor"),
               name="conv1")(x, train=train)
      x = pool(x, "pool1")
    if self.lrn:
      x = layers.LocalResponseNorm(name="norm1")(x)
    x = unit(c(64), 1, name="conv2_reduce")(x, train=train)
    x = unit(c(192), 3, name="conv2")(x, train=train)
    if self.lrn:
      x = layers.LocalResponseNorm(name="norm2")(x)
    if not self.small_input or self.small_input_pool:
      x = pool(x, "pool2")
    features["stem"] = x

    for name, widths in INCEPTION.items():
      if name in ("4a", "5a"):
        x = pool(x, f"pool{name[0]}")
      if self.plain_width:
        n1, _, n3, _, n5, proj = widths
        plain = common.scaled(n1 + n3 + n5 + proj, self.width * self.plain_width)
        x = features[f"plain_{name}"] = unit(plain, 3, name=f"plain_{name}")(x, train=train)
      else:
        x = features[f"inception_{name}"] = Inception(
            tuple(c(n) for n in widths), self.branch3_kernel, self.batch_norm,
            name=f"inception_{name}")(x, train=train)
      if train and name in ("4a", "4d"):
        aux = "aux1" if name == "4a" else "aux2"
        features.setdefault(AUX_LOGITS, {})[aux] = AuxClassifier(
            self.num_classes, c(128), c(1024), self.aux_dropout, self.batch_norm,
            name=aux)(x, train=train)

    x = layers.GlobalAvgPool(name="avgpool")(x)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    logits = nn.Dense(self.num_classes, name="logits")(x)
    return logits, features


def aux_parameter_count(params) -> int:
  """Parameters of the auxiliary heads (present after a train=True init)."""
  return sum(math.prod(v.shape)
             for head in ("aux1", "aux2") for v in jax.tree.leaves(params.get(head, {})))


MODELS = {
    "googlenet": GoogLeNet,
    "googlenet_bn": functools.partial(GoogLeNet, batch_norm=True, branch3_kernel=3, lrn=False,
                                      dropout=0.2),
    "googlenet_small": functools.partial(GoogLeNet, num_classes=10, width=0.25, small_input=True),
}
