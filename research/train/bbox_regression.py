"""R-CNN's class-specific bounding-box regressors (Girshick et al. 2014, §3.4 and appendix C).

For a proposal P and its matched ground truth G the targets are boxes.py's
raw t = (t_x, t_y, t_w, t_h) (appendix C, eqs. 6-9); each is a linear
function of the fine-tuned CNN's pool5 features, fit per class by ridge
regression: w = argmin_w sum_i (t_i - w^T phi(P_i))^2 + lambda ||w||^2
(eq. 5), lambda = 1000 ("we found that regularization is important: we set
lambda = 1000 based on a validation set"). Pairs are the regions with IoU >
0.6 with a ground-truth box (rcnn_targets' regression_mask). As for the
SVMs (svm.py), features are first scaled to a mean L2 norm of 20, and the
bias is an unregularised extra weight. At test time each class's regressor
moves that class's boxes, once (appendix C: iterating did not help).

NumPy on the host: closed-form solves of (X^T X + lambda I) w = X^T t, D x D
per class.
"""

import dataclasses

import numpy as np

RCNN_LAMBDA = 1000.0
FEATURE_NORM = 20.0


@dataclasses.dataclass
class BoxRegressors:
  """Per class: t = (x * feature_scale) @ weights[c] + bias[c]."""
  weights: np.ndarray    # float32 [C, D, 4].
  bias: np.ndarray       # float32 [C, 4].
  feature_scale: float
  num_pairs: np.ndarray  # int [C]: the training pairs of each class (0: the identity).

  def predict(self, features: np.ndarray) -> np.ndarray:
    """float [N, D] -> float32 [N, C, 4], every class's t for every region."""
    x = np.asarray(features, np.float32) * np.float32(self.feature_scale)
    return np.einsum("nd,cdk->nck", x, self.weights) + self.bias[None]


def train_regressors(features: np.ndarray, targets: np.ndarray, classes: np.ndarray,
                     num_classes: int, lam: float = RCNN_LAMBDA,
                     feature_norm: float | None = FEATURE_NORM) -> BoxRegressors:
  """Ridge regression of t on the features, one regressor (4 outputs) per class.

  Args:
    features: float [N, D], the pairs' pool5 features.
    targets: float [N, 4], raw t (encode(matched ground truth, region)).
    classes: int [N], the matched ground truth's class, 0-based.
    num_classes: C.
    lam: lambda (1000 in the paper), >= 0.
    feature_norm: scale features to this mean L2 norm; None: as they are.

  Returns:
    BoxRegressors; a class without pairs gets zero weights (t = 0: the box
    stays as it is).

  Raises:
    ValueError: shapes that disagree, lam < 0, or a class outside [0, C).
  """
  x = np.asarray(features, np.float64)
  t = np.asarray(targets, np.float64)
  c = np.asarray(classes).reshape(-1)
  if x.ndim != 2 or t.shape != (len(x), 4) or len(c) != len(x):
    raise ValueError(f"train_regressors: features must be [N, D], targets [N, 4] and classes "
                     f"[N] with the same N, got {x.shape}, {t.shape} and {c.shape}")
  if lam < 0:
    raise ValueError(f"train_regressors: lam={lam} must be >= 0 (R-CNN: 1000)")
  if len(c) and (c.min() < 0 or c.max() >= num_classes):
    raise ValueError(f"train_regressors: classes must be in [0, {num_classes}), got "
                     f"{c.min()} .. {c.max()}")
  scale = 1.0
  if feature_norm is not None and len(x):
    mean_norm = float(np.linalg.norm(x, axis=1).mean())
    scale = feature_norm / mean_norm if mean_norm > 0 else 1.0
  x = x * scale
  d = x.shape[1]
  weights = np.zeros((num_classes, d, 4), np.float32)
  bias = np.zeros((num_classes, 4), np.float32)
  counts = np.bincount(c.astype(np.int64), minlength=num_classes) if len(c) else \
      np.zeros(num_classes, np.int64)
  penalty = np.full(d + 1, lam)
  penalty[-1] = 0.0  # The bias is not shrunk.
  for k in range(num_classes):
    rows = c == k
    if not rows.any():
      continue
    xb = np.concatenate([x[rows], np.ones((int(rows.sum()), 1))], axis=1)
    w = np.linalg.lstsq(xb.T @ xb + np.diag(penalty), xb.T @ t[rows], rcond=None)[0]
    weights[k], bias[k] = w[:-1], w[-1]
  return BoxRegressors(weights, bias, scale, counts)
