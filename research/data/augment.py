"""Data augmentation: jittable, per example, chosen by name in the config.

`build(spec, train_images)` turns a spec such as "crop_pad4,flip_lr,rotate15"
into `augment(key, images) -> images`, float [B, H, W, C] in [0, 1], which
`steps.make_train_step` applies before standardisation. The ops run in the
spec's order; every example gets its own key (split from the step's key, which
is fold_in(rng, step)), and the ops are vmapped over the batch, so a batch's
augmentation is a pure function of (seed, step): a resumed run sees exactly
the augmented batches of an uninterrupted one.

Names (a number after the name sets the op's strength; the default in brackets):
  crop_pad<p>       [4]    pad p zero pixels on each side, take a random HxW crop
                           (the CIFAR recipe; AlexNet §4.1's random crops)
  flip_lr, flip_ud         mirror left-right / upside down with probability 1/2
  translate<t>      [3]    shift by uniform [-t, t] pixels in x and y (bilinear)
  rotate<deg>       [15]   rotate by uniform [-deg, deg] degrees about the centre
  scale<s>          [1.25] VGG's scale jitter (Simonyan & Zisserman §3.1): magnify
                           by uniform [1, s], then crop HxW at a random place
  color_jitter<s>   [0.4]  RGB: brightness, contrast and saturation factors each
                           uniform in [1 - s, 1 + s], applied in that order
  grayscale<p>      [0.2]  RGB: replace by its luminance with probability p
  pca_color<std>    [0.1]  RGB: AlexNet §4.1's PCA colour shift (see `pca_color`)
Geometric ops read outside the image as zero (black, Fashion-MNIST's background).
"""

from collections.abc import Callable
import re

import jax
import jax.numpy as jnp
import numpy as np

from research.data.preprocess import rgb_covariance_eigh  # noqa: F401 (re-exported)
from research.ops import spatial_transformer as st

DEFAULTS = {"crop_pad": 4, "flip_lr": None, "flip_ud": None, "translate": 3, "rotate": 15,
            "scale": 1.25, "color_jitter": 0.4, "grayscale": 0.2, "pca_color": 0.1}
RGB_ONLY = ("color_jitter", "grayscale", "pca_color")
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL and torchvision convert to gray.


def parse(spec: str) -> list[tuple[str, float | None]]:
  """"crop_pad4,flip_lr" -> [("crop_pad", 4.0), ("flip_lr", None)]; ValueError if unknown."""
  ops = []
  for item in (s.strip() for s in spec.split(",") if s.strip()):
    match = re.fullmatch(r"([a-z_]+?)(\d+(?:\.\d+)?)?", item)
    name = match.group(1) if match else item
    if name not in DEFAULTS:
      raise ValueError(f"Unknown augmentation {item!r}; known: {', '.join(DEFAULTS)} "
                       "(with an optional number, e.g. crop_pad4, rotate10).")
    if match.group(2) is not None and DEFAULTS[name] is None:
      raise ValueError(f"Augmentation {name!r} takes no number (got {item!r}).")
    ops.append((name, float(match.group(2)) if match.group(2) else DEFAULTS[name]))
  return ops


# --- The ops: (key, image [H, W, C], strength) -> image [H, W, C] -------------


def crop_pad(key, image, pad):
  """Zero-pad by `pad`, then a uniformly random HxW window of the padded image."""
  h, w, _ = image.shape
  p = int(pad)
  padded = jnp.pad(image, ((p, p), (p, p), (0, 0)))
  dy, dx = jax.random.randint(key, (2,), 0, 2 * p + 1)
  return jax.lax.dynamic_slice(padded, (dy, dx, 0), image.shape)


def flip_lr(key, image, _):
  return jnp.where(jax.random.bernoulli(key), image[:, ::-1], image)


def flip_ud(key, image, _):
  return jnp.where(jax.random.bernoulli(key), image[::-1], image)


def _warp(image, angle=0.0, scale=1.0, shift_xy=(0.0, 0.0)):
  """Bilinear warp about the centre: output pixel p reads scale * R(angle) p + shift."""
  theta = st.make_theta(angle, scale, jnp.asarray(shift_xy))[None]
  return st.affine_transform(image[None], theta)[0]


def _pixels_to_normalised(shift_pixels, hw):
  # Normalised coordinates span [-1, 1] over centres 0..size-1 (align_corners).
  return shift_pixels * 2.0 / (jnp.asarray(hw[::-1], jnp.float32) - 1.0)


def translate(key, image, max_pixels):
  shift = jax.random.uniform(key, (2,), minval=-max_pixels, maxval=max_pixels)
  return _warp(image, shift_xy=_pixels_to_normalised(shift, image.shape[:2]))


