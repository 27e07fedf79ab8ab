"""R-CNN's one-vs-rest linear SVMs with hard-negative mining (Girshick et al. 2014, §2.3, appendix B).

R-CNN scores each region with one linear SVM per class on the fine-tuned
CNN's features. Negatives are far too many to train on at once, so it uses
the standard hard-negative mining of Felzenszwalb et al.: train on the
positives and a cache of negatives, score all negatives, add those inside
the margin ("hard": score > -1), drop cached ones far outside it ("easy":
score < -1.2), retrain; "mAP stops increasing after only a single pass over
all images". The paper's code solves each SVM with liblinear (L2-regularised
hinge loss, dual; C = 0.001, bias term with multiplier 10, positives weighted
2x) on features scaled to a mean L2 norm of 20; scikit-learn's LinearSVC is
that liblinear solver, so it is used here with those settings.

Works on feature arrays in memory (NumPy), with labels from
rcnn_targets.rcnn_training_sets (svm_labels: 1 positive, 0 negative, -1
ignored). Deterministic: the first cache is the first negatives in array
order (the paper's starts from the first images) and liblinear's shuffling
is seeded.
"""

import dataclasses

import numpy as np

# R-CNN's settings (rcnn_train.m): liblinear -s 3 (hinge, dual) -c C -B 10 -w1 2.
RCNN_C = 1e-3
RCNN_BIAS_SCALE = 10.0
RCNN_POSITIVE_WEIGHT = 2.0
RCNN_FEATURE_NORM = 20.0
HARD_THRESHOLD = -1.0001   # Inside the margin (or wrong): mined.
EASY_THRESHOLD = -1.2      # Well outside it: evicted from the cache.


@dataclasses.dataclass
class LinearSvms:
  """One linear SVM per class: score(x) = (x * feature_scale) @ weights + bias."""
  weights: np.ndarray     # float32 [D, C].
  bias: np.ndarray        # float32 [C].
  feature_scale: float    # Multiplies the features first (mean norm -> RCNN_FEATURE_NORM).
  history: list           # Per class, per round: {"cache", "hard_added", "evicted"}.

  def scores(self, features: np.ndarray) -> np.ndarray:
    """float [N, D] features -> float32 [N, C] SVM scores (> 0: the class)."""
    x = np.asarray(features, np.float32) * np.float32(self.feature_scale)
    return x @ self.weights + self.bias


def _fit(positives, negatives, c, positive_weight, bias_scale, seed):
  from sklearn.svm import LinearSVC
  x = np.concatenate([positives, negatives])
  y = np.concatenate([np.ones(len(positives)), -np.ones(len(negatives))])
  svm = LinearSVC(C=c, loss="hinge", dual=True, intercept_scaling=bias_scale,
                  class_weight={1: positive_weight, -1: 1.0}, max_iter=20000, random_state=seed)
  svm.fit(x, y)
  return svm.coef_[0].astype(np.float32), np.float32(svm.intercept_[0])


def train_svms(features: np.ndarray, labels: np.ndarray, rounds: int = 3,
               initial_negatives: int = 1000, c: float = RCNN_C,
               positive_weight: float = RCNN_POSITIVE_WEIGHT, bias_scale: float = RCNN_BIAS_SCALE,
               feature_norm: float | None = RCNN_FEATURE_NORM, seed: int = 0) -> LinearSvms:
  """One-vs-rest linear SVMs trained with hard-negative mining (R-CNN appendix B).

  Per class: fit on its positives and a cache (at first the first
  `initial_negatives` negatives); then up to `rounds` times: score every
  negative, evict cached ones scoring < EASY_THRESHOLD, add uncached ones
  scoring > HARD_THRESHOLD, and refit; stop early when none is hard.

  Args:
    features: float [N, D], one row per region (CNN features, e.g. fc7).
    labels: int [N, C], per class 1 positive, 0 negative, -1 ignored
      (rcnn_training_sets' svm_labels, concatenated over images).
    rounds: int >= 0, mining rounds (0: the first cache only).
    initial_negatives: int >= 1, the first cache's size.
    c, positive_weight, bias_scale: liblinear's C, -w1, -B (R-CNN's defaults).
    feature_norm: scale features so their mean L2 norm (over the labelled
      rows) is this; None leaves them as they are.
    seed: liblinear's shuffling seed.

  Returns:
    LinearSvms.

  Raises:
    ValueError: shapes that disagree, or a class with no positive or no
      negative (a one-class SVM is undefined: drop the class or add data).
  """
  x = np.asarray(features, np.float32)
  y = np.asarray(labels)
  if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
    raise ValueError(f"train_svms: features must be [N, D] and labels [N, C] with the same N, "
                     f"got {x.shape} and {y.shape}")
  if rounds < 0 or initial_negatives < 1:
    raise ValueError(f"train_svms: rounds={rounds} must be >= 0 and "
                     f"initial_negatives={initial_negatives} >= 1")
  for k in range(y.shape[1]):
    if not (y[:, k] == 1).any() or not (y[:, k] == 0).any():
      raise ValueError(f"train_svms: class {k} has {int((y[:, k] == 1).sum())} positives and "
                       f"{int((y[:, k] == 0).sum())} negatives; an SVM needs both: add images "
                       "with (and without) that class, or leave the class out")
  labelled = (y >= 0).any(axis=1)
  scale = 1.0
  if feature_norm is not None:
    mean_norm = float(np.linalg.norm(x[labelled], axis=1).mean())
    scale = feature_norm / mean_norm if mean_norm > 0 else 1.0
  x = x * np.float32(scale)
  weights = np.zeros((x.shape[1], y.shape[1]), np.float32)
  bias = np.zeros((y.shape[1],), np.float32)
  history = []
  for k in range(y.shape[1]):
    positives = x[y[:, k] == 1]
    negative_rows = np.flatnonzero(y[:, k] == 0)
    cached = np.zeros(len(negative_rows), bool)
    cached[:initial_negatives] = True
    rows = []
    for r in range(rounds + 1):
      w, b = _fit(positives, x[negative_rows[cached]], c, positive_weight, bias_scale, seed)
      rows.append({"cache": int(cached.sum()), "hard_added": 0, "evicted": 0})
      if r == rounds:
        break
      score = x[negative_rows] @ w + b
      hard = ~cached & (score > HARD_THRESHOLD)
      if not hard.any():
        break
      easy = cached & (score < EASY_THRESHOLD)
      cached = (cached & ~easy) | hard
      rows[-1].update(hard_added=int(hard.sum()), evicted=int(easy.sum()))
    weights[:, k], bias[k] = w, b
    history.append(rows)
  return LinearSvms(weights, bias, scale, history)
