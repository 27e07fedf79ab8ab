"""Generative adversarial networks: the original MLP GAN and DCGAN.

These are not classifiers, so this module defines `GAN_MODELS`, not `MODELS`
(the classifier registry scans `MODELS`):

  GAN_MODELS = {name: (generator_ctor, discriminator_ctor)}

Generators: `__call__(z, *, train)` with z float [B, latent_dim] -> images
[B, H, W, C] in `output_range` (a class attribute). Discriminators:
`__call__(x, *, train)` with x [B, H, W, C] in the same range -> logits [B]
(D(x) = sigmoid(logit) is the probability that x came from the data).
Each generator also names its noise: `latent_dim`, `latent_distribution`
(see `research.ops.gan.sample_latent`).

Ranges: the MLP GAN's sigmoid output is in [0, 1] (the range the paper's
Parzen numbers are computed in); DCGAN's tanh output is in [-1, 1]. Convert
data in [0, 1] with `to_model_range` and samples back with `to_unit_range`.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def to_model_range(x: jax.Array, output_range: tuple[float, float]) -> jax.Array:
  """Maps images in [0, 1] to `output_range` (e.g. [-1, 1] for DCGAN: 2x - 1)."""
  lo, hi = output_range
  return lo + (hi - lo) * x


def to_unit_range(x: jax.Array, output_range: tuple[float, float]) -> jax.Array:
  """Inverse of `to_model_range`: images in `output_range` -> [0, 1]."""
  lo, hi = output_range
  return (x - lo) / (hi - lo)


def _uniform_init(scale: float):
  """pylearn2's `irange`: weights ~ U(-scale, scale)."""
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)
  return init


# ---------------------------------------------------------------------------
# Goodfellow et al. 2014, "Generative adversarial nets", MNIST model (§5).
# Sizes from the authors' released configuration (goodfeli/adversarial,
# mnist.yaml): G 100 -> ReLU 1200 -> ReLU 1200 -> sigmoid 784, weights
# U(-0.05, 0.05); D maxout 240 units x 5 pieces -> maxout 240 x 5 -> sigmoid 1,
# weights U(-0.005, 0.005), dropout keeping 0.8 of D's input and 0.5 of its
# hidden units (rates 0.2 / 0.5 here; inverted dropout, the same as the
# config's input_scales 1.25 / 2). The generator's noise there defaults to
# N(0, I) in 100-d. Not reproduced: the output bias initialised from pixel
# marginals is available as `init_output_bias_from_marginals`.
# ---------------------------------------------------------------------------


class MLPGenerator(nn.Module):
  """z [B, latent_dim] -> images [B, 28, 28, 1] in [0, 1] (sigmoid)."""
  latent_dim: int = 100
  latent_distribution: str = "normal"
  hidden: tuple[int, ...] = (1200, 1200)
  image_shape: tuple[int, int, int] = (28, 28, 1)
  init_range: float = 0.05

  output_range = (0.0, 1.0)

  @nn.compact
  def __call__(self, z: jax.Array, *, train: bool = False) -> jax.Array:
    del train  # No dropout or batch norm in this generator.
    init = _uniform_init(self.init_range)
    x = z
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, kernel_init=init, name=f"h{i}")(x))
    x = nn.Dense(int(np.prod(self.image_shape)), kernel_init=init, name="output")(x)
    return nn.sigmoid(x).reshape((z.shape[0], *self.image_shape))


def init_output_bias_from_marginals(params, images, eps: float = 1e-3):
  """Sets the MLP generator's output bias to logit(mean pixel) (pylearn2's
  init_sigmoid_bias_from_marginals), so G starts at the data's mean image.

  images: float [N, H, W, C] in [0, 1]. Means are clipped to [eps, 1 - eps]
  (our choice) so always-black pixels get a finite bias.
  """
  mean = np.clip(np.asarray(images, np.float64).reshape(len(images), -1).mean(0), eps, 1 - eps)
  bias = jnp.asarray(np.log(mean) - np.log1p(-mean), jnp.float32)
  return {**params, "output": {**params["output"], "bias": bias}}


class Maxout(nn.Module):
  """Maxout (Goodfellow et al. 2013): [B, D] -> [B, units], max over `pieces` linear maps."""
  units: int
  pieces: int
  init_range: float = 0.005

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = nn.Dense(self.units * self.pieces, kernel_init=_uniform_init(self.init_range))(x)
    return y.reshape(x.shape[0], self.units, self.pieces).max(axis=-1)


class MaxoutDiscriminator(nn.Module):
  """images [B, H, W, C] in [0, 1] -> logits [B]; dropout only when train."""
  units: tuple[int, ...] = (240, 240)
  pieces: int = 5
  input_dropout: float = 0.2
  hidden_dropout: float = 0.5
  init_range: float = 0.005

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    x = nn.Dropout(self.input_dropout, deterministic=not train)(x)
    for i, units in enumerate(self.units):
      x = Maxout(units, self.pieces, self.init_range, name=f"h{i}")(x)
      x = nn.Dropout(self.hidden_dropout, deterministic=not train)(x)
    x = nn.Dense(1, kernel_init=_uniform_init(self.init_range), name="output")(x)
    return x[:, 0]


