"""CPU-side image preprocessing: pure NumPy/PIL ops chosen by a string.

The input pipeline (research/data/pipeline.py, streaming.py) applies the ops of
`config.data.train_pp` / `config.data.eval_pp`, e.g.

  "inception_crop(224)|flip_lr|pca_lighting(0.1)"   (training)
  "resize_small(256)|central_crop(224)"             (evaluation)

to one decoded example at a time, before batching: they change the image
size, which the jitted step cannot (research/data/augment.py holds the
fixed-size, in-step augmentations). Every op takes and returns uint8
[H, W, C] and draws its randomness from the `numpy.random.Generator` it is
given; the pipeline seeds one per example from (seed, step, row), so the
preprocessed batch of a step is a pure function of those (exact resume).
An empty string keeps the images as stored.

Ops (arguments in pixels unless said):
  inception_crop(size)      random-resized crop to size x size (Szegedy et al. 2015 §6)
  resize_small(s)           shorter side to s, aspect kept
  central_crop(size)        the centre size x size window
  random_crop(size)         a uniformly placed size x size window
  scale_jitter(smin, smax)  shorter side to S ~ U{smin..smax} (Simonyan & Zisserman §3.1)
  flip_lr                   mirror left-right with probability 1/2
  pca_lighting(std)         AlexNet's PCA colour shift (Krizhevsky et al. 2012 §4.1)
  resize(h, w)              to h x w, aspect not kept
"""

from collections.abc import Callable
import math
import re

import numpy as np
from PIL import Image

# ImageNet's RGB covariance on the [0, 1] scale, as published with AlexNet's
# lighting noise and reused by fb.resnet.torch and torchvision's references:
# the square roots of the eigenvalues (55.46, 4.794, 1.148 on the 0-255 scale)
# and the eigenvectors as columns. Stored here as eigenvalues (variances), the
# form `rgb_covariance_eigh` returns.
IMAGENET_EIGVALS = np.square(np.array([0.2175, 0.0188, 0.0045], np.float32))
IMAGENET_EIGVECS = np.array([[-0.5675, 0.7192, 0.4009],
                             [-0.5808, -0.0045, -0.8140],
                             [-0.5836, -0.6948, 0.4203]], np.float32)


