"""What each augmentation does to an image (Krizhevsky et al. 2012, §4.1):
the originals, then each op of `research/data/augment.py` applied to them,
drawn as one grid (experiments/augmentation.py).
"""

import os

import jax
import numpy as np

from research.data import augment
from research.eval import plots

# The colour ops (AlexNet's PCA colour noise and others) need RGB: shown on
# 64x64 crops of the photos scikit-learn ships, at these (top, left) corners.
PHOTO_CORNERS = ((140, 250), (200, 380), (60, 60), (300, 500))
PHOTO_SPECS = ("color_jitter0.4", "grayscale0.5", "pca_color0.1", "pca_color0.5",
               "crop_pad8,flip_lr,rotate15")


def examples(images: np.ndarray, specs, rgb_eigh=None) -> np.ndarray:
  """Rows: the originals, then each spec applied to them.

  images: uint8 [N, H, W, C]; specs: augmentation specs (`augment.make_augment`);
  rgb_eigh: the RGB covariance's eigen-decomposition, for "pca_color".
  Returns float [(1 + len(specs)) * N, H, W, C] in [0, 1]; spec i draws with
  PRNGKey(i).
  """
  x = images.astype(np.float32) / 255.0
  rows = [x]
  for i, spec in enumerate(specs):
    fn = augment.make_augment(spec, channels=x.shape[-1], rgb_eigh=rgb_eigh)
    rows.append(np.clip(np.asarray(jax.jit(fn)(jax.random.PRNGKey(i), x)), 0, 1))
  return np.concatenate(rows)


def draw(images: np.ndarray, specs, workdir: str) -> None:
  """examples_fashion.png: `images` (uint8 [8, H, W, C]) under each spec, and
  examples_photo.png: the colour ops on crops of scikit-learn's photos."""
  plots.image_grid(examples(images, specs), 8, os.path.join(workdir, "examples_fashion.png"),
                   title="rows: original, " + "; ".join(specs))
  from sklearn.datasets import load_sample_images  # Only this picture needs scikit-learn.
  photos = load_sample_images().images
  crops = np.stack([p[y:y + 64, x:x + 64] for p in photos for y, x in PHOTO_CORNERS])
  eigh = augment.rgb_covariance_eigh(np.stack(photos))
  plots.image_grid(examples(crops, PHOTO_SPECS, eigh), 8,
                   os.path.join(workdir, "examples_photo.png"),
                   scale=2, title="rows: original, " + "; ".join(PHOTO_SPECS))