# ---------------------------------------------------------------------------
# Radford, Metz & Chintala 2015, "Unsupervised representation learning with
# deep convolutional GANs", §3 guidelines: strided convolutions in D and
# fractionally-strided (transposed) ones in G, no pooling, batch norm in both
# except G's output and D's input layer, ReLU in G with tanh output,
# LeakyReLU(0.2) in D, no hidden fully connected layers (G's first layer
# projects and reshapes z; D's last conv is flattened into one logit), weights
# N(0, 0.02) (§4). Their 64x64 model: 4x4x1024 -> 8x8x512 -> 16x16x256 ->
# 32x32x128 -> 64x64x3, 5x5 kernels. Here the spatial stack is derived from
# the image size: 28 -> 7x7 start (7 -> 14 -> 28), 32 -> 4x4 start
# (4 -> 8 -> 16 -> 32); widths halve from `width * 2^(n-1)` as in the paper.
# ---------------------------------------------------------------------------


def dcgan_base_size(image_size: int) -> tuple[int, int]:
  """(start size, number of 2x upsamplings): halve until odd or <= 7. 28 -> (7, 2), 32 -> (4, 3)."""
  base, n = image_size, 0
  while base > 7 and base % 2 == 0:
    base, n = base // 2, n + 1
  if n == 0:
    raise ValueError(f"DCGAN: image size {image_size} cannot be reached by doubling a "
                     f"<= 7 start; use e.g. 28, 32 or 64.")
  return base, n


def _normal_init(std: float = 0.02):
  return nn.initializers.normal(std)


class DCGANGenerator(nn.Module):
  """z [B, latent_dim] -> images [B, S, S, channels] in [-1, 1] (tanh).

  Batch norm uses batch statistics when train and running averages
  otherwise; momentum 0.9 (not Flax's 0.99) so the averages follow a
  generator that changes every step.
  """
  latent_dim: int = 100
  latent_distribution: str = "uniform"   # DCGAN §4: z ~ U(-1, 1).
  image_size: int = 28
  channels: int = 1
  width: int = 64
  kernel: int = 5
  bn_momentum: float = 0.9

  output_range = (-1.0, 1.0)

  @nn.compact
  def __call__(self, z: jax.Array, *, train: bool = False) -> jax.Array:
    base, n = dcgan_base_size(self.image_size)
    init = _normal_init()
    bn = lambda name: nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                                   name=name)
    features = self.width * 2 ** (n - 1)
    # "Project and reshape" (Fig. 1): a matrix multiply, bias-free before batch norm.
    x = nn.Dense(base * base * features, use_bias=False, kernel_init=init, name="project")(z)
    x = x.reshape(z.shape[0], base, base, features)
    x = nn.relu(bn("bn_project")(x))
    for i in range(n - 1):
      features //= 2
      x = nn.ConvTranspose(features, (self.kernel,) * 2, strides=(2, 2), padding="SAME",
                           use_bias=False, kernel_init=init, name=f"deconv{i}")(x)
      x = nn.relu(bn(f"bn{i}")(x))
    # Output layer: no batch norm (§3), tanh.
    x = nn.ConvTranspose(self.channels, (self.kernel,) * 2, strides=(2, 2), padding="SAME",
                         kernel_init=init, name="output")(x)
    return jnp.tanh(x)


class DCGANDiscriminator(nn.Module):
  """images [B, S, S, C] in [-1, 1] -> logits [B]."""
  width: int = 64
  kernel: int = 5
  leak: float = 0.2
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    _, n = dcgan_base_size(x.shape[1])
    init = _normal_init()
    features = self.width
    for i in range(n):
      # No batch norm on the first layer (§3: it caused sample oscillation).
      x = nn.Conv(features, (self.kernel,) * 2, strides=(2, 2), padding="SAME",
                  use_bias=(i == 0), kernel_init=init, name=f"conv{i}")(x)
      if i > 0:
        x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                         name=f"bn{i}")(x)
      x = nn.leaky_relu(x, self.leak)
      features *= 2
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(1, kernel_init=init, name="output")(x)[:, 0]


GAN_MODELS = {
    "gan_mlp": (MLPGenerator, MaxoutDiscriminator),
    "dcgan": (DCGANGenerator, DCGANDiscriminator),
}


def get_gan(name: str, generator_kwargs: dict | None = None,
            discriminator_kwargs: dict | None = None) -> tuple[nn.Module, nn.Module]:
  """Builds (generator, discriminator) registered as `name` in GAN_MODELS."""
  if name not in GAN_MODELS:
    raise ValueError(f"Unknown GAN {name!r}. Known: {', '.join(sorted(GAN_MODELS))}.")
  g_ctor, d_ctor = GAN_MODELS[name]
  return g_ctor(**(generator_kwargs or {})), d_ctor(**(discriminator_kwargs or {}))
