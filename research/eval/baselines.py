"""The trivial generative baseline: a Gaussian fit to the data's pixels.

Any GAN's Parzen or Fréchet number should be compared with what a single
Gaussian with the data's mean and full covariance gets: it matches the
first two moments exactly and nothing else (its samples look like blurry
noise). Sampling uses the eigendecomposition C = U diag(lambda) U^T, x =
mu + U sqrt(lambda) eps, which works for the singular covariances of image
data (MNIST's border pixels are constant) where a Cholesky factor fails.
"""

from typing import NamedTuple

import numpy as np


class GaussianBaseline(NamedTuple):
  mean: np.ndarray     # [D]
  factor: np.ndarray   # [D, D], U sqrt(lambda): cov = factor @ factor.T
  shape: tuple         # one image's shape, e.g. (28, 28, 1)

  @classmethod
  def fit(cls, images) -> "GaussianBaseline":
    """images [N, H, W, C] (float, in the range samples should have)."""
    x = np.asarray(images, np.float64)
    flat = x.reshape(x.shape[0], -1)
    cov = np.cov(flat, rowvar=False)
    w, v = np.linalg.eigh((cov + cov.T) / 2)
    return cls(mean=flat.mean(0), factor=v * np.sqrt(np.clip(w, 0.0, None)),
               shape=tuple(x.shape[1:]))

  def sample(self, rng: np.random.Generator, num: int,
             clip: tuple[float, float] | None = None) -> np.ndarray:
    """float32 [num, *shape]. clip=(0, 1) forces valid pixels (then the
    moments no longer match exactly); None leaves the Gaussian as fit."""
    eps = rng.standard_normal((num, self.mean.shape[0]))
    x = self.mean + eps @ self.factor.T
    if clip is not None:
      x = np.clip(x, *clip)
    return x.reshape((num, *self.shape)).astype(np.float32)
