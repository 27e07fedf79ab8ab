"""Parzen-window log-likelihood of test data under a generator's samples.

Breuleux, Bengio & Vincent 2011 ("Quickly generating representative samples
from an RBM-derived process"), used by Goodfellow et al. 2014 (§5, Table 1):
fit an isotropic Gaussian kernel density to N samples mu_j of the model,

  log p(x) = log (1/N) sum_j N(x; mu_j, sigma^2 I)
           = logsumexp_j(-|x - mu_j|^2 / (2 sigma^2)) - log N - d log(sigma sqrt(2 pi)),

choose sigma by maximising the mean log-likelihood of a validation split
over a grid, and report the test mean and its standard error
std / sqrt(n). The released script uses 10,000 samples, the first 1,000
validation images (MNIST train 50,000-51,000), sigma on logspace(-1, 0, 10),
and pixels in [0, 1]: numbers are only comparable under those choices.
Known to be a poor likelihood estimate in high dimension (Theis et al.
2016); we reproduce it because the paper reports it.

Computed in float64 numpy: |x - mu|^2 = |x|^2 - 2 x.mu + |mu|^2 as one matrix
product per chunk of x, reused for every sigma of the grid; log-sum-exp over
the samples with the max subtracted.
"""

from typing import NamedTuple

import numpy as np
from scipy.special import logsumexp

DEFAULT_SIGMAS = np.logspace(-1.0, 0.0, 10)


def _flat(a) -> np.ndarray:
  a = np.asarray(a, np.float64)
  return a.reshape(a.shape[0], -1)


def parzen_log_likelihood(samples, x, sigma, batch_size: int = 100) -> np.ndarray:
  """Per-example Parzen log-likelihood.

  Args:
    samples: [N, ...] model samples (kernel centres), same range as x.
    x: [M, ...] points to evaluate.
    sigma: a float, or a 1-D array of S kernel widths.
    batch_size: rows of x per chunk (memory batch_size x N floats).

  Returns:
    float64 [M] for a scalar sigma, [S, M] for an array.
  """
  mu, x = _flat(samples), _flat(x)
  if mu.shape[1] != x.shape[1]:
    raise ValueError(f"samples have {mu.shape[1]} dims, x has {x.shape[1]}.")
  sigmas = np.atleast_1d(np.asarray(sigma, np.float64))
  n, d = mu.shape
  mu_sq = np.sum(mu**2, axis=1)
  out = np.empty((len(sigmas), len(x)))
  log_norm = np.log(n) + d * np.log(sigmas * np.sqrt(2 * np.pi))   # [S]
  for start in range(0, len(x), batch_size):
    xb = x[start:start + batch_size]
    sq = np.sum(xb**2, axis=1)[:, None] - 2.0 * xb @ mu.T + mu_sq[None, :]
    sq = np.maximum(sq, 0.0)   # Rounding can make a near-zero distance negative.
    for s, sig in enumerate(sigmas):
      out[s, start:start + len(xb)] = logsumexp(-sq / (2 * sig**2), axis=1) - log_norm[s]
  return out if np.ndim(sigma) else out[0]


def select_sigma(samples, validation, sigmas=DEFAULT_SIGMAS,
                 batch_size: int = 100) -> tuple[float, np.ndarray]:
  """Grid search: (the sigma with the highest mean validation log-likelihood, means [S])."""
  means = parzen_log_likelihood(samples, validation, np.asarray(sigmas), batch_size).mean(axis=1)
  return float(np.asarray(sigmas)[np.argmax(means)]), means


class ParzenResult(NamedTuple):
  mean: float              # Mean test log-likelihood (nats).
  standard_error: float    # std / sqrt(n), as the paper's ± (ddof 0, as the released script).
  sigma: float
  sigmas: np.ndarray       # The grid searched (empty when sigma was given).
  validation_means: np.ndarray


def parzen_estimate(samples, test, validation=None, *, sigma: float | None = None,
                    sigmas=DEFAULT_SIGMAS, batch_size: int = 100) -> ParzenResult:
  """Goodfellow et al.'s Table 1 number: the test mean ± standard error.

  samples [N, ...], test [M, ...], validation [V, ...] (all in the same
  range, [0, 1] for the paper's numbers). Give either `validation` (sigma is
  chosen on it over `sigmas`) or a fixed `sigma`.
  """
  if sigma is None:
    if validation is None:
      raise ValueError("parzen_estimate needs a validation split or a fixed sigma.")
    sigma, val_means = select_sigma(samples, validation, sigmas, batch_size)
    grid = np.asarray(sigmas)
  else:
    val_means, grid = np.array([]), np.array([])
  ll = parzen_log_likelihood(samples, test, float(sigma), batch_size)
  return ParzenResult(mean=float(ll.mean()), standard_error=float(ll.std() / np.sqrt(len(ll))),
                      sigma=float(sigma), sigmas=grid, validation_means=val_means)
