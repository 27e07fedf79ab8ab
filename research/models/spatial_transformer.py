"""Spatial transformer networks (Jaderberg et al. 2015, §3 and Appendix A).

`SpatialTransformer` is the module of §3: a localisation network regresses the
transformation parameters from its input, a grid generator turns them into
sampling points (`ops.spatial_transformer`) and a bilinear sampler warps the
input. It takes any localisation network (a Module mapping [B, H, W, C] to
features) and works on images or on feature maps between layers.

The distorted-MNIST models of §4.1 / Table 1 (left), as we read Appendix A:
  - FCN: 2 hidden layers of 128 ReLU units and a softmax layer.
  - CNN: 9x9 conv (32) -> 2x2 max pool -> 7x7 conv (32) -> 2x2 max pool ->
    softmax layer, "valid" convolutions.
  - ST-FCN / ST-CNN: the same with a spatial transformer at the input. The
    ST-FCN localisation net is an FCN of 3 layers of 32 units; the ST-CNN one
    is 2x2 max pool -> 5x5 conv (20) -> 2x2 max pool -> 5x5 conv (20) -> a
    small fully connected layer (width not verified against the paper: 32 here,
    a field) -> the regression layer.
  - Transformations: affine (6 parameters), projective (8) or a 16-point thin
    plate spline on a regular 4x4 grid (32), `transform`.
Filter counts and widths are fields; the defaults are our reading of the
appendix, not checked against the paper's text. Everything is "valid"
convolution and adapts to the input size (28x28, 42x42 RTS, 60x60 cluttered);
`st_downsample=2` makes the transformer output half-resolution, as the paper
does for its larger (RTS, cluttered) inputs.
"""

from collections.abc import Sequence
import inspect

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research.models import layers
from research.ops import spatial_transformer as st_ops

TRANSFORMS = ("affine", "projective", "tps")


def num_transform_params(transform: str, tps_grid_size: int = 4) -> int:
  """Outputs of the regression layer for `transform`."""
  if transform == "affine":
    return 6
  if transform == "projective":
    return 8  # The ninth entry of the homography is fixed to 1.
  if transform == "tps":
    return 2 * tps_grid_size ** 2
  raise ValueError(f"Unknown transform {transform!r}; choose one of {TRANSFORMS}.")


def identity_params(transform: str, tps_grid_size: int = 4) -> np.ndarray:
  """The regression layer's bias that makes the transformer the identity (§4.1)."""
  n = num_transform_params(transform, tps_grid_size)
  if transform == "tps":
    return np.zeros(n, np.float32)  # Offsets of the control points.
  out = np.zeros(n, np.float32)
  out[[0, 4]] = 1.0  # Rows (1, 0, 0) and (0, 1, 0), then (0, 0) for projective.
  return out


def transform_grid(params: jax.Array, transform: str, out_hw: tuple[int, int],
                   tps_grid_size: int = 4) -> tuple[jax.Array, jax.Array]:
  """Regressed parameters [B, P] -> (theta, grid [B, H, W, 2]).

  theta is [B, 2, 3] (affine), [B, 3, 3] (projective) or the control point
  offsets [B, K, 2] (tps).
  """
  b = params.shape[0]
  if transform == "affine":
    theta = params.reshape(b, 2, 3)
    return theta, st_ops.affine_grid(theta, out_hw)
  if transform == "projective":
    theta = jnp.concatenate([params, jnp.ones((b, 1), params.dtype)], -1).reshape(b, 3, 3)
    return theta, st_ops.projective_grid(theta, out_hw)
  if transform == "tps":
    theta = params.reshape(b, tps_grid_size ** 2, 2)
    return theta, st_ops.tps_grid(theta, out_hw, tps_grid_size)
  raise ValueError(f"Unknown transform {transform!r}; choose one of {TRANSFORMS}.")


def _call(module: nn.Module, x, train: bool):
  """Calls `module(x)`, passing `train` only to modules that take it."""
  if "train" in inspect.signature(type(module).__call__).parameters:
    return module(x, train=train)
  return module(x)


class SpatialTransformer(nn.Module):
  """Localisation net -> parameters -> grid -> bilinear sampling (§3, Fig. 2).

  [B, H, W, C] -> ([B, H', W', C], theta); theta is also sown as
  intermediates/"theta". The regression layer starts with a zero kernel and
  the identity as bias, so at initialisation the output is the input
  (resampled to out_hw).
  """
  localization: nn.Module        # [B, H, W, C] -> features [B, ...].
  transform: str = "affine"      # "affine" | "projective" | "tps".
  out_hw: tuple[int, int] | None = None  # Default: the input's size.
  tps_grid_size: int = 4

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    features = _call(self.localization, x, train)
    features = features.reshape(features.shape[0], -1)
    identity = identity_params(self.transform, self.tps_grid_size)
    params = nn.Dense(
        len(identity), kernel_init=nn.initializers.zeros,
        bias_init=lambda key, shape, dtype=jnp.float32: jnp.asarray(identity, dtype),
        dtype=jnp.float32, name="regressor")(features)
    out_hw = tuple(self.out_hw or x.shape[1:3])
    theta, grid = transform_grid(params, self.transform, out_hw, self.tps_grid_size)
    self.sow("intermediates", "theta", theta)
    # The regression and the grid are float32 even under bfloat16 compute
    # (research/train/precision.py): bfloat16 coordinates would be off by up
    # to a pixel on a 60x60 input.
    return st_ops.bilinear_sample(x, grid), theta