def rotate(key, image, max_degrees):
  angle = jnp.deg2rad(jax.random.uniform(key, (), minval=-max_degrees, maxval=max_degrees))
  return _warp(image, angle=angle)


def scale_jitter(key, image, max_scale):
  """Magnify by m ~ U[1, max_scale] and crop the image size at a random place.

  The visible window is 1/m of the image (theta's scale) and its centre moves
  uniformly within the image: |shift| <= 1 - 1/m in normalised units.
  """
  k_scale, k_shift = jax.random.split(key)
  m = jax.random.uniform(k_scale, (), minval=1.0, maxval=max_scale)
  shift = jax.random.uniform(k_shift, (2,), minval=-1.0, maxval=1.0) * (1.0 - 1.0 / m)
  return _warp(image, scale=1.0 / m, shift_xy=shift)


def _gray(image):
  return image @ jnp.asarray(_LUMA, image.dtype)


def color_jitter(key, image, strength):
  """Brightness (scale), contrast (blend with the mean gray), saturation (blend
  with the pixel's gray), each factor ~ U[1 - s, 1 + s]; clipped to [0, 1]."""
  b, c, s = jax.random.uniform(key, (3,), minval=1.0 - strength, maxval=1.0 + strength)
  x = jnp.clip(image * b, 0.0, 1.0)
  x = jnp.clip(_gray(x).mean() + c * (x - _gray(x).mean()), 0.0, 1.0)
  gray = _gray(x)[..., None]
  return jnp.clip(gray + s * (x - gray), 0.0, 1.0)


def grayscale(key, image, probability):
  gray = jnp.broadcast_to(_gray(image)[..., None], image.shape)
  return jnp.where(jax.random.bernoulli(key, probability), gray, image)


def pca_color(key, image, std, eigvals, eigvecs):
  """AlexNet §4.1: add eigvecs @ (alpha * sqrt(eigvals)) to every pixel, alpha ~ N(0, std).

  eigvals [3], eigvecs [3, 3] (columns) of the training set's RGB covariance
  ([0, 1] scale; `rgb_covariance_eigh`). The paper writes the eigenvalue
  lambda_i itself; as a shift in pixel units it must be a standard deviation
  (the widely used constants 55.46, 4.794, 1.148 for ImageNet at 0-255 are the
  square roots of its covariance's eigenvalues), hence sqrt. One alpha per image.
  """
  alpha = std * jax.random.normal(key, (3,))
  return image + eigvecs @ (alpha * jnp.sqrt(jnp.maximum(eigvals, 0.0)))


OPS = {"crop_pad": crop_pad, "flip_lr": flip_lr, "flip_ud": flip_ud, "translate": translate,
       "rotate": rotate, "scale": scale_jitter, "color_jitter": color_jitter,
       "grayscale": grayscale}


def make_augment(spec: str, *, channels: int,
                 rgb_eigh: tuple[np.ndarray, np.ndarray] | None = None) -> Callable | None:
  """augment(key, images [B, H, W, C]) -> [B, H, W, C] for `spec`; None for "".

  channels: C of the images (colour ops need 3). rgb_eigh: (eigvals, eigvecs)
  for pca_color.
  """
  ops = parse(spec)
  if not ops:
    return None
  for name, _ in ops:
    if name in RGB_ONLY and channels != 3:
      raise ValueError(f"Augmentation {name!r} needs RGB images; these have {channels} "
                       "channel(s).")
  if any(name == "pca_color" for name, _ in ops) and rgb_eigh is None:
    raise ValueError("pca_color needs the RGB covariance's eigen-decomposition (rgb_eigh).")
  fns = []
  for name, strength in ops:
    if name == "pca_color":
      vals, vecs = (jnp.asarray(a) for a in rgb_eigh)
      fns.append(lambda k, x, s=strength, v=vals, e=vecs: pca_color(k, x, s, v, e))
    else:
      fns.append(lambda k, x, f=OPS[name], s=strength: f(k, x, s))

  def one_example(key, image):
    for fn, op_key in zip(fns, jax.random.split(key, len(fns))):
      image = fn(op_key, image)
    return image

  def augment(key, images):
    return jax.vmap(one_example)(jax.random.split(key, images.shape[0]), images)

  return augment


def build(spec: str, train_data, pca_examples: int = 10_000) -> Callable | None:
  """`make_augment` for a training split (research/data/pipeline.py's
  InputSplit): its channel count, and for pca_color the eigen-decomposition of
  the RGB covariance of its first `pca_examples` images."""
  channels = train_data.image_shape[-1]
  needs_pca = any(name == "pca_color" for name, _ in parse(spec))
  rgb_eigh = (rgb_covariance_eigh(train_data.sample_images(pca_examples))
              if needs_pca and channels == 3 else None)
  return make_augment(spec, channels=channels, rgb_eigh=rgb_eigh)
