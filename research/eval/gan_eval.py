"""Judging a GAN's samples as experiments/gan.py does: the Fréchet distance on
a classifier's features and Goodfellow et al.'s Parzen-window estimate (§5),
with the two references every GAN is read against.

Samples and images are float [N, H, W, C] in [0, 1]. `features(images)` is a
trained classifier's feature map, float [N, D] (the LeNet-5 F6 layer in the
experiment); the Fréchet distance compares its Gaussian statistics on the
samples with those on the test images.
"""

import dataclasses
import os

import numpy as np

from research.eval import baselines, frechet, parzen, plots


@dataclasses.dataclass
class SampleJudge:
  """Scores samples against fixed test images.

  features: images -> float [N, D]; test_x / validation_x: the test images
  (Parzen's log-likelihood) and the held-out images that choose its sigma
  among `sigmas`.
  """
  features: object
  test_x: np.ndarray
  validation_x: np.ndarray
  sigmas: tuple

  def __post_init__(self):
    self.test_features = self.features(self.test_x)

  def frechet(self, samples) -> float:
    return frechet.frechet_distance(self.features(samples), self.test_features)

  def __call__(self, samples) -> dict:
    """{"frechet", "parzen" (nats), "parzen_se", "parzen_sigma"} of the samples."""
    result = parzen.parzen_estimate(samples, self.test_x, self.validation_x,
                                    sigmas=np.asarray(self.sigmas))
    return {"frechet": self.frechet(samples), "parzen": result.mean,
            "parzen_se": result.standard_error, "parzen_sigma": result.sigma}


def references(judge: SampleJudge, train_x, num: int, seed: int, workdir: str,
               data_name: str) -> dict:
  """The floor (real training images, "data/frechet") and the trivial baseline (a
  Gaussian fit to the training images, "gaussian_baseline/..."), scored like a
  GAN's samples; draws both as samples_gaussian_baseline.png and data_<name>.png."""
  metrics = {"data/frechet": judge.frechet(train_x[:num])}
  gaussian = baselines.GaussianBaseline.fit(train_x)
  baseline = gaussian.sample(np.random.default_rng(seed), num, clip=(0.0, 1.0))
  metrics.update({f"gaussian_baseline/{k}": v for k, v in judge(baseline).items()})
  plots.image_grid(baseline[:100], 10, os.path.join(workdir, "samples_gaussian_baseline.png"),
                   title="Gaussian fit to the training images (the baseline)")
  plots.image_grid(train_x[:100], 10, os.path.join(workdir, f"data_{data_name}.png"),
                   title=f"{data_name}: training images")
  return metrics