class FCNLocalization(nn.Module):
  """Flatten -> Dense ReLU layers: [B, H, W, C] -> [B, hidden[-1]]."""
  hidden: Sequence[int] = (32, 32, 32)

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    x = x.reshape(x.shape[0], -1)
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, name=f"fc{i + 1}")(x))
    return x


class CNNLocalization(nn.Module):
  """[pool] -> (conv ReLU -> pool) per filter count -> Dense ReLU: [B, H, W, C] -> [B, F]."""
  filters: Sequence[int] = (20, 20)
  kernel: int = 5
  pool_input: bool = True  # Look at a half-resolution input: cheaper, and enough to localise.
  hidden: Sequence[int] = (32,)

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    if self.pool_input:
      x = layers.MaxPool(2, padding="SAME", name="pool0")(x)
    for i, f in enumerate(self.filters):
      x = nn.relu(nn.Conv(f, (self.kernel,) * 2, padding="VALID", name=f"conv{i + 1}")(x))
      # "SAME" (ceil) pooling: on a 28x28 input the second conv leaves 1x1.
      x = layers.MaxPool(2, padding="SAME", name=f"pool{i + 1}")(x)
    x = x.reshape(x.shape[0], -1)
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, name=f"fc{i + 1}")(x))
    return x


class FCN(nn.Module):
  """Fully connected baseline: [B, H, W, C] -> logits [B, num_classes]."""
  num_classes: int = 10
  hidden: Sequence[int] = (128, 128)
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    features = {}
    x = x.reshape(x.shape[0], -1)
    for i, width in enumerate(self.hidden):
      x = features[f"fc{i + 1}"] = nn.relu(nn.Dense(width, name=f"fc{i + 1}")(x))
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, name="output")(x), features


class CNN(nn.Module):
  """Convolutional baseline: (conv ReLU -> 2x2 max pool) per layer -> softmax layer."""
  num_classes: int = 10
  filters: Sequence[int] = (32, 32)
  kernels: Sequence[int] = (9, 7)
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    features = {}
    for i, (f, k) in enumerate(zip(self.filters, self.kernels, strict=True)):
      name = f"conv{i + 1}"
      x = features[name] = nn.relu(nn.Conv(f, (k, k), padding="VALID", name=name)(x))
      # "SAME" (ceil) pooling: on a 42x42 (RTS) input the second conv leaves
      # 11x11, which a "VALID" 2x2 pool would not tile (the summary rejects it).
      x = layers.MaxPool(2, padding="SAME", name=f"pool{i + 1}")(x)
    x = x.reshape(x.shape[0], -1)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, name="output")(x), features


def _st_out_hw(x, downsample: int) -> tuple[int, int]:
  return (x.shape[1] // downsample, x.shape[2] // downsample)


class STFCN(nn.Module):
  """Spatial transformer (FCN localisation net) at the input of the FCN.

  Features add "theta" and "transformed" (the warped input, for
  visualisation) to the FCN's.
  """
  num_classes: int = 10
  transform: str = "affine"
  loc_hidden: Sequence[int] = (32, 32, 32)
  hidden: Sequence[int] = (128, 128)
  st_downsample: int = 1
  tps_grid_size: int = 4
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    loc = FCNLocalization(self.loc_hidden, name="loc")
    warped, theta = SpatialTransformer(
        loc, self.transform, _st_out_hw(x, self.st_downsample), self.tps_grid_size,
        name="st")(x, train=train)
    logits, features = FCN(self.num_classes, self.hidden, self.dropout, name="fcn")(
        warped, train=train)
    return logits, {"theta": theta, "transformed": warped, **features}


class STCNN(nn.Module):
  """Spatial transformer (CNN localisation net) at the input of the CNN."""
  num_classes: int = 10
  transform: str = "affine"
  loc_filters: Sequence[int] = (20, 20)
  loc_hidden: Sequence[int] = (32,)
  filters: Sequence[int] = (32, 32)
  kernels: Sequence[int] = (9, 7)
  st_downsample: int = 1
  tps_grid_size: int = 4
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    loc = CNNLocalization(self.loc_filters, hidden=self.loc_hidden, name="loc")
    warped, theta = SpatialTransformer(
        loc, self.transform, _st_out_hw(x, self.st_downsample), self.tps_grid_size,
        name="st")(x, train=train)
    logits, features = CNN(self.num_classes, self.filters, self.kernels, self.dropout,
                           name="cnn")(warped, train=train)
    return logits, {"theta": theta, "transformed": warped, **features}


MODELS = {"fcn": FCN, "cnn": CNN, "st_fcn": STFCN, "st_cnn": STCNN}