def rgb_covariance_eigh(images, max_pixels: int = 1_000_000):
  """(eigvals [3] ascending, eigvecs [3, 3] columns) of the RGB covariance of
  uint8 images ([N, H, W, 3], or a sequence of [H, W, 3] of any sizes) on the
  [0, 1] scale, from an even subsample of at most about `max_pixels` pixels.

  What AlexNet §4.1's PCA colour shift needs for a dataset without published
  values (research/data/augment.py's pca_color, `pca_lighting`).
  """
  pixels = (images.reshape(-1, 3) if isinstance(images, np.ndarray) and images.ndim == 4
            else np.concatenate([np.asarray(x).reshape(-1, 3) for x in images]))
  pixels = pixels[::max(1, len(pixels) // max_pixels)].astype(np.float64) / 255.0
  eigvals, eigvecs = np.linalg.eigh(np.cov(pixels, rowvar=False))
  return eigvals.astype(np.float32), eigvecs.astype(np.float32)


# --- The ops: (image uint8 [H, W, C], rng, *args) -> uint8 [h, w, C] ---------


def resize(image: np.ndarray, rng, height: int, width: int) -> np.ndarray:
  """Bilinear resize to [height, width, C] (PIL, antialiased when shrinking)."""
  del rng
  height, width = int(height), int(width)
  if image.shape[:2] == (height, width):
    return image
  if image.shape[-1] == 1:
    out = Image.fromarray(image[..., 0]).resize((width, height), Image.BILINEAR)
    return np.asarray(out)[..., None]
  return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def _short_side_to(image: np.ndarray, s: int) -> np.ndarray:
  h, w = image.shape[:2]
  if h <= w:
    return resize(image, None, s, max(1, round(w * s / h)))
  return resize(image, None, max(1, round(h * s / w)), s)


def resize_small(image: np.ndarray, rng, size: int) -> np.ndarray:
  """Resizes so that the shorter side is `size`, keeping the aspect ratio:
  [H, W, C] -> [size, round(W size / H), C] when H <= W (the usual ImageNet
  evaluation's first step, e.g. 256 before a 224 centre crop)."""
  del rng
  return _short_side_to(image, int(size))


def _window(image: np.ndarray, top: int, left: int, h: int, w: int) -> np.ndarray:
  return image[top:top + h, left:left + w]


def _check_fits(image: np.ndarray, size: int, op: str) -> None:
  h, w = image.shape[:2]
  if h < size or w < size:
    raise ValueError(f"{op}({size}) of a {h}x{w} image: the image is smaller than the crop; "
                     f"resize first, e.g. resize_small({size})|{op}({size}).")


def central_crop(image: np.ndarray, rng, size: int) -> np.ndarray:
  """The size x size window at the centre: top = (H - size) // 2, left likewise.

  Raises ValueError if H or W < size.
  """
  del rng
  size = int(size)
  _check_fits(image, size, "central_crop")
  h, w = image.shape[:2]
  return _window(image, (h - size) // 2, (w - size) // 2, size, size)


def random_crop(image: np.ndarray, rng, size: int) -> np.ndarray:
  """A size x size window, its corner uniform over all positions (AlexNet §4.1's
  random 224 crops of 256 images). Raises ValueError if H or W < size."""
  size = int(size)
  _check_fits(image, size, "random_crop")
  h, w = image.shape[:2]
  return _window(image, int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1)),
                 size, size)


def inception_crop(image: np.ndarray, rng, size: int, area=(0.08, 1.0),
                   aspect=(3 / 4, 4 / 3), attempts: int = 10) -> np.ndarray:
  """Random-resized crop (Szegedy et al. 2015, "Going deeper", §6): a window of
  uniform area fraction in `area` and log-uniform aspect ratio (w/h) in
  `aspect`, uniformly placed, resized to [size, size, C].

  If `attempts` draws give no window inside the image, the largest centred
  window whose aspect ratio is within `aspect` is used (as torchvision does).
  """
  h, w = image.shape[:2]
  log_aspect = (math.log(aspect[0]), math.log(aspect[1]))
  for _ in range(attempts):
    target = h * w * rng.uniform(*area)
    ratio = math.exp(rng.uniform(*log_aspect))
    cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
    if 0 < cw <= w and 0 < ch <= h:
      top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
      return resize(_window(image, top, left, ch, cw), None, size, size)
  ratio = w / h
  if ratio < aspect[0]:
    cw, ch = w, min(h, round(w / aspect[0]))
  elif ratio > aspect[1]:
    cw, ch = min(w, round(h * aspect[1])), h
  else:
    cw, ch = w, h
  return resize(_window(image, (h - ch) // 2, (w - cw) // 2, ch, cw), None, size, size)


def scale_jitter(image: np.ndarray, rng, smin: int, smax: int) -> np.ndarray:
  """VGG's training scale jittering (Simonyan & Zisserman 2015 §3.1): the
  shorter side to S, an integer uniform in [smin, smax] (their [256, 512]),
  before a fixed-size random crop (e.g. `|random_crop(224)`)."""
  return _short_side_to(image, int(rng.integers(int(smin), int(smax) + 1)))


def flip_lr(image: np.ndarray, rng) -> np.ndarray:
  """Mirrors left-right with probability 1/2 (AlexNet §4.1's reflections)."""
  return image[:, ::-1] if rng.random() < 0.5 else image


def pca_lighting(image: np.ndarray, rng, std: float, eigvals=IMAGENET_EIGVALS,
                 eigvecs=IMAGENET_EIGVECS) -> np.ndarray:
  """AlexNet §4.1's PCA colour shift of an RGB image [H, W, 3]: adds
  eigvecs @ (alpha * sqrt(eigvals)) to every pixel, alpha ~ N(0, std) [3] once
  per image (the paper's std is 0.1), then rounds and clips to uint8.

  eigvals [3], eigvecs [3, 3] (columns): the RGB covariance's eigen-decomposition
  on the [0, 1] scale; default ImageNet's published values. The paper writes
  the eigenvalue itself; as a shift in pixel units it must be a standard
  deviation (see IMAGENET_EIGVALS), hence sqrt.
  """
  if image.shape[-1] != 3:
    raise ValueError(f"pca_lighting needs RGB images; this one has shape {image.shape}.")
  alpha = rng.normal(0.0, float(std), 3)
  shift = np.asarray(eigvecs, np.float64) @ (alpha * np.sqrt(np.maximum(eigvals, 0.0)))
  return np.clip(np.rint(image + 255.0 * shift), 0, 255).astype(np.uint8)


# name -> (function, number of arguments).
OPS = {"inception_crop": (inception_crop, 1), "resize_small": (resize_small, 1),
       "central_crop": (central_crop, 1), "random_crop": (random_crop, 1),
       "scale_jitter": (scale_jitter, 2), "flip_lr": (flip_lr, 0),
       "pca_lighting": (pca_lighting, 1), "resize": (resize, 2)}


def parse(pp: str) -> list[tuple[str, tuple[float, ...]]]:
  """"resize_small(256)|central_crop(224)" -> [("resize_small", (256,)), ...].

  Raises ValueError naming the op: unknown, or the wrong number of arguments.
  """
  ops = []
  for item in (s.strip() for s in pp.split("|") if s.strip()):
    match = re.fullmatch(r"([a-z_]+)\s*(?:\(([^()]*)\))?", item)
    name = match.group(1) if match else item
    if name not in OPS:
      raise ValueError(f"unknown preprocessing op {item!r}; known: {', '.join(OPS)} "
                       "(joined by '|', e.g. 'resize_small(256)|central_crop(224)').")
    try:
      args = tuple(float(a) for a in (match.group(2) or "").split(",") if a.strip())
    except ValueError:
      raise ValueError(f"preprocessing op {item!r}: arguments must be numbers.") from None
    if len(args) != OPS[name][1]:
      raise ValueError(f"preprocessing op {item!r} takes {OPS[name][1]} argument(s), "
                       f"got {len(args)}.")
    ops.append((name, args))
  return ops


def output_hw(pp: str, input_hw: tuple) -> tuple:
  """The (H, W) that `pp` makes of images of (H, W) `input_hw` (None for a side
  that varies), without reading any: (None, None) when the output size
  depends on the image (e.g. resize_small alone)."""
  hw = tuple(input_hw)
  for name, args in parse(pp):
    if name in ("inception_crop", "central_crop", "random_crop"):
      hw = (int(args[0]), int(args[0]))
    elif name == "resize":
      hw = (int(args[0]), int(args[1]))
    elif name in ("resize_small", "scale_jitter"):
      hw = (None, None)
  return hw


def build(pp: str, rgb_eigh=None) -> Callable[[np.ndarray, np.random.Generator], np.ndarray] | None:
  """fn(image uint8 [H, W, C], rng) -> uint8 [h, w, C] applying `pp`'s ops in
  order (each drawing from `rng`); None for an empty `pp`.

  rgb_eigh: (eigvals, eigvecs) for pca_lighting; default ImageNet's.
  """
  ops = parse(pp)
  if not ops:
    return None
  fns = []
  for name, args in ops:
    fn = OPS[name][0]
    if name == "pca_lighting" and rgb_eigh is not None:
      fns.append(lambda x, r, a=args, e=rgb_eigh: pca_lighting(x, r, *a, *e))
    else:
      fns.append(lambda x, r, f=fn, a=args: f(x, r, *a))

  def apply(image, rng):
    for fn in fns:
      image = fn(image, rng)
    return np.ascontiguousarray(image)

  return apply
