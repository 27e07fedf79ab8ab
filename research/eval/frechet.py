"""Fréchet distance between Gaussians fit to features.

d^2 = |mu_1 - mu_2|^2 + Tr(C_1 + C_2 - 2 (C_1 C_2)^{1/2})
(Dowson & Landau 1982; Heusel et al. 2017 use it on Inception-v3 pool
features and call it FID). This project computes it on the features of a
classifier trained on Fashion-MNIST (or MNIST), not on Inception: the numbers
rank models on the same features but are NOT comparable to published FIDs,
hence the name `frechet_distance`, never "FID".

Numerics: (C_1 C_2)^{1/2} is similar to C_1^{1/2} C_2 C_1^{1/2} (conjugate
by C_1^{1/2}), so Tr (C_1 C_2)^{1/2} = sum_i sqrt(lambda_i), lambda the
eigenvalues of the symmetric PSD matrix C_1^{1/2} C_2 C_1^{1/2}. Two eigh
calls in float64 replace scipy.linalg.sqrtm of a non-symmetric product,
which returns complex parts and blows up for singular covariances (common:
fewer samples than feature dimensions). Eigenvalues below zero (rounding)
are clipped to zero.
"""

import numpy as np


def fit_gaussian(features) -> tuple[np.ndarray, np.ndarray]:
  """features [N, D] (or [N, ...], flattened) -> float64 (mean [D], unbiased covariance [D, D])."""
  f = np.asarray(features, np.float64)
  f = f.reshape(f.shape[0], -1)
  if f.shape[0] < 2:
    raise ValueError("fit_gaussian needs at least two feature vectors.")
  return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
  """Symmetric square root of a symmetric PSD matrix (negative eigenvalues clipped)."""
  w, v = np.linalg.eigh((c + c.T) / 2)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def gaussian_frechet_distance(mu1, cov1, mu2, cov2) -> float:
  """Squared Fréchet (2-Wasserstein) distance between N(mu1, cov1) and N(mu2, cov2).

  mu [D], cov [D, D]. Returns a float >= 0 (tiny negative rounding clipped).
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  cov1 = np.atleast_2d(np.asarray(cov1, np.float64))
  cov2 = np.atleast_2d(np.asarray(cov2, np.float64))
  s1 = _psd_sqrt(cov1)
  m = s1 @ cov2 @ s1
  eig = np.linalg.eigvalsh((m + m.T) / 2)
  tr_sqrt = np.sum(np.sqrt(np.clip(eig, 0.0, None)))
  d2 = np.sum((mu1 - mu2)**2) + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_sqrt
  return float(max(d2, 0.0))


def frechet_distance(features_a, features_b) -> float:
  """Fréchet distance between Gaussians fit to two feature arrays [N, D] and [M, D].

  The features are this project's classifier features (e.g. a Fashion-MNIST
  CNN's penultimate layer), not Inception's: see the module docstring.
  """
  return gaussian_frechet_distance(*fit_gaussian(features_a), *fit_gaussian(features_b))
